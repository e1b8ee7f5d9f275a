"""Reading datasets from the local Minari store, Minari's `D4RL/pointmaze` files as maze2d data.

The store is `$MINARI_DATASETS_PATH`, else `~/.minari/datasets`. A dataset is downloaded only when
asked (`download=True`). Minari's `D4RL/pointmaze/{umaze,medium,large}-v2` were made from PointMaze
with D4RL's maze2d recipe; they are read as our maze2d tasks: the 4-dim (x, y, vx, vy) state and
rewards relabelled against the fixed evaluation goal (Minari stores the reward against the moving
goal the controller chased), evaluated with our reference scores (Minari's were measured with
PointMaze's 0.45 radius against its moving goal).
"""
import os
from typing import Iterable

import numpy as np

from synther_jax.data.flatten import Episode, episodes_to_transitions
from synther_jax.data.transitions import Transitions
from synther_jax.errors import DatasetNotFoundError, InvalidDatasetError, require
from synther_jax.progress import Progress

# Minari's datasets made from PointMaze with D4RL's maze2d recipe, and the maze2d task each belongs to.
MINARI_POINTMAZE = {"D4RL/pointmaze/umaze-v2": "maze2d-umaze", "D4RL/pointmaze/medium-v2": "maze2d-medium",
                    "D4RL/pointmaze/large-v2": "maze2d-large"}


def minari_dataset_dir() -> str:
    """Minari's local store: `$MINARI_DATASETS_PATH`, else `~/.minari/datasets`."""
    return os.path.expanduser(os.environ.get("MINARI_DATASETS_PATH", os.path.join("~", ".minari", "datasets")))


def load_minari(dataset_id: str, keep_timeouts: bool, download: bool) -> Transitions:
    """Minari dataset `dataset_id` as flattened `Transitions` (D4RL's rules, `flatten.py`), with its
    environment id and reference scores in the metadata."""
    minari = require("minari", "minari")

    where = os.path.join(minari_dataset_dir(), dataset_id)
    if not os.path.isdir(os.path.join(where, "data")):
        advice = (f"Dataset {dataset_id!r} is not in the local Minari store ({where}; set MINARI_DATASETS_PATH to "
                  f"use another store). Make one with `python -m launch.collect --dataset_id={dataset_id} ...`, "
                  f"copy a downloaded one there (`minari download {dataset_id}` on a machine with network), ")
        if not download:
            raise DatasetNotFoundError(advice + "or from Python let Minari fetch it: load_dataset(..., download=True).")
        try:
            minari.download_dataset(dataset_id)
        except Exception as error:  # Minari raises many kinds (network, hub, unknown id).
            raise DatasetNotFoundError(advice + f"since downloading failed: {error}") from error
    corrupt = (f"Minari dataset {dataset_id!r} at {where} is truncated or corrupt; delete it and make or "
               "download it again.")
    try:
        dataset = minari.load_dataset(dataset_id)
        metadata = {"source": dataset_id, "format": "minari", "keep_timeouts": keep_timeouts,
                    "env_id": dataset.spec.env_spec.id if dataset.spec.env_spec is not None else None,
                    "ref_min_score": dataset.storage.metadata.get("ref_min_score"),
                    "ref_max_score": dataset.storage.metadata.get("ref_max_score")}
    except (OSError, KeyError, ValueError) as error:  # Minari reports a missing metadata file as ValueError.
        raise InvalidDatasetError(f"{corrupt} ({error})") from error
    try:
        episodes = Progress(dataset.total_episodes, f"loading {dataset_id}", unit="episode",
                            leave=False).track(dataset.iterate_episodes())
        maze = MINARI_POINTMAZE.get(dataset_id)
        if maze is not None:
            episodes = from_pointmaze_episodes(maze, episodes)
            metadata.update(env_id=maze, ref_min_score=None, ref_max_score=None)
        return episodes_to_transitions(episodes, keep_timeouts, metadata)
    except (OSError, KeyError) as error:
        raise InvalidDatasetError(f"{corrupt} ({error!r})") from error


def from_pointmaze_episodes(maze: str, episodes: Iterable) -> Iterable[Episode]:
    """Minari `D4RL/pointmaze` episodes as maze2d episodes: the observation dict's `observation`
    (x, y, vx, vy) as the state, rewards relabelled against the fixed evaluation goal (Minari stores
    the reward against the moving goal the controller chased)."""
    from synther_jax.envs import maze2d  # needs Gymnasium, as Minari itself does

    for episode in episodes:
        observations = np.asarray(episode.observations["observation"], np.float32)
        yield Episode(observations, np.asarray(episode.actions, np.float32),
                      maze2d.sparse_reward(maze, observations[1:, :2]), np.asarray(episode.terminations, bool),
                      np.asarray(episode.truncations, bool))
