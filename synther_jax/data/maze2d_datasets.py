"""maze2d data made the way D4RL made it, and D4RL's reference scores measured on our mazes.

D4RL's recipe (`scripts/generation/generate_maze2d_datasets.py --noisy`, `relabel_maze2d_rewards.py`),
which `generate_episodes` follows on `synther_jax.envs.maze2d.Maze2dEnv`:
- one continuous trajectory: the waypoint controller drives the ball to a random goal cell; when it
  gets there (or after the task's episode limit) a new random goal cell is drawn and the ball is NOT
  reset;
- N(0, 0.5) noise is added to every action, then clipped to [-1, 1];
- rewards are the sparse reward against the fixed evaluation goal (not the moving goal the
  controller chases); terminals are all 0; each goal switch ends an episode as a time-limit step,
  which D4RL's `qlearning_dataset` (and `load_dataset`) drops.

Deviation: D4RL relabelled the reward from observation[t] (one step before the environment's own
reward, which reads the state after the step); we label a step with the reward the evaluation
environment gives for it (the state after the step), so data and evaluation agree. Sizes default to
D4RL's (1M / 2M / 4M steps).
"""
import os
from typing import Callable, Dict, List, Optional

import numpy as np

from synther_jax.data.flatten import Episode
from synther_jax.data.minari_store import minari_dataset_dir
from synther_jax.envs import maze2d
from synther_jax.progress import Progress

DEFAULT_NUM_STEPS = {"maze2d-umaze": 1_000_000, "maze2d-medium": 2_000_000, "maze2d-large": 4_000_000}
SMOKE_NUM_STEPS = 50_000
ACTION_NOISE = 0.5
ALGORITHM_NAME = "D4RL waypoint controller, N(0, 0.5) action noise"


def default_dataset_id(maze: str, num_steps: Optional[int] = None) -> str:
    """`synther/maze2d/<layout>-v0` for D4RL's size, `synther/maze2d/<layout>-<steps>-v0` otherwise."""
    maze2d.check_maze(maze)
    layout = maze.split("-", 1)[1]
    if num_steps is None or num_steps == DEFAULT_NUM_STEPS[maze]:
        return f"synther/maze2d/{layout}-v0"
    return f"synther/maze2d/{layout}-{num_steps}-v0"


def generate_episodes(maze: str, num_steps: int, seed: int, action_noise: float = ACTION_NOISE,
                      progress: bool = True) -> List[Episode]:
    """`num_steps` steps of D4RL's noisy waypoint-controller data, one episode per goal, in Minari's
    layout (the last episode is cut at `num_steps`, also as a time-limit step). Only the first
    episode starts with a reset (seeded with `seed`, recorded); the others continue the trajectory."""
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}.")
    env = maze2d.Maze2dEnv(maze)
    rng = np.random.default_rng(seed)
    controller = maze2d.WaypointController(maze, rng)
    cells = maze2d.free_cells(maze)
    limit = maze2d.MAX_EPISODE_STEPS[maze]
    observation, _ = env.reset(seed=seed)
    target = cells[rng.integers(len(cells))]
    observations, actions, rewards, episodes = [observation], [], [], []
    for step in Progress(num_steps, f"generating {maze}", unit="step", enabled=progress).track(range(num_steps)):
        action, reached = controller.action(observation, target)
        action = np.clip(action + rng.normal(0.0, action_noise, 2), -1.0, 1.0).astype(np.float32)
        observation, reward, _, _, _ = env.step(action)
        observations.append(observation)
        actions.append(action)
        rewards.append(reward)
        if reached or len(actions) >= limit or step == num_steps - 1:
            length = len(actions)
            truncations = np.zeros(length, bool)
            truncations[-1] = True
            episodes.append(Episode(np.stack(observations), np.stack(actions), np.asarray(rewards, np.float64),
                                    np.zeros(length, bool), truncations, seed if not episodes else None))
            observations, actions, rewards = [observation], [], []
            target = cells[rng.integers(len(cells))]
    env.close()
    return episodes


def make_dataset(dataset_id: str, maze: str, num_steps: int, seed: int = 0, description: str = "") -> None:
    """Generates the data and writes it as the Minari dataset `dataset_id` (whole or not at all)."""
    from synther_jax.data.collection import check_new_minari_id, write_minari
    from synther_jax.envs import make_env

    check_new_minari_id(dataset_id)
    episodes = generate_episodes(maze, num_steps, seed)
    env = make_env(maze)
    write_minari(dataset_id, episodes, env, algorithm_name=ALGORITHM_NAME,
                 description=description or f"D4RL-style maze2d data on {maze}: {num_steps} steps, seed {seed}, "
                 "made by synther_jax (synther_jax.data.maze2d_datasets).")
    env.close()


def ensure_default_dataset(dataset_id: str) -> bool:
    """Makes `dataset_id` in the local Minari store if it is one of our default maze2d ids
    (`default_dataset_id`, D4RL's or the smoke size) and absent. Returns whether it made it."""
    if os.path.isdir(os.path.join(minari_dataset_dir(), dataset_id, "data")):
        return False
    for maze in maze2d.MAZE_NAMES:
        for num_steps in (DEFAULT_NUM_STEPS[maze], SMOKE_NUM_STEPS):
            if dataset_id == default_dataset_id(maze, num_steps):
                print(f"Making the maze2d dataset {dataset_id} ({num_steps} steps of D4RL's noisy controller on "
                      f"{maze}); it is kept in the local Minari store.")
                make_dataset(dataset_id, maze, num_steps, seed=0)
                return True
    return False


# --- reference scores, D4RL's way (d4rl/infos.py) ---------------------------------------------------

Policy = Callable[[np.ndarray], np.ndarray]


def episode_returns(maze: str, make_policy: Callable[[int], Policy], num_episodes: int, seed: int = 0,
                    progress: bool = True) -> np.ndarray:
    """Returns of `num_episodes` full-length episodes; episode i is reset with seed `seed + i` and
    acts with `make_policy(seed + i)`."""
    import gymnasium as gym

    env = gym.make(maze)
    returns = np.zeros(num_episodes)
    for i in Progress(num_episodes, f"episodes on {maze}", unit="episode", enabled=progress).track(range(num_episodes)):
        policy = make_policy(seed + i)
        observation, _ = env.reset(seed=seed + i)
        done = False
        while not done:
            observation, reward, terminated, truncated, _ = env.step(policy(observation))
            returns[i] += reward
            done = terminated or truncated
    env.close()
    return returns


def reference_returns(maze: str, num_episodes: int = 100, seed: int = 0, progress: bool = True) -> Dict[str, float]:
    """D4RL's reference returns on our environment: `min` is the mean return of the uniform random
    policy, `max` that of the noise-free waypoint controller driving to the evaluation goal."""
    goal = maze2d.GOAL_CELLS[maze]

    def random_policy(episode_seed: int) -> Policy:
        rng = np.random.default_rng(episode_seed)
        return lambda observation: rng.uniform(-1.0, 1.0, 2).astype(np.float32)

    def controller_policy(episode_seed: int) -> Policy:
        controller = maze2d.WaypointController(maze, np.random.default_rng(episode_seed))
        return lambda observation: controller.action(observation, goal)[0].astype(np.float32)

    random = episode_returns(maze, random_policy, num_episodes, seed, progress)
    expert = episode_returns(maze, controller_policy, num_episodes, seed, progress)
    return {"min": float(random.mean()), "max": float(expert.mean()), "min_std": float(random.std()),
            "max_std": float(expert.std()), "episodes": num_episodes, "seed": seed}

