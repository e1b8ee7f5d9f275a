"""The networks and pieces DrQ+BC and pixel BC share, as V-D4RL's `drqbc/drqv2.py` defines them.

- `Encoder`: obs / 255 - 0.5, Conv(32, 3x3, stride 2) then three Conv(32, 3x3, stride 1), ReLU
  after each, VALID padding: 32 x 35 x 35 = 39,200 features at 84 px. Frames arrive as uint8
  channels-first stacks (B, 9, H, W) and become floats only here.
- `Trunk`: Linear(-> 50) -> LayerNorm -> tanh; the actor and the critic each have one.
- `PolicyHead`: 50 -> 1024 -> 1024 -> |a|, ReLU, tanh mean; `TwinQHead`: two (50 + |a|) -> 1024 ->
  1024 -> 1 MLPs. Actions are drawn from a normal around the mean with a scheduled std, its noise
  clipped and the action clamped to (-1, 1) with a straight-through gradient (DrQ-v2's TruncatedNormal).
- Initialisation: orthogonal weights (gain sqrt(2) for the convolutions, 1 for linear layers), zero
  biases (DrQ-v2's `weight_init`). LayerNorm uses PyTorch's epsilon, 1e-5.
- `random_shift`: DrQ's augmentation, each image padded by 4 pixels with its edge values and
  cropped back at a random integer offset; `jnp.pad` plus `lax.dynamic_slice`, vmapped over the batch.
  (DrQ-v2 samples the same integer shifts through `grid_sample`; the result is identical.)

Flax flattens the encoder's output in (H, W, C) order where PyTorch uses (C, H, W): a fixed
permutation of the trunk's input, without effect on what the networks can represent.
"""
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from agents.networks import MLP, ensemble
from synther_jax.nn import Linear, constant

FEATURE_DIM = 50
CONV_CHANNELS = 32


def orthogonal(gain: float = 1.0):
    """Orthogonal kernels in `synther_jax.nn.Linear`'s initialiser signature."""
    return lambda key, shape, dtype, fan_in: jax.nn.initializers.orthogonal(gain)(key, shape, dtype)


ZERO = constant(0.0)


class Encoder(nn.Module):
    """(B, C, H, W) uint8 frames -> (B, 32 * h * w) float32 features (39,200 at 84 px)."""

    @nn.compact
    def __call__(self, frames: jax.Array) -> jax.Array:
        x = frames.astype(jnp.float32) / 255.0 - 0.5
        x = jnp.transpose(x, (0, 2, 3, 1))  # channels last, as flax's Conv expects
        for stride in (2, 1, 1, 1):
            x = nn.Conv(CONV_CHANNELS, (3, 3), strides=(stride, stride), padding="VALID",
                        kernel_init=nn.initializers.orthogonal(np.sqrt(2.0)), bias_init=nn.initializers.zeros)(x)
            x = nn.relu(x)
        return x.reshape(x.shape[0], -1)


def encoder_output_dim(image_size: int) -> int:
    """Features the encoder gives for square images of `image_size` pixels."""
    side = (image_size - 3) // 2 + 1 - 3 * 2
    return CONV_CHANNELS * side * side


class Trunk(nn.Module):
    """Linear -> LayerNorm -> tanh: the 50-dimensional features each head reads."""

    feature_dim: int = FEATURE_DIM

    @nn.compact
    def __call__(self, h: jax.Array) -> jax.Array:
        x = Linear(self.feature_dim, orthogonal(), ZERO)(h)
        return jnp.tanh(nn.LayerNorm(epsilon=1e-5)(x))


class PolicyHead(nn.Module):
    """Trunk features -> the mean action, tanh(MLP)."""

    action_dim: int
    hidden_dim: int = 1024

    @nn.compact
    def __call__(self, features: jax.Array) -> jax.Array:
        dims = (self.hidden_dim, self.hidden_dim, self.action_dim)
        return jnp.tanh(MLP(dims, kernel_init=orthogonal(), bias_init=ZERO)(features))


class QHead(nn.Module):
    """Q(features, a): one MLP over [features, a]; returns shape (B,)."""

    hidden_dim: int = 1024

    @nn.compact
    def __call__(self, features: jax.Array, actions: jax.Array) -> jax.Array:
        x = jnp.concatenate([features, actions], axis=-1)
        return MLP((self.hidden_dim, self.hidden_dim, 1), kernel_init=orthogonal(), bias_init=ZERO)(x)[..., 0]


def twin_q_head(hidden_dim: int):
    """Two independent Q heads; output (2, B)."""
    return ensemble(QHead, 2)(hidden_dim)


def scheduled_std(step: jax.Array, start: float, end: float, duration: int) -> jax.Array:
    """DrQ-v2's `linear(start, end, duration)` schedule of the actor's std."""
    mix = jnp.clip(step.astype(jnp.float32) / duration, 0.0, 1.0)
    return (1.0 - mix) * start + mix * end


def sample_action(mean: jax.Array, std: jax.Array, clip: float, key: jax.Array, eps: float = 1e-6) -> jax.Array:
    """DrQ-v2's TruncatedNormal.sample(clip): mean + clip(std * N(0, 1), -clip, clip), clamped to
    (-1 + eps, 1 - eps) with the gradient of the unclamped value (straight through)."""
    noise = jnp.clip(std * jax.random.normal(key, mean.shape), -clip, clip)
    x = mean + noise
    clamped = jnp.clip(x, -1.0 + eps, 1.0 - eps)
    return x + jax.lax.stop_gradient(clamped - x)


def random_shift(images: jax.Array, key: jax.Array, pad: int = 4) -> jax.Array:
    """Each (C, H, W) image of the batch edge-padded by `pad` pixels and cropped back to (H, W) at a
    uniform random integer offset in [0, 2 * pad] along each axis (its own per image)."""
    _, channels, height, width = images.shape

    def shift(image, key):
        padded = jnp.pad(image, ((0, 0), (pad, pad), (pad, pad)), mode="edge")
        dy, dx = jax.random.randint(key, (2,), 0, 2 * pad + 1)
        return jax.lax.dynamic_slice(padded, (0, dy, dx), (channels, height, width))

    return jax.vmap(shift)(images, jax.random.split(key, images.shape[0]))


# --- what both learners build from their config (feature_dim, action_dim, hidden_dim, learning_rate)

def config_trunk(config) -> Trunk:
    return Trunk(config.feature_dim)


def config_policy(config) -> PolicyHead:
    return PolicyHead(config.action_dim, config.hidden_dim)


def config_optimizer(config) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)


def adam_step(config, grads, opt_state, params):
    """One Adam step of `params` (V-D4RL's optimiser, every network the same learning rate)."""
    updates, opt_state = config_optimizer(config).update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnames="deterministic")
def act(state, observations: jax.Array, key: jax.Array, deterministic: bool = True) -> jax.Array:
    """Actions of a DrQ+BC or pixel BC state (encoder, actor trunk and head, scheduled std) for uint8
    frame stacks (B, C, H, W): the mean, or a sample with the scheduled std."""
    config = state.config
    h = Encoder().apply(state.encoder_params, observations)
    features = config_trunk(config).apply(state.actor_params["trunk"], h)
    mean = config_policy(config).apply(state.actor_params["head"], features)
    if deterministic:
        return mean
    std = scheduled_std(state.step, config.std_start, config.std_end, config.std_steps)
    return jnp.clip(mean + std * jax.random.normal(key, mean.shape), -1.0, 1.0)
