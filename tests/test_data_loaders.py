"""`load_dataset`: D4RL HDF5 files written here in D4RL's layout, the bundled default, and every
kind of bad input raising the documented error."""
import os

import gymnasium as gym
import h5py
import numpy as np
import pytest

from synther_jax.data import DEFAULT_DATASET, bundled_names, load_dataset
from synther_jax.data.d4rl_hdf5 import d4rl_file_name, d4rl_name_from_file
from synther_jax.errors import DatasetNotFoundError, InvalidDatasetError, UnknownEnvironmentError


def d4rl_arrays(rng, n=300, obs_dim=17, action_dim=6):
    """A flat D4RL-v2-style dataset: episodes end at terminals or at a time limit of 50 steps."""
    terminals = rng.random(n) < 0.03
    timeouts = np.zeros(n, bool)
    length = 0
    for i in range(n):
        length += 1
        if terminals[i]:
            length = 0
        elif length == 50:
            timeouts[i], length = True, 0
    observations = rng.normal(size=(n, obs_dim)).astype(np.float32)
    next_observations = np.concatenate([observations[1:], rng.normal(size=(1, obs_dim))]).astype(np.float32)
    ends = np.flatnonzero(terminals | timeouts)
    next_observations[ends] = rng.normal(size=(len(ends), obs_dim))  # True successors at episode ends.
    return {"observations": observations, "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32), "terminals": terminals, "timeouts": timeouts,
            "next_observations": next_observations}


def write_d4rl_file(path, arrays):
    """Writes the keys D4RL's `get_dataset` reads, plus its `infos/` and `metadata/` groups."""
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            file.create_dataset(key, data=value)
        file.create_dataset("infos/qpos", data=np.zeros((len(arrays["observations"]), 9)))
        file.create_dataset("metadata/algorithm", data="SAC")


def test_d4rl_file_by_name_from_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path))
    arrays = d4rl_arrays(np.random.default_rng(0))
    write_d4rl_file(tmp_path / "walker2d_medium_replay-v2.hdf5", arrays)
    data = load_dataset("walker2d-medium-replay-v2")
    keep = ~arrays["timeouts"]  # Timeouts dropped, terminals kept, stored successors used.
    for key in ("observations", "actions", "rewards", "next_observations"):
        np.testing.assert_array_equal(getattr(data, key), arrays[key][keep], err_msg=key)
    np.testing.assert_array_equal(data.terminals, arrays["terminals"][keep])
    assert data.terminals.sum() > 0 and arrays["timeouts"].sum() > 0
    assert data.metadata["env_id"] == "Walker2d-v4" and data.metadata["d4rl_name"] == "walker2d-medium-replay-v2"

    with_timeouts = load_dataset(str(tmp_path / "walker2d_medium_replay-v2.hdf5"), keep_timeouts=True)
    assert len(with_timeouts) == len(arrays["rewards"])
    np.testing.assert_array_equal(with_timeouts.timeouts, arrays["timeouts"])
    np.testing.assert_array_equal(with_timeouts.terminals, arrays["terminals"])


def test_our_d4rl_files_keep_episode_ids_of_subsampled_rows(tmp_path):
    from synther_jax.data import Episode, episodes_to_transitions
    from synther_jax.data.d4rl_hdf5 import write_d4rl_hdf5

    rng = np.random.default_rng(3)
    episodes = [Episode(rng.normal(size=(t + 1, 4)), rng.normal(size=(t, 2)), rng.normal(size=t),
                        np.arange(t) == t - 1 if terminal else np.zeros(t, bool),
                        np.zeros(t, bool) if terminal else np.arange(t) == t - 1)
                for t, terminal in ((5, True), (7, False), (3, True), (6, False))]
    steps = episodes_to_transitions(episodes, keep_timeouts=True)
    rows = np.sort(rng.choice(len(steps), 12, replace=False))
    path = str(tmp_path / "subset.hdf5")
    write_d4rl_hdf5(path, steps.subset(rows), {"env_id": None, "note": "subsample"})
    loaded = load_dataset(path, keep_timeouts=True)
    for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts", "episode_ids"):
        np.testing.assert_array_equal(getattr(loaded, key), getattr(steps, key)[rows], err_msg=key)
    assert loaded.metadata["note"] == "subsample"
    dropped = load_dataset(path)  # Time-limit steps dropped, as the original does.
    np.testing.assert_array_equal(dropped.observations, steps.observations[rows][steps.timeouts[rows] == 0])


def test_d4rl_file_names():
    assert d4rl_file_name("walker2d-medium-replay-v2") == "walker2d_medium_replay-v2.hdf5"
    assert d4rl_file_name("hopper-random-v2") == "hopper_random-v2.hdf5"
    assert d4rl_file_name("maze2d-umaze-v1") == "maze2d-umaze-sparse-v1.hdf5"
    assert d4rl_file_name("maze2d-large-dense-v1") == "maze2d-large-dense-v1.hdf5"
    for name in ("walker2d-medium-replay-v2", "halfcheetah-medium-expert-v2", "maze2d-medium-v1",
                 "maze2d-umaze-dense-v1"):
        assert d4rl_name_from_file(d4rl_file_name(name)) == name


