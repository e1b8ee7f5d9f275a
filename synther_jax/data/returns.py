"""Return-to-go of every transition within its episode: what offline guidance conditions on (GTA).

    G_t = r_t + discount * (1 - d_t) * G_{t+1}      within an episode, G = r at its last row

Episodes are read from the rows: a new one starts at row t when the episode id changes (where
the data has ids), when row t-1 ended one (terminal or time limit), or when row t's observation is
not row t-1's next observation (D4RL's flattening drops time-limit rows, and a subsample drops
more, so the successor test catches every cut). An episode cut short by the data ends with its
last stored row: its return-to-go counts only what the data holds.
"""
import numpy as np

from synther_jax.data.transitions import Transitions


def episode_starts(data: Transitions) -> np.ndarray:
    """(N,) bool: the rows that begin an episode (see the module docstring)."""
    starts = np.ones(len(data), bool)
    ended = data.terminals[:-1] > 0
    if data.timeouts is not None:
        ended |= np.asarray(data.timeouts[:-1]) > 0
    starts[1:] = ended | np.any(data.observations[1:] != data.next_observations[:-1], axis=1)
    if data.episode_ids is not None:
        starts[1:] |= data.episode_ids[1:] != data.episode_ids[:-1]
    return starts


def returns_to_go(data: Transitions, discount: float = 1.0) -> np.ndarray:
    """(N,) float64: each transition's discounted return from it to the end of its episode."""
    if not 0.0 <= discount <= 1.0:
        raise ValueError(f"discount must lie in [0, 1], got {discount!r}.")
    rewards, starts = data.rewards.astype(np.float64), episode_starts(data)
    returns = np.empty(len(data))
    following = 0.0
    for t in range(len(data) - 1, -1, -1):
        last = t == len(data) - 1 or starts[t + 1]
        following = rewards[t] + (0.0 if last else discount * following)
        returns[t] = following
    return returns
