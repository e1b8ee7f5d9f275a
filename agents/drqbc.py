"""DrQ+BC (Lu et al., 2022, V-D4RL's `drqbc/drqv2.py`): DrQ-v2 whose actor loss adds behaviour cloning,

    actor_loss = -alpha / mean|Q| * mean Q(s, a~pi) + mean (a~pi - a_data)^2,   Q = min(Q1, Q2),

on stacks of 3 uint8 frames (networks in `agents.pixel_networks`). Each update: both frames of
the transition are randomly shifted (independently); the critic's TD loss trains the critic
(trunk and twin heads) and the encoder; the actor sees the encoding through a stop-gradient and
the critic just updated; the target critic is a Polyak average (tau 0.01) applied to the same
encoder's features. Actions are sampled with the scheduled std (1.0 -> 0.1) and noise clip 0.3.
Hyperparameters are V-D4RL's offline config: Adam 1e-4 everywhere, gamma 0.99, alpha 2.5.

V-D4RL runs one update every second loop step and schedules the std over 250K loop steps; here
`step` counts updates, so the schedule spans 125K updates (the same curve).

Latent SynthER (paper Appendix E): after training on pixels, `begin_latent_stage` freezes the
encoder and both trunks, and `update_latent` trains only the heads on latent transitions
`{actor, critic, actions, rewards, next_actor, next_critic}` (trunk features of h = f(aug(s)) and
h' = f(aug(s'))). There the target critic reads the online critic trunk's features of s': a latent
row carries no target-trunk features, and with the trunk frozen its Polyak average would converge
to it anyway. Latent rows carry no discount: DMC tasks never terminate, so it is 1.

A learner is a `DrQBCState` plus pure functions: `init`, `update`, `update_steps` (K updates in
one `lax.scan`, minibatches stacked from the frame store on device), `update_steps_seeds` (a
leading seed axis), `act`, `features`, and the latent stage's counterparts.
"""
import dataclasses
from typing import Dict, Optional, Tuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from agents import pixel_networks
from agents.pixel_networks import (Encoder, adam_step, config_optimizer, config_policy, config_trunk,
                                   encoder_output_dim, random_shift, sample_action, scheduled_std, twin_q_head)
from agents.training import Batch, jitted_scans, polyak, stack_seeds
from synther_jax.data.pixel_datasets import sample_batch as sample_pixel_batch

TRUNKS = ("actor", "critic")  # the latent row's feature blocks, in order


@dataclasses.dataclass(frozen=True)
class DrQBCConfig:
    """Static hyperparameters (V-D4RL's offline DrQ+BC config)."""

    action_dim: int
    feature_dim: int = 50
    hidden_dim: int = 1024
    learning_rate: float = 1e-4
    discount: float = 0.99
    critic_tau: float = 0.01
    std_start: float = 1.0
    std_end: float = 0.1
    std_steps: int = 125_000  # updates: 250K loop steps at one update per two loop steps
    std_clip: float = 0.3
    alpha: float = 2.5
    image_pad: int = 4


class DrQBCState(struct.PyTreeNode):
    encoder_params: Dict
    actor_params: Dict  # {"trunk": ..., "head": ...}
    critic_params: Dict  # {"trunk": ..., "head": ...}; the head holds two Q MLPs (leading axis 2)
    target_critic_params: Dict
    encoder_opt_state: optax.OptState
    actor_opt_state: optax.OptState  # of the whole actor; of the head only in the latent stage
    critic_opt_state: optax.OptState
    step: jax.Array  # updates done so far (both stages)
    config: DrQBCConfig = struct.field(pytree_node=False)




def _q(config):
    return twin_q_head(config.hidden_dim)



def _init_heads(config: DrQBCConfig, key: jax.Array) -> Tuple[Dict, Dict]:
    actor_key, critic_key = jax.random.split(key)
    features, actions = jnp.zeros((1, config.feature_dim)), jnp.zeros((1, config.action_dim))
    return config_policy(config).init(actor_key, features), _q(config).init(critic_key, features, actions)


