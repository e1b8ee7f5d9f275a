"""From episodes or D4RL's flat arrays to `Transitions`, with the original's rules.

SynthER trains on `d4rl.qlearning_dataset` (paper Section 3.1): time-limit steps are dropped (their
successor is the next episode's reset state in D4RL's flat layout), terminal steps are kept, and no
transition crosses an episode boundary. We apply the same rules to every source.

`keep_timeouts=True` is the documented alternative: time-limit steps stay in as non-terminal
transitions (with their true successor), as online replay buffers store them.

Deviations from `qlearning_dataset`, both in the rows D4RL gets wrong or throws away:
- When the data holds the true successor (Minari episodes; D4RL v2 files' `next_observations`) we
  use it; D4RL took the following row, which at a terminal step is the next episode's first
  observation. Only terminal rows differ, and their bootstrap is masked out anyway.
- A step that is both terminal and time-limited counts as terminal (D4RL dropped it).
- With stored successors, the dataset's last row is kept when it is a valid transition.
"""
from typing import Any, Dict, Iterable, List, NamedTuple, Optional

import numpy as np

from synther_jax.data.transitions import Transitions
from synther_jax.errors import InvalidDatasetError


class Episode(NamedTuple):
    """One episode of T steps, in Minari's layout."""
    observations: np.ndarray  # (T+1, o)
    actions: np.ndarray  # (T, a)
    rewards: np.ndarray  # (T,)
    terminations: np.ndarray  # (T,) bool
    truncations: np.ndarray  # (T,) bool
    seed: Optional[int] = None  # the seed of the reset that started it, where one did


def _flat_observations(observations) -> np.ndarray:
    """Per-step observation array; dict observations (Dict spaces) are concatenated key by key in
    the space's order, as `gymnasium.spaces.flatten` does for a dict of boxes."""
    if isinstance(observations, dict):
        parts = [_flat_observations(value) for value in observations.values()]
        return np.concatenate([p.reshape(len(p), -1) for p in parts], axis=1)
    observations = np.asarray(observations)
    return observations.reshape(len(observations), -1)


def episodes_to_transitions(episodes: Iterable[Any], keep_timeouts: bool = False,
                            metadata: Optional[Dict[str, Any]] = None) -> Transitions:
    """Flattens episodes with fields `observations` (T+1 steps), `actions`, `rewards`,
    `terminations`, `truncations` (T steps): `Episode`, Minari's `EpisodeData` or `EpisodeBuffer`."""
    columns: Dict[str, List[np.ndarray]] = {k: [] for k in
                                            ("obs", "act", "rew", "next", "term", "timeout", "episode")}
    for index, episode in enumerate(episodes):
        observations = _flat_observations(episode.observations)
        actions = np.asarray(episode.actions).reshape(len(episode.rewards), -1)
        rewards = np.asarray(episode.rewards, np.float64).reshape(-1)
        terminations = np.asarray(episode.terminations, bool).reshape(-1)
        truncations = np.asarray(episode.truncations, bool).reshape(-1)
        steps = len(rewards)
        if not (len(observations) == steps + 1 and len(actions) == len(terminations) == len(truncations) == steps):
            raise InvalidDatasetError(
                f"Episode {index} has {len(observations)} observations, {len(actions)} actions, {steps} rewards, "
                f"{len(terminations)} terminations and {len(truncations)} truncations; an episode of T steps "
                "needs T+1 observations and T of everything else.")
        timeouts = truncations & ~terminations
        keep = np.ones(steps, bool) if keep_timeouts else ~timeouts
        columns["obs"].append(observations[:-1][keep])
        columns["next"].append(observations[1:][keep])
        columns["act"].append(actions[keep])
        columns["rew"].append(rewards[keep])
        columns["term"].append(terminations[keep])
        columns["timeout"].append(timeouts[keep])
        columns["episode"].append(np.full(int(keep.sum()), index, np.int64))
    if not columns["obs"]:
        raise InvalidDatasetError("The dataset holds no episodes.")
    c = {key: np.concatenate(value) for key, value in columns.items()}
    return Transitions(c["obs"], c["act"], c["rew"], c["next"], c["term"], timeouts=c["timeout"],
                       episode_ids=c["episode"], metadata=metadata)


