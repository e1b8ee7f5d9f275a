"""Behaviour cloning on pixels (V-D4RL's `bcagent.py`): DrQ+BC's encoder and actor without a critic.

The loss is MSE(sampled action, data action), the action drawn around the actor's tanh mean with
the scheduled std (1.0 -> 0.1 over 125K updates, V-D4RL's 250K loop steps) and noise clip 0.3;
frames are randomly shifted and the loss trains the encoder, the actor trunk and the head (Adam
1e-4). Networks: `agents.pixel_networks`.

Latent SynthER (paper Appendix E, "the same but without the critic"): `begin_latent_stage` freezes
the encoder and the trunk and `update_latent` trains the head on latent transitions
`{actor, actions, rewards, next_actor}` (rewards and next features ride along in the row; BC
ignores them).
"""
import dataclasses
from typing import Dict, Optional, Tuple

import flax.struct as struct
import jax
import jax.numpy as jnp
import optax

from agents import pixel_networks
from agents.pixel_networks import (Encoder, adam_step, config_optimizer, config_policy, config_trunk,
                                   encoder_output_dim, random_shift, sample_action, scheduled_std)
from agents.training import Batch, jitted_scans, stack_seeds
from synther_jax.data.pixel_datasets import sample_batch as sample_pixel_batch

TRUNKS = ("actor",)  # the latent row's feature blocks


@dataclasses.dataclass(frozen=True)
class PixelBCConfig:
    action_dim: int
    feature_dim: int = 50
    hidden_dim: int = 1024
    learning_rate: float = 1e-4
    std_start: float = 1.0
    std_end: float = 0.1
    std_steps: int = 125_000
    std_clip: float = 0.3
    image_pad: int = 4


class PixelBCState(struct.PyTreeNode):
    encoder_params: Dict
    actor_params: Dict  # {"trunk": ..., "head": ...}
    encoder_opt_state: optax.OptState
    actor_opt_state: optax.OptState  # of the whole actor; of the head only in the latent stage
    step: jax.Array
    config: PixelBCConfig = struct.field(pytree_node=False)





def init(key: jax.Array, image_shape: Tuple[int, int, int], action_dim: int, **hyperparameters) -> PixelBCState:
    config = PixelBCConfig(action_dim=action_dim, **hyperparameters)
    encoder_key, trunk_key, head_key = jax.random.split(key, 3)
    encoder_params = Encoder().init(encoder_key, jnp.zeros((1, *image_shape), jnp.uint8))
    actor_params = {"trunk": config_trunk(config).init(trunk_key, jnp.zeros((1, encoder_output_dim(image_shape[-1])))),
                    "head": config_policy(config).init(head_key, jnp.zeros((1, config.feature_dim)))}
    optimizer = config_optimizer(config)
    return PixelBCState(encoder_params=encoder_params, actor_params=actor_params,
                        encoder_opt_state=optimizer.init(encoder_params), actor_opt_state=optimizer.init(actor_params),
                        step=jnp.zeros((), jnp.int32), config=config)


def init_seeds(keys: jax.Array, image_shape: Tuple[int, int, int], action_dim: int, **kwargs) -> PixelBCState:
    return stack_seeds(init, keys, image_shape, action_dim, **kwargs)


def bc_loss(actor_head, config: PixelBCConfig, actor_features, data_actions, std, key):
    actions = sample_action(config_policy(config).apply(actor_head, actor_features), std, config.std_clip, key)
    loss = ((actions - data_actions) ** 2).mean()
    return loss, {"actor_loss": loss}



def update(state: PixelBCState, batch: Batch, key: jax.Array) -> Tuple[PixelBCState, Dict[str, jax.Array]]:
    config = state.config
    aug_key, actor_key = jax.random.split(key)
    observations = random_shift(batch["observations"], aug_key, config.image_pad)
    std = scheduled_std(state.step, config.std_start, config.std_end, config.std_steps)

    def loss(params):
        encoder_params, actor_params = params
        features = config_trunk(config).apply(actor_params["trunk"], Encoder().apply(encoder_params, observations))
        return bc_loss(actor_params["head"], config, features, batch["actions"], std, actor_key)

    grads, metrics = jax.grad(loss, has_aux=True)((state.encoder_params, state.actor_params))
    encoder_params, encoder_opt_state = adam_step(config, grads[0], state.encoder_opt_state, state.encoder_params)
    actor_params, actor_opt_state = adam_step(config, grads[1], state.actor_opt_state, state.actor_params)
    return state.replace(encoder_params=encoder_params, actor_params=actor_params, encoder_opt_state=encoder_opt_state,
                         actor_opt_state=actor_opt_state, step=state.step + 1), {**metrics, "actor_std": std}


update_steps, update_steps_seeds = jitted_scans(update, sample_pixel_batch)


act = pixel_networks.act  # shared: both act through the encoder, actor trunk and head


@jax.jit
def features(state: PixelBCState, observations: jax.Array, key: Optional[jax.Array] = None) -> Dict[str, jax.Array]:
    """The actor trunk's features {"actor": (B, 50)} of uint8 frame stacks, randomly shifted with `key`."""
    if key is not None:
        observations = random_shift(observations, key, state.config.image_pad)
    return {"actor": config_trunk(state.config).apply(state.actor_params["trunk"],
                                                Encoder().apply(state.encoder_params, observations))}


def begin_latent_stage(state: PixelBCState, key: jax.Array, reinit_heads: bool = False) -> PixelBCState:
    """Fresh Adam state over the head alone; the head re-drawn when `reinit_heads`."""
    head = state.actor_params["head"]
    if reinit_heads:
        head = config_policy(state.config).init(key, jnp.zeros((1, state.config.feature_dim)))
    return state.replace(actor_params={**state.actor_params, "head": head},
                         actor_opt_state=config_optimizer(state.config).init(head))


def begin_latent_stage_seeds(states: PixelBCState, keys: jax.Array, reinit_heads: bool = False) -> PixelBCState:
    return jax.vmap(lambda state, key: begin_latent_stage(state, key, reinit_heads))(states, keys)


def update_latent(state: PixelBCState, batch: Batch, key: jax.Array) -> Tuple[PixelBCState, Dict[str, jax.Array]]:
    config = state.config
    std = scheduled_std(state.step, config.std_start, config.std_end, config.std_steps)
    grads, metrics = jax.grad(bc_loss, has_aux=True)(state.actor_params["head"], config, batch["actor"],
                                                     batch["actions"], std, key)
    head, actor_opt_state = adam_step(config, grads, state.actor_opt_state, state.actor_params["head"])
    return state.replace(actor_params={**state.actor_params, "head": head}, actor_opt_state=actor_opt_state,
                         step=state.step + 1), metrics


latent_update_steps, latent_update_steps_seeds = jitted_scans(update_latent)
