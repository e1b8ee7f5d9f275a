"""TD3+BC (Fujimoto & Gu, 2021): TD3 whose actor loss adds behaviour cloning,

    actor_loss = -lambda * mean Q1(s, pi(s)) + mean (pi(s) - a)^2,   lambda = alpha / mean |Q1(s, pi(s))|,

with hyperparameters and initialisers as CORL's `td3_bc.py` used by SynthER (paper Appendix D):
two 256x2 ReLU critics and a tanh actor with PyTorch-default initialisation, Adam 3e-4, gamma 0.99,
tau 0.005, target policy noise 0.2 clipped at 0.5 (times max_action), actor and targets updated
every second step, alpha 2.5.

States are standardised with the mean and std (ddof 0, + 1e-3) of the *real* dataset, applied to
`observations` and `next_observations` of every batch (real or synthetic) and to the observations
given to `act`. The statistics live in the learner state, so a checkpoint is self-contained.

A learner is a `TD3BCState` plus pure functions: `init`, `update` (one gradient step),
`update_steps` (K steps in one `lax.scan`), `update_steps_seeds` (the same for a leading seed axis)
and `act`.
"""
import dataclasses
import functools
from typing import Dict, Optional, Tuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.networks import DeterministicPolicy, StateActionValue, ensemble
from agents.training import Batch, dataset_key, jitted_scans, normalization_stats, polyak, stack_seeds

# Paper Table 3's "larger network": three hidden layers of 512 units, trained with batches of 1024.
LARGE_HIDDEN_DIMS = (512, 512, 512)
LARGE_BATCH_SIZE = 1024
# Per-dataset changes to the defaults, by `<env>-<level>`: none, CORL uses one setting everywhere.
DATASET_OVERRIDES: Dict[str, Dict] = {}


@dataclasses.dataclass(frozen=True)
class TD3BCConfig:
    """Static hyperparameters (hashable, so they live in the state's tree structure)."""

    action_dim: int
    hidden_dims: Tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005
    policy_noise: float = 0.2  # Std of the target-policy smoothing noise, in units of max_action.
    noise_clip: float = 0.5  # Its clip, in units of max_action.
    policy_freq: int = 2  # The actor and the targets are updated every `policy_freq` critic steps.
    alpha: float = 2.5
    max_action: float = 1.0


class TD3BCState(struct.PyTreeNode):
    actor_params: Dict
    critic_params: Dict  # Two critics as one ensemble: every leaf has a leading axis of 2.
    target_actor_params: Dict
    target_critic_params: Dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    obs_mean: jax.Array
    obs_std: jax.Array
    step: jax.Array  # Number of updates done so far.
    config: TD3BCConfig = struct.field(pytree_node=False)


def dataset_overrides(name: str) -> Dict:
    """Hyperparameters that differ from the defaults for the dataset `name` (D4RL or Minari id)."""
    return dict(DATASET_OVERRIDES.get(dataset_key(name), {}))


def data_statistics(observations: np.ndarray, rewards: np.ndarray, terminals: np.ndarray, name: str,
                    num_updates: int) -> Dict:
    """`init` arguments computed from the real data: CORL's state normalisation statistics."""
    del rewards, terminals, name, num_updates
    obs_mean, obs_std = normalization_stats(observations)
    return {"obs_mean": obs_mean, "obs_std": obs_std}


def _actor(config: TD3BCConfig) -> DeterministicPolicy:
    return DeterministicPolicy(config.action_dim, config.hidden_dims, config.max_action)


def _critic(config: TD3BCConfig):
    return ensemble(StateActionValue, 2)(config.hidden_dims)


def init(key: jax.Array, obs_dim: int, action_dim: int, obs_mean: Optional[np.ndarray] = None,
         obs_std: Optional[np.ndarray] = None, **hyperparameters) -> TD3BCState:
    """A fresh learner. `obs_mean`/`obs_std` come from `agents.training.normalization_stats(real obs)`;
    leaving them out turns state normalisation off. `hyperparameters` are `TD3BCConfig` fields."""
    if "hidden_dims" in hyperparameters:
        hyperparameters["hidden_dims"] = tuple(hyperparameters["hidden_dims"])
    config = TD3BCConfig(action_dim=action_dim, **hyperparameters)
    actor_key, critic_key = jax.random.split(key)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
    actor_params = _actor(config).init(actor_key, obs)
    critic_params = _critic(config).init(critic_key, obs, act)
    return TD3BCState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_actor_params=actor_params,
        target_critic_params=critic_params,
        actor_opt_state=optax.adam(config.actor_lr).init(actor_params),
        critic_opt_state=optax.adam(config.critic_lr).init(critic_params),
        obs_mean=jnp.zeros(obs_dim) if obs_mean is None else jnp.asarray(obs_mean, jnp.float32),
        obs_std=jnp.ones(obs_dim) if obs_std is None else jnp.asarray(obs_std, jnp.float32),
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


