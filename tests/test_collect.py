"""Collection from the real MuJoCo simulator into Minari and back: identical arrays, determinism,
and the `launch.collect` command line."""
import os
import subprocess
import sys

import minari
import numpy as np
import pytest

from configs.checks import ConfigError
from synther_jax.data import episodes_to_transitions, load_dataset
from synther_jax.data.collection import episode_sample, rollout, uniform_random_policy, write_minari
from synther_jax.envs import make_env
from synther_jax.errors import InvalidDatasetError
from synther_jax.scores import normalized_score
from tests.test_d4rl_layout import assert_reads_as

ENV = "Walker2d-v5"
FIELDS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_ids")


@pytest.fixture
def minari_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def collect(num_steps, seed):
    env = make_env(ENV, seed)
    return env, rollout(env, uniform_random_policy(env.action_space, seed), num_steps, seed)


def test_collect_to_minari_and_back_gives_identical_arrays(minari_store):
    env, episodes = collect(400, seed=3)
    assert sum(len(e.rewards) for e in episodes) == 400
    write_minari("synther/walker2d/test-v0", episodes, env, algorithm_name="uniform-random", description="test")
    assert (minari_store / "synther" / "walker2d" / "test-v0" / "data" / "main_data.hdf5").is_file()
    for keep_timeouts in (False, True):
        loaded = load_dataset("synther/walker2d/test-v0", keep_timeouts=keep_timeouts)
        expected = episodes_to_transitions(episodes, keep_timeouts=keep_timeouts)
        for key in FIELDS:
            np.testing.assert_array_equal(getattr(loaded, key), getattr(expected, key), err_msg=key)
        assert loaded.metadata["env_id"] == ENV
    assert loaded.terminals.sum() > 0  # Random walkers fall: real terminals are in the data.


def test_collection_is_the_simulator_and_deterministic_for_a_seed():
    _, first = collect(150, seed=11)
    _, again = collect(150, seed=11)
    _, other = collect(150, seed=12)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.observations, b.observations)
        np.testing.assert_array_equal(a.actions, b.actions)
    assert not np.array_equal(first[0].actions, other[0].actions)
    # Replaying the recorded actions from the recorded reset seed in a fresh simulator reproduces each episode.
    env = make_env(ENV)
    assert len({episode.seed for episode in first}) == len(first)
    for episode in (first[0], first[-1]):
        observation, _ = env.reset(seed=episode.seed)
        np.testing.assert_array_equal(observation, episode.observations[0])
        for t, action in enumerate(episode.actions):
            observation, reward, terminated, _, _ = env.step(action)
            np.testing.assert_array_equal(observation, episode.observations[t + 1])
            assert reward == episode.rewards[t] and terminated == episode.terminations[t]


def test_existing_or_malformed_ids_are_refused_before_anything_is_written(minari_store):
    env, episodes = collect(50, seed=0)
    write_minari("synther/walker2d/taken-v0", episodes, env, algorithm_name="uniform-random", description="first")
    before = load_dataset("synther/walker2d/taken-v0")
    with pytest.raises(FileExistsError, match="already exists"):
        write_minari("synther/walker2d/taken-v0", episodes[:1], env, algorithm_name="uniform-random",
                     description="second")
    np.testing.assert_array_equal(load_dataset("synther/walker2d/taken-v0").observations, before.observations)
    with pytest.raises(ValueError, match="Malformed"):
        write_minari("w/x-v0", episodes, env, algorithm_name="uniform-random", description="bad id")
    assert sorted(os.listdir(minari_store)) == ["synther"]


