"""Soft actor-critic with an ensemble of Q functions: SAC (2 Qs) and REDQ (10 Qs) are one learner.

This follows the agent of SynthER's online experiments, REDQ's `REDQSACAgent` (paper Section 4.2):
- a tanh-Gaussian policy and `num_qs` Q networks (hidden (256, 256), ReLU, xavier-uniform weights
  and zero biases everywhere), Adam 3e-4 for all of them, gamma 0.99, Polyak tau 0.005;
- the Q target takes the min over a random subset of `num_min_qs` target Qs (REDQ's M = 2) minus
  alpha * log pi at a fresh next action;
- per environment step, `utd_ratio` critic updates, each on a fresh minibatch, inside one
  `lax.scan`; the policy and the temperature are updated on every `policy_update_delay`-th update
  and on the last one (the original's delay of 20 means once per environment step for UTD <= 20).

The original's quirks are kept by default and can be switched off:
- `initial_alpha=0.2`: alpha is 0.2 until the first temperature update, then exp(log_alpha) with
  log_alpha starting at 0, so it jumps to about 1 (None: exp(log_alpha) from the start);
- `policy_q_reduction="mean"`: the policy maximises the mean over all Qs, also for 2-Q SAC ("min"
  is the usual SAC choice);
- `policy_uses_updated_critic=False`: the policy loss sees the Qs from before this update's
  critic step, and the alpha from before this update's temperature step.
"""
import dataclasses
from functools import lru_cache, partial
from typing import Dict, Optional, Sequence, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from agents.networks import StateActionValue, TanhGaussianPolicy, ensemble
from agents.training import Batch, polyak, stack_seeds
from synther_jax import replay
from synther_jax.nn import constant, xavier_uniform

LOG_PROB_EPSILON = 1e-6  # REDQ's log(1 - tanh(u)^2 + 1e-6) guard, kept for parity.


@dataclasses.dataclass(frozen=True)
class SACConfig:
    """The learner's static settings (hashable, so jitted functions specialise on them)."""

    hidden_dims: Tuple[int, ...] = (256, 256)
    num_qs: int = 2
    num_min_qs: int = 2
    utd_ratio: int = 1
    policy_update_delay: int = 20
    batch_size: int = 256
    discount: float = 0.99
    tau: float = 0.005
    target_entropy: float = -1.0
    policy_q_reduction: str = "mean"
    policy_uses_updated_critic: bool = False


class SACState(flax.struct.PyTreeNode):
    actor: TrainState
    critic: TrainState  # parameters carry a leading axis of size num_qs
    target_critic_params: dict
    temperature: TrainState  # params: {"log_alpha": ()}
    alpha: jax.Array  # the temperature the losses use (see `initial_alpha`)
    step: jax.Array  # critic updates done so far
    config: SACConfig = flax.struct.field(pytree_node=False)


def policy_network(config: SACConfig, action_dim: int) -> nn.Module:
    return TanhGaussianPolicy(action_dim, config.hidden_dims, kernel_init=xavier_uniform, bias_init=constant(0.0))


def critic_network(config: SACConfig, num: int) -> nn.Module:
    """`num` Q functions in one vmapped module; Q values come out as (num, batch)."""
    return ensemble(StateActionValue, num)(config.hidden_dims, kernel_init=xavier_uniform, bias_init=constant(0.0))


@lru_cache(maxsize=None)
def _definitions(config: SACConfig, action_dim: int, learning_rate: float):
    """The networks and the optimiser, shared by learners with equal settings so that their states
    have equal static parts and jitted functions compiled for one are reused for the next."""
    return policy_network(config, action_dim), critic_network(config, config.num_qs), optax.adam(learning_rate)


