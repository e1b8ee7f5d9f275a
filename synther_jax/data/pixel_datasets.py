"""V-D4RL-style pixel datasets: reading, writing, and frame-stacked minibatches drawn on device.

V-D4RL (Lu et al., 2022) stores one rendered frame per time step:
- hdf5 files (84 px, what DrQ+BC reads): `observation` (N, 3, H, W) uint8 channels-first, `action`
  (N, a), `reward` (N,), `discount` (N,), `step_type` (N,) with 0 first, 1 mid, 2 last;
- npz episodes (64 px): `image` (T, H, W, 3) uint8, `action`, `reward`, `discount`, `is_first`,
  `is_last`, `is_terminal`.
An episode is the reset frame (action 0, reward 0) followed by the agent's steps. Time step t's
`action` and `reward` are the ones that led to its frame, so a transition ends at every step that
is not first: (frames up to t-1, action[t], reward[t], discount[t], frames up to t).

Frames are stored once; `stack_indices` says which stored frames make the stacked observation of
each step (the last `frame_stack` frames of its episode, the first frame repeated at an episode
start, as V-D4RL's loader). `sample_batch` gathers them inside jit, so a device holds one copy of
the frames (uint8) instead of three.
"""
import dataclasses
import glob
import json
import os
import zipfile
from typing import Dict, List, Optional

import h5py
import jax
import jax.numpy as jnp
import numpy as np

from synther_jax.atomic import atomic_path
from synther_jax.errors import DatasetNotFoundError, InvalidDatasetError

FIRST, MID, LAST = 0, 1, 2
HDF5_KEYS = ("observation", "action", "reward", "discount", "step_type")
NPZ_KEYS = ("image", "action", "reward", "discount", "is_first", "is_last")
FRAME_STACK = 3


@dataclasses.dataclass(frozen=True)
class PixelDataset:
    """One frame per time step and what happened at it; episodes are contiguous, FIRST to LAST."""

    frames: np.ndarray  # (N, 3, H, W) uint8, channels first
    actions: np.ndarray  # (N, a) float32
    rewards: np.ndarray  # (N,) float32
    discounts: np.ndarray  # (N,) float32
    step_types: np.ndarray  # (N,) uint8
    metadata: Dict = dataclasses.field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.step_types)

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    @property
    def image_size(self) -> int:
        return self.frames.shape[-1]

    @property
    def num_transitions(self) -> int:
        return int(np.sum(self.step_types != FIRST))

    @property
    def num_episodes(self) -> int:
        return int(np.sum(self.step_types == FIRST))

    def episode_returns(self) -> np.ndarray:
        """Undiscounted return of every episode, in order."""
        episode = np.cumsum(self.step_types == FIRST) - 1
        return np.bincount(episode, weights=self.rewards.astype(np.float64))

    def device_store(self, frame_stack: int = FRAME_STACK) -> Dict[str, jax.Array]:
        """What `sample_batch` needs, as device arrays: the frames (uint8), the stack index of every
        step, and per transition the index of its last step and its action, reward and discount."""
        ends = np.flatnonzero(self.step_types != FIRST).astype(np.int32)
        return {"frames": jnp.asarray(self.frames), "stacks": jnp.asarray(stack_indices(self.step_types, frame_stack)),
                "ends": jnp.asarray(ends), "actions": jnp.asarray(self.actions[ends]),
                "rewards": jnp.asarray(self.rewards[ends]), "discounts": jnp.asarray(self.discounts[ends])}


def stack_indices(step_types: np.ndarray, frame_stack: int = FRAME_STACK) -> np.ndarray:
    """(N, frame_stack) int32: the stored frames whose concatenation (oldest first) is step t's
    observation: t - k for k = frame_stack-1 .. 0, clamped to the first step of t's episode."""
    step_types = np.asarray(step_types)
    steps = np.arange(len(step_types))
    episode_start = np.maximum.accumulate(np.where(step_types == FIRST, steps, 0))
    offsets = np.arange(frame_stack - 1, -1, -1)
    return np.maximum(steps[:, None] - offsets[None, :], episode_start[:, None]).astype(np.int32)


def stacked_frames(frames: jax.Array, stacks: jax.Array, steps: jax.Array) -> jax.Array:
    """(B, frame_stack * 3, H, W) uint8 observations of `steps` (gathered, never copied at rest)."""
    gathered = frames[stacks[steps]]  # (B, frame_stack, 3, H, W)
    return gathered.reshape(gathered.shape[0], -1, *gathered.shape[3:])


