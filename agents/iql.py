"""Implicit Q-Learning (Kostrikov et al., 2022) as CORL's `iql.py` used by SynthER (paper Appendix D).

Each step, in this order:
1. V: expectile regression of V(s) towards min(Q1, Q2)_target(s, a),
   loss = mean |tau - 1(u < 0)| u^2 with u = Q_target - V(s) and expectile tau 0.7;
2. Q: both critics regress on r + gamma (1 - terminal) V(s'), with V(s') computed *before* step 1;
   then Polyak averaging of the target critics;
3. actor: advantage-weighted regression, loss = mean exp(beta * u) * bc_loss with the advantage u
   from step 1 (pre-update V), exp capped at 100 and beta 3; the actor's learning rate decays
   with a cosine over `max_steps` (1M).

Networks are 256x2 ReLU MLPs with PyTorch-default initialisation, Adam 3e-4 throughout. The actor
is a Gaussian with an unbounded mean and a state-independent log std clipped to [-5, 2] (bc_loss =
-log pi(a|s)); its action is clipped to [-max_action, max_action] only in `act`. Some hopper datasets
use a deterministic tanh actor instead (bc_loss = squared error summed over action dimensions).

Observations are standardised with the real dataset's statistics and, for the datasets listed in
`REWARD_NORMALIZED_DATASETS`, rewards are scaled by 1000 / (max return - min return) of the real
data, both kept in the state and applied to every batch.
"""
import dataclasses
import functools
from typing import Dict, Optional, Sequence, Tuple

import distrax
import flax.linen as nn
import flax.struct as struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.networks import MLP, DeterministicPolicy, StateActionValue, StateValue, ensemble
from agents.training import Batch, dataset_key, jitted_scans, normalization_stats, polyak, stack_seeds

EXP_ADV_MAX = 100.0

# Per-dataset changes to the defaults (CORL's yaml files), keyed by `agents.training.dataset_key`.
DATASET_OVERRIDES = {
    "hopper-medium": {"tau": 0.001, "deterministic_actor": True},
    "hopper-medium-replay": {"tau": 0.001, "deterministic_actor": True},
    "hopper-medium-expert": {"expectile": 0.5, "beta": 6.0},
}
# Datasets whose rewards CORL rescales (pass `reward_scale=locomotion_reward_scale(...)` to `init`).
REWARD_NORMALIZED_DATASETS = ("hopper-medium", "hopper-medium-replay")


@dataclasses.dataclass(frozen=True)
class IQLConfig:
    """Static hyperparameters (hashable, so they live in the state's tree structure)."""

    action_dim: int
    hidden_dims: Tuple[int, ...] = (256, 256)
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    value_lr: float = 3e-4
    discount: float = 0.99
    tau: float = 0.005
    expectile: float = 0.7  # CORL's `iql_tau`.
    beta: float = 3.0
    max_steps: int = 1_000_000  # Length of the actor's cosine learning-rate decay.
    deterministic_actor: bool = False
    max_action: float = 1.0


class GaussianPolicy(nn.Module):
    """N(MLP(s), diag(exp(log_std))) with an unbounded mean and a learned, state-independent log std."""

    action_dim: int
    hidden_dims: Sequence[int]
    log_std_min: float = -5.0
    log_std_max: float = 2.0

    @nn.compact
    def __call__(self, observations: jax.Array) -> distrax.Distribution:
        mean = MLP((*self.hidden_dims, self.action_dim))(observations)
        log_std = self.param("log_std", nn.initializers.zeros, (self.action_dim,))
        std = jnp.exp(jnp.clip(log_std, self.log_std_min, self.log_std_max))
        return distrax.MultivariateNormalDiag(mean, jnp.broadcast_to(std, mean.shape))


class IQLState(struct.PyTreeNode):
    actor_params: Dict
    critic_params: Dict  # Two critics as one ensemble: every leaf has a leading axis of 2.
    target_critic_params: Dict
    value_params: Dict
    actor_opt_state: optax.OptState
    critic_opt_state: optax.OptState
    value_opt_state: optax.OptState
    obs_mean: jax.Array
    obs_std: jax.Array
    reward_scale: jax.Array
    step: jax.Array
    config: IQLConfig = struct.field(pytree_node=False)


def dataset_overrides(name: str) -> Dict:
    """Hyperparameters that differ from the defaults for the dataset `name` (D4RL or Minari id)."""
    return dict(DATASET_OVERRIDES.get(dataset_key(name), {}))


