"""DeepMind Control tasks seen through pixels, as V-D4RL recorded and evaluates them.

`PixelEnv` steps a DMC task built by `synther_jax.envs.make_env` (so a state-based behaviour
policy sees exactly the observations it was trained on) with action repeat 2 (rewards summed) and
renders camera 0 at 84x84 after the reset and after every agent step with MuJoCo's renderer
(`physics.render`; `MUJOCO_GL=egl` unless set otherwise, which renders in software on a CPU).
An episode is the reset frame plus `episode_steps` agent steps (500: DMC's 1000 simulator steps).
Datasets are rendered from it by `synther_jax.data.pixel_rendering`.

- `evaluate` runs every (seed, episode) pair side by side, the policies acting on stacks of the
  last frames (the first repeated at the start), one batched call for all seeds per step.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

from typing import Callable, Optional  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from synther_jax.envs import dmc_task_names, make_env  # noqa: E402
from synther_jax.progress import Progress  # noqa: E402

ACTION_REPEAT = 2
EPISODE_STEPS = 500
IMAGE_SIZE = 84
CAMERA = 0


class PixelEnv:
    """One DMC task with action repeat, episodes of `episode_steps` agent steps, and rendered frames."""

    def __init__(self, name: str, seed: Optional[int] = None, episode_steps: int = EPISODE_STEPS,
                 image_size: int = IMAGE_SIZE, action_repeat: int = ACTION_REPEAT):
        if name not in dmc_task_names():
            raise ValueError(f"Pixel datasets come from DeepMind Control tasks (e.g. walker-walk, cheetah-run), "
                             f"not {name!r}.")
        if episode_steps * action_repeat > 1000:
            raise ValueError(f"episode_steps * action_repeat = {episode_steps * action_repeat} exceeds DMC's "
                             "1000-step episodes.")
        self.env = make_env(name, seed)
        self.physics = self.env.unwrapped._env.physics
        self.episode_steps, self.image_size, self.action_repeat = episode_steps, image_size, action_repeat
        self.action_dim = self.env.action_space.shape[0]
        self.steps = 0

    def render(self) -> np.ndarray:
        """The current frame, (3, H, W) uint8, channels first."""
        frame = self.physics.render(height=self.image_size, width=self.image_size, camera_id=CAMERA)
        return np.ascontiguousarray(frame.transpose(2, 0, 1))

    def reset(self, seed: Optional[int] = None):
        """(state observation, frame) of a new episode."""
        observation, _ = self.env.reset(seed=seed)
        self.steps = 0
        return observation, self.render()

    def step(self, action: np.ndarray):
        """(state observation, frame, summed reward, last) after `action_repeat` simulator steps."""
        reward = 0.0
        for _ in range(self.action_repeat):
            observation, r, terminated, truncated, _ = self.env.step(action)
            reward += r
            if terminated or truncated:
                break
        self.steps += 1
        last = terminated or truncated or self.steps >= self.episode_steps
        return observation, self.render(), reward, last


ActFn = Callable[..., jax.Array]


def evaluate(act: ActFn, states, name: str, num_episodes: int, seed: int, frame_stack: int,
             episode_steps: int = EPISODE_STEPS, image_size: int = IMAGE_SIZE, progress: bool = False) -> np.ndarray:
    """Returns (num_seeds, num_episodes) of the learners `states` (leading seed axis) acting with
    their deterministic action on the last `frame_stack` frames (the stack the learners trained on,
    `synther_jax.data.pixel_datasets.FRAME_STACK`); env (s, e) is reset with seed + s * num_episodes + e."""
    num_seeds = int(states.step.shape[0])
    envs = [PixelEnv(name, seed + i, episode_steps, image_size) for i in range(num_seeds * num_episodes)]
    stacks = []
    for i, env in enumerate(envs):
        _, frame = env.reset(seed + i)
        stacks.append([frame] * frame_stack)
    policy = jax.jit(jax.vmap(lambda state, obs: act(state, obs, jax.random.PRNGKey(0), deterministic=True)))
    returns, running = np.zeros(len(envs)), np.ones(len(envs), bool)
    for _ in Progress(episode_steps, f"evaluating {name}", unit="step", enabled=progress,
                      leave=False).track(range(episode_steps)):
        observations = np.stack([np.concatenate(stack, axis=0) for stack in stacks])
        actions = np.asarray(policy(states, jnp.asarray(observations).reshape(num_seeds, num_episodes,
                                                                               *observations.shape[1:])))
        for i, env in enumerate(envs):
            if not running[i]:
                continue
            _, frame, reward, last = env.step(actions.reshape(len(envs), -1)[i])
            returns[i] += reward
            stacks[i] = stacks[i][1:] + [frame]
            running[i] = not last
        if not running.any():
            break
    return returns.reshape(num_seeds, num_episodes)
