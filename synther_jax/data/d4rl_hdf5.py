"""D4RL's HDF5 layout: one flat array per key, one row per environment step in collection order.

Keys read: `observations`, `actions`, `rewards`, `terminals` (required), `timeouts` and
`next_observations` (optional; v2 gym-mujoco files have both); `infos/*` and D4RL's `metadata/*`
group are ignored.

D4RL's `qlearning_dataset` takes a row's successor from the next row and drops time-limit rows,
so a row whose next row is not its successor is paired wrongly: a terminal step (the next row
starts another episode), the last step of data that stops mid-episode, every row of a subsample.
Files this project writes (the bundled datasets, `launch.collect --bundle`) therefore follow each
such row with a padding row that holds its true successor as its observation, flagged as a
time-limit step (so `qlearning_dataset` pairs the row with it and then skips it) and in a
`padding` key (so our reader drops it). Every row's successor is then the next row, so these files
need no `next_observations`, and every transition reaches D4RL's readers with its true next
observation. A padding row has zero action and reward and its row's episode id. Besides the D4RL
keys (gzip compressed) they hold `episode_ids` and `padding` (D4RL readers ignore both) and a JSON
`metadata` attribute on the root (env id, how the data was made).
"""
import json
import os
import re
from typing import Any, Dict, Optional

import h5py
import numpy as np

from synther_jax.atomic import atomic_path
from synther_jax.data.flatten import flat_to_transitions
from synther_jax.data.transitions import Transitions
from synther_jax.errors import InvalidDatasetError
from synther_jax.scores import d4rl_family

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
OPTIONAL_KEYS = ("timeouts", "next_observations", "episode_ids", "padding")
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
            if "padding" in arrays:
                arrays = without_padding_rows(arrays)
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
    """Writes every environment step of `steps` (time-limit steps included, i.e. flattened with
    keep_timeouts=True; in collection order, or any subset of rows) in D4RL's layout with padding
    rows where the next row is not a row's successor (see the module docstring), gzip-compressed
    with byte shuffling, and `metadata` as a JSON root attribute. Atomic: the file appears complete
    or not at all."""
    if steps.timeouts is None:
        raise ValueError("Writing D4RL's layout needs the timeouts of every step (flatten with keep_timeouts=True).")
    arrays = {**steps.as_dict(), "terminals": steps.terminals > 0.5, "timeouts": steps.timeouts.astype(bool)}
    if steps.episode_ids is not None:
        arrays["episode_ids"] = steps.episode_ids.astype(np.int32)
    with atomic_path(path) as temporary:
        with h5py.File(temporary, "w") as file:
            for key, value in with_padding_rows(arrays).items():
                file.create_dataset(key, data=value, compression="gzip", compression_opts=compression_level,
                                    shuffle=True, chunks=True)
            file.attrs["metadata"] = json.dumps(metadata, sort_keys=True)


def with_padding_rows(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """D4RL's keys with `next_observations` -> the rows with a padding row after each row whose next
    row does not start at its successor, a `padding` key, and no `next_observations`."""
    arrays = dict(arrays)
    successors = arrays.pop("next_observations")
    observations = arrays["observations"]
    n = len(observations)
    padded = np.ones(n, bool)
    padded[:-1] = ~np.all(successors[:-1].reshape(n - 1, -1) == observations[1:].reshape(n - 1, -1), axis=1)
    positions = np.arange(n) + np.concatenate([[0], np.cumsum(padded)[:-1]])  # where the real rows go
    padding = positions[padded] + 1
    out = {key: np.zeros((n + len(padding), *value.shape[1:]), value.dtype) for key, value in arrays.items()}
    for key, value in arrays.items():
        out[key][positions] = value
    out["observations"][padding] = successors[padded]
    out["timeouts"][padding] = True
    if "episode_ids" in out:
        out["episode_ids"][padding] = arrays["episode_ids"][padded]
    out["padding"] = np.zeros(len(out["observations"]), bool)
    out["padding"][padding] = True
    return out


def without_padding_rows(arrays: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
    """The inverse of `with_padding_rows`: every row's successor is the next row's observation."""
    arrays = dict(arrays)
    real = ~arrays.pop("padding").astype(bool)
    observations = arrays["observations"]
    if real[-1]:
        raise InvalidDatasetError("The file's last row is not a padding row: the file is truncated. Regenerate it.")
    arrays["next_observations"] = np.concatenate([observations[1:], observations[-1:]])
    return {key: value[real] for key, value in arrays.items()}
