"""Physical validity: do transitions obey the simulator's dynamics? (paper Figure 5, after Lu et al. 2022)

For the MuJoCo locomotion tasks (Hopper, Walker2d, HalfCheetah; Gymnasium v4 and v5) an observation
is obs = qpos[1:] ++ qvel, so the simulator state it describes can be rebuilt: qpos = [x, obs[:nq-1]],
qvel = obs[nq-1:]. We set that state, apply the transition's action with the environment's own
`step`, and compare the simulator's next observation and reward with the transition's.

- The x position (qpos[0], the root's slide joint along the floor) is not observed. It does not
  matter: the floor is an infinite plane and the root slides freely, so the dynamics are invariant to
  translation in x, and the reward uses only the change of x over the step (forward velocity). We
  put x = 0.
- Hopper and Walker2d clip the observed velocities to [-10, 10]; HalfCheetah does not clip. An
  observation with a velocity at (or, for synthetic data, beyond) the bound does not say what the
  true velocity was, so the state cannot be restored exactly: such transitions are flagged
  `restorable = False` and left out of the summary figures (their count is reported). A velocity
  strictly beyond the bound, in the observation or the next observation, is one the environment
  can never report: such transitions are also counted as `impossible` (real data has none).
- Everything else is restored exactly up to float32 rounding of the stored observation, so real
  transitions come back with errors of about 1e-6 or less (see tests/test_dynamics.py).

The maze2d tasks (`synther_jax.envs.maze2d`) observe their whole state (x, y, vx, vy), so every
transition is restorable: PointMaze clips the velocity to +-5 before each step, which a restored
state goes through just as the original did.

The dynamics error of a transition is the mean squared error over the (o + 1) numbers
[next_observation, reward], in the environment's own units (the paper's "dynamics MSE").
"""
import dataclasses
from typing import Dict, List, Optional

import numpy as np

from synther_jax.data.transitions import Transitions
from synther_jax.envs import maze2d
from synther_jax.errors import require
from synther_jax.progress import Progress

gym = require("gymnasium", "envs")
mujoco = require("mujoco", "envs")

# Environments whose observation is qpos[1:] ++ qvel, with the velocity clip each applies (None: no clip).
VELOCITY_CLIP = {"Hopper": 10.0, "Walker2d": 10.0, "HalfCheetah": None}
SUPPORTED_VERSIONS = ("v4", "v5")


def supports(env_id: Optional[str]) -> bool:
    """Whether physical validity can be measured for this Gymnasium id."""
    if env_id in maze2d.MAZE_NAMES:
        return True
    family, _, version = (env_id or "").partition("-")
    return family in VELOCITY_CLIP and version in SUPPORTED_VERSIONS


def _family(env_id: str) -> str:
    if not supports(env_id):
        raise ValueError(f"Physical validity is implemented for {sorted(VELOCITY_CLIP)} with versions "
                         f"{SUPPORTED_VERSIONS} (e.g. 'Walker2d-v5'), not {env_id!r}.")
    return env_id.partition("-")[0]


def _make_env(env_id: str) -> gym.Env:
    """The bare MuJoCo environment (no time limit or wrappers): we only use set_state and step."""
    env = gym.make(env_id).unwrapped
    env.reset(seed=0)
    return env


def observation_names(env_id: str) -> List[str]:
    """A readable name for every observation dimension, from the model's joint names
    (e.g. 'rootz pos', 'thigh_joint vel')."""
    if env_id in maze2d.MAZE_NAMES:
        return ["x", "y", "x vel", "y vel"]
    _family(env_id)
    model = _make_env(env_id).model
    joints = [mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, j) for j in range(model.njnt)]
    if model.nq != model.njnt or model.nv != model.njnt:
        raise ValueError(f"{env_id}: expected one position and one velocity per joint.")
    return [f"{name} pos" for name in joints[1:]] + [f"{name} vel" for name in joints]


def _velocities(observations: np.ndarray) -> np.ndarray:
    num_positions = (observations.shape[1] - 1) // 2  # nq - 1 positions, nv = nq velocities
    return np.abs(observations[:, num_positions:])


def restorable(env_id: str, observations: np.ndarray) -> np.ndarray:
    """(N,) bool: True where the observation fixes the simulator state exactly (no clipped velocity)."""
    clip = None if env_id in maze2d.MAZE_NAMES else VELOCITY_CLIP[_family(env_id)]
    if clip is None:
        return np.ones(len(observations), dtype=bool)
    return np.all(_velocities(observations) < clip, axis=1)


def impossible(env_id: str, data: Transitions) -> np.ndarray:
    """(N,) bool: True where the observation or next observation has a velocity beyond the clip."""
    clip = None if env_id in maze2d.MAZE_NAMES else VELOCITY_CLIP[_family(env_id)]
    if clip is None:
        return np.zeros(len(data), dtype=bool)
    return (np.any(_velocities(data.observations) > clip, axis=1)
            | np.any(_velocities(data.next_observations) > clip, axis=1))


