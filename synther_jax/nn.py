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


# How a float32 matrix product is computed. The parameters, activations and results stay float32.
#   "float32"   true float32 products on every backend (what the original's PyTorch computes)
#   "tf32"      TensorFloat32 tensor cores on NVIDIA GPUs (bfloat16_3x on TPU); float32 on a CPU
#   "bfloat16"  both operands rounded to bfloat16, float32 accumulation, on every backend (a CPU too)
MATMUL_PRECISIONS = ("float32", "tf32", "bfloat16")


def matmul(x: jax.Array, kernel: jax.Array, precision: Optional[str] = None) -> jax.Array:
    """x @ kernel at one of `MATMUL_PRECISIONS`; None leaves it to the backend (TF32 on recent
    NVIDIA GPUs, one bfloat16 pass on TPU, float32 on a CPU)."""
    if precision is None:
        return x @ kernel
    if precision == "bfloat16":  # a cast, not a precision hint, which a CPU would ignore
        return jnp.matmul(x.astype(jnp.bfloat16), kernel.astype(jnp.bfloat16), preferred_element_type=jnp.float32)
    if precision not in MATMUL_PRECISIONS:
        raise ValueError(f"Unknown matmul precision {precision!r}; choose one of {MATMUL_PRECISIONS}.")
    return jnp.matmul(x, kernel, precision={"float32": "highest", "tf32": "tensorfloat32"}[precision])


class Linear(nn.Module):
    """A dense layer y = x W + b whose initialisers know the fan-in (PyTorch defaults unless set)."""

    features: int
    kernel_init: Initializer = torch_uniform
    bias_init: Optional[Initializer] = None  # None: the same rule as the kernel.
    matmul_precision: Optional[str] = None  # one of MATMUL_PRECISIONS; None: the backend's default

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        fan_in = x.shape[-1]
        bias_init = self.bias_init or self.kernel_init
        kernel = self.param("kernel", lambda k: self.kernel_init(k, (fan_in, self.features), jnp.float32, fan_in))
        bias = self.param("bias", lambda k: bias_init(k, (self.features,), jnp.float32, fan_in))
        return matmul(x, kernel, self.matmul_precision) + bias


ACTIVATIONS = {"relu": nn.relu, "silu": nn.silu, "gelu": nn.gelu, "tanh": jnp.tanh, "mish": lambda x: x * jnp.tanh(nn.softplus(x))}


def activation(name: str) -> Callable[[jax.Array], jax.Array]:
    """Looks an activation up by its config name, with an error that lists the choices."""
    if name not in ACTIVATIONS:
        raise ValueError(f"Unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}.")
    return ACTIVATIONS[name]
