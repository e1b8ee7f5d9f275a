"""The intrinsic curiosity module (ICM, Pathak et al. 2017) as PGR uses it for relevance.

    h = encoder(s)                                  # swish MLP
    inverse: a_hat = inv([h(s), h(s')])             # trains the encoder
    forward: h_hat = fwd([h(s), a])                 # predicts the next features
    loss = mean (h_hat - sg h(s'))^2 + mean (a_hat - a)^2
    curiosity(s, a, s') = mean over features (fwd([h(s), a]) - h(s'))^2

The forward error is high where the agent has seen few transitions like this one and falls as it
sees more: PGR conditions its diffusion model on it and guides generation towards high values.
The learner takes one Adam step per environment step on a real minibatch (PGR: 256 rows, Adam
3e-4, about 5% of the agent's gradient steps at UTD 20).

Deviations from PGR's released network, which is deeper and odd: its forward model is a 5-layer MLP,
4 rounds of one residual block shared by weight (a `ModuleList([block] * 8)`), and another 5-layer
MLP; its inverse head uses BatchNorm. Here the forward model and the inverse head are plain
swish MLPs of the same width, and the inverse head uses LayerNorm (no batch statistics to carry).
The scale of the error does not matter: the diffusion model sees it min-max normalised.
"""
import dataclasses
from functools import partial
from typing import Dict, Tuple

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import optax
from flax.training.train_state import TrainState

from agents.networks import MLP
from synther_jax import replay

Batch = Dict[str, jax.Array]


@dataclasses.dataclass(frozen=True)
class ICMConfig:
    hidden: int = 256  # PGR's cond_hidden_size
    batch_size: int = 256


class ICMNetwork(nn.Module):
    """Encoder, inverse head and forward model; `__call__` returns (predicted next features,
    next features, predicted actions)."""

    action_dim: int
    hidden: int = 256

    def setup(self):
        self.encoder = MLP((self.hidden,) * 3, activation="silu")
        self.inverse = nn.Sequential([MLP((self.hidden,), activation="silu", activate_final=True), nn.LayerNorm(),
                                      MLP((self.hidden, self.action_dim), activation="silu")])
        self.forward_model = MLP((self.hidden,) * 3 + (self.hidden,), activation="silu")

    def __call__(self, observations, actions, next_observations):
        features, next_features = self.encoder(observations), self.encoder(next_observations)
        predicted = self.forward_model(jnp.concatenate([features, actions], axis=-1))
        predicted_actions = self.inverse(jnp.concatenate([features, next_features], axis=-1))
        return predicted, next_features, predicted_actions


class ICMState(flax.struct.PyTreeNode):
    model: TrainState
    config: ICMConfig = flax.struct.field(pytree_node=False)


def init(key: jax.Array, obs_dim: int, action_dim: int, *, hidden: int = 256, learning_rate: float = 3e-4,
         batch_size: int = 256) -> ICMState:
    network = ICMNetwork(action_dim, hidden)
    params = network.init(key, jnp.zeros((1, obs_dim)), jnp.zeros((1, action_dim)), jnp.zeros((1, obs_dim)))
    return ICMState(TrainState.create(apply_fn=network.apply, params=params, tx=optax.adam(learning_rate)),
                    ICMConfig(hidden, batch_size))


def loss(params, state: ICMState, batch: Batch) -> Tuple[jax.Array, Dict[str, jax.Array]]:
    predicted, next_features, predicted_actions = state.model.apply_fn(
        params, batch["observations"], batch["actions"], batch["next_observations"])
    forward = jnp.mean((predicted - jax.lax.stop_gradient(next_features)) ** 2)
    inverse = jnp.mean((predicted_actions - batch["actions"]) ** 2)
    return forward + inverse, {"icm_forward_loss": forward, "icm_inverse_loss": inverse}


@partial(jax.jit, donate_argnums=0)
def update(state: ICMState, real: replay.ReplayBuffer, key: jax.Array) -> Tuple[ICMState, Dict[str, jax.Array]]:
    """One Adam step on a minibatch of `batch_size` rows drawn from the real buffer."""
    batch = replay.sample(real, key, state.config.batch_size)
    grads, metrics = jax.grad(loss, has_aux=True)(state.model.params, state, batch)
    return state.replace(model=state.model.apply_gradients(grads=grads)), metrics


def curiosity(state: ICMState, batch: Batch) -> jax.Array:
    """The forward model's error per transition, (B,): PGR's relevance."""
    predicted, next_features, _ = state.model.apply_fn(state.model.params, batch["observations"], batch["actions"],
                                                       batch["next_observations"])
    return jnp.mean((predicted - next_features) ** 2, axis=-1)