def sample_batch(store: Dict[str, jax.Array], key: jax.Array, batch_size: int) -> Dict[str, jax.Array]:
    """`batch_size` transitions drawn uniformly with replacement from a `device_store`, on device:
    `observations` and `next_observations` (B, 9, H, W) uint8, `actions`, `rewards`, `discounts`."""
    pick = jax.random.randint(key, (batch_size,), 0, store["ends"].shape[0])
    ends = store["ends"][pick]
    return {"observations": stacked_frames(store["frames"], store["stacks"], ends - 1),
            "next_observations": stacked_frames(store["frames"], store["stacks"], ends),
            "actions": store["actions"][pick], "rewards": store["rewards"][pick],
            "discounts": store["discounts"][pick]}


# --- validation ---------------------------------------------------------------------------------

def check_step_types(step_types: np.ndarray, where: str) -> None:
    """Episodes must run FIRST, MID..., LAST, and the data must hold whole episodes."""
    step_types = np.asarray(step_types)
    if len(step_types) == 0:
        raise InvalidDatasetError(f"{where} holds no time steps.")
    unknown = np.setdiff1d(np.unique(step_types), [FIRST, MID, LAST])
    if unknown.size:
        raise InvalidDatasetError(f"{where}: step_type holds {unknown.tolist()}; only 0 (first), 1 (mid) and 2 (last) "
                                  "are valid.")
    previous = np.concatenate([[LAST], step_types[:-1]])
    bad = np.flatnonzero((step_types == FIRST) != (previous == LAST))
    if bad.size:
        t = int(bad[0])
        what = ("an episode starts before the previous one ended" if step_types[t] == FIRST else
                "a step follows the end of an episode without a first step" if t else "the data does not start "
                "with a first step")
        raise InvalidDatasetError(f"{where}: broken step_type sequence at step {t} ({what}; step types "
                                  f"{step_types[max(0, t - 2):t + 3].tolist()} around it). Episodes must run "
                                  "first (0), mid (1)..., last (2).")
    if step_types[-1] != LAST:
        raise InvalidDatasetError(f"{where}: the last episode has no last step (step_type 2): the data is cut "
                                  "mid-episode. Regenerate it, or cut it after a last step.")
    if np.any((step_types[:-1] == FIRST) & (step_types[1:] == FIRST)):
        raise InvalidDatasetError(f"{where}: an episode has a single step; every episode needs at least one "
                                  "transition.")


def _check_arrays(arrays: Dict[str, np.ndarray], where: str) -> None:
    frames, actions = arrays["observation"], arrays["action"]
    if frames.dtype != np.uint8:
        raise InvalidDatasetError(f"{where}: frames must be uint8 pixels, got {frames.dtype}.")
    if frames.ndim != 4 or frames.shape[1] != 3 or frames.shape[2] != frames.shape[3]:
        raise InvalidDatasetError(f"{where}: frames must have shape (N, 3, H, H) (channels first, square), got "
                                  f"{frames.shape}.")
    if actions.ndim != 2:
        raise InvalidDatasetError(f"{where}: actions must have shape (N, action_dim), got {actions.shape}.")
    lengths = {key: len(value) for key, value in arrays.items()}
    if len(set(lengths.values())) != 1:
        raise InvalidDatasetError(f"{where}: the arrays differ in length: {lengths}.")
    for key in ("action", "reward", "discount"):
        if not np.issubdtype(arrays[key].dtype, np.floating) or not np.all(np.isfinite(arrays[key])):
            raise InvalidDatasetError(f"{where}: `{key}` must hold finite floats (dtype {arrays[key].dtype}).")
    if arrays["reward"].ndim != 1 or arrays["discount"].ndim != 1:
        raise InvalidDatasetError(f"{where}: reward and discount must be flat (N,) arrays, got "
                                  f"{arrays['reward'].shape} and {arrays['discount'].shape}.")
    check_step_types(arrays["step_type"], where)


# --- reading ------------------------------------------------------------------------------------

def _read_hdf5(path: str) -> Dict[str, np.ndarray]:
    try:
        with h5py.File(path, "r") as file:
            missing = [key for key in HDF5_KEYS if key not in file]
            if missing:
                raise InvalidDatasetError(f"{path} lacks V-D4RL's keys {missing} (it has {sorted(file.keys())}).")
            arrays = {key: file[key][()] for key in HDF5_KEYS}
            metadata = json.loads(file.attrs["metadata"]) if "metadata" in file.attrs else {}
    except OSError as error:
        raise InvalidDatasetError(f"Cannot read {path}: the file is empty, truncated or corrupt ({error}). "
                                  "Regenerate it with `python -m launch.collect --pixels`.") from error
    arrays["step_type"] = np.asarray(arrays["step_type"]).reshape(-1)
    arrays["reward"], arrays["discount"] = arrays["reward"].reshape(-1), arrays["discount"].reshape(-1)
    return {**arrays, "metadata": metadata}


