"""The transition container and SynthER's flat row layout.

The diffusion model sees each transition as one flat row
    [observation (o), action (a), reward (1), next_observation (o), terminal (1)]
(paper Section 3.1); the terminal column is optional (the online DMC setting leaves it out).
Bookkeeping the model never sees (timeouts, episode ids) rides along in `Transitions` but is not
part of the rows.
"""
import dataclasses
from typing import Any, Dict, Optional

import numpy as np

from synther_jax.errors import InvalidDatasetError

KEYS = ("observations", "actions", "rewards", "next_observations", "terminals")


@dataclasses.dataclass(frozen=True)
class Transitions:
    """N transitions as float32 arrays: observations (N, o), actions (N, a), rewards (N,),
    next_observations (N, o), terminals (N,) in {0, 1}; optional timeouts (N,) and episode ids (N,).

    `metadata` says where the data came from (loaders fill in `env_id`, the Gymnasium id to
    evaluate on when known, `source` and `format`); it is never part of the rows."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: Optional[np.ndarray] = None
    episode_ids: Optional[np.ndarray] = None
    metadata: Optional[Dict[str, Any]] = None

    def __post_init__(self):
        for key in KEYS:
            object.__setattr__(self, key, np.asarray(getattr(self, key), np.float32))
        n = len(self.observations)
        if n == 0:
            raise InvalidDatasetError("The dataset is empty: it holds no transitions.")
        shapes = {key: getattr(self, key).shape for key in KEYS}
        expected = {
            "observations": (n, self.observations.shape[-1]),
            "actions": (n, self.actions.shape[-1] if self.actions.ndim == 2 else -1),
            "rewards": (n,),
            "next_observations": self.observations.shape,
            "terminals": (n,),
        }
        for key in KEYS:
            if shapes[key] != expected[key] or getattr(self, key).ndim != len(expected[key]):
                raise InvalidDatasetError(
                    f"Transitions have inconsistent shapes {shapes}: expected observations (N, o), "
                    "actions (N, a), rewards (N,), next_observations (N, o), terminals (N,)."
                )
        for key in ("timeouts", "episode_ids"):
            value = getattr(self, key)
            if value is not None and np.shape(value) != (n,):
                raise InvalidDatasetError(f"{key} has shape {np.shape(value)} but there are {n} transitions; "
                                 f"give one entry per transition or leave it out.")
        for key in KEYS:
            if not np.all(np.isfinite(getattr(self, key))):
                bad = int(np.sum(~np.isfinite(getattr(self, key))))
                raise InvalidDatasetError(f"{key} holds {bad} NaN or inf values; clean the dataset before using it.")

    def __len__(self) -> int:
        return len(self.observations)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[-1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[-1]

    def subset(self, index) -> "Transitions":
        """The transitions at `index` (a slice, integer array or boolean mask), bookkeeping included."""
        optional = {key: None if getattr(self, key) is None else getattr(self, key)[index]
                    for key in ("timeouts", "episode_ids")}
        return Transitions(*(getattr(self, key)[index] for key in KEYS), **optional, metadata=self.metadata)

    def clip_actions(self, low: float = -1.0, high: float = 1.0) -> "Transitions":
        """The transitions with every action entry clipped to [low, high] (by default the unit action
        box every environment here acts in)."""
        return dataclasses.replace(self, actions=np.clip(self.actions, low, high).astype(self.actions.dtype))

    def as_dict(self) -> Dict[str, np.ndarray]:
        """The five model-visible arrays under the original code's keys."""
        return {key: getattr(self, key) for key in KEYS}

    def to_rows(self, terminal_column: bool = True) -> np.ndarray:
        """Concatenates the transitions into (N, 2o + a + 1 [+ 1]) float32 rows, the last column the
        terminal if `terminal_column`."""
        parts = [self.observations, self.actions, self.rewards[:, None], self.next_observations]
        if terminal_column:
            parts.append(self.terminals[:, None])
        return np.concatenate(parts, axis=1).astype(np.float32)

    @classmethod
    def from_rows(cls, rows: np.ndarray, obs_dim: int, action_dim: int, terminal_column: bool = True,
                  terminal_threshold: Optional[float] = 0.5) -> "Transitions":
        """Splits rows back into transitions. Terminals become 1.0 where the raw value is strictly
        above `terminal_threshold` (the original's rule); None keeps the raw values (the original's
        online code) and no terminal column means every terminal is 0."""
        expected = 2 * obs_dim + action_dim + 1 + int(terminal_column)
        if rows.ndim != 2 or rows.shape[1] != expected:
            raise InvalidDatasetError(f"Rows of shape {rows.shape} do not fit obs_dim={obs_dim}, action_dim={action_dim}, "
                             f"terminal_column={terminal_column} (expected (N, {expected})).")
        o, a = obs_dim, action_dim
        if terminal_column:
            terminals = rows[:, -1]
            if terminal_threshold is not None:
                terminals = (terminals > terminal_threshold).astype(np.float32)
        else:
            terminals = np.zeros(len(rows), np.float32)
        return cls(rows[:, :o], rows[:, o:o + a], rows[:, o + a], rows[:, o + a + 1:2 * o + a + 1], terminals)
