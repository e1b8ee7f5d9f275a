"""EDAC (An et al., 2021): SAC with an ensemble of N critics and a gradient-diversity penalty, as
CORL's `edac.py` used by SynthER (paper Appendix D).

The critic loss is sum_i mean_b (Q_i(s, a) - y)^2 + eta * diversity, with the SAC target
y = r + gamma (1 - terminal) (min_i Q_i_target(s', a') - alpha log pi(a'|s')), and

    diversity = 1 / (N - 1) * mean_b sum_{i != j} <g_i(s, a), g_j(s, a)>,   g_i = grad_a Q_i / |grad_a Q_i|,

which pushes the critics' action gradients apart. Each step updates, in this order (EDAC's, not
SAC's usual one): the temperature alpha, the actor (with the new alpha), then the critics (with
the new actor and alpha) and their Polyak targets.

Networks: 3x256 ReLU MLPs; the N critics are one vmapped ensemble (10, or 50 for hopper); hidden
biases 0.1, critic output layer U(+-3e-3), actor mean and log-std heads U(+-1e-3), log std clipped
to [-5, 2]; Adam 3e-4 everywhere; target entropy -action_dim; log alpha starts at 0. No state or
reward normalisation.
"""
import dataclasses
import functools
from typing import Dict, Tuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.networks import StateActionValue, TanhGaussianPolicy, ensemble
from agents.training import Batch, dataset_key, jitted_scans, polyak, stack_seeds
from synther_jax.nn import constant, uniform

# Per-dataset changes to the defaults (CORL's yaml files), keyed by task or by
# `agents.training.dataset_key`; a task's entry applies to all its levels (hopper: 50 critics).
DATASET_OVERRIDES = {
    "hopper": {"num_critics": 50},
    "halfcheetah-medium-expert": {"eta": 5.0},
    "walker2d-medium-expert": {"eta": 5.0},
    "maze2d": {"eta": 0.1},  # CORL's configs/offline/edac/maze2d/*.yaml (10 critics, as the default)
}


@dataclasses.dataclass(frozen=True)
class EDACConfig:
    """Static hyperparameters (hashable, so they live in the state's tree structure)."""

    action_dim: int
    hidden_dims: Tuple[int, ...] = (256, 256, 256)
    num_critics: int = 10
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    alpha_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 5e-3
    eta: float = 1.0
    max_action: float = 1.0


class EDACState(struct.PyTreeNode):
    actor_params: Dict
    critic_params: Dict  # Every leaf has a leading axis of num_critics.
    target_critic_params: Dict
    log_alpha: jax.Array
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    alpha_opt_state: optax.OptState
    step: jax.Array
    config: EDACConfig = struct.field(pytree_node=False)


def dataset_overrides(name: str) -> Dict:
    """Hyperparameters that differ from the defaults for the dataset `name` (D4RL or Minari id)."""
    key = dataset_key(name)
    return {**DATASET_OVERRIDES.get(key.split("-")[0], {}), **DATASET_OVERRIDES.get(key, {})}


def data_statistics(observations: np.ndarray, rewards: np.ndarray, terminals: np.ndarray, name: str,
                    num_updates: int) -> Dict:
    """`init` arguments computed from the real data: none, EDAC normalises nothing (as CORL)."""
    del observations, rewards, terminals, name, num_updates
    return {}


def _vectorized_linear_kernel(key, shape, dtype, fan_in):
    """U(+-1/sqrt(fan_out)): CORL's VectorizedLinear stores kernels as (in, out), so PyTorch's default
    rule reads the output width as the fan-in. Kept for parity (it only changes the first layer)."""
    del fan_in
    return uniform(1.0 / shape[-1] ** 0.5)(key, shape, dtype, shape[-1])


def _actor(config: EDACConfig) -> TanhGaussianPolicy:
    return TanhGaussianPolicy(config.action_dim, config.hidden_dims, log_std_min=-5.0, log_std_max=2.0,
                              bias_init=constant(0.1), head_init=uniform(1e-3))


def _critic_member(config: EDACConfig) -> StateActionValue:
    """One critic; its parameters are one slice of the ensemble's."""
    return StateActionValue(config.hidden_dims, kernel_init=_vectorized_linear_kernel, bias_init=constant(0.1),
                            final_kernel_init=uniform(3e-3))


def _critic(config: EDACConfig):
    member = _critic_member(config)
    return ensemble(StateActionValue, config.num_critics)(
        member.hidden_dims, kernel_init=member.kernel_init, bias_init=member.bias_init,
        final_kernel_init=member.final_kernel_init)


def init(key: jax.Array, obs_dim: int, action_dim: int, **hyperparameters) -> EDACState:
    """A fresh learner; `hyperparameters` are `EDACConfig` fields."""
    if "hidden_dims" in hyperparameters:
        hyperparameters["hidden_dims"] = tuple(hyperparameters["hidden_dims"])
    config = EDACConfig(action_dim=action_dim, **hyperparameters)
    if config.num_critics < 2:
        raise ValueError(f"EDAC needs num_critics >= 2 for its diversity term, got {config.num_critics}.")
    actor_key, critic_key = jax.random.split(key)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
    actor_params = _actor(config).init(actor_key, obs)
    critic_params = _critic(config).init(critic_key, obs, act)
    log_alpha = jnp.zeros((), jnp.float32)
    return EDACState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        log_alpha=log_alpha,
        actor_opt_state=optax.adam(config.actor_lr).init(actor_params),
        critic_opt_state=optax.adam(config.critic_lr).init(critic_params),
        alpha_opt_state=optax.adam(config.alpha_lr).init(log_alpha),
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