def normalize_batch(state: TD3BCState, batch: Batch) -> Batch:
    """The batch with observations and next observations standardised by the state's statistics."""
    return {**batch,
            "observations": (batch["observations"] - state.obs_mean) / state.obs_std,
            "next_observations": (batch["next_observations"] - state.obs_mean) / state.obs_std}


def critic_loss(critic_params, state: TD3BCState, batch: Batch, noise: jax.Array):
    """Sum over both critics of the mean squared TD error to the clipped double-Q target.

    `batch` is already normalised; `noise` is standard normal of the actions' shape (the target
    policy smoothing noise before scaling and clipping).
    """
    config = state.config
    noise = jnp.clip(config.policy_noise * noise, -config.noise_clip, config.noise_clip) * config.max_action
    next_actions = _actor(config).apply(state.target_actor_params, batch["next_observations"]) + noise
    next_actions = jnp.clip(next_actions, -config.max_action, config.max_action)
    next_q = _critic(config).apply(state.target_critic_params, batch["next_observations"], next_actions).min(0)
    target = batch["rewards"] + (1.0 - batch["terminals"]) * config.discount * next_q
    q = _critic(config).apply(critic_params, batch["observations"], batch["actions"])
    loss = ((q - target) ** 2).mean(axis=1).sum()
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(actor_params, critic_params, state: TD3BCState, batch: Batch):
    """-lambda * mean Q1(s, pi(s)) + mean squared error to the dataset actions (batch normalised)."""
    config = state.config
    pi = _actor(config).apply(actor_params, batch["observations"])
    first_critic = jax.tree.map(lambda p: p[0], critic_params)  # Only Q1 trains the actor.
    q = StateActionValue(config.hidden_dims).apply(first_critic, batch["observations"], pi)
    lmbda = config.alpha / jax.lax.stop_gradient(jnp.abs(q).mean())
    bc_loss = ((pi - batch["actions"]) ** 2).mean()
    loss = -lmbda * q.mean() + bc_loss
    return loss, {"actor_loss": loss, "bc_loss": bc_loss, "lambda": lmbda}


@jax.jit
def update(state: TD3BCState, batch: Batch, key: jax.Array) -> Tuple[TD3BCState, Dict[str, jax.Array]]:
    """One TD3+BC step: the critics; then, every `policy_freq` steps, the actor and the targets."""
    config = state.config
    batch = normalize_batch(state, batch)

    # --- Critics ---
    noise = jax.random.normal(key, batch["actions"].shape)
    grads, critic_metrics = jax.grad(critic_loss, has_aux=True)(state.critic_params, state, batch, noise)
    updates, critic_opt_state = optax.adam(config.critic_lr).update(grads, state.critic_opt_state)
    critic_params = optax.apply_updates(state.critic_params, updates)
    step = state.step + 1

    # --- Delayed actor and target updates (the actor sees the critics just updated, as CORL) ---
    # Computed every step and kept only every `policy_freq` steps: a select, rather than lax.cond,
    # because seeds are vmapped (where lax.cond becomes a slower select of both branches anyway);
    # the reported actor loss is then defined on every step.
    grads, actor_metrics = jax.grad(actor_loss, has_aux=True)(state.actor_params, critic_params, state, batch)
    updates, new_actor_opt_state = optax.adam(config.actor_lr).update(grads, state.actor_opt_state)
    new_actor_params = optax.apply_updates(state.actor_params, updates)
    updated = (new_actor_params, new_actor_opt_state, polyak(state.target_actor_params, new_actor_params, config.tau),
               polyak(state.target_critic_params, critic_params, config.tau))
    kept = (state.actor_params, state.actor_opt_state, state.target_actor_params, state.target_critic_params)
    is_actor_step = step % config.policy_freq == 0
    actor_params, actor_opt_state, target_actor_params, target_critic_params = jax.tree.map(
        lambda new, old: jnp.where(is_actor_step, new, old), updated, kept)
    state = state.replace(actor_params=actor_params, critic_params=critic_params,
                          target_actor_params=target_actor_params, target_critic_params=target_critic_params,
                          actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state, step=step)
    return state, {**critic_metrics, **actor_metrics}


update_steps, update_steps_seeds = jitted_scans(update)


def init_seeds(keys: jax.Array, obs_dim: int, action_dim: int, **kwargs) -> TD3BCState:
    """One learner per key, stacked along a leading seed axis."""
    return stack_seeds(init, keys, obs_dim, action_dim, **kwargs)


@functools.partial(jax.jit, static_argnames="deterministic")
def act(state: TD3BCState, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """The actor's action for raw (unnormalised) observations. TD3+BC's policy is deterministic and
    offline training needs no exploration noise, so `key` and `deterministic` do not change it."""
    del key, deterministic
    return _actor(state.config).apply(state.actor_params, (observations - state.obs_mean) / state.obs_std)