def _read_npz(path: str) -> Dict[str, np.ndarray]:
    try:
        with np.load(path) as file:
            raw = {key: file[key] for key in NPZ_KEYS if key in file}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise InvalidDatasetError(f"Cannot read {path}: the file is empty, truncated or corrupt ({error}).") from error
    missing = [key for key in NPZ_KEYS if key not in raw]
    if missing:
        raise InvalidDatasetError(f"{path} lacks V-D4RL's npz keys {missing}.")
    image = raw["image"]
    if image.ndim != 4 or image.shape[-1] != 3:
        raise InvalidDatasetError(f"{path}: `image` must have shape (T, H, W, 3), got {image.shape}.")
    first, last = raw["is_first"].astype(bool), raw["is_last"].astype(bool)
    step_type = np.where(first, FIRST, np.where(last, LAST, MID)).astype(np.uint8)
    return {"observation": np.ascontiguousarray(image.transpose(0, 3, 1, 2)), "action": raw["action"],
            "reward": raw["reward"].reshape(-1), "discount": raw["discount"].reshape(-1), "step_type": step_type,
            "metadata": {}}


def pixel_files(path: str) -> List[str]:
    """The hdf5 or npz files a dataset path names: the file itself, or every such file in a folder
    (V-D4RL shards a dataset into many files), in sorted order."""
    if os.path.isdir(path):
        files = sorted(glob.glob(os.path.join(path, "*.hdf5")) + glob.glob(os.path.join(path, "*.npz")))
        if not files:
            raise DatasetNotFoundError(f"{path} holds no .hdf5 or .npz files; make a dataset with "
                                       "`python -m launch.collect --pixels --out=DIR`.")
        return files
    if not os.path.exists(path):
        raise DatasetNotFoundError(f"No pixel dataset at {path}; make one with `python -m launch.collect --pixels "
                                   f"--env=walker-walk --level=medium --out={path}`.")
    if not path.endswith((".hdf5", ".npz")):
        raise InvalidDatasetError(f"{path}: pixel datasets are V-D4RL .hdf5 files or .npz episodes.")
    return [path]


def load_pixel_dataset(path: str) -> PixelDataset:
    """Reads a V-D4RL hdf5 file (84 px), an npz episode (64 px) or a folder of either, checked
    whole: uint8 (N, 3, H, H) frames, equal lengths, finite floats, valid step_type sequences."""
    parts, metadata = [], {}
    for file in pixel_files(path):
        arrays = (_read_hdf5 if file.endswith(".hdf5") else _read_npz)(file)
        metadata = metadata or arrays.pop("metadata")
        arrays.pop("metadata", None)
        _check_arrays(arrays, file)
        parts.append(arrays)
    shapes = {p["observation"].shape[1:] + p["action"].shape[1:] for p in parts}
    if len(shapes) != 1:
        raise InvalidDatasetError(f"The files under {path} differ in frame or action shape: {sorted(shapes)}.")
    joined = {key: np.concatenate([p[key] for p in parts]) for key in HDF5_KEYS}
    return PixelDataset(frames=joined["observation"], actions=joined["action"].astype(np.float32),
                        rewards=joined["reward"].astype(np.float32), discounts=joined["discount"].astype(np.float32),
                        step_types=joined["step_type"].astype(np.uint8),
                        metadata={**metadata, "source": os.path.abspath(path), "num_files": len(parts)})


# --- writing ------------------------------------------------------------------------------------

def write_pixel_hdf5(path: str, data: PixelDataset) -> None:
    """Writes `data` in V-D4RL's hdf5 layout (frames gzip-compressed), with `data.metadata` as a
    JSON root attribute. Checked first; atomic: the file appears complete or not at all."""
    arrays = {"observation": data.frames, "action": data.actions.astype(np.float32),
              "reward": data.rewards.astype(np.float32), "discount": data.discounts.astype(np.float32),
              "step_type": data.step_types.astype(np.uint8)}
    _check_arrays(arrays, f"data for {path}")
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as file:
            for key, value in arrays.items():
                options = dict(compression="gzip", compression_opts=4, chunks=True) if key == "observation" else {}
                file.create_dataset(key, data=value, **options)
            file.attrs["metadata"] = json.dumps(data.metadata, sort_keys=True)


def concatenate(parts: List[PixelDataset], metadata: Optional[Dict] = None) -> PixelDataset:
    """Whole-episode datasets joined in order."""
    fields = ("frames", "actions", "rewards", "discounts", "step_types")
    return PixelDataset(**{f: np.concatenate([getattr(p, f) for p in parts]) for f in fields},
                        metadata=metadata if metadata is not None else dict(parts[0].metadata))