def init(key: jax.Array, obs_dim: int, action_dim: int, *, hidden_dims: Sequence[int] = (256, 256),
         learning_rate: float = 3e-4, num_qs: int = 2, num_min_qs: int = 2, utd_ratio: int = 1,
         policy_update_delay: int = 20, batch_size: int = 256, discount: float = 0.99, tau: float = 0.005,
         initial_alpha: Optional[float] = 0.2, target_entropy: Optional[float] = None,
         policy_q_reduction: str = "mean", policy_uses_updated_critic: bool = False) -> SACState:
    """A fresh learner. `target_entropy=None` means -action_dim (the original's 'auto')."""
    if not 1 <= num_min_qs <= num_qs:
        raise ValueError(f"num_min_qs={num_min_qs} must lie in [1, num_qs={num_qs}].")
    if policy_q_reduction not in ("mean", "min"):
        raise ValueError(f"policy_q_reduction must be 'mean' or 'min', got {policy_q_reduction!r}.")
    if utd_ratio < 1 or policy_update_delay < 1:
        raise ValueError(f"utd_ratio ({utd_ratio}) and policy_update_delay ({policy_update_delay}) must be >= 1.")
    config = SACConfig(tuple(hidden_dims), num_qs, num_min_qs, utd_ratio, policy_update_delay, batch_size, discount,
                       tau, float(-action_dim if target_entropy is None else target_entropy), policy_q_reduction,
                       policy_uses_updated_critic)
    actor_key, critic_key = jax.random.split(key)
    observations, actions = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
    actor_def, critic_def, adam = _definitions(config, action_dim, learning_rate)
    actor = TrainState.create(apply_fn=actor_def.apply, params=actor_def.init(actor_key, observations), tx=adam)
    critic_params = critic_def.init(critic_key, observations, actions)
    critic = TrainState.create(apply_fn=critic_def.apply, params=critic_params, tx=adam)
    log_alpha = {"log_alpha": jnp.zeros((), jnp.float32)}
    temperature = TrainState.create(apply_fn=None, params=log_alpha, tx=adam)
    alpha = jnp.asarray(1.0 if initial_alpha is None else initial_alpha, jnp.float32)
    target_critic_params = jax.tree.map(jnp.copy, critic_params)  # its own buffers: `update` donates the state
    return SACState(actor, critic, target_critic_params, temperature, alpha, jnp.zeros((), jnp.int32), config)


def init_seeds(keys: jax.Array, obs_dim: int, action_dim: int, **kwargs) -> SACState:
    """One learner per key, stacked along a leading seed axis."""
    return stack_seeds(init, keys, obs_dim, action_dim, **kwargs)


def sample_actions(state: SACState, actor_params: dict, observations: jax.Array, key: jax.Array):
    """Reparameterised actions a = tanh(mu + sigma * eps), eps = normal(key, mu.shape), and their log pi.

    log pi = log N(u; mu, sigma) - sum log(1 - tanh(u)^2 + 1e-6), as REDQ computes it.
    """
    gaussian = state.actor.apply_fn(actor_params, observations).distribution
    mean, std = gaussian.loc, gaussian.scale_diag
    noise = jax.random.normal(key, mean.shape)
    pre_tanh = mean + std * noise
    actions = jnp.tanh(pre_tanh)
    gaussian_log_prob = -0.5 * noise ** 2 - jnp.log(std) - 0.5 * jnp.log(2 * jnp.pi)
    log_probs = jnp.sum(gaussian_log_prob - jnp.log(1.0 - actions ** 2 + LOG_PROB_EPSILON), axis=-1)
    return actions, log_probs


def critic_target(state: SACState, batch: Batch, key: jax.Array) -> Tuple[jax.Array, jax.Array]:
    """y = r + gamma (1 - d) (min over a random subset of target Qs at (s', a') - alpha log pi(a'|s')).

    Returns the targets (B,) and the indices of the target Qs used (num_min_qs,).
    """
    config = state.config
    action_key, subset_key = jax.random.split(key)
    next_actions, next_log_probs = sample_actions(state, state.actor.params, batch["next_observations"], action_key)
    subset = jax.random.choice(subset_key, config.num_qs, (config.num_min_qs,), replace=False)
    subset_params = jax.tree.map(lambda p: p[subset], state.target_critic_params)
    next_qs = critic_network(config, config.num_min_qs).apply(subset_params, batch["next_observations"], next_actions)
    next_values = jnp.min(next_qs, axis=0) - state.alpha * next_log_probs
    targets = batch["rewards"] + config.discount * (1.0 - batch["terminals"]) * next_values
    return targets, subset


def critic_loss(critic_params: dict, state: SACState, batch: Batch, targets: jax.Array):
    """Sum over the Qs of each Q's mean squared error to the shared targets (the original's MSE * num_Q)."""
    qs = state.critic.apply_fn(critic_params, batch["observations"], batch["actions"])
    return jnp.sum(jnp.mean((qs - targets) ** 2, axis=1)), qs


def actor_loss(actor_params: dict, state: SACState, critic_params: dict, batch: Batch, key: jax.Array):
    """mean(alpha log pi(a|s) - Q(s, a)) with a ~ pi, Q reduced over the ensemble by mean (or min)."""
    actions, log_probs = sample_actions(state, actor_params, batch["observations"], key)
    qs = state.critic.apply_fn(critic_params, batch["observations"], actions)
    q = jnp.mean(qs, axis=0) if state.config.policy_q_reduction == "mean" else jnp.min(qs, axis=0)
    return jnp.mean(state.alpha * log_probs - q), log_probs