def simulate(env_id: str, observations: np.ndarray, actions: np.ndarray,
             progress: bool = True) -> Dict[str, np.ndarray]:
    """What the simulator does from each observation's state under each action.

    Returns float64 `next_observations` (N, o), `rewards` (N,) and bool `terminals` (N,).
    """
    if env_id in maze2d.MAZE_NAMES:
        return _simulate_maze(env_id, observations, actions, progress)
    env = _make_env(env_id)
    nq, nv = env.model.nq, env.model.nv
    if observations.shape[1] != nq - 1 + nv or actions.shape[1] != env.action_space.shape[0]:
        raise ValueError(f"{env_id} has observations of size {nq - 1 + nv} and actions of size "
                         f"{env.action_space.shape[0]}, but the data has {observations.shape[1]} and "
                         f"{actions.shape[1]}: is this the right environment?")
    n = len(observations)
    next_observations = np.zeros((n, observations.shape[1]))
    rewards, terminals = np.zeros(n), np.zeros(n, dtype=bool)
    for i in Progress(n, f"simulating {env_id}", unit="row", enabled=progress, leave=False).track(range(n)):
        qpos = np.concatenate([[0.0], observations[i, :nq - 1]])
        env.set_state(qpos, observations[i, nq - 1:].astype(np.float64))
        next_observations[i], rewards[i], terminals[i], _, _ = env.step(actions[i].astype(np.float64))
    return {"next_observations": next_observations, "rewards": rewards, "terminals": terminals}


def _simulate_maze(env_id: str, observations: np.ndarray, actions: np.ndarray, progress: bool) -> Dict[str, np.ndarray]:
    if observations.shape[1] != 4 or actions.shape[1] != 2:
        raise ValueError(f"{env_id} has observations of size 4 and actions of size 2, but the data has "
                         f"{observations.shape[1]} and {actions.shape[1]}: is this the right environment?")
    env = maze2d.Maze2dEnv(env_id)
    env.reset(seed=0)
    n = len(observations)
    next_observations, rewards = np.zeros((n, 4)), np.zeros(n)
    for i in Progress(n, f"simulating {env_id}", unit="row", enabled=progress, leave=False).track(range(n)):
        env.set_state(observations[i])
        env.step(actions[i])
        next_observations[i] = env.point_maze.point_env.state_vector()  # float64, not the float32 observation
        rewards[i] = maze2d.sparse_reward(env_id, next_observations[i, :2])
    env.close()
    return {"next_observations": next_observations, "rewards": rewards, "terminals": np.zeros(n, dtype=bool)}


@dataclasses.dataclass(frozen=True)
class DynamicsErrors:
    """Per-transition comparison with the simulator (all arrays of shape (N,))."""

    dynamics_mse: np.ndarray       # mean squared error over [next_observation, reward]
    next_observation_mse: np.ndarray
    reward_squared_error: np.ndarray
    terminal_agrees: np.ndarray    # the transition's terminal flag equals the simulator's
    restorable: np.ndarray         # False where a clipped velocity hides the true state
    impossible: np.ndarray         # a velocity beyond the clip, which the environment never reports

    def summary(self) -> Dict[str, float]:
        """Means and medians over the restorable transitions, and how many were left out."""
        keep = self.restorable
        summary = {"num_transitions": int(len(keep)), "num_not_restorable": int(np.sum(~keep)),
                   "num_impossible": int(np.sum(self.impossible))}
        if not np.any(keep):
            return summary
        for name in ("dynamics_mse", "next_observation_mse", "reward_squared_error"):
            values = getattr(self, name)[keep]
            summary[f"{name}_mean"] = float(np.mean(values))
            summary[f"{name}_median"] = float(np.median(values))
        summary["terminal_accuracy"] = float(np.mean(self.terminal_agrees[keep]))
        return summary


def dynamics_errors(env_id: str, data: Transitions, progress: bool = True) -> DynamicsErrors:
    """Replays every transition of `data` in the simulator and measures how far it is from the truth."""
    truth = simulate(env_id, data.observations, data.actions, progress)
    next_observation_se = (truth["next_observations"] - data.next_observations) ** 2
    reward_se = (truth["rewards"] - data.rewards) ** 2
    num_values = data.obs_dim + 1
    return DynamicsErrors(
        dynamics_mse=(next_observation_se.sum(axis=1) + reward_se) / num_values,
        next_observation_mse=next_observation_se.mean(axis=1),
        reward_squared_error=reward_se,
        terminal_agrees=truth["terminals"] == (data.terminals > 0.5),
        restorable=restorable(env_id, data.observations),
        impossible=impossible(env_id, data),
    )
