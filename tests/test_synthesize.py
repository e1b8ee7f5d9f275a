"""`python -m launch.synthesize` end to end on real MuJoCo transitions, including resume."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from synther_jax.data import KEYS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _synthesize(dataset, workdir, *overrides):
    command = [sys.executable, "-m", "launch.synthesize", "--config=configs/d4rl.py:hopper-random,smoke",
               "--config.env_id=Hopper-v5", f"--config.dataset={dataset}", "--config.diffusion.width=32",
               "--config.diffusion.depth=1", "--config.diffusion.dim_t=8", "--config.diffusion.num_train_steps=300",
               "--config.diffusion.steps_per_call=50", "--config.diffusion.num_sample_steps=4",
               "--config.num_samples=700", "--config.diffusion.sample_chunk_size=300", f"--workdir={workdir}",
               *overrides]
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_synthesize_writes_samples_and_resumes(hopper_random_npz, tmp_path):
    workdir = tmp_path / "run"
    result = _synthesize(hopper_random_npz, workdir)
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(workdir / "samples.npz") as samples:
        assert all(samples[key].dtype == np.float32 for key in KEYS)
        assert samples["observations"].shape == (700, 11) and samples["actions"].shape == (700, 3)
        assert samples["rewards"].shape == (700,) and samples["next_observations"].shape == (700, 11)
        assert set(np.unique(samples["terminals"])) <= {0.0, 1.0}
        first = samples["observations"].copy()
    assert os.path.exists(workdir / "diffusion" / "checkpoints" / "300")
    assert os.path.exists(workdir / "metrics.jsonl")

    # A rerun finds the finished stages and changes nothing.
    rerun = _synthesize(hopper_random_npz, workdir)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    with np.load(workdir / "samples.npz") as samples:
        np.testing.assert_array_equal(samples["observations"], first)

    # A different config in the same folder is refused, not mixed in.
    other = _synthesize(hopper_random_npz, workdir, "--config.seed=1")
    assert other.returncode != 0 and "another config" in other.stderr


def test_unknown_dataset_fails_with_advice(tmp_path):
    result = _synthesize("no/such-dataset-v0", tmp_path / "run")
    assert result.returncode != 0
    assert "MINARI_DATASETS_PATH" in result.stderr or "launch.collect" in result.stderr


def test_synthesize_one_denoiser_per_seed_with_actions_clipped(hopper_random_npz, tmp_path):
    result = _synthesize(hopper_random_npz, tmp_path, "--config.denoiser_per_seed=true", "--config.num_seeds=3",
                         "--config.diffusion.num_train_steps=100", "--config.clip_actions=true")
    assert result.returncode == 0, result.stderr[-3000:]
    observations = []
    for i in range(3):
        with np.load(tmp_path / "samples" / f"seed{i}.npz") as samples:
            assert sorted(samples.files) == sorted(KEYS) and samples["observations"].shape == (700, 11)
            observations.append(samples["observations"])
            # Inside the unit box, and at its edge where the barely trained denoiser overshot it.
            assert np.max(np.abs(samples["actions"])) <= 1.0 and np.any(np.abs(samples["actions"]) == 1.0)
        assert json.loads((tmp_path / "samples" / f"seed{i}.json").read_text())["seed"] == i  # its denoiser seed
    assert not os.path.exists(tmp_path / "samples.npz")
    assert min(np.max(np.abs(observations[i] - observations[j])) for i, j in ((0, 1), (0, 2), (1, 2))) > 1e-1


@pytest.mark.parametrize("per_seed", [False, True])
def test_an_interrupted_sampling_stage_resumes_to_the_same_files(hopper_random_npz, tmp_path, monkeypatch, per_seed):
    """Stopped after its first chunk, the stage starts the next run at the second, and its files
    equal an uninterrupted run's."""
    from configs import d4rl
    from pipelines import synthesis
    from synther_jax.diffusion import DiffusionConfig, train_diffusion

    config = d4rl.get_config("hopper-random,smoke")
    config.update(dataset=hopper_random_npz, env_id="Hopper-v5", num_samples=700, denoiser_per_seed=per_seed,
                  num_seeds=2, terminals="modelled")  # the rows below carry the terminal column
    config.diffusion.update(width=32, depth=1, dim_t=8, num_train_steps=50, steps_per_call=50, num_sample_steps=4,
                            sample_chunk_size=300)
    real = synthesis.load_real(config)
    rows = real.to_rows(True)
    keys = jax.numpy.stack([jax.random.PRNGKey(s) for s in (0, 1)]) if per_seed else jax.random.PRNGKey(0)
    model = train_diffusion(rows, DiffusionConfig(**config.diffusion), keys, (rows.shape[1] - 1,), progress=False)
    straight = synthesis.write_samples(config, real, model, str(tmp_path / "straight"))

    sample_all, starts = synthesis.iterate_samples, []

    def one_chunk_then_stop(*args, **kwargs):
        for chunk in sample_all(*args, **kwargs):
            yield chunk
            raise KeyboardInterrupt

    def recording_start(*args, start=0, **kwargs):
        starts.append(start)
        yield from sample_all(*args, start=start, **kwargs)

    monkeypatch.setattr(synthesis, "iterate_samples", one_chunk_then_stop)
    with pytest.raises(KeyboardInterrupt):
        synthesis.write_samples(config, real, model, str(tmp_path / "resumed"))
    monkeypatch.setattr(synthesis, "iterate_samples", recording_start)
    resumed = synthesis.write_samples(config, real, model, str(tmp_path / "resumed"))
    assert starts == [300] and len(resumed) == len(straight) == (2 if per_seed else 1)
    for a, b in zip(straight, resumed):
        with np.load(a) as expected, np.load(b) as actual:
            for key in KEYS:
                np.testing.assert_array_equal(actual[key], expected[key])
        assert sorted(os.listdir(os.path.dirname(b))) == sorted(os.listdir(os.path.dirname(a)))  # no .partial left