def data_statistics(observations: np.ndarray, rewards: np.ndarray, terminals: np.ndarray, name: str,
                    num_updates: int) -> Dict:
    """`init` arguments computed from the real data and the run: CORL's state statistics, its
    reward scale for the datasets that use one, and an actor LR decay spanning all updates."""
    obs_mean, obs_std = normalization_stats(observations)
    statistics = {"obs_mean": obs_mean, "obs_std": obs_std, "max_steps": num_updates}
    if dataset_key(name) in REWARD_NORMALIZED_DATASETS:
        statistics["reward_scale"] = locomotion_reward_scale(rewards, terminals)
    return statistics


def locomotion_reward_scale(rewards: np.ndarray, terminals: np.ndarray, max_episode_steps: int = 1000) -> float:
    """1000 / (max - min episode return) of the real data, CORL's reward normalisation.

    As CORL, episodes end at a terminal or after `max_episode_steps` transitions (D4RL's
    q-learning datasets carry no timeouts); a trailing unfinished episode is ignored.
    """
    returns, episode_return, episode_length = [], 0.0, 0
    for reward, terminal in zip(np.asarray(rewards, np.float64), np.asarray(terminals)):
        episode_return += reward
        episode_length += 1
        if terminal or episode_length == max_episode_steps:
            returns.append(episode_return)
            episode_return, episode_length = 0.0, 0
    if len(returns) < 2 or max(returns) == min(returns):
        raise ValueError("Reward normalisation needs at least two finished episodes with different returns.")
    return 1000.0 / (max(returns) - min(returns))


def _actor(config: IQLConfig) -> nn.Module:
    if config.deterministic_actor:
        return DeterministicPolicy(config.action_dim, config.hidden_dims)  # tanh output; scaled in `act`.
    return GaussianPolicy(config.action_dim, config.hidden_dims)


def _critic(config: IQLConfig):
    return ensemble(StateActionValue, 2)(config.hidden_dims)


def _value(config: IQLConfig) -> StateValue:
    return StateValue(config.hidden_dims)


def _actor_optimizer(config: IQLConfig) -> optax.GradientTransformation:
    # optax's cosine stays at 0 after `max_steps`; PyTorch's CosineAnnealingLR would rise again.
    return optax.adam(optax.cosine_decay_schedule(config.actor_lr, config.max_steps))


def init(key: jax.Array, obs_dim: int, action_dim: int, obs_mean: Optional[np.ndarray] = None,
         obs_std: Optional[np.ndarray] = None, reward_scale: float = 1.0, **hyperparameters) -> IQLState:
    """A fresh learner. `obs_mean`/`obs_std` come from `agents.training.normalization_stats(real obs)`
    (left out: no state normalisation); `hyperparameters` are `IQLConfig` fields."""
    if "hidden_dims" in hyperparameters:
        hyperparameters["hidden_dims"] = tuple(hyperparameters["hidden_dims"])
    config = IQLConfig(action_dim=action_dim, **hyperparameters)
    actor_key, critic_key, value_key = jax.random.split(key, 3)
    obs, act = jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim))
    actor_params = _actor(config).init(actor_key, obs)
    critic_params = _critic(config).init(critic_key, obs, act)
    value_params = _value(config).init(value_key, obs)
    return IQLState(
        actor_params=actor_params,
        critic_params=critic_params,
        target_critic_params=critic_params,
        value_params=value_params,
        actor_opt_state=_actor_optimizer(config).init(actor_params),
        critic_opt_state=optax.adam(config.critic_lr).init(critic_params),
        value_opt_state=optax.adam(config.value_lr).init(value_params),
        obs_mean=jnp.zeros(obs_dim) if obs_mean is None else jnp.asarray(obs_mean, jnp.float32),
        obs_std=jnp.ones(obs_dim) if obs_std is None else jnp.asarray(obs_std, jnp.float32),
        reward_scale=jnp.asarray(reward_scale, jnp.float32),
        step=jnp.zeros((), jnp.int32),
        config=config,
    )


def normalize_batch(state: IQLState, batch: Batch) -> Batch:
    """The batch with standardised observations and next observations and scaled rewards."""
    return {**batch,
            "observations": (batch["observations"] - state.obs_mean) / state.obs_std,
            "next_observations": (batch["next_observations"] - state.obs_mean) / state.obs_std,
            "rewards": batch["rewards"] * state.reward_scale}