def flat_to_transitions(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray,
                        terminals: np.ndarray, timeouts: Optional[np.ndarray] = None,
                        next_observations: Optional[np.ndarray] = None, keep_timeouts: bool = False,
                        metadata: Optional[Dict[str, Any]] = None,
                        episode_ids: Optional[np.ndarray] = None) -> Transitions:
    """Flattens D4RL's layout: one row per environment step in collection order, an episode ending
    at a terminal or timeout row. Without `next_observations` the successor is the following row
    (D4RL's rule), so the last row has none and is dropped. `episode_ids`, when stored, replace the
    ones counted from episode ends (needed for subsampled rows)."""
    n = len(observations)
    timeouts = np.zeros(n, bool) if timeouts is None else np.asarray(timeouts, bool).reshape(-1)
    terminals = np.asarray(terminals, bool).reshape(-1)
    lengths = {"observations": n, "actions": len(actions), "rewards": len(rewards), "terminals": len(terminals),
               "timeouts": len(timeouts)}
    for key, value in (("next_observations", next_observations), ("episode_ids", episode_ids)):
        if value is not None:
            lengths[key] = len(value)
    if len(set(lengths.values())) != 1:
        raise InvalidDatasetError(f"The dataset's arrays have different lengths {lengths}; it is truncated or "
                                  "was written wrongly. Regenerate or re-download it.")
    if n == 0:
        raise InvalidDatasetError("The dataset is empty: it holds no transitions.")
    timeouts = timeouts & ~terminals
    if next_observations is None:
        if keep_timeouts and timeouts[:-1].any():
            raise InvalidDatasetError(
                "keep_timeouts=True needs the true successor of time-limit steps, but this file has no "
                "next_observations (the following row starts the next episode). Load it with keep_timeouts=False.")
        next_observations = np.concatenate([observations[1:], observations[-1:]])
        has_successor = np.arange(n) < n - 1
    else:
        has_successor = np.ones(n, bool)
    keep = has_successor & (np.ones(n, bool) if keep_timeouts else ~timeouts)
    if episode_ids is None:
        episode_ids = np.concatenate([[0], np.cumsum(terminals | timeouts)[:-1]])
    return Transitions(np.asarray(observations)[keep], np.asarray(actions)[keep], np.asarray(rewards)[keep],
                       np.asarray(next_observations)[keep], terminals[keep], timeouts=timeouts[keep],
                       episode_ids=np.asarray(episode_ids)[keep], metadata=metadata)


def transitions_to_episodes(transitions: Transitions) -> List[Episode]:
    """Regroups transitions stored in collection order (an online replay buffer, with `episode_ids`
    and `timeouts`) into episodes for Minari: each keeps T+1 observations, and an episode that ends
    without a terminal or timeout (the one running when collection stopped) is marked truncated,
    as Minari's own collector does."""
    if transitions.episode_ids is None:
        raise InvalidDatasetError("Regrouping transitions into episodes needs their episode_ids.")
    timeouts = np.zeros(len(transitions), bool) if transitions.timeouts is None else transitions.timeouts.astype(bool)
    ids = np.asarray(transitions.episode_ids)
    starts = np.flatnonzero(np.concatenate([[True], ids[1:] != ids[:-1]]))
    ends = np.concatenate([starts[1:], [len(ids)]])
    if len(np.unique(ids)) != len(starts):
        raise InvalidDatasetError("Episode ids are not contiguous: the transitions are not in collection order.")
    episodes = []
    for start, end in zip(starts, ends):
        obs = transitions.observations[start:end]
        next_obs = transitions.next_observations[start:end]
        if not np.array_equal(obs[1:], next_obs[:-1]):
            raise InvalidDatasetError(f"Episode {ids[start]} does not chain (observation t+1 != next observation t): "
                                      "the transitions are not in collection order or were subsampled.")
        terminations = transitions.terminals[start:end] > 0.5
        truncations = timeouts[start:end].copy()
        if not (terminations[-1] or truncations[-1]):
            truncations[-1] = True
        if (terminations[:-1] | truncations[:-1]).any():
            raise InvalidDatasetError(f"Episode {ids[start]} ends before its last step; check its episode_ids.")
        episodes.append(Episode(np.concatenate([obs, next_obs[-1:]]), transitions.actions[start:end],
                                transitions.rewards[start:end], terminations, truncations))
    return episodes
