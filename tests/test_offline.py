"""`launch.offline`: the whole pipeline on real MuJoCo data, its outputs, and exact resume."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs.d4rl import get_config
from launch import offline
from synther_jax.checkpoint import Checkpointer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_smoke_pipeline_writes_every_output(hopper_random_npz, tmp_path):
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "launch.offline", "--config=configs/d4rl.py:hopper-random,smoke",
               "--config.env_id=Hopper-v5", f"--config.dataset={hopper_random_npz}", "--config.diffusion.num_train_steps=200",
               "--config.diffusion.steps_per_call=100", "--config.num_samples=3000",
               "--config.diffusion.sample_chunk_size=1500", "--config.agent_steps=200", "--config.eval_every=100",
               "--config.eval_episodes=1", f"--workdir={workdir}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("samples.npz", "results.json", "metrics.jsonl", "learning_curve.png", "evaluations.json",
                 "analysis/report.json", "analysis/marginals.png", "stage_seconds.json"):
        assert os.path.exists(workdir / name), name
    assert os.listdir(workdir / "tensorboard")
    results = json.loads((workdir / "results.json").read_text())
    score = results["final_normalized_score"]
    assert len(score["per_seed"]) == 2 and np.isclose(score["mean"], np.mean(score["per_seed"]))
    assert results["score_table"].startswith("D4RL v2 table (hopper")
    assert {"diffusion", "generate", "agent", "evaluate"} <= set(results["stage_seconds"])
    assert [e["step"] for e in json.loads((workdir / "evaluations.json").read_text())] == [100, 200]


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
    config.diffusion.update(width=32, depth=1, dim_t=8, num_train_steps=100, steps_per_call=50, checkpoint_every=50,
                            num_sample_steps=4, sample_chunk_size=1_000)
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
