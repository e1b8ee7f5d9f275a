"""The environments agents act in, and evaluation on them.

This module builds the tasks (`make_env`); beside it, `maze2d.py` (D4RL's maze2d tasks on
PointMaze, registered with Gymnasium), `pixel_env.py` (DMC through rendered frames, V-D4RL's way) and
`evaluation.py` (all seeds' evaluation episodes in one vector environment).

`make_env(name)` returns a Gymnasium environment in the form every learner here expects, as the
original's `wrap_gym` does:
- observations are flat float32 vectors (DMC's observation dicts are concatenated);
- actions live in [-1, 1]^a (rescaled to the task's bounds, then clipped);
- episodes are cut at 1000 steps (maze2d tasks at D4RL's 300 / 600 / 800, `maze2d.py`); a cut is
  reported as `truncated`, never as `terminated`, so a learner keeps bootstrapping through it.

Names are Gymnasium ids (`Hopper-v5`, `Walker2d-v4`, ...), DMC `domain-task` pairs
(`cheetah-run`, `quadruped-walk`, `reacher-hard`) or D4RL's maze2d tasks (`maze2d-umaze`, ...).
DMC tasks go through dm_control's suite and shimmy's Gymnasium wrapper. dm_control 1.0.50 needs
mujoco 3.x: mujoco 4.0 breaks `suite.load`.
"""
import difflib
import warnings
from typing import List, Optional

import numpy as np

from synther_jax.envs import maze2d
from synther_jax.errors import UnknownEnvironmentError, require

gym = require("gymnasium", "envs")

MAX_EPISODE_STEPS = 1000


class ClipToUnitBox(gym.ActionWrapper, gym.utils.RecordConstructorArgs):
    """Clips actions to [-1, 1] and says so in `action_space` (Gymnasium's ClipAction reports an
    unbounded space, which would hide the bounds from the learners). Recorded in the env's spec, so
    `gym.make(env.spec)` (Minari's `recover_environment`) rebuilds the same environment."""

    def __init__(self, env: gym.Env):
        gym.utils.RecordConstructorArgs.__init__(self)
        super().__init__(env)
        self.action_space = gym.spaces.Box(-1.0, 1.0, env.action_space.shape, np.float32)

    def action(self, action):
        return np.clip(action, -1.0, 1.0)


def gym_task_names() -> List[str]:
    """Every registered Gymnasium MuJoCo id (HalfCheetah-v5, Hopper-v4, ...)."""
    return sorted(name for name, spec in gym.registry.items()
                  if isinstance(spec.entry_point, str) and spec.entry_point.startswith("gymnasium.envs.mujoco"))


def dmc_task_names() -> List[str]:
    """Every DeepMind Control suite task as `domain-task` (cheetah-run, quadruped-walk, ...)."""
    suite = require("dm_control.suite", "dmc")

    return sorted(f"{domain}-{task}" for domain, task in suite.ALL_TASKS)


def _make_dmc(name: str, seed: Optional[int]) -> gym.Env:
    suite = require("dm_control.suite", "dmc")
    DmControlCompatibilityV0 = require("shimmy.dm_control_compatibility", "dmc").DmControlCompatibilityV0

    domain, task = name.split("-", 1)
    # dm_control seeds its task (initial states) at construction; later `reset(seed=...)` calls reseed it.
    env = DmControlCompatibilityV0(suite.load(domain, task, task_kwargs={"random": seed}))
    return gym.wrappers.FlattenObservation(env)


def make_env(name: str, seed: Optional[int] = None) -> gym.Env:
    """Builds the task `name` with flat float32 observations, actions in [-1, 1] and a 1000-step limit.

    `seed` seeds the first reset (and, for DMC, the task's random state). Raises UnknownEnvironmentError,
    listing the known names, if `name` is neither a Gymnasium MuJoCo id nor a DMC `domain-task`.
    """
    if name in maze2d.MAZE_NAMES:  # Already flat float32, unit action box, its own episode limit.
        env = gym.make(name)
        env.reset(seed=seed)
        return env
    if name in gym.registry:
        require("mujoco", "envs")
        env = gym.make(name, max_episode_steps=MAX_EPISODE_STEPS)
    elif name in dmc_task_names():
        env = gym.wrappers.TimeLimit(_make_dmc(name, seed), MAX_EPISODE_STEPS)
    else:
        known = [*gym_task_names(), *dmc_task_names(), *maze2d.MAZE_NAMES]
        guess = difflib.get_close_matches(name, known, n=1)
        raise UnknownEnvironmentError(f"Unknown environment {name!r}{f' (did you mean {guess[0]}?)' if guess else ''}. "
                                      f"Gymnasium MuJoCo ids: {', '.join(gym_task_names())}. maze2d tasks: "
                                      f"{', '.join(maze2d.MAZE_NAMES)}. DeepMind Control tasks: {', '.join(dmc_task_names())}.")
    if not isinstance(env.action_space, gym.spaces.Box) or len(env.action_space.shape) != 1:
        raise UnknownEnvironmentError(f"{name!r} has action space {env.action_space}; only flat continuous actions are "
                                      "supported.")
    with warnings.catch_warnings():  # Gymnasium warns that float64 box bounds become float32: intended here
        warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32")
        env = gym.wrappers.RescaleAction(env, -1.0, 1.0)
        env = ClipToUnitBox(env)
        env = gym.wrappers.DtypeObservation(env, "float32")  # a string: the env spec stays JSON
    env.reset(seed=seed)
    return env