def test_truncated_minari_file_is_reported_as_corrupt(minari_store):
    env, episodes = collect(200, seed=1)
    write_minari("synther/walker2d/cut-v0", episodes, env, algorithm_name="uniform-random", description="to be cut")
    path = minari_store / "synther" / "walker2d" / "cut-v0" / "data" / "main_data.hdf5"
    with open(path, "r+b") as file:
        file.truncate(os.path.getsize(path) // 2)
    with pytest.raises(InvalidDatasetError, match="corrupt"):
        load_dataset("synther/walker2d/cut-v0")


def test_command_line_writes_minari_and_a_bundle_of_whole_episodes(minari_store, tmp_path):
    bundle = tmp_path / "walker2d-random.hdf5"
    command = [sys.executable, "-m", "launch.collect", f"--env={ENV}", "--level=random", "--num_steps=300",
               "--dataset_id=synther/walker2d/cli-v0", "--seed=5", f"--bundle={bundle}", "--bundle_size=200"]
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run(command, check=True, cwd=root, env=dict(os.environ), capture_output=True)
    _, episodes = collect(300, seed=5)  # The command is the library call with that seed.
    np.testing.assert_array_equal(load_dataset("synther/walker2d/cli-v0").actions,
                                  episodes_to_transitions(episodes).actions)
    sample = episode_sample(episodes, 200, seed=5)
    assert 0 < sum(len(e.rewards) for e in sample) <= 200 and len(sample) < len(episodes)
    assert all(any(e is f for f in episodes) for e in sample)  # whole episodes, in collection order
    expected, from_bundle = episodes_to_transitions(sample), load_dataset(str(bundle))
    for key in FIELDS:
        np.testing.assert_array_equal(getattr(from_bundle, key), getattr(expected, key), err_msg=key)
    assert from_bundle.metadata["env_id"] == ENV and from_bundle.metadata["seed"] == 5
    assert_reads_as(bundle, expected)  # and D4RL's own reading pairs every step with its successor

    # Minari's own API on the dataset: the recovered environment has the dataset's spaces, every
    # episode's reset seed replays it, and the reference scores normalise returns as ours do.
    dataset = minari.load_dataset("synther/walker2d/cli-v0")
    recovered = dataset.recover_environment()
    assert recovered.observation_space == dataset.observation_space == make_env(ENV).observation_space
    assert recovered.action_space == dataset.action_space and recovered.spec.max_episode_steps == 1000
    minari_episodes = list(dataset.iterate_episodes())
    seeds = [m["seed"] for m in dataset.storage.get_episode_metadata(dataset.episode_indices)]
    assert seeds == [e.seed for e in episodes] and len(set(seeds)) == len(seeds)
    last = minari_episodes[-1]
    observation, _ = recovered.reset(seed=seeds[-1])
    np.testing.assert_array_equal(observation, last.observations[0])
    for action, expected_observation in zip(last.actions, last.observations[1:]):
        np.testing.assert_array_equal(recovered.step(action)[0], expected_observation)
    returns = np.array([e.rewards.sum() for e in minari_episodes])
    np.testing.assert_allclose(100 * minari.get_normalized_score(dataset, returns), normalized_score(ENV, returns))


def test_sac_levels_come_from_one_saved_training_run(tmp_path):
    """medium-replay is the SAC run's own data up to the medium policy (replayed here in a fresh
    simulator); the medium and expert policies are saved and reused, and their rollouts are
    deterministic for a seed."""
    from configs import online
    from pipelines.behaviour import BehaviourPolicies
    from pipelines.online_loop import episode_seed

    config = online.get_config("walker2d-sac,smoke")
    config.update(total_steps=400, start_steps=100, eval_every=200, checkpoint_every=200, log_every=100,
                  eval_episodes=1)  # Evaluations (and checkpoints) at 200 and 400 steps.
    workdir = str(tmp_path / "behaviour")
    behaviour = BehaviourPolicies(config, workdir, medium_return=-1e9)  # Medium at the first evaluation.
    episodes = behaviour.medium_replay()
    assert sum(len(e.rewards) for e in episodes) == config.eval_every
    assert os.listdir(os.path.join(workdir, "medium--1e+09", "policy")) == [str(config.eval_every)]
    env = make_env(ENV)
    for episode_id in (0, len(episodes) - 1):
        episode = episodes[episode_id]
        observation, _ = env.reset(seed=episode_seed(config.seed, 0, episode_id))
        np.testing.assert_array_equal(observation, episode.observations[0])
        for t, action in enumerate(episode.actions):
            observation, reward, terminated, _, _ = env.step(action)
            np.testing.assert_array_equal(observation, episode.observations[t + 1])
            assert terminated == episode.terminations[t]
    assert episodes[-1].truncations[-1]  # Still running when training stopped.

    # The expert policy needs the full budget: training resumes from the run's checkpoint.
    first = rollout(make_env(ENV, 0), behaviour.policy("expert", seed=1), 200, seed=1)
    assert os.listdir(os.path.join(workdir, "expert", "policy")) == [str(config.total_steps)]
    again = rollout(make_env(ENV, 0), BehaviourPolicies(config, workdir, -1e9).policy("expert", seed=1), 200, seed=1)
    np.testing.assert_array_equal(episodes_to_transitions(first).actions, episodes_to_transitions(again).actions)
    medium = rollout(make_env(ENV, 0), behaviour.policy("medium", seed=1), 200, seed=1)
    assert not np.array_equal(episodes_to_transitions(first).actions, episodes_to_transitions(medium).actions)

    # Another threshold the finished run had already passed: its replay is cut from the same run, but
    # no policy was saved for it when it happened.
    other = BehaviourPolicies(config, workdir, medium_return=-1e8)
    np.testing.assert_array_equal(episodes_to_transitions(other.medium_replay(), keep_timeouts=True).actions,
                                  episodes_to_transitions(episodes, keep_timeouts=True).actions)
    with pytest.raises(ConfigError, match="fresh --behaviour_workdir"):
        other.policy("medium", seed=1)
