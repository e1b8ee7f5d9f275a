"""launch.pixels end to end on a tiny rendered dataset: both stages, latents, results, resume; config checks."""
import json
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from configs import vd4rl  # noqa: E402
from launch import pixels  # noqa: E402
from synther_jax.data.latents import latent_dim  # noqa: E402


def tiny_config():
    config = vd4rl.get_config("walker-walk-medium,smoke")
    config.render_steps = 22  # two episodes of 10 agent steps
    config.episode_steps = 10
    config.agent_steps = 4
    config.eval_every = 2
    config.batch_size = 8
    config.drqbc.hidden_dim = 32
    config.latent.agent_steps = 20
    config.latent.num_samples = 300
    config.diffusion.update(width=32, depth=2, dim_t=16, num_train_steps=40, steps_per_call=20, checkpoint_every=20,
                            sample_chunk_size=300)
    return config


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_and_resume(tmp_path):
    workdir = str(tmp_path / "run")
    results = pixels.run(tiny_config(), workdir)
    for agent in ("original", "synther"):
        assert len(results[agent]["per_seed"]) == 2
        assert all(0.0 <= s <= 10 * 10 / 10 for s in results[agent]["per_seed"])  # 10 steps, reward <= 2 each
    assert results["stage1_updates"] == 4 and results["stage2_updates"] == 20
    with np.load(os.path.join(workdir, "latents.npz")) as latents:
        rows = np.concatenate([latents["observations"], latents["actions"], latents["rewards"][..., None],
                               latents["next_observations"]], axis=-1)
        assert rows.shape == (2, 20, latent_dim(("actor", "critic"), 50, 6))  # 2 seeds, 20 transitions, 212 dims
        assert np.all(np.abs(latents["observations"]) <= 1.0)  # tanh trunk features
    for name in ("results.json", "learning_curve.png", "metrics.jsonl", "analysis/report.json",
                 "synthetic/seed0.npz", "synthetic/seed1.npz"):
        assert os.path.exists(os.path.join(workdir, name)), name
    evaluations = json.load(open(os.path.join(workdir, "evaluations.json")))
    assert [e["step"] for e in evaluations["original"]] == [2, 4]

    # A rerun finds every stage done and reproduces the results without training again.
    again = pixels.run(tiny_config(), workdir)
    assert again["original"] == results["original"] and again["synther"] == results["synther"]
    assert again["stage_seconds"]["original"] == results["stage_seconds"]["original"]


@pytest.mark.parametrize("field, value, message", [
    ("agent_steps", 0, "--config.agent_steps must be positive, got 0"),
    ("algorithm", "td3", "--config.algorithm='td3' is not a choice"),
    ("latent.num_samples", -1, "--config.latent.num_samples must be positive, got -1"),
    ("episode_steps", 600, "at most 500"),
    ("drqbc.learning_rate", 0.0, "--config.drqbc.learning_rate must be positive"),
    ("diffusion.num_sample_steps", 0, "Invalid DiffusionConfig: num_sample_steps must be positive"),
])
def test_validate_names_the_field(field, value, message):
    config = vd4rl.get_config("cheetah-run-expert")
    parent, _, leaf = field.rpartition(".")
    (config[parent] if parent else config)[leaf] = value
    with pytest.raises(vd4rl.ConfigError, match=message.replace("[", r"\[")):
        vd4rl.validate(config)


def test_config_names():
    assert vd4rl.get_config("cheetah-run-medium-expert,bc").algorithm == "bc"
    assert vd4rl.get_config("walker-walk-medium-replay").dataset == "runs/vd4rl/walker-walk/medium-replay"
    with pytest.raises(vd4rl.ConfigError, match="Unknown config"):
        vd4rl.get_config("hopper-medium")
