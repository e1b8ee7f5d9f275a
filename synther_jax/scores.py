"""Normalised scores: 100 * (return - random) / (expert - random), as D4RL reports them.

The reference returns are D4RL's (`d4rl/infos.py`): v2 gym-mujoco locomotion and v1 maze2d; our own
maze2d tasks (`maze2d-umaze`, ... without a version) use references measured on them. Minari's
`mujoco/*` datasets carry no reference scores, so this table is how their returns become comparable
numbers; when a dataset does carry Minari reference scores (`ref_min_score`/`ref_max_score` in its
metadata) they take precedence. `reference_scores` says which table a score used; report it with
the score, because Gymnasium v5 dynamics differ from D4RL's v2 (Walker2d-v5 changed a foot's
friction), so D4RL-normalised numbers on v5 environments are only roughly comparable with papers.
"""
import logging
import re
from typing import Any, Mapping, NamedTuple, Optional, Union

import numpy as np

from synther_jax.errors import UnknownEnvironmentError

# (random-policy return, expert return) per D4RL task family.
D4RL_REFERENCE_SCORES = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-large": (6.7, 273.99),
    "maze2d-umaze-dense": (68.537689, 193.66285642381482),
    "maze2d-medium-dense": (44.264742, 297.4552547777125),
    "maze2d-large-dense": (30.569041, 303.4857382709002),
}
# Our maze2d tasks (`synther_jax.envs.maze2d`, PointMaze with D4RL's goal, radius and limits) start and
# move differently from D4RL's, so their references are measured on them, D4RL's way: the mean return
# of the uniform random policy and of the noise-free waypoint controller over 100 episodes (reset
# seeds 0-99), by `python -m launch.collect --reference_scores --env=<task>` with gymnasium-robotics
# 1.4.2 and mujoco 3.17.0 (D4RL's own values are the maze2d-* rows above).
MAZE2D_REFERENCE_SCORES = {
    "maze2d-umaze": (10.12, 209.54),
    "maze2d-medium": (18.69, 420.34),
    "maze2d-large": (7.96, 555.91),
}
MAZE2D_TABLE = ("synther_jax maze2d table ({name}: random policy and noise-free waypoint controller, 100 episodes "
                "each, `python -m launch.collect --reference_scores --env={name}`)")
# Gymnasium environment names of the locomotion families.
GYMNASIUM_NAMES = {"Hopper": "hopper", "HalfCheetah": "halfcheetah", "Walker2d": "walker2d"}

_logged = set()


class ReferenceScores(NamedTuple):
    min_score: float
    max_score: float
    table: str  # e.g. "D4RL v2 table (walker2d-*-v2), applied to Walker2d-v5 (different dynamics)"


def d4rl_family(name: str) -> Optional[str]:
    """The D4RL table key for a Gymnasium id (`Walker2d-v4`), D4RL name (`walker2d-medium-v2`,
    `maze2d-umaze-dense-v1`), Minari id (`mujoco/walker2d/medium-v0`) or bundled name; None if none."""
    gym_match = re.fullmatch(r"(\w+)-v(\d+)", name)
    if gym_match and gym_match.group(1) in GYMNASIUM_NAMES:
        return GYMNASIUM_NAMES[gym_match.group(1)]
    maze = re.fullmatch(r"maze2d-(umaze|medium|large)(-dense)?-v\d+", name)
    if maze:
        return f"maze2d-{maze.group(1)}{maze.group(2) or ''}"
    for family in ("hopper", "halfcheetah", "walker2d"):
        if re.fullmatch(rf"(.*/)?{family}[-/_].*", name):
            return family
    return None


def reference_scores(env_id: str, dataset_metadata: Optional[Mapping[str, Any]] = None) -> ReferenceScores:
    """The reference returns for `env_id`: the dataset's own Minari scores when its metadata has
    both, else D4RL's table. Raises UnknownEnvironmentError when neither applies."""
    metadata = dataset_metadata or {}
    if env_id in MAZE2D_REFERENCE_SCORES:
        low, high = MAZE2D_REFERENCE_SCORES[env_id]
        return ReferenceScores(low, high, MAZE2D_TABLE.format(name=env_id))
    if metadata.get("ref_min_score") is not None and metadata.get("ref_max_score") is not None:
        source = metadata.get("source", "the dataset")
        return ReferenceScores(float(metadata["ref_min_score"]), float(metadata["ref_max_score"]),
                               f"Minari reference scores of {source}")
    family = d4rl_family(env_id)
    if family is None:
        raise UnknownEnvironmentError(
            f"No reference scores for {env_id!r}: the D4RL table covers Hopper, HalfCheetah, Walker2d "
            f"(any Gymnasium version, or D4RL names such as walker2d-medium-v2) and "
            f"{', '.join(k + '-v1' for k in D4RL_REFERENCE_SCORES if k.startswith('maze2d'))}. "
            "Pass the dataset's metadata if it carries Minari ref_min_score/ref_max_score.")
    low, high = D4RL_REFERENCE_SCORES[family]
    version = "v1" if family.startswith("maze2d") else "v2"
    table = f"D4RL {version} table ({family}-*-{version})" if version == "v2" else f"D4RL v1 table ({family}-v1)"
    gym_version = re.fullmatch(r"\w+-v(\d+)", env_id)
    if gym_version and int(gym_version.group(1)) >= 5 or env_id.startswith("mujoco/") or env_id.startswith("bundled/"):
        table += f", applied to {env_id} (Gymnasium v5 dynamics differ from D4RL's v2)"
    return ReferenceScores(low, high, table)


def normalized_score(env_id: str, episode_return: Union[float, np.ndarray],
                     dataset_metadata: Optional[Mapping[str, Any]] = None) -> Union[float, np.ndarray]:
    """100 * (return - min) / (max - min) with the references from `reference_scores` (logged once
    per environment, so logs say which table a score used). Accepts a scalar or an array."""
    reference = reference_scores(env_id, dataset_metadata)
    if (env_id, reference.table) not in _logged:
        _logged.add((env_id, reference.table))
        logging.getLogger(__name__).info("Normalised scores for %s use the %s.", env_id, reference.table)
    score = 100.0 * (np.asarray(episode_return, np.float64) - reference.min_score) / (
        reference.max_score - reference.min_score)
    return float(score) if score.ndim == 0 else score
