"""D4RL's HDF5 layout: one flat array per key, one row per environment step in collection order.

Keys read: `observations`, `actions`, `rewards`, `terminals` (required), `timeouts` and
`next_observations` (optional; v2 gym-mujoco files have both); `infos/*` and D4RL's `metadata/*`
group are ignored. Files this project writes (the bundled datasets) use the same keys, gzip
compressed, plus `episode_ids` (so subsampled rows keep their episodes; D4RL readers ignore it)
and a JSON `metadata` attribute on the root (env id, how the data was made).
"""
import json
import os
import re
from typing import Any, Dict, Optional

import h5py
import numpy as np

from synther_jax.atomic import atomic_path
from synther_jax.data.errors import InvalidDatasetError
from synther_jax.data.flatten import flat_to_transitions
from synther_jax.data.scores import d4rl_family
from synther_jax.data.transitions import Transitions

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_KEYS = ("timeouts", "next_observations", "episode_ids")
# D4RL-v2 data was made with mujoco-py v2/v3 environments; Gymnasium's v4 ones match their dynamics
# (v5 changed Walker2d's foot friction), so v2 data is evaluated on v4.
D4RL_EVAL_ENVS = {"hopper": "Hopper-v4", "halfcheetah": "HalfCheetah-v4", "walker2d": "Walker2d-v4"}


def d4rl_file_name(name: str) -> str:
    """D4RL's file name for a dataset name: `walker2d-medium-replay-v2` -> `walker2d_medium_replay-v2.hdf5`,
    `maze2d-umaze-v1` -> `maze2d-umaze-sparse-v1.hdf5` (the names D4RL's download cache uses)."""
    maze = re.fullmatch(r"(maze2d-\w+?)(-dense)?-(v\d+)", name)
    if maze:
        return f"{maze.group(1)}-{'dense' if maze.group(2) else 'sparse'}-{maze.group(3)}.hdf5"
    base, version = name.rsplit("-", 1)
    return f"{base.replace('-', '_')}-{version}.hdf5"


def d4rl_name_from_file(path: str) -> Optional[str]:
    """The inverse of `d4rl_file_name` for files named the D4RL way; None otherwise."""
    stem = os.path.basename(path)[: -len(".hdf5")] if path.endswith(".hdf5") else None
    if stem is None:
        return None
    maze = re.fullmatch(r"(maze2d-\w+?)-(sparse|dense)-(v\d+)", stem)
    if maze:
        return f"{maze.group(1)}{'-dense' if maze.group(2) == 'dense' else ''}-{maze.group(3)}"
    gym = re.fullmatch(r"(hopper|halfcheetah|walker2d|ant)_(\w+)-(v\d+)", stem)
    return f"{gym.group(1)}-{gym.group(2).replace('_', '-')}-{gym.group(3)}" if gym else None


def read_d4rl_hdf5(path: str, keep_timeouts: bool = False) -> Transitions:
    """Loads a D4RL-layout HDF5 file as flattened transitions (rules in `flatten.py`). The metadata
    holds `env_id` (from the file's own metadata, or the Gymnasium v4 id for D4RL-v2 locomotion
    names), `d4rl_name` when the file is named the D4RL way, `source` and `format`."""
    try:
        with h5py.File(path, "r") as file:
            if any(re.fullmatch(r"episode_\d+", key) for key in file.keys()):
                raise InvalidDatasetError(
                    f"{path} is a Minari episode file, not D4RL's flat layout; load it by its Minari dataset id.")
            missing = [key for key in REQUIRED_KEYS if key not in file]
            if missing:
                raise InvalidDatasetError(f"{path} lacks the D4RL keys {missing} (it has {sorted(file.keys())}).")
            arrays = {key: file[key][()] for key in REQUIRED_KEYS + OPTIONAL_KEYS if key in file}
            stored = json.loads(file.attrs["metadata"]) if "metadata" in file.attrs else {}
    except OSError as error:
        raise InvalidDatasetError(f"Cannot read {path}: the file is truncated or corrupt ({error}). "
                                  "Download or regenerate it.") from error
    metadata: Dict[str, Any] = dict(stored)
    name = d4rl_name_from_file(path)
    if name is not None:
        metadata.setdefault("d4rl_name", name)
        metadata.setdefault("env_id", D4RL_EVAL_ENVS.get(d4rl_family(name)))
    metadata.setdefault("env_id", None)
    metadata.update(source=os.path.abspath(path), format="d4rl-hdf5", keep_timeouts=keep_timeouts)
    return flat_to_transitions(arrays["observations"], arrays["actions"], arrays["rewards"], arrays["terminals"],
                               arrays.get("timeouts"), arrays.get("next_observations"), keep_timeouts, metadata,
                               arrays.get("episode_ids"))


def write_d4rl_hdf5(path: str, steps: Transitions, metadata: Dict[str, Any], compression_level: int = 9) -> None:
    """Writes every environment step of `steps` (collection order, time-limit steps included, i.e.
    flattened with keep_timeouts=True) in D4RL's layout, gzip-compressed with byte shuffling, and
    `metadata` as a JSON root attribute. Atomic: the file appears complete or not at all."""
    if steps.timeouts is None:
        raise ValueError("Writing D4RL's layout needs the timeouts of every step (flatten with keep_timeouts=True).")
    arrays = {**steps.as_dict(), "terminals": steps.terminals > 0.5, "timeouts": steps.timeouts.astype(bool)}
    if steps.episode_ids is not None:
        arrays["episode_ids"] = steps.episode_ids.astype(np.int32)
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as file:
            for key, value in arrays.items():
                file.create_dataset(key, data=value, compression="gzip", compression_opts=compression_level,
                                    shuffle=True, chunks=True)
            file.attrs["metadata"] = json.dumps(metadata, sort_keys=True)
