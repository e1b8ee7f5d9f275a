"""DeepMind Control tasks seen through pixels, as V-D4RL recorded and evaluates them.

`PixelEnv` steps a DMC task built by `synther_jax.envs.make_env` (so a state-based behaviour
policy sees exactly the observations it was trained on) with action repeat 2 (rewards summed) and
renders camera 0 at 84x84 after the reset and after every agent step with MuJoCo's renderer
(`physics.render`; `MUJOCO_GL=egl` unless set otherwise, which renders in software on a CPU).
An episode is the reset frame plus `episode_steps` agent steps (500: DMC's 1000 simulator steps).

- `render_dataset` rolls a behaviour policy out and records V-D4RL's time steps: the reset frame
  with action 0 and reward 0 (step type first), then each agent step's frame, action, summed
  reward and discount 1 (DMC never terminates), the last one marked last.
- `evaluate` runs every (seed, episode) pair side by side, the policies acting on stacks of the
  last 3 frames (the first repeated at the start), one batched call for all seeds per step.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

from typing import Callable, Optional  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from synther_jax.data.pixels import FIRST, FRAME_STACK, LAST, MID, PixelDataset  # noqa: E402
from synther_jax.envs import dmc_task_names, make_env  # noqa: E402
from synther_jax.progress import Progress  # noqa: E402

ACTION_REPEAT = 2
EPISODE_STEPS = 500
IMAGE_SIZE = 84
CAMERA = 0

# policy(state_observation) -> action in [-1, 1]^a, as `synther_jax.data.collection.Policy`.
StatePolicy = Callable[[np.ndarray], np.ndarray]


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


ActFn = Callable[..., jax.Array]


def evaluate(act: ActFn, states, name: str, num_episodes: int, seed: int, episode_steps: int = EPISODE_STEPS,
             image_size: int = IMAGE_SIZE, frame_stack: int = FRAME_STACK, progress: bool = False) -> np.ndarray:
    """Returns (num_seeds, num_episodes) of the learners `states` (leading seed axis) acting with
    their deterministic action on stacked frames; env (s, e) is reset with seed + s * num_episodes + e."""
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
