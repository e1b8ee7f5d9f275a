"""Collecting real experience from an environment and storing it as a Minari dataset.

Collection runs the policy into plain arrays and writes the Minari dataset once at the end with
`minari.create_dataset_from_buffers` (Minari's step-by-step collector rewrites its files after every
episode and is several times slower). Episodes are seeded from one seed: the first reset gets it,
later resets continue the environment's own generator, so a seed fixes the whole dataset.
"""
import os
import shutil
from typing import Callable, List, Optional, Sequence

import gymnasium as gym
import numpy as np
import tqdm

from synther_jax.data.flatten import Episode

# A behaviour policy maps one observation to one action (it keeps its own random state).
Policy = Callable[[np.ndarray], np.ndarray]


def uniform_random_policy(action_space: gym.spaces.Box, seed: int) -> Policy:
    """D4RL's `random` level: actions uniform in the action box."""
    action_space.seed(seed)
    return lambda observation: action_space.sample()


def rollout(env: gym.Env, policy: Policy, num_steps: int, seed: int, description: str = "collecting") -> List[Episode]:
    """Runs `policy` for exactly `num_steps` environment steps. An episode ends at termination or
    truncation; the one still running at the end is marked truncated, as Minari's collector does."""
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}.")
    episodes = []
    observation, _ = env.reset(seed=seed)
    steps = {"observations": [observation], "actions": [], "rewards": [], "terminations": [], "truncations": []}
    for step in tqdm.trange(num_steps, desc=description, unit="step", mininterval=2.0):
        action = np.asarray(policy(observation), dtype=env.action_space.dtype)
        observation, reward, terminated, truncated, _ = env.step(action)
        truncated = truncated or step == num_steps - 1
        for key, value in zip(("observations", "actions", "rewards", "terminations", "truncations"),
                              (observation, action, reward, terminated, truncated)):
            steps[key].append(value)
        if terminated or truncated:
            episodes.append(Episode(np.stack(steps["observations"]), np.stack(steps["actions"]),
                                    np.asarray(steps["rewards"], np.float64), np.asarray(steps["terminations"], bool),
                                    np.asarray(steps["truncations"], bool)))
            if step < num_steps - 1:
                observation, _ = env.reset()
            steps = {"observations": [observation], "actions": [], "rewards": [], "terminations": [],
                     "truncations": []}
    return episodes


def minari_dataset_path(dataset_id: str) -> str:
    """Where Minari keeps `dataset_id` (honours MINARI_DATASETS_PATH)."""
    from minari.storage.datasets_root_dir import get_dataset_path

    return str(get_dataset_path(dataset_id))


def check_new_minari_id(dataset_id: str) -> None:
    """Fails before any collection if `dataset_id` is malformed or already taken."""
    from minari.dataset.minari_dataset import parse_dataset_id

    try:
        parse_dataset_id(dataset_id)
    except (ValueError, TypeError) as error:
        raise ValueError(f"Malformed Minari dataset id {dataset_id!r}: use `namespace/name-vN` with a namespace of "
                         f"two or more characters, e.g. `synther/walker2d/random-v0` ({error}).") from error
    if os.path.exists(minari_dataset_path(dataset_id)):
        raise FileExistsError(f"A Minari dataset {dataset_id!r} already exists at {minari_dataset_path(dataset_id)}; "
                              "choose another id or version, or delete it (`minari delete ...`).")


def write_minari(dataset_id: str, episodes: Sequence[Episode], env_id: str, observation_space: gym.Space,
                 action_space: gym.Space, seed: Optional[int], algorithm_name: str, description: str,
                 ref_min_score: Optional[float] = None, ref_max_score: Optional[float] = None):
    """Writes `episodes` as a Minari dataset in one go; on failure removes the half-written folder.
    `seed` is recorded as the first episode's reset seed (None when unknown).

    `env_id` is recorded as the dataset's environment spec when Gymnasium knows it, so
    `recover_environment()` works; observations and actions are stored as the learners see them
    (`synther_jax.envs.make_env`: float32 observations, actions rescaled to [-1, 1]).
    """
    import minari
    from minari.data_collector.episode_buffer import EpisodeBuffer

    check_new_minari_id(dataset_id)
    if not episodes:
        raise ValueError("No episodes to write.")
    buffers = [EpisodeBuffer(id=index, seed=seed if index == 0 else None, observations=episode.observations,
                             actions=episode.actions, rewards=episode.rewards, terminations=episode.terminations,
                             truncations=episode.truncations) for index, episode in enumerate(episodes)]
    env_spec = gym.spec(env_id) if env_id in gym.registry else None
    try:
        return minari.create_dataset_from_buffers(
            dataset_id, buffers, env=env_spec, observation_space=observation_space, action_space=action_space,
            algorithm_name=algorithm_name, description=description, ref_min_score=ref_min_score,
            ref_max_score=ref_max_score, author="synther_jax", code_permalink="launch/collect.py")
    except BaseException:
        shutil.rmtree(minari_dataset_path(dataset_id), ignore_errors=True)
        raise
