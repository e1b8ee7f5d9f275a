"""Policy evaluation for many seeds at once in one Gymnasium vector environment.

`evaluate` runs `num_episodes` episodes for each of `num_seeds` agents side by side: one
sub-environment per (seed, episode), one batched, jitted policy call per step for all of them.
Sub-environment `i = seed_index * num_episodes + episode` is seeded with `seed + i`, so a result
can be reproduced by a plain rollout of `gym.make(env_id)` reset with that seed.

Gymnasium's vector environments reset a finished sub-environment on the following step
(autoreset), so every sub-environment's return is frozen at its first `terminated or truncated`
and later steps are ignored. Returns can be turned into D4RL-normalised scores with
`synther_jax.scores.normalized_score` (the default `score_fn`).
"""
import dataclasses
import functools
from typing import Callable, Dict, Optional

import jax
import jax.numpy as jnp
import numpy as np

from synther_jax import sharding
from synther_jax.errors import require
from synther_jax.progress import Progress
from synther_jax.scores import normalized_score

gym = require("gymnasium", "envs")

# act(state, observations, key, deterministic) -> actions, as every learner in `agents/` exposes it.
ActFn = Callable[..., jax.Array]
VectorEnvFactory = Callable[[str, int], gym.vector.VectorEnv]
ScoreFn = Callable[[str, np.ndarray], np.ndarray]


def gymnasium_vector_env(env_id: str, num_envs: int) -> gym.vector.VectorEnv:
    """`num_envs` copies of the Gymnasium environment `env_id` stepped in this process."""
    return gym.make_vec(env_id, num_envs=num_envs, vectorization_mode="sync")


@dataclasses.dataclass(frozen=True)
class EvaluationResult:
    """Episode returns and lengths of shape (num_seeds, num_episodes), and normalised scores if computed."""

    returns: np.ndarray
    lengths: np.ndarray
    scores: Optional[np.ndarray] = None

    @property
    def seed_returns(self) -> np.ndarray:
        """Mean return of each seed, shape (num_seeds,)."""
        return self.returns.mean(1)

    @property
    def seed_scores(self) -> Optional[np.ndarray]:
        """Mean normalised score of each seed, shape (num_seeds,), or None."""
        return None if self.scores is None else self.scores.mean(1)

    def summary(self) -> Dict[str, float]:
        """Mean and standard deviation (ddof 0) over seeds of the per-seed means, as the paper reports."""
        out = {"return_mean": float(self.seed_returns.mean()), "return_std": float(self.seed_returns.std())}
        if self.scores is not None:
            out.update(score_mean=float(self.seed_scores.mean()), score_std=float(self.seed_scores.std()))
        return out


@functools.lru_cache(maxsize=None)
def _seed_batched_policy(act: ActFn, deterministic: bool):
    """act vmapped over the seed axis and jitted once per learner (the parameters stay arguments)."""
    return jax.jit(jax.vmap(lambda state, obs, key: act(state, obs, key, deterministic=deterministic)))


def evaluate(act: ActFn, states, env_id: str, num_episodes: int = 10, seed: int = 0,
             key: Optional[jax.Array] = None, deterministic: bool = True,
             make_vec_env: VectorEnvFactory = gymnasium_vector_env,
             score_fn: Optional[ScoreFn] = normalized_score, progress: bool = False) -> EvaluationResult:
    """Runs `num_episodes` episodes per seed of the learners `states` (leading seed axis) in `env_id`.

    `act` is a learner's `act` function; `key` seeds stochastic policies (needed only when
    `deterministic` is False). `make_vec_env(env_id, num_envs)` builds the environments (pass your
    own for wrapped or non-Gymnasium tasks; each episode must end, e.g. by a time limit).
    `score_fn(env_id, returns)` gives normalised scores; None skips them.
    """
    if getattr(states, "step", None) is None or jnp.ndim(states.step) != 1:
        raise ValueError("evaluate needs learner states with a leading seed axis (a `step` of shape (num_seeds,)): "
                         "build them with the learner's init_seeds, or add the axis with "
                         "jax.tree.map(lambda x: x[None], state).")
    num_seeds = states.step.shape[0]
    num_envs = num_seeds * num_episodes
    policy = _seed_batched_policy(act, deterministic)
    key = jax.random.PRNGKey(seed) if key is None else key
    envs = make_vec_env(env_id, num_envs)
    try:
        observations, _ = envs.reset(seed=seed)
        returns, lengths = np.zeros(num_envs), np.zeros(num_envs, np.int64)
        running = np.ones(num_envs, bool)
        with Progress(None, f"evaluating {env_id}", unit="step", enabled=progress, leave=False) as bar:
            while running.any():
                key, step_key = jax.random.split(key)
                # Host arrays in and out: in a multi-process job the seeds' states span the processes,
                # and each process steps every environment with the gathered actions.
                obs = np.asarray(observations, np.float32).reshape(num_seeds, num_episodes, -1)
                actions = policy(states, obs, jax.random.split(step_key, num_seeds))
                actions = sharding.to_host(actions).astype(np.float64).reshape(num_envs, -1)
                observations, rewards, terminated, truncated, _ = envs.step(actions)
                returns += np.where(running, rewards, 0.0)
                lengths += running
                running &= ~(terminated | truncated)
                bar.update()
    finally:
        envs.close()
    returns, lengths = returns.reshape(num_seeds, num_episodes), lengths.reshape(num_seeds, num_episodes)
    scores = None if score_fn is None else np.asarray(score_fn(env_id, returns), np.float64)
    return EvaluationResult(returns=returns, lengths=lengths, scores=scores)