def init(key: jax.Array, image_shape: Tuple[int, int, int], action_dim: int, **hyperparameters) -> DrQBCState:
    """A fresh learner for stacked frames of shape `image_shape` = (C, H, W), e.g. (9, 84, 84)."""
    config = DrQBCConfig(action_dim=action_dim, **hyperparameters)
    encoder_key, actor_key, critic_key, heads_key = jax.random.split(key, 4)
    encoder_params = Encoder().init(encoder_key, jnp.zeros((1, *image_shape), jnp.uint8))
    h = jnp.zeros((1, encoder_output_dim(image_shape[-1])))
    actor_head, critic_head = _init_heads(config, heads_key)
    actor_params = {"trunk": config_trunk(config).init(actor_key, h), "head": actor_head}
    critic_params = {"trunk": config_trunk(config).init(critic_key, h), "head": critic_head}
    optimizer = config_optimizer(config)
    return DrQBCState(encoder_params=encoder_params, actor_params=actor_params, critic_params=critic_params,
                      target_critic_params=critic_params, encoder_opt_state=optimizer.init(encoder_params),
                      actor_opt_state=optimizer.init(actor_params), critic_opt_state=optimizer.init(critic_params),
                      step=jnp.zeros((), jnp.int32), config=config)


def init_seeds(keys: jax.Array, image_shape: Tuple[int, int, int], action_dim: int, **kwargs) -> DrQBCState:
    """One learner per key, stacked along a leading seed axis."""
    return stack_seeds(init, keys, image_shape, action_dim, **kwargs)


# --- losses on trunk features (shared by the pixel and the latent stage) --------------------------

def td_target(state: DrQBCState, target_critic_head, next_actor_features, next_critic_features, rewards, discounts,
              std, key) -> jax.Array:
    """r + discount * gamma * min(Q1', Q2')(s', a' ~ pi(s')), no gradient."""
    config = state.config
    next_actions = sample_action(config_policy(config).apply(state.actor_params["head"], next_actor_features), std,
                                 config.std_clip, key)
    next_v = _q(config).apply(target_critic_head, next_critic_features, next_actions).min(0)
    return jax.lax.stop_gradient(rewards + discounts * config.discount * next_v)


def critic_loss(q: jax.Array, target: jax.Array) -> jax.Array:
    """MSE(Q1, target) + MSE(Q2, target) for q of shape (2, B)."""
    return ((q - target) ** 2).mean(axis=1).sum()


def actor_loss(actor_head, critic_head, config: DrQBCConfig, actor_features, critic_features, data_actions, std,
               key) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    """-alpha / mean|Q| * mean Q + MSE(sampled action, data action), Q = min of the twin heads at the
    sampled action; the scale carries no gradient."""
    actions = sample_action(config_policy(config).apply(actor_head, actor_features), std, config.std_clip, key)
    q = _q(config).apply(critic_head, critic_features, actions).min(0)
    lmbda = config.alpha / jax.lax.stop_gradient(jnp.abs(q).mean())
    bc_loss = ((actions - data_actions) ** 2).mean()
    loss = -lmbda * q.mean() + bc_loss
    return loss, {"actor_loss": loss, "bc_loss": bc_loss, "lambda": lmbda}



# --- stage 1: pixels ------------------------------------------------------------------------------

def update(state: DrQBCState, batch: Batch, key: jax.Array) -> Tuple[DrQBCState, Dict[str, jax.Array]]:
    """One DrQ+BC update on a batch of uint8 frame stacks (`observations`, `next_observations`)."""
    config = state.config
    obs_key, next_key, target_key, actor_key = jax.random.split(key, 4)
    observations = random_shift(batch["observations"], obs_key, config.image_pad)
    next_observations = random_shift(batch["next_observations"], next_key, config.image_pad)
    std = scheduled_std(state.step, config.std_start, config.std_end, config.std_steps)
    encoder, trunk = Encoder(), config_trunk(config)

    next_h = jax.lax.stop_gradient(encoder.apply(state.encoder_params, next_observations))
    target = td_target(state, state.target_critic_params["head"],
                       trunk.apply(state.actor_params["trunk"], next_h),
                       trunk.apply(state.target_critic_params["trunk"], next_h),
                       batch["rewards"], batch["discounts"], std, target_key)

    def encoder_critic_loss(params):
        encoder_params, critic_params = params
        h = encoder.apply(encoder_params, observations)
        q = _q(config).apply(critic_params["head"], trunk.apply(critic_params["trunk"], h), batch["actions"])
        loss = critic_loss(q, target)
        return loss, (h, {"critic_loss": loss, "q_mean": q.mean(), "target_q": target.mean()})

    grads, (h, critic_metrics) = jax.grad(encoder_critic_loss, has_aux=True)((state.encoder_params,
                                                                             state.critic_params))
    encoder_params, encoder_opt_state = adam_step(config, grads[0], state.encoder_opt_state, state.encoder_params)
    critic_params, critic_opt_state = adam_step(config, grads[1], state.critic_opt_state, state.critic_params)

    h = jax.lax.stop_gradient(h)  # the actor never trains the encoder
    critic_features = trunk.apply(critic_params["trunk"], h)

    def full_actor_loss(actor_params):
        return actor_loss(actor_params["head"], critic_params["head"], config,
                          trunk.apply(actor_params["trunk"], h), critic_features, batch["actions"], std, actor_key)

    grads, actor_metrics = jax.grad(full_actor_loss, has_aux=True)(state.actor_params)
    actor_params, actor_opt_state = adam_step(config, grads, state.actor_opt_state, state.actor_params)
    state = state.replace(encoder_params=encoder_params, actor_params=actor_params, critic_params=critic_params,
                          target_critic_params=polyak(state.target_critic_params, critic_params, config.critic_tau),
                          encoder_opt_state=encoder_opt_state, actor_opt_state=actor_opt_state,
                          critic_opt_state=critic_opt_state, step=state.step + 1)
    return state, {**critic_metrics, **actor_metrics, "actor_std": std}