def test_bundled_default_loads_offline_and_is_the_simulator():
    assert DEFAULT_DATASET in bundled_names()
    data = load_dataset()
    assert data.metadata["env_id"] == "Walker2d-v5" and data.metadata["source"] == DEFAULT_DATASET
    assert (data.obs_dim, data.action_dim) == (17, 6) and 10_000 <= len(data) <= 200_000
    assert data.terminals.sum() > 0 and data.timeouts.sum() == 0  # Time-limit steps dropped by default.
    # Walker2d's dynamics do not depend on its x position, and its observation is qpos[1:] and qvel
    # (clipped to +-10): put MuJoCo in each sampled state, apply the action, compare.
    env = gym.make("Walker2d-v5").unwrapped
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    unclipped = np.flatnonzero(np.abs(data.observations[:, 8:]).max(1) < 9.9)
    for row in rng.choice(unclipped, 40, replace=False):
        env.set_state(np.concatenate([[0.0], data.observations[row, :8]]), data.observations[row, 8:])
        observation, reward, terminated, _, _ = env.step(data.actions[row])
        np.testing.assert_allclose(observation, data.next_observations[row], atol=2e-3, rtol=0)
        assert abs(reward - data.rewards[row]) < 2e-3 and terminated == bool(data.terminals[row])


@pytest.mark.parametrize("name", ["walker2d-nonexistent-v2", "nonexistent", "bundled/hopper-galactic",
                                  "synther/walker2d/never-made-v0", "missing.npz", "missing/file.hdf5"])
def test_unknown_datasets_say_what_to_do(tmp_path, monkeypatch, name):
    monkeypatch.setenv("D4RL_DATASET_DIR", str(tmp_path / "d4rl"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    with pytest.raises(DatasetNotFoundError) as error:
        load_dataset(name)
    assert any(word in str(error.value) for word in ("download", "bundled ones", "No dataset file"))


@pytest.mark.parametrize("damage", ["nan", "inf", "lengths", "dims", "empty", "truncated", "garbage", "minari_file",
                                    "missing_key"])
def test_bad_d4rl_files_raise_invalid_dataset(tmp_path, damage):
    arrays = d4rl_arrays(np.random.default_rng(1))
    if damage == "nan":
        arrays["observations"][5, 2] = np.nan
    elif damage == "inf":
        arrays["rewards"][7] = -np.inf
    elif damage == "lengths":
        arrays["actions"] = arrays["actions"][:-3]
    elif damage == "dims":
        arrays = d4rl_arrays(np.random.default_rng(1), obs_dim=11, action_dim=3)  # Hopper data, walker name.
    elif damage == "empty":
        arrays = {key: value[:0] for key, value in arrays.items()}
    elif damage == "missing_key":
        del arrays["rewards"]
    path = tmp_path / "walker2d_medium-v2.hdf5"
    write_d4rl_file(path, arrays)
    if damage == "truncated":
        with open(path, "r+b") as file:
            file.truncate(os.path.getsize(path) // 2)
    elif damage == "garbage":
        path.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\x00" * 100)
    elif damage == "minari_file":
        with h5py.File(path, "w") as file:
            file.create_dataset("episode_0/rewards", data=np.zeros(3))
    with pytest.raises(ValueError) as error:  # InvalidDatasetError, or Transitions' own ValueError.
        load_dataset(str(path))
    if damage in ("lengths", "dims", "empty", "truncated", "garbage", "minari_file", "missing_key"):
        assert isinstance(error.value, InvalidDatasetError)
    else:
        assert "NaN or inf" in str(error.value)


def test_declared_environment_is_checked(tmp_path):
    path = tmp_path / "data.hdf5"
    write_d4rl_file(path, d4rl_arrays(np.random.default_rng(2)))
    assert load_dataset(str(path)).metadata["env_id"] is None  # Not named the D4RL way: env unknown.
    assert load_dataset(str(path), env_id="HalfCheetah-v5").metadata["env_id"] == "HalfCheetah-v5"
    with pytest.raises(InvalidDatasetError, match="another environment"):
        load_dataset(str(path), env_id="Hopper-v5")
    with pytest.raises(UnknownEnvironmentError):
        load_dataset(str(path), env_id="Walker3d-v5")


def test_minari_dataset_without_its_files_is_corrupt(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path))
    os.makedirs(tmp_path / "synther" / "walker2d" / "broken-v0" / "data")
    with pytest.raises(InvalidDatasetError, match="corrupt"):
        load_dataset("synther/walker2d/broken-v0")
