"""Every D4RL-layout file we write, read the way D4RL's `qlearning_dataset` reads it (each row's
successor is the next row's observation; time-limit rows are skipped), gives every transition its
true next observation: the bundled datasets, whole episodes and row subsamples from the simulator
(what `launch.collect --bundle` and the behaviour runs' replay files hold) and maze2d's continuous
trajectories."""
import os

import h5py
import numpy as np
import pytest

from synther_jax.data import bundled_names, episodes_to_transitions, load_dataset
from synther_jax.data.collection import rollout, uniform_random_policy
from synther_jax.data.d4rl_hdf5 import read_d4rl_hdf5, write_d4rl_hdf5
from synther_jax.data.loaders import BUNDLED_DIR
from synther_jax.data.maze2d_datasets import generate_episodes
from synther_jax.envs import make_env

FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals")


def qlearning_dataset(path):
    """A transcription of D4RL's `qlearning_dataset(env, dataset)` (terminate_on_end=False) on the
    file's raw arrays, as D4RL's `get_dataset` returns them."""
    with h5py.File(path, "r") as file:
        data = {key: file[key][()] for key in ("observations", "actions", "rewards", "terminals", "timeouts")}
    out = {key: [] for key in FIELDS}
    for i in range(len(data["rewards"]) - 1):
        if data["timeouts"][i]:  # final_timestep: skipped, and no terminal applied
            continue
        out["observations"].append(data["observations"][i].astype(np.float32))
        out["next_observations"].append(data["observations"][i + 1].astype(np.float32))
        out["actions"].append(data["actions"][i].astype(np.float32))
        out["rewards"].append(data["rewards"][i].astype(np.float32))
        out["terminals"].append(bool(data["terminals"][i]))
    return {key: np.array(value) for key, value in out.items()}


def assert_reads_as(path, expected):
    """D4RL's reading of `path` equals the transitions `expected` (D4RL's rules: time-limit steps left out)."""
    read = qlearning_dataset(path)
    assert len(read["rewards"]) == len(expected)
    for key in FIELDS:
        np.testing.assert_array_equal(read[key], getattr(expected, key).astype(read[key].dtype), err_msg=key)


@pytest.mark.parametrize("name", bundled_names())
def test_bundled_datasets_read_right_by_qlearning_dataset(name):
    ours = load_dataset(name)  # next observations checked against MuJoCo in test_data_loaders
    assert_reads_as(os.path.join(BUNDLED_DIR, name[len("bundled/"):] + ".hdf5"), ours)
    assert len(ours) == ours.metadata["num_steps"]  # every transition, none left behind


def hopper_episodes(num_steps=400, seed=0):
    """Random Hopper episodes: short, most end at a terminal step; the last is cut by the step budget."""
    env = make_env("Hopper-v5", seed)
    return rollout(env, uniform_random_policy(env.action_space, seed), num_steps, seed)


def d4rl_rows(steps):
    """The steps D4RL's rules keep: all but time-limit steps."""
    return steps.subset(np.flatnonzero(~steps.timeouts))


def test_whole_episodes_and_row_subsamples_read_right(tmp_path):
    env = make_env("Hopper-v5", 0)  # random hopping: short episodes, most ending at a terminal step
    steps = episodes_to_transitions(rollout(env, uniform_random_policy(env.action_space, 0), 400, 0),
                                    keep_timeouts=True)  # the simulator's own successors
    assert steps.terminals.sum() >= 5
    steps.timeouts[-1] = False  # data that stops mid-episode, as a replay buffer does
    write_d4rl_hdf5(str(tmp_path / "whole.hdf5"), steps, {})
    assert_reads_as(tmp_path / "whole.hdf5", d4rl_rows(steps))

    rows = steps.subset(np.sort(np.random.default_rng(0).choice(len(steps), 150, replace=False)))
    write_d4rl_hdf5(str(tmp_path / "rows.hdf5"), rows, {})
    assert_reads_as(tmp_path / "rows.hdf5", d4rl_rows(rows))
    read = read_d4rl_hdf5(str(tmp_path / "rows.hdf5"), keep_timeouts=True)  # ours gives back what was written
    for key in (*FIELDS, "timeouts", "episode_ids"):
        np.testing.assert_array_equal(getattr(read, key), getattr(rows, key), err_msg=key)


def test_maze2d_trajectories_read_right(tmp_path):
    episodes = generate_episodes("maze2d-umaze", 700, seed=0)  # past umaze's 300-step time limit twice
    steps = episodes_to_transitions(episodes, keep_timeouts=True)
    assert steps.timeouts.sum() >= 2
    write_d4rl_hdf5(str(tmp_path / "maze.hdf5"), steps, {})
    assert_reads_as(tmp_path / "maze.hdf5", episodes_to_transitions(episodes))
    with h5py.File(tmp_path / "maze.hdf5", "r") as file:  # one continuous trajectory: padding only at its end
        assert file["padding"][()].sum() == 1
