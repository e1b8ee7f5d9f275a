"""V-D4RL-style pixel datasets rendered from a DMC task (`synther_jax.envs.pixel_env.PixelEnv`).

- `render_dataset` rolls a behaviour policy out and records V-D4RL's time steps: the reset frame
  with action 0 and reward 0 (step type first), then each agent step's frame, action, summed
  reward and discount 1 (DMC never terminates), the last one marked last.
- `render_replay` re-simulates a state-based replay stream and renders it the same way.
"""
from typing import Callable

import numpy as np

from synther_jax.data.pixel_datasets import FIRST, LAST, MID, PixelDataset
from synther_jax.envs.pixel_env import ACTION_REPEAT, CAMERA, EPISODE_STEPS, IMAGE_SIZE, PixelEnv
from synther_jax.progress import Progress

# policy(state_observation) -> action in [-1, 1]^a, as `synther_jax.data.collection.Policy`.
StatePolicy = Callable[[np.ndarray], np.ndarray]


def render_dataset(name: str, policy: StatePolicy, num_steps: int, seed: int, episode_steps: int = EPISODE_STEPS,
                   image_size: int = IMAGE_SIZE, description: str = "rendering") -> PixelDataset:
    """Whole episodes of `policy` holding at least `num_steps` time steps, as V-D4RL records them.
    The first reset gets `seed`; later resets continue the task's own generator."""
    if num_steps <= 0:
        raise ValueError(f"num_steps must be positive, got {num_steps}.")
    env = PixelEnv(name, seed, episode_steps, image_size)
    num_episodes = -(-num_steps // (episode_steps + 1))
    total = num_episodes * (episode_steps + 1)
    frames = np.empty((total, 3, image_size, image_size), np.uint8)
    actions = np.zeros((total, env.action_dim), np.float32)
    rewards, step_types = np.zeros(total, np.float32), np.full(total, MID, np.uint8)
    t = 0
    with Progress(total, description, unit="frame") as bar:
        for episode in range(num_episodes):
            observation, frames[t] = env.reset(seed if episode == 0 else None)
            step_types[t], t = FIRST, t + 1
            last = False
            while not last:
                action = np.asarray(policy(observation), np.float32)
                observation, frames[t], rewards[t], last = env.step(action)
                actions[t], t = action, t + 1
            step_types[t - 1] = LAST
            bar.update(env.steps + 1)
    keep = slice(0, t)  # an episode cut short by the task itself leaves unused rows
    return PixelDataset(frames[keep], actions[keep], rewards[keep], np.ones(t, np.float32), step_types[keep],
                        metadata={"env_id": name, "seed": seed, "episode_steps": episode_steps,
                                  "action_repeat": ACTION_REPEAT, "image_size": image_size, "camera_id": CAMERA})


def render_replay(name: str, episodes, image_size: int = IMAGE_SIZE, description: str = "rendering replay",
                  atol: float = 1e-4) -> PixelDataset:
    """V-D4RL-style time steps of a state-based replay stream recorded without action repeat.

    `episodes` yields (reset_seed, actions (T, a), next_observations (T, o)) per episode, oldest
    first. Each episode is re-simulated from its reset seed with its own actions, every simulator
    step checked against the stored observation (a mismatch means the stream was not made by this
    task or seed, and raises). A frame is recorded every `ACTION_REPEAT` simulator steps, with the
    first action of the pair and the pair's summed reward, as V-D4RL's action-repeat steps.
    """
    episodes = [e for e in episodes if len(e[1]) >= ACTION_REPEAT]  # a stub too short for one agent step
    total = sum(len(actions) // ACTION_REPEAT + 1 for _, actions, _ in episodes)
    env = PixelEnv(name, None, EPISODE_STEPS, image_size)
    frames = np.empty((total, 3, image_size, image_size), np.uint8)
    actions_out = np.zeros((total, env.action_dim), np.float32)
    rewards, step_types = np.zeros(total, np.float32), np.full(total, MID, np.uint8)
    t = 0
    with Progress(total, description, unit="frame") as bar:
        for reset_seed, actions, next_observations in episodes:
            _, frames[t] = env.reset(reset_seed)
            step_types[t], t = FIRST, t + 1
            for k in range(len(actions) // ACTION_REPEAT):
                for j in range(k * ACTION_REPEAT, (k + 1) * ACTION_REPEAT):
                    observation, reward, _, _, _ = env.env.step(actions[j])
                    if not np.allclose(observation, next_observations[j], atol=atol):
                        raise ValueError(f"Replaying the stream of {name} diverged at simulator step {j} of the "
                                         f"episode reset with seed {reset_seed}: the stored observations were not "
                                         "made by this task with these seeds and actions.")
                    rewards[t] += reward
                frames[t], actions_out[t], t = env.render(), actions[k * ACTION_REPEAT], t + 1
            step_types[t - 1] = LAST
            bar.update(len(actions) // ACTION_REPEAT + 1)
    return PixelDataset(frames, actions_out, rewards, np.ones(total, np.float32), step_types,
                        metadata={"env_id": name, "action_repeat": ACTION_REPEAT, "image_size": image_size,
                                  "camera_id": CAMERA, "replayed": True})
