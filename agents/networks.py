"""Networks shared by the learners: MLPs, Q-function ensembles and policy heads.

Every layer is `synther_jax.nn.Linear`, whose initialisers default to PyTorch's so that CORL and
REDQ hyperparameters carry over unchanged; learners pass other initialisers where the reference
code uses them (REDQ: xavier-uniform, zero bias; EDAC: 0.1 biases and small uniform heads).
"""
from typing import Optional, Sequence

import distrax
import flax.linen as nn
import jax
import jax.numpy as jnp

from synther_jax.nn import Initializer, Linear, activation, torch_uniform


class MLP(nn.Module):
    """Linear layers with an activation between them; the last layer is linear unless `activate_final`."""

    hidden_dims: Sequence[int]
    activation: str = "relu"
    activate_final: bool = False
    kernel_init: Initializer = torch_uniform
    bias_init: Optional[Initializer] = None
    final_kernel_init: Optional[Initializer] = None  # None: same as the hidden layers.
    final_bias_init: Optional[Initializer] = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = activation(self.activation)
        for i, width in enumerate(self.hidden_dims):
            last = i == len(self.hidden_dims) - 1
            kernel_init = (self.final_kernel_init or self.kernel_init) if last else self.kernel_init
            bias_init = (self.final_bias_init or self.final_kernel_init or self.bias_init) if last else self.bias_init
            x = Linear(width, kernel_init, bias_init)(x)
            if not last or self.activate_final:
                x = act(x)
        return x


class StateActionValue(nn.Module):
    """Q(s, a): an MLP over the concatenation [s, a] ending in one unit; returns shape (...,)."""

    hidden_dims: Sequence[int]
    activation: str = "relu"
    kernel_init: Initializer = torch_uniform
    bias_init: Optional[Initializer] = None
    final_kernel_init: Optional[Initializer] = None
    final_bias_init: Optional[Initializer] = None

    @nn.compact
    def __call__(self, observations: jax.Array, actions: jax.Array) -> jax.Array:
        x = jnp.concatenate([observations, actions], axis=-1)
        q = MLP((*self.hidden_dims, 1), self.activation, False, self.kernel_init, self.bias_init,
                self.final_kernel_init, self.final_bias_init)(x)
        return q[..., 0]


class StateValue(nn.Module):
    """V(s): an MLP ending in one unit; returns shape (...,)."""

    hidden_dims: Sequence[int]
    activation: str = "relu"

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        return MLP((*self.hidden_dims, 1), self.activation)(observations)[..., 0]


def ensemble(module_cls: type, num: int) -> type:
    """`num` independent copies of `module_cls` evaluated in one vmapped call.

    Parameters get a leading axis of size `num` and the output a leading ensemble axis, e.g. Q
    values of shape (num, batch). Inputs are shared by all members.
    """
    return nn.vmap(
        module_cls,
        variable_axes={"params": 0},
        split_rngs={"params": True},
        in_axes=None,
        out_axes=0,
        axis_size=num,
    )


class TanhGaussianPolicy(nn.Module):
    """pi(a|s) = tanh(N(mu(s), sigma(s))): SAC's and EDAC's squashed Gaussian.

    `log_std` is clipped to [log_std_min, log_std_max] as in the reference code (REDQ: [-20, 2];
    EDAC: [-5, 2]). Returns a distrax distribution over actions in (-1, 1).
    """

    action_dim: int
    hidden_dims: Sequence[int]
    log_std_min: float = -20.0
    log_std_max: float = 2.0
    activation: str = "relu"
    kernel_init: Initializer = torch_uniform
    bias_init: Optional[Initializer] = None
    head_init: Optional[Initializer] = None  # None: same as the hidden layers.

    @nn.compact
    def __call__(self, observations: jax.Array) -> distrax.Distribution:
        h = MLP(self.hidden_dims, self.activation, True, self.kernel_init, self.bias_init)(observations)
        head_init = self.head_init or self.kernel_init
        head_bias = self.head_init or self.bias_init
        mean = Linear(self.action_dim, head_init, head_bias)(h)
        log_std = Linear(self.action_dim, head_init, head_bias)(h)
        log_std = jnp.clip(log_std, self.log_std_min, self.log_std_max)
        base = distrax.MultivariateNormalDiag(mean, jnp.exp(log_std))
        return distrax.Transformed(base, distrax.Block(distrax.Tanh(), ndims=1))


class DeterministicPolicy(nn.Module):
    """a = max_action * tanh(MLP(s)) (TD3+BC's actor; IQL's deterministic variant)."""

    action_dim: int
    hidden_dims: Sequence[int]
    max_action: float = 1.0
    activation: str = "relu"

    @nn.compact
    def __call__(self, observations: jax.Array) -> jax.Array:
        out = MLP((*self.hidden_dims, self.action_dim), self.activation)(observations)
        return self.max_action * jnp.tanh(out)