def temperature_loss(temperature_params: dict, log_probs: jax.Array, target_entropy: float) -> jax.Array:
    """-mean(log_alpha (log pi + target_entropy)): the original differentiates log alpha, not alpha."""
    return -jnp.mean(temperature_params["log_alpha"] * jax.lax.stop_gradient(log_probs + target_entropy))


def update_step(state: SACState, batch: Batch, key: jax.Array, update_policy: jax.Array) -> Tuple[SACState, Dict]:
    """One critic update, the policy and temperature updates when `update_policy`, then Polyak averaging."""
    target_key, actor_key = jax.random.split(key)
    targets, _ = critic_target(state, batch, target_key)
    (q_loss, qs), critic_grads = jax.value_and_grad(critic_loss, has_aux=True)(state.critic.params, state, batch,
                                                                                 targets)
    critic = state.critic.apply_gradients(grads=critic_grads)

    def policy_and_temperature(_):
        critic_params = critic.params if state.config.policy_uses_updated_critic else state.critic.params
        (pi_loss, log_probs), actor_grads = jax.value_and_grad(actor_loss, has_aux=True)(
            state.actor.params, state, critic_params, batch, actor_key)
        alpha_loss, temperature_grads = jax.value_and_grad(temperature_loss)(
            state.temperature.params, log_probs, state.config.target_entropy)
        temperature = state.temperature.apply_gradients(grads=temperature_grads)
        alpha = jnp.exp(temperature.params["log_alpha"])
        metrics = {"actor_loss": pi_loss, "temperature_loss": alpha_loss, "entropy": -jnp.mean(log_probs)}
        return state.actor.apply_gradients(grads=actor_grads), temperature, alpha, metrics

    def keep(_):
        zeros = {"actor_loss": 0.0, "temperature_loss": 0.0, "entropy": 0.0}
        return state.actor, state.temperature, state.alpha, jax.tree.map(jnp.float32, zeros)

    actor, temperature, alpha, policy_metrics = jax.lax.cond(update_policy, policy_and_temperature, keep, None)
    state = state.replace(actor=actor, critic=critic, temperature=temperature, alpha=alpha, step=state.step + 1,
                          target_critic_params=polyak(state.target_critic_params, critic.params, state.config.tau))
    metrics = {"critic_loss": q_loss, "q_mean": jnp.mean(qs), "alpha": alpha,
               "policy_updated": jnp.float32(update_policy), **policy_metrics}
    return state, metrics


@partial(jax.jit, static_argnames="synthetic_ratio", donate_argnums=0)
def update(state: SACState, real: replay.ReplayBuffer, synthetic: Optional[replay.ReplayBuffer], key: jax.Array,
           synthetic_ratio: float = 0.0) -> Tuple[SACState, Dict[str, jax.Array]]:
    """One environment step's worth of learning: `utd_ratio` updates in one scan, each on a fresh
    minibatch mixed from the real and synthetic buffers. Metrics are averaged over the updates
    (the policy's over the updates that changed the policy). The input state is donated: use
    the returned one."""
    config = state.config

    def step(state, inputs):
        index, key = inputs
        batch_key, step_key = jax.random.split(key)
        batch = replay.sample_mixed(real, synthetic, batch_key, config.batch_size, synthetic_ratio)
        update_policy = ((index + 1) % config.policy_update_delay == 0) | (index == config.utd_ratio - 1)
        return update_step(state, batch, step_key, update_policy)

    keys = jax.random.split(key, config.utd_ratio)
    state, metrics = jax.lax.scan(step, state, (jnp.arange(config.utd_ratio), keys))
    num_policy_updates = jnp.sum(metrics["policy_updated"])
    policy_keys = ("actor_loss", "temperature_loss", "entropy")
    averaged = {k: (jnp.sum(v) / num_policy_updates if k in policy_keys else jnp.mean(v)) for k, v in metrics.items()
                if k != "policy_updated"}
    return state, averaged


@partial(jax.jit, static_argnames="deterministic")
def act(state: SACState, observations: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
    """Actions in (-1, 1) for a batch of observations: tanh of the mean when deterministic (evaluation),
    else a sample from the policy."""
    if deterministic:
        return jnp.tanh(state.actor.apply_fn(state.actor.params, observations).distribution.loc)
    return sample_actions(state, state.actor.params, observations, key)[0]