update_steps, update_steps_seeds = jitted_scans(update, sample_pixel_batch)


act = pixel_networks.act  # shared: both act through the encoder, actor trunk and head


@jax.jit
def features(state: DrQBCState, observations: jax.Array, key: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
    """Each trunk's features of uint8 frame stacks, {"actor": (B, 50), "critic": (B, 50)}, after a
    random shift drawn with `key` (none without one)."""
    config = state.config
    if key is not None:
        observations = random_shift(observations, key, config.image_pad)
    h = Encoder().apply(state.encoder_params, observations)
    return {"actor": config_trunk(config).apply(state.actor_params["trunk"], h),
            "critic": config_trunk(config).apply(state.critic_params["trunk"], h)}


# --- stage 2: heads on latent transitions -----------------------------------------------------------

def begin_latent_stage(state: DrQBCState, key: jax.Array, reinit_heads: bool = False) -> DrQBCState:
    """The state for head training: fresh Adam states over the heads alone (so nothing else can
    move), the heads re-drawn when `reinit_heads` (else fine-tuned from stage 1), the target head a
    copy of the critic head."""
    config = state.config
    actor_head, critic_head = state.actor_params["head"], state.critic_params["head"]
    if reinit_heads:
        actor_head, critic_head = _init_heads(config, key)
    optimizer = config_optimizer(config)
    return state.replace(actor_params={**state.actor_params, "head": actor_head},
                         critic_params={**state.critic_params, "head": critic_head},
                         target_critic_params={**state.target_critic_params, "head": critic_head},
                         actor_opt_state=optimizer.init(actor_head), critic_opt_state=optimizer.init(critic_head))


def begin_latent_stage_seeds(states: DrQBCState, keys: jax.Array, reinit_heads: bool = False) -> DrQBCState:
    return jax.vmap(lambda state, key: begin_latent_stage(state, key, reinit_heads))(states, keys)


def update_latent(state: DrQBCState, batch: Batch, key: jax.Array) -> Tuple[DrQBCState, Dict[str, jax.Array]]:
    """One head update on latent transitions (see the module docstring); encoder and trunks fixed."""
    config = state.config
    target_key, actor_key = jax.random.split(key)
    std = scheduled_std(state.step, config.std_start, config.std_end, config.std_steps)
    target = td_target(state, state.target_critic_params["head"], batch["next_actor"], batch["next_critic"],
                       batch["rewards"], jnp.ones_like(batch["rewards"]), std, target_key)

    def head_critic_loss(critic_head):
        q = _q(config).apply(critic_head, batch["critic"], batch["actions"])
        loss = critic_loss(q, target)
        return loss, {"critic_loss": loss, "q_mean": q.mean(), "target_q": target.mean()}

    grads, critic_metrics = jax.grad(head_critic_loss, has_aux=True)(state.critic_params["head"])
    critic_head, critic_opt_state = adam_step(config, grads, state.critic_opt_state, state.critic_params["head"])
    grads, actor_metrics = jax.grad(actor_loss, has_aux=True)(
        state.actor_params["head"], critic_head, config, batch["actor"], batch["critic"], batch["actions"], std,
        actor_key)
    actor_head, actor_opt_state = adam_step(config, grads, state.actor_opt_state, state.actor_params["head"])
    target_head = polyak(state.target_critic_params["head"], critic_head, config.critic_tau)
    state = state.replace(actor_params={**state.actor_params, "head": actor_head},
                          critic_params={**state.critic_params, "head": critic_head},
                          target_critic_params={**state.target_critic_params, "head": target_head},
                          actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state, step=state.step + 1)
    return state, {**critic_metrics, **actor_metrics}


latent_update_steps, latent_update_steps_seeds = jitted_scans(update_latent)