def expectile_loss(diff: jax.Array, expectile: float) -> jax.Array:
    """mean |expectile - 1(diff < 0)| * diff^2 (IQL's asymmetric L2)."""
    weight = jnp.abs(expectile - (diff < 0).astype(diff.dtype))
    return (weight * diff ** 2).mean()


def value_loss(value_params, state: IQLState, batch: Batch):
    """Expectile regression of V(s) on the target critics' min; also returns the advantage."""
    q = _critic(state.config).apply(state.target_critic_params, batch["observations"], batch["actions"]).min(0)
    advantage = q - _value(state.config).apply(value_params, batch["observations"])
    loss = expectile_loss(advantage, state.config.expectile)
    return loss, (advantage, {"value_loss": loss, "advantage_mean": advantage.mean()})


def critic_loss(critic_params, state: IQLState, batch: Batch, next_v: jax.Array):
    """Mean over both critics of the squared error to r + gamma (1 - terminal) V(s')."""
    target = batch["rewards"] + (1.0 - batch["terminals"]) * state.config.discount * next_v
    q = _critic(state.config).apply(critic_params, batch["observations"], batch["actions"])
    loss = ((q - target) ** 2).mean()
    return loss, {"critic_loss": loss, "q_mean": q.mean()}


def actor_loss(actor_params, state: IQLState, batch: Batch, advantage: jax.Array):
    """Advantage-weighted behaviour cloning: mean min(exp(beta * A), 100) * bc_loss."""
    config = state.config
    weights = jnp.minimum(jnp.exp(config.beta * advantage), EXP_ADV_MAX)
    policy = _actor(config).apply(actor_params, batch["observations"])
    if config.deterministic_actor:
        bc_losses = ((policy - batch["actions"]) ** 2).sum(-1)
    else:
        bc_losses = -policy.log_prob(batch["actions"])
    loss = (weights * bc_losses).mean()
    return loss, {"actor_loss": loss, "adv_weight_mean": weights.mean()}


@jax.jit
def update(state: IQLState, batch: Batch, key: jax.Array) -> Tuple[IQLState, Dict[str, jax.Array]]:
    """One IQL step: V, then Q (and its targets), then the actor. IQL's update uses no randomness."""
    del key
    config = state.config
    batch = normalize_batch(state, batch)
    next_v = _value(config).apply(state.value_params, batch["next_observations"])  # Before the V step.

    # --- Value ---
    grads, (advantage, value_metrics) = jax.grad(value_loss, has_aux=True)(state.value_params, state, batch)
    updates, value_opt_state = optax.adam(config.value_lr).update(grads, state.value_opt_state)
    value_params = optax.apply_updates(state.value_params, updates)

    # --- Critics and their targets ---
    grads, critic_metrics = jax.grad(critic_loss, has_aux=True)(state.critic_params, state, batch, next_v)
    updates, critic_opt_state = optax.adam(config.critic_lr).update(grads, state.critic_opt_state)
    critic_params = optax.apply_updates(state.critic_params, updates)
    target_critic_params = polyak(state.target_critic_params, critic_params, config.tau)

    # --- Actor ---
    grads, actor_metrics = jax.grad(actor_loss, has_aux=True)(state.actor_params, state, batch, advantage)
    updates, actor_opt_state = _actor_optimizer(config).update(grads, state.actor_opt_state)
    actor_params = optax.apply_updates(state.actor_params, updates)

    state = state.replace(actor_params=actor_params, critic_params=critic_params,
                          target_critic_params=target_critic_params, value_params=value_params,
                          actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
                          value_opt_state=value_opt_state, step=state.step + 1)
    return state, {**value_metrics, **critic_metrics, **actor_metrics}


update_steps, update_steps_seeds = jitted_scans(update)


def init_seeds(keys: jax.Array, obs_dim: int, action_dim: int, **kwargs) -> IQLState:
    """One learner per key, stacked along a leading seed axis."""
    return stack_seeds(init, keys, obs_dim, action_dim, **kwargs)


@functools.partial(jax.jit, static_argnames="deterministic")
def act(state: IQLState, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Actions for raw observations: the policy's mean (deterministic) or a sample, scaled and clipped
    to [-max_action, max_action]."""
    config = state.config
    policy = _actor(config).apply(state.actor_params, (observations - state.obs_mean) / state.obs_std)
    if config.deterministic_actor:
        action = policy
    else:
        action = policy.mean() if deterministic else policy.sample(seed=key)
    return jnp.clip(config.max_action * action, -config.max_action, config.max_action)
