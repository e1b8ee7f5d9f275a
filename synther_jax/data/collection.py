"""Collecting real experience from an environment and storing it as a Minari dataset.

Collection runs the policy into plain arrays and writes the Minari dataset once at the end with
`minari.create_dataset_from_buffers` (Minari's step-by-step collector rewrites its files after every
episode and is several times slower). Every episode starts from a reset with its own seed, derived
from the collection's seed and the episode's index (`reset_seed`) and recorded in the dataset, so a
seed fixes the whole dataset and each episode can be replayed alone. Only Minari's public API is
used.
"""
import os
import re
import shutil
from typing import Callable, List, Sequence

import numpy as np

from synther_jax.data.flatten import Episode
from synther_jax.data.minari_store import minari_dataset_dir
from synther_jax.errors import InvalidDatasetError, UnknownEnvironmentError, require
from synther_jax.progress import Progress
from synther_jax.scores import reference_scores

gym = require("gymnasium", "envs")

# A behaviour policy maps one observation to one action (it keeps its own random state).
Policy = Callable[[np.ndarray], np.ndarray]


def uniform_random_policy(action_space: gym.spaces.Box, seed: int) -> Policy:
    """D4RL's `random` level: actions uniform in the action box."""
    action_space.seed(seed)
    return lambda observation: action_space.sample()


def reset_seed(seed: int, episode_index: int) -> int:
    """The reset seed of episode `episode_index` of a collection seeded with `seed`."""
    return int(np.random.SeedSequence([seed, episode_index]).generate_state(1)[0])


def rollout(env: gym.Env, policy: Policy, num_steps: int, seed: int, description: str = "collecting") -> List[Episode]:
    """Runs `policy` for exactly `num_steps` environment steps. An episode ends at termination or
    truncation; the one still running at the end is marked truncated, as Minari's collector does."""
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}.")
    episodes = []
    episode_seed = reset_seed(seed, 0)
    observation, _ = env.reset(seed=episode_seed)
    steps = {"observations": [observation], "actions": [], "rewards": [], "terminations": [], "truncations": []}
    for step in Progress(num_steps, description, unit="step").track(range(num_steps)):
        action = np.asarray(policy(observation), dtype=env.action_space.dtype)
        observation, reward, terminated, truncated, _ = env.step(action)
        truncated = truncated or step == num_steps - 1
        for key, value in zip(("observations", "actions", "rewards", "terminations", "truncations"),
                              (observation, action, reward, terminated, truncated)):
            steps[key].append(value)
        if terminated or truncated:
            episodes.append(Episode(np.stack(steps["observations"]), np.stack(steps["actions"]),
                                    np.asarray(steps["rewards"], np.float64), np.asarray(steps["terminations"], bool),
                                    np.asarray(steps["truncations"], bool), episode_seed))
            if step < num_steps - 1:
                episode_seed = reset_seed(seed, len(episodes))
                observation, _ = env.reset(seed=episode_seed)
            steps = {"observations": [observation], "actions": [], "rewards": [], "terminations": [],
                     "truncations": []}
    return episodes


# Minari's dataset ids: `(namespace/)name-vN`, a namespace of two or more characters (Minari's rule).
MINARI_ID = re.compile(r"(?:[-\w][-\w/]*[-\w]/)?[-\w]+?-v\d+")


def episode_sample(episodes: List[Episode], max_steps: int, seed: int) -> List[Episode]:
    """Whole episodes in a seeded random order, as many as fit in `max_steps` steps, in collection
    order (a uniform sample of episodes, so the levels' mixture of policies is kept)."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    lengths = np.array([len(episodes[i].rewards) for i in order])
    chosen = np.sort(order[np.cumsum(lengths) <= max_steps])
    if len(chosen) == 0:
        raise ValueError(f"A sample of {max_steps} steps holds not even one episode (the first drawn has "
                         f"{lengths[0]} steps); raise it.")
    return [episodes[i] for i in chosen]


def minari_dataset_path(dataset_id: str) -> str:
    """Where Minari keeps `dataset_id` (honours MINARI_DATASETS_PATH)."""
    return os.path.join(minari_dataset_dir(), dataset_id)


def check_new_minari_id(dataset_id: str) -> None:
    """Fails before any collection if `dataset_id` is malformed or already taken."""
    if not MINARI_ID.fullmatch(dataset_id):
        raise InvalidDatasetError(f"Malformed Minari dataset id {dataset_id!r}: use `namespace/name-vN` with a namespace "
                                  "of two or more characters, e.g. `synther/walker2d/random-v0`.")
    if os.path.exists(minari_dataset_path(dataset_id)):
        raise FileExistsError(f"A Minari dataset {dataset_id!r} already exists at {minari_dataset_path(dataset_id)}; "
                              "choose another id or version, or delete it (`minari delete ...`).")


def write_minari(dataset_id: str, episodes: Sequence[Episode], env: gym.Env, algorithm_name: str, description: str):
    """Writes `episodes`, collected on `env`, as a Minari dataset in one go; on failure removes the
    half-written folder.

    What Minari users rely on is recorded: each episode's reset seed (None for an episode that did
    not start with a seeded reset); `env`'s spec with its wrappers (`synther_jax.envs.make_env`'s:
    float32 observations, actions rescaled to [-1, 1], the episode limit), so `recover_environment()`
    rebuilds an environment whose spaces equal the dataset's; the reference scores of the task where
    we have them (`synther_jax.scores`), so `minari.get_normalized_score` works. An env without
    a spec (DMC) records only its spaces.
    """
    minari = require("minari", "minari")
    EpisodeBuffer = require("minari.data_collector", "minari").EpisodeBuffer

    check_new_minari_id(dataset_id)
    if not episodes:
        raise ValueError("No episodes to write.")
    buffers = [EpisodeBuffer(id=index, seed=episode.seed, observations=episode.observations, actions=episode.actions,
                             rewards=episode.rewards, terminations=episode.terminations,
                             truncations=episode.truncations) for index, episode in enumerate(episodes)]
    try:
        scores = reference_scores(env.spec.id) if env.spec is not None else None
    except UnknownEnvironmentError:  # a task without reference scores (DMC)
        scores = None
    try:
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env.spec, observation_space=env.observation_space,
            action_space=env.action_space, algorithm_name=algorithm_name, description=description,
            ref_min_score=None if scores is None else scores.min_score,
            ref_max_score=None if scores is None else scores.max_score, author="synther_jax",
            code_permalink="launch/collect.py")
    except BaseException:
        shutil.rmtree(minari_dataset_path(dataset_id), ignore_errors=True)
        raise