def _sample_actions(actor_params, config: EDACConfig, observations: jax.Array, key: jax.Array):
    """Reparameterised actions (scaled by max_action) and their log-probabilities.

    distrax's tanh log-determinant is the exact, stable one; CORL adds 1e-6 inside log(1 - tanh^2),
    which differs only for saturated actions.
    """
    actions, log_probs = _actor(config).apply(actor_params, observations).sample_and_log_prob(seed=key)
    return config.max_action * actions, log_probs


def alpha_loss(log_alpha, state: EDACState, batch: Batch, key: jax.Array):
    """-log alpha * (log pi(a|s) + target entropy), a ~ pi (no gradient to the actor)."""
    _, log_probs = _sample_actions(state.actor_params, state.config, batch["observations"], key)
    loss = (-log_alpha * (jax.lax.stop_gradient(log_probs) - state.config.action_dim)).mean()
    return loss, {"alpha_loss": loss}


def actor_loss(actor_params, state: EDACState, batch: Batch, key: jax.Array):
    """mean alpha log pi(a|s) - min_i Q_i(s, a), a ~ pi reparameterised."""
    actions, log_probs = _sample_actions(actor_params, state.config, batch["observations"], key)
    q = _critic(state.config).apply(state.critic_params, batch["observations"], actions)
    loss = (jnp.exp(state.log_alpha) * log_probs - q.min(0)).mean()
    return loss, {"actor_loss": loss, "batch_entropy": -log_probs.mean(), "q_policy_std": q.std(0, ddof=1).mean()}


def diversity_loss(critic_params, config: EDACConfig, observations: jax.Array, actions: jax.Array) -> jax.Array:
    """EDAC's penalty: summed pairwise cosine similarity of the critics' action gradients, per sample."""

    def action_gradients(member_params):  # (B, A): grad_a Q_i(s_b, a_b) for each sample.
        return jax.grad(lambda a: _critic_member(config).apply(member_params, observations, a).sum())(actions)

    grads = jax.vmap(action_gradients)(critic_params)  # (N, B, A)
    grads = grads / (jnp.linalg.norm(grads, axis=-1, keepdims=True) + 1e-10)
    cosines = jnp.einsum("iba,jba->bij", grads, grads)
    off_diagonal = cosines * (1.0 - jnp.eye(config.num_critics))
    return off_diagonal.sum((1, 2)).mean() / (config.num_critics - 1)


def critic_loss(critic_params, state: EDACState, batch: Batch, key: jax.Array):
    """sum_i mean_b (Q_i(s, a) - y)^2 + eta * diversity, y the entropy-regularised min-target."""
    config = state.config
    next_actions, next_log_probs = _sample_actions(state.actor_params, config, batch["next_observations"], key)
    next_q = _critic(config).apply(state.target_critic_params, batch["next_observations"], next_actions).min(0)
    next_q = next_q - jnp.exp(state.log_alpha) * next_log_probs
    target = jax.lax.stop_gradient(batch["rewards"] + config.discount * (1.0 - batch["terminals"]) * next_q)
    q = _critic(config).apply(critic_params, batch["observations"], batch["actions"])
    td_loss = ((q - target) ** 2).mean(1).sum()
    diversity = diversity_loss(critic_params, config, batch["observations"], batch["actions"])
    loss = td_loss + config.eta * diversity
    return loss, {"critic_loss": loss, "diversity_loss": diversity, "q_mean": q.mean()}


@jax.jit
def update(state: EDACState, batch: Batch, key: jax.Array) -> Tuple[EDACState, Dict[str, jax.Array]]:
    """One EDAC step: alpha, then the actor, then the critics and their targets."""
    config = state.config
    alpha_key, actor_key, critic_key = jax.random.split(key, 3)

    # --- Temperature ---
    grads, alpha_metrics = jax.grad(alpha_loss, has_aux=True)(state.log_alpha, state, batch, alpha_key)
    updates, alpha_opt_state = optax.adam(config.alpha_lr).update(grads, state.alpha_opt_state)
    state = state.replace(log_alpha=optax.apply_updates(state.log_alpha, updates), alpha_opt_state=alpha_opt_state)

    # --- Actor (sees the new alpha) ---
    grads, actor_metrics = jax.grad(actor_loss, has_aux=True)(state.actor_params, state, batch, actor_key)
    updates, actor_opt_state = optax.adam(config.actor_lr).update(grads, state.actor_opt_state)
    state = state.replace(actor_params=optax.apply_updates(state.actor_params, updates),
                          actor_opt_state=actor_opt_state)

    # --- Critics (see the new actor and alpha) and their targets ---
    grads, critic_metrics = jax.grad(critic_loss, has_aux=True)(state.critic_params, state, batch, critic_key)
    updates, critic_opt_state = optax.adam(config.critic_lr).update(grads, state.critic_opt_state)
    critic_params = optax.apply_updates(state.critic_params, updates)
    state = state.replace(critic_params=critic_params, critic_opt_state=critic_opt_state,
                          target_critic_params=polyak(state.target_critic_params, critic_params, config.tau),
                          step=state.step + 1)
    return state, {**alpha_metrics, **actor_metrics, **critic_metrics, "alpha": jnp.exp(state.log_alpha)}


update_steps, update_steps_seeds = jitted_scans(update)


def init_seeds(keys: jax.Array, obs_dim: int, action_dim: int, **kwargs) -> EDACState:
    """One learner per key, stacked along a leading seed axis."""
    return stack_seeds(init, keys, obs_dim, action_dim, **kwargs)


@functools.partial(jax.jit, static_argnames="deterministic")
def act(state: EDACState, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """max_action * tanh(mean) when deterministic (evaluation), else a sample from the policy."""
    config = state.config
    policy = _actor(config).apply(state.actor_params, observations)
    if deterministic:
        return config.max_action * jnp.tanh(policy.distribution.loc)
    return config.max_action * policy.sample(seed=key)
