"""Layers shared by the denoiser and the RL learners.

Flax's `nn.Dense` defaults to lecun-normal kernels and zero biases. The original SynthER code and
CORL use PyTorch's `nn.Linear` defaults, W, b ~ U(-1/sqrt(fan_in), +1/sqrt(fan_in)), and initial
scales change training curves, so `Linear` reproduces PyTorch's rule by default. Other schemes used
by the reference code (REDQ's xavier-uniform with zero bias, EDAC's constant and small-uniform
heads) are given as explicit initialisers.
"""
from typing import Callable, Optional

import flax.linen as nn
import jax
import jax.numpy as jnp

# An initialiser receives (key, shape, dtype, fan_in) so biases can depend on the fan-in, as in PyTorch.
Initializer = Callable[[jax.Array, tuple, jnp.dtype, int], jax.Array]


def torch_uniform(key, shape, dtype, fan_in):
    """PyTorch's nn.Linear default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases."""
    bound = 1.0 / jnp.sqrt(fan_in)
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def uniform(bound: float) -> Initializer:
    """U(-bound, bound), independent of the fan-in (EDAC's output heads)."""
    return lambda key, shape, dtype, fan_in: jax.random.uniform(key, shape, dtype, -bound, bound)


def constant(value: float) -> Initializer:
    """Every entry equal to `value` (EDAC's hidden biases of 0.1; zero biases)."""
    return lambda key, shape, dtype, fan_in: jnp.full(shape, value, dtype)


def xavier_uniform(key, shape, dtype, fan_in):
    """Glorot uniform with gain 1 on a (fan_in, fan_out) kernel (REDQ's networks)."""
    return jax.nn.initializers.xavier_uniform()(key, shape, dtype)


class Linear(nn.Module):
    """A dense layer y = x W + b whose initialisers know the fan-in (PyTorch defaults unless set)."""

    features: int
    kernel_init: Initializer = torch_uniform
    bias_init: Optional[Initializer] = None  # None: the same rule as the kernel.

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        bias_init = self.bias_init or self.kernel_init
        kernel = self.param("kernel", lambda k: self.kernel_init(k, (fan_in, self.features), jnp.float32, fan_in))
        bias = self.param("bias", lambda k: bias_init(k, (self.features,), jnp.float32, fan_in))
        return x @ kernel + bias


ACTIVATIONS = {"relu": nn.relu, "silu": nn.silu, "gelu": nn.gelu, "tanh": jnp.tanh, "mish": lambda x: x * jnp.tanh(nn.softplus(x))}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks an activation up by its config name, with an error that lists the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]
