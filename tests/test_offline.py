"""`launch.offline`: the whole pipeline on real MuJoCo data, its outputs, and exact resume."""
import json
import os
import shlex
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs.d4rl import get_config, validate
from launch import offline
from pipelines import synthesis
from synther_jax.checkpoint import Checkpointer
from synther_jax.data import read_synthetic
from synther_jax.metrics import MetricsWriter

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# A denoiser that compiles and samples in seconds (`_synthetic_config`'s, as flags).
TINY_DIFFUSION = dict(width=32, depth=1, dim_t=8, num_train_steps=100, steps_per_call=50, checkpoint_every=50,
                      num_sample_steps=4, sample_chunk_size=1_000)
TINY_DIFFUSION_FLAGS = [f"--config.diffusion.{name}={value}" for name, value in TINY_DIFFUSION.items()]


def test_smoke_pipeline_writes_every_output(hopper_random_npz, tmp_path):
    """The smoke run with one denoiser per seed, as a user types it: every output, the protocol,
    each seed's denoiser and agent seed, the fidelity per denoiser, and the command line."""
    workdir = tmp_path / "run"
    # The in-process per-seed test's denoisers and agents (`_per_seed_config`): the shared compilation
    # cache serves both.
    arguments = ["--config=configs/d4rl.py:hopper-random,smoke", "--config.denoiser_per_seed=true",
                 "--config.env_id=Hopper-v5", f"--config.dataset={hopper_random_npz}", *TINY_DIFFUSION_FLAGS,
                 "--config.num_samples=2000", "--config.agent_steps=20", "--config.eval_every=10",
                 "--config.eval_episodes=1", f"--workdir={workdir}"]
    result = subprocess.run([sys.executable, "-m", "launch.offline", *arguments], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("samples/seed0.npz", "samples/seed1.npz", "samples/seed1.json", "results.json", "metrics.jsonl",
                 "learning_curve.png", "evaluations.json", "analysis/seed0/report.json", "analysis/seed1/marginals.png",
                 "stage_seconds.json"):
        assert os.path.exists(workdir / name), name
    assert not os.path.exists(workdir / "samples.npz")
    assert os.listdir(workdir / "tensorboard")
    assert "agent training: 100%" in result.stderr  # the agent stage's progress bar
    results = json.loads((workdir / "results.json").read_text())
    score = results["final_normalized_score"]
    assert len(score["per_seed"]) == 2 and np.isclose(score["mean"], np.mean(score["per_seed"]))
    assert results["score_table"].startswith("D4RL v2 table (hopper")
    assert {"diffusion", "generate", "agent", "evaluate"} <= set(results["stage_seconds"])
    assert [e["step"] for e in json.loads((workdir / "evaluations.json").read_text())] == [10, 20]
    assert results["denoiser_protocol"] == "per_seed"
    assert results["seeds"] == [{"agent": i, "agent_seed": 0, "denoiser_seed": i, "samples": f"samples/seed{i}.npz"}
                                for i in range(2)]
    assert results["command"] == shlex.join(["python", "-m", "launch.offline", *arguments])
    assert results["sampler"] == {"solver": "heun", "steps": 4, "S_churn": 80.0, "network_evaluations": 7}
    fidelity = results["fidelity"]
    assert len(fidelity["per_denoiser"]) == 2
    scores = [f["marginal_score"] for f in fidelity["per_denoiser"]]
    assert scores[0] != scores[1] and np.isclose(fidelity["mean"]["marginal_score"], np.mean(scores))
    assert np.isclose(fidelity["std"]["marginal_score"], np.std(scores))


def test_the_recorded_command_line_reproduces_the_result(finished_real_data_run, tmp_path):
    recorded = json.loads((finished_real_data_run / "results.json").read_text())
    program, *rest = shlex.split(recorded["command"])
    assert program == "python"
    rest = [f"--workdir={tmp_path / 'again'}" if a.startswith("--workdir=") else a for a in rest]
    again = subprocess.run([sys.executable, *rest], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stderr[-3000:]
    repeated = json.loads((tmp_path / "again" / "results.json").read_text())
    assert repeated["final_return"] == recorded["final_return"]
    assert repeated["denoiser_protocol"] is None and repeated["seeds"][1] == {
        "agent": 1, "agent_seed": 0, "denoiser_seed": None, "samples": None}


def _resume_config(dataset):
    config = get_config("hopper-random,smoke")
    config.dataset, config.env_id, config.data, config.analyze = dataset, "Hopper-v5", "real", False
    config.agent_steps, config.eval_every, config.eval_episodes = 30, 10, 1
    return config


def test_resume_after_a_kill_in_the_agent_stage_is_exact(hopper_random_npz, tmp_path, monkeypatch):
    straight = offline.run(_resume_config(hopper_random_npz), str(tmp_path / "straight"))

    calls = []
    real_evaluate = offline.evaluate

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # killed after the first checkpoint, in the middle of the second chunk
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(offline, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        offline.run(_resume_config(hopper_random_npz), str(tmp_path / "resumed"))
    monkeypatch.setattr(offline, "evaluate", real_evaluate)
    resumed = offline.run(_resume_config(hopper_random_npz), str(tmp_path / "resumed"))

    assert resumed["final_return"] == straight["final_return"]
    states = [Checkpointer(str(tmp_path / run / "agent")).restore_latest(None) for run in ("straight", "resumed")]
    assert states[0][0] == states[1][0] == 30
    jax.tree.map(np.testing.assert_array_equal, states[0][1], states[1][1])
    history = json.loads((tmp_path / "resumed" / "evaluations.json").read_text())
    assert [e["step"] for e in history] == [10, 20, 30]


def truncate_newest_checkpoint(folder) -> int:
    """Cuts every array file of the newest checkpoint under `folder` to half its length; returns its step."""
    step = max(int(name) for name in os.listdir(folder) if name.isdigit())
    for parent, _, files in os.walk(os.path.join(folder, str(step))):
        for name in files:
            if os.sep + "d" in parent:  # the array data (OCDBT), not the metadata
                path = os.path.join(parent, name)
                os.truncate(path, os.path.getsize(path) // 2)
    return step


def _synthetic_config(dataset):
    config = _resume_config(dataset)
    config.data, config.num_samples = "synthetic", 2_000
    config.diffusion.update(TINY_DIFFUSION)
    return config


def test_a_damaged_newest_checkpoint_is_skipped_and_the_run_ends_as_an_uninterrupted_one(hopper_random_npz, tmp_path,
                                                                                         monkeypatch, caplog):
    straight = offline.run(_synthetic_config(hopper_random_npz), str(tmp_path / "straight"))

    real_evaluate = offline.evaluate
    calls = []

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:  # killed in the third chunk, after the checkpoints at updates 10 and 20
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(offline, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        offline.run(_synthetic_config(hopper_random_npz), str(tmp_path / "damaged"))
    monkeypatch.setattr(offline, "evaluate", real_evaluate)
    assert truncate_newest_checkpoint(tmp_path / "damaged" / "agent") == 20
    # The diffusion stage finished (samples.npz is there): its damaged checkpoints are never read again.
    assert truncate_newest_checkpoint(tmp_path / "damaged" / "diffusion" / "checkpoints") == 100
    with caplog.at_level("INFO"):
        resumed = offline.run(_synthetic_config(hopper_random_npz), str(tmp_path / "damaged"))

    assert resumed["final_return"] == straight["final_return"]
    messages = [record.getMessage() for record in caplog.records]
    assert any("agent/20 does not restore" in message for message in messages), messages
    assert any("at update 10 of 30" in message for message in messages), messages
    assert any("diffusion and generation finished earlier" in message for message in messages), messages


def _per_seed_config(dataset):
    config = _synthetic_config(dataset)
    config.denoiser_per_seed = True
    config.agent_steps, config.eval_every = 20, 10
    return config


def test_one_denoiser_per_seed_as_one_program_equals_each_alone_and_resumes_exactly(hopper_random_npz, tmp_path,
                                                                                     monkeypatch):
    """Denoiser i of a per-seed run is the model a shared-denoiser run of seed i trains alone (to
    float32 rounding, as in tests/test_trainer.py); agent i learns from denoiser i's samples only;
    a run killed in the middle of the per-seed diffusion stage resumes to exactly the uninterrupted one."""
    learner = offline.OFFLINE_LEARNERS["td3_bc"][0]
    real_update, seen = learner.update_steps_seeds, []

    def spy(states, dataset, keys, **kwargs):
        seen.append((np.asarray(dataset["observations"]), kwargs["dataset_per_seed"]))
        return real_update(states, dataset, keys, **kwargs)

    monkeypatch.setattr(learner, "update_steps_seeds", spy)
    straight = offline.run(_per_seed_config(hopper_random_npz), str(tmp_path / "straight"))
    monkeypatch.setattr(learner, "update_steps_seeds", real_update)
    samples = [read_synthetic(str(tmp_path / "straight" / "samples" / f"seed{i}.npz")) for i in range(2)]
    observations, per_seed = seen[0]
    assert per_seed and observations.shape == (2, 2_000, 11)
    for i in range(2):
        np.testing.assert_array_equal(observations[i], samples[i].observations)
    assert np.max(np.abs(samples[0].observations - samples[1].observations)) > 1e-1
    assert [s["denoiser_seed"] for s in straight["seeds"]] == [0, 1]

    for i in range(2):
        alone_config = _synthetic_config(hopper_random_npz)
        alone_config.seed = i
        alone_config = validate(alone_config)  # as offline.run does: the terminals default, the widths
        alone_dir = str(tmp_path / f"alone{i}")
        model = synthesis.train_model(alone_config, synthesis.load_real(alone_config), alone_dir,
                                       MetricsWriter(alone_dir))
        alone = read_synthetic(synthesis.write_samples(alone_config, synthesis.load_real(alone_config), model,
                                                        alone_dir)[0])
        for key in ("observations", "actions", "rewards", "next_observations"):
            # 1e-4 of the raw units' scale: velocities reach +-20 (about 1e-5 relative measured)
            np.testing.assert_allclose(getattr(samples[i], key), getattr(alone, key), rtol=1e-4, atol=1e-4)

    real_write = MetricsWriter.write

    def die_after_the_first_checkpoint(self, stage, step, *args, **kwargs):
        if stage == "diffusion" and step == 50:  # checkpoint_every=50: the seeds' states at 50 are saved
            raise KeyboardInterrupt
        return real_write(self, stage, step, *args, **kwargs)

    monkeypatch.setattr(MetricsWriter, "write", die_after_the_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        offline.run(_per_seed_config(hopper_random_npz), str(tmp_path / "resumed"))
    monkeypatch.setattr(MetricsWriter, "write", real_write)
    assert not os.path.exists(tmp_path / "resumed" / "samples")
    assert Checkpointer(str(tmp_path / "resumed" / "diffusion" / "checkpoints")).latest_step() == 50
    resumed = offline.run(_per_seed_config(hopper_random_npz), str(tmp_path / "resumed"))
    for i in range(2):
        again = read_synthetic(str(tmp_path / "resumed" / "samples" / f"seed{i}.npz"))
        np.testing.assert_array_equal(again.observations, samples[i].observations)
    assert resumed["final_return"] == straight["final_return"]
