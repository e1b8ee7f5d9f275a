"""V-D4RL-style pixel datasets: frame stacking at episode starts, sampling, file round trips, bad input."""
import h5py
import jax
import numpy as np
import pytest

from synther_jax.data.pixel_datasets import (FIRST, LAST, MID, PixelDataset, load_pixel_dataset, sample_batch,
                                             stack_indices, write_pixel_hdf5)
from synther_jax.errors import DatasetNotFoundError, InvalidDatasetError


def toy_dataset(episode_lengths=(4, 2, 5), size=8, action_dim=2) -> PixelDataset:
    """Episodes of the given numbers of steps (reset frame included); frame t is filled with t."""
    step_types = np.concatenate([[FIRST] + [MID] * (n - 2) + [LAST] for n in episode_lengths]).astype(np.uint8)
    n = len(step_types)
    frames = np.broadcast_to(np.arange(n, dtype=np.uint8)[:, None, None, None], (n, 3, size, size)).copy()
    rng = np.random.default_rng(0)
    return PixelDataset(frames=frames, actions=rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
                        rewards=rng.uniform(0, 1, n).astype(np.float32), discounts=np.ones(n, np.float32),
                        step_types=step_types, metadata={"env_id": "walker-walk"})


def reference_stack(step_types, t, k=3):
    """Step t's frames by walking back inside its episode, repeating the first frame."""
    start = t
    while step_types[start] != FIRST:
        start -= 1
    return [max(t - j, start) for j in range(k - 1, -1, -1)]


def test_stack_indices_repeat_the_first_frame_at_episode_starts():
    data = toy_dataset()
    stacks = stack_indices(data.step_types)
    assert stacks.shape == (len(data), 3)
    for t in range(len(data)):
        assert stacks[t].tolist() == reference_stack(data.step_types, t)
    assert stacks[4].tolist() == [4, 4, 4] and stacks[5].tolist() == [4, 4, 5]  # second episode's start


def test_sampled_transitions_stay_inside_episodes():
    data = toy_dataset()
    batch = jax.jit(sample_batch, static_argnums=2)(data.device_store(), jax.random.PRNGKey(0), 512)
    obs, next_obs = np.asarray(batch["observations"]), np.asarray(batch["next_observations"])
    assert obs.shape == (512, 9, 8, 8) and obs.dtype == np.uint8
    frame_ids, next_ids = obs[:, ::3, 0, 0].astype(int), next_obs[:, ::3, 0, 0].astype(int)  # (B, 3) stored frame ids
    ends = next_ids[:, -1]
    assert set(np.unique(ends)) == set(np.flatnonzero(data.step_types != FIRST))  # every transition drawn
    for b in range(512):
        assert next_ids[b].tolist() == reference_stack(data.step_types, ends[b])
        assert frame_ids[b].tolist() == reference_stack(data.step_types, ends[b] - 1)
    np.testing.assert_array_equal(np.asarray(batch["actions"]), data.actions[ends])
    np.testing.assert_array_equal(np.asarray(batch["rewards"]), data.rewards[ends])


def test_hdf5_round_trip(tmp_path):
    data = toy_dataset()
    write_pixel_hdf5(str(tmp_path / "a.hdf5"), data)
    loaded = load_pixel_dataset(str(tmp_path / "a.hdf5"))
    for field in ("frames", "actions", "rewards", "discounts", "step_types"):
        np.testing.assert_array_equal(getattr(loaded, field), getattr(data, field))
    assert loaded.metadata["env_id"] == "walker-walk"
    write_pixel_hdf5(str(tmp_path / "b.hdf5"), data)  # a folder of shards reads as one dataset
    assert len(load_pixel_dataset(str(tmp_path))) == 2 * len(data)
    np.testing.assert_allclose(loaded.episode_returns()[1], data.rewards[4:6].sum(), rtol=1e-6)


def test_npz_episode_at_64_pixels(tmp_path):
    data = toy_dataset((6,), size=64)
    np.savez(tmp_path / "episode.npz", image=data.frames.transpose(0, 2, 3, 1), action=data.actions,
             reward=data.rewards, discount=data.discounts, is_first=data.step_types == FIRST,
             is_last=data.step_types == LAST, is_terminal=np.zeros(6, bool))
    loaded = load_pixel_dataset(str(tmp_path / "episode.npz"))
    np.testing.assert_array_equal(loaded.frames, data.frames)
    np.testing.assert_array_equal(loaded.step_types, data.step_types)
    assert loaded.image_size == 64


def _write_raw(path, **overrides):
    data = toy_dataset()
    arrays = {"observation": data.frames, "action": data.actions, "reward": data.rewards,
              "discount": data.discounts, "step_type": data.step_types, **overrides}
    with h5py.File(path, "w") as file:
        for key, value in arrays.items():
            if value is not None:
                file.create_dataset(key, data=value)
    return path


@pytest.mark.parametrize("overrides, message", [
    ({"observation": np.zeros((11, 3, 8, 8), np.float32)}, "uint8"),
    ({"observation": np.zeros((11, 8, 8, 3), np.uint8)}, "channels first"),
    ({"action": np.zeros((10, 2), np.float32)}, "differ in length"),
    ({"step_type": np.array([0, 1, 1, 2, 1, 2, 0, 1, 1, 1, 2], np.uint8)}, "follows the end of an episode"),
    ({"step_type": np.array([0, 1, 1, 0, 0, 2, 0, 1, 1, 1, 2], np.uint8)}, "starts before the previous one ended"),
    ({"step_type": np.array([0, 1, 1, 2, 0, 2, 0, 1, 1, 1, 1], np.uint8)}, "cut mid-episode"),
    ({"step_type": np.array([1, 1, 1, 2, 0, 2, 0, 1, 1, 1, 2], np.uint8)}, "does not start with a first step"),
    ({"step_type": np.array([0, 1, 1, 2, 0, 2, 0, 1, 5, 1, 2], np.uint8)}, "only 0"),
    ({"reward": np.full(11, np.nan, np.float32)}, "finite"),
    ({"discount": None}, "lacks V-D4RL's keys"),
])
def test_bad_hdf5_is_refused_with_the_reason(tmp_path, overrides, message):
    path = _write_raw(str(tmp_path / "bad.hdf5"), **overrides)
    with pytest.raises(InvalidDatasetError, match=message):
        load_pixel_dataset(path)


def test_empty_truncated_and_missing_files(tmp_path):
    (tmp_path / "empty.hdf5").write_bytes(b"")
    with pytest.raises(InvalidDatasetError, match="truncated or corrupt"):
        load_pixel_dataset(str(tmp_path / "empty.hdf5"))
    write_pixel_hdf5(str(tmp_path / "whole.hdf5"), toy_dataset())
    content = (tmp_path / "whole.hdf5").read_bytes()
    (tmp_path / "cut.hdf5").write_bytes(content[: len(content) // 2])
    with pytest.raises(InvalidDatasetError, match="truncated or corrupt"):
        load_pixel_dataset(str(tmp_path / "cut.hdf5"))
    with pytest.raises(InvalidDatasetError, match="holds no time steps"):
        load_pixel_dataset(_write_raw(str(tmp_path / "none.hdf5"), observation=np.zeros((0, 3, 8, 8), np.uint8),
                                      action=np.zeros((0, 2), np.float32), reward=np.zeros(0, np.float32),
                                      discount=np.zeros(0, np.float32), step_type=np.zeros(0, np.uint8)))
    with pytest.raises(DatasetNotFoundError, match="launch.collect --pixels"):
        load_pixel_dataset(str(tmp_path / "nowhere.hdf5"))
