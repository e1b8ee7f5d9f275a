"""`launch.offline`: the whole pipeline on real MuJoCo data, its outputs, and exact resume."""
import json
import os
import subprocess
import sys

import gymnasium as gym
import jax
import numpy as np
import pytest

from configs.d4rl import get_config
from launch import offline
from synther_jax.checkpoint import Checkpointer
from synther_jax.data import write_synthetic
from synther_jax.data.collection import rollout, uniform_random_policy
from synther_jax.data.flatten import episodes_to_transitions

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def real_dataset(tmp_path_factory):
    env = gym.make("Hopper-v5")
    episodes = rollout(env, uniform_random_policy(env.action_space, 0), 2000, seed=0)
    path = str(tmp_path_factory.mktemp("data") / "hopper_random.npz")
    write_synthetic(path, episodes_to_transitions(episodes), source_dataset="random", config={}, seed=0,
                    model_checkpoint=None, env_id="Hopper-v5")
    return path


def test_smoke_pipeline_writes_every_output(real_dataset, tmp_path):
    workdir = tmp_path / "run"
    command = [sys.executable, "-m", "launch.offline", "--config=configs/d4rl.py:hopper,smoke",
               f"--config.dataset={real_dataset}", "--config.diffusion.num_train_steps=200",
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
    config = get_config("hopper,smoke")
    config.dataset, config.data, config.analyze = dataset, "real", False
    config.agent_steps, config.eval_every, config.eval_episodes = 30, 10, 1
    return config


def test_resume_after_a_kill_in_the_agent_stage_is_exact(real_dataset, tmp_path, monkeypatch):
    straight = offline.run(_resume_config(real_dataset), str(tmp_path / "straight"))

    calls = []
    real_evaluate = offline.evaluate

    def evaluate_then_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # killed after the first checkpoint, in the middle of the second chunk
            raise KeyboardInterrupt
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(offline, "evaluate", evaluate_then_die)
    with pytest.raises(KeyboardInterrupt):
        offline.run(_resume_config(real_dataset), str(tmp_path / "resumed"))
    monkeypatch.setattr(offline, "evaluate", real_evaluate)
    resumed = offline.run(_resume_config(real_dataset), str(tmp_path / "resumed"))

    assert resumed["final_return"] == straight["final_return"]
    states = [Checkpointer(str(tmp_path / run / "agent")).restore_latest(None) for run in ("straight", "resumed")]
    assert states[0][0] == states[1][0] == 30
    jax.tree.map(np.testing.assert_array_equal, states[0][1], states[1][1])
    history = json.loads((tmp_path / "resumed" / "evaluations.json").read_text())
    assert [e["step"] for e in history] == [10, 20, 30]