def test_each_seeds_file_is_what_its_distilled_denoiser_draws(hopper_random_npz, tmp_path):
    """With --config.distill.num_steps, each seed's file is what its own denoiser, distilled into a
    2-step sampler, draws."""
    from synther_jax.data import load_dataset
    from synther_jax.diffusion import DistillConfig, distill, generate, load_diffusion

    settings = dict(num_steps=2, num_train_steps=20, steps_per_call=10, checkpoint_every=10)
    result = _synthesize(hopper_random_npz, tmp_path, "--config.denoiser_per_seed=true", "--config.num_seeds=2",
                         "--config.diffusion.num_train_steps=100",
                         *(f"--config.distill.{key}={value}" for key, value in settings.items()))
    assert result.returncode == 0, result.stderr[-3000:]
    seeds = range(2)
    teacher = load_diffusion(str(tmp_path / "diffusion"))
    rows = load_dataset(hopper_random_npz, env_id="Hopper-v5").to_rows(False)  # env_rule: no terminal column
    keys = lambda stream: jax.numpy.stack([jax.random.fold_in(jax.random.PRNGKey(seed), stream) for seed in seeds])
    student = distill(teacher, rows, DistillConfig(**settings), keys(3), workdir=str(tmp_path / "distill"),
                      progress=False)  # finished: read back from its checkpoint
    drawn = generate(student, 700, keys(1), chunk_size=300, progress=False)
    for i in seeds:
        with np.load(tmp_path / "samples" / f"seed{i}.npz") as samples:
            assert sorted(samples.files) == sorted(KEYS) and samples["observations"].shape == (700, 11)
            np.testing.assert_allclose(samples["observations"], drawn[i, :, :11], rtol=1e-5, atol=1e-5)
    assert os.path.exists(tmp_path / "distill" / "checkpoints" / "20")


def test_distillation_is_refused_in_a_multi_process_job(monkeypatch):
    """Not split across processes yet: one line when the config is checked, before any work (the
    launchers check it after joining their job)."""
    from configs import d4rl, online
    from configs.checks import ConfigError
    from synther_jax import distributed

    monkeypatch.setattr(distributed, "process_count", lambda: 2)
    offline_config = d4rl.get_config("walker2d")
    offline_config.distill.num_steps = 4
    with pytest.raises(ConfigError, match=r"distill.num_steps=4 distils in one process only, and this job has 2"):
        d4rl.validate(offline_config)
    offline_config.distill.num_steps = 0
    d4rl.validate(offline_config)  # without distillation the job may have many processes
    online_config = online.get_config("hopper-synther")
    online_config.synther.distill.num_steps = 4
    with pytest.raises(ConfigError, match=r"synther.distill.num_steps=4 distils in one process only"):
        online.validate(online_config)
