"""The residual-MLP denoiser network F of SynthER (paper Appendix B.1).

    t = c_noise(sigma)                      # one scalar per sample
    emb = [t, sin(2 pi t w), cos(2 pi t w)]  # w: 8 fixed N(0, 1) frequencies -> 17 dims
    h = Linear(x) + TimeMLP(emb)            # the time embedding is added, not concatenated
    h = Linear_width(h)
    h = h + Linear(act(LN(h)))  x depth     # pre-activation residual blocks, one layer each
    out = Linear_d(act(LN(h)))

The Fourier frequencies are drawn once at initialisation and never trained; they live in the
`constants` collection so that optimisers, EMA and parameter counts see only the `params`.

Conditioning (guided SynthER, PGR): a scalar condition c, normalised to [-1, 1], is embedded by
CondMLP = Linear(2 dim_t) -> mish -> Linear(dim_t) and multiplied by `keep` (1: conditional,
0: unconditional), so "unconditional" is a mask with static shapes and its embedding is zero, as
PGR's null condition. `conditioning` picks where it enters:
    "none"    no condition: the network and its parameters are exactly SynthER's
    "add"     h = Linear(x) + TimeMLP(emb) + CondMLP(c) keep       (SynthER's size plus the CondMLP)
    "concat"  h = [Linear_width(x), Linear_width([CondMLP(c) keep, TimeMLP(emb)])], a trunk of
              2 width (PGR's denoiser, about 4x the parameters)
PGR's time MLP is Linear(4 dim_t) -> mish -> Linear(dim_t); ours stays SynthER's in every mode so
the three differ only in where the condition enters.
"""
from functools import partial
from typing import Optional

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from synther_jax.nn import Linear, activation

NUM_FOURIER_FREQUENCIES = 8  # the original's learned_sinusoidal_dim = 16, halved


class RandomFourierFeatures(nn.Module):
    """[t, sin(2 pi t w), cos(2 pi t w)] with w ~ N(0, 1) fixed at initialisation: (B,) -> (B, 17)."""

    @nn.compact
    def __call__(self, t: jax.Array) -> jax.Array:
        w = self.variable("constants", "frequencies",
                          lambda: jax.random.normal(self.make_rng("params"), (NUM_FOURIER_FREQUENCIES,))).value
        t = t[:, None]
        f = 2.0 * jnp.pi * t * w[None, :]
        return jnp.concatenate([t, jnp.sin(f), jnp.cos(f)], axis=-1)


class ResidualMLPDenoiser(nn.Module):
    """F(x, c_noise[, condition, keep]) -> (B, d): the raw EDM network output (preconditioning
    lives in `edm.py`)."""

    width: int = 1024
    depth: int = 6
    dim_t: int = 128
    activation: str = "relu"
    layer_norm: bool = False
    conditioning: str = "none"  # "none", "add" or "concat" (see the module docstring)
    matmul_precision: str = "float32"  # of every layer's product (`synther_jax.nn.MATMUL_PRECISIONS`)

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array, condition: Optional[jax.Array] = None,
                 keep: Optional[jax.Array] = None) -> jax.Array:
        """x (B, d), c_noise (B,); a conditional network also takes condition (B,) in [-1, 1] and
        keep (B,), 1 where the condition is used and 0 for the unconditional model."""
        act = activation(self.activation)
        dense = partial(Linear, matmul_precision=self.matmul_precision)
        norm = nn.LayerNorm if self.layer_norm else (lambda: (lambda h: h))
        time_embedding = dense(self.dim_t)(nn.silu(dense(self.dim_t)(RandomFourierFeatures()(c_noise))))
        if self.conditioning == "none":
            h = dense(self.dim_t)(x) + time_embedding
            h = dense(self.width)(h)
        else:
            if condition is None or keep is None:
                raise ValueError("A conditional denoiser needs a condition and a keep mask (0: unconditional).")
            mish = activation("mish")
            condition_embedding = dense(self.dim_t)(mish(dense(2 * self.dim_t)(condition[:, None])))
            condition_embedding = condition_embedding * keep[:, None].astype(x.dtype)
            if self.conditioning == "add":
                h = dense(self.dim_t)(x) + time_embedding + condition_embedding
                h = dense(self.width)(h)
            else:
                embedding = jnp.concatenate([condition_embedding, time_embedding], axis=-1)
                h = jnp.concatenate([dense(self.width)(x), dense(self.width)(embedding)], axis=-1)
        for _ in range(self.depth):
            h = h + dense(h.shape[-1])(act(norm()(h)))
        return dense(x.shape[-1])(act(norm()(h)))


def init_variables(model: ResidualMLPDenoiser, key: jax.Array, dim: int) -> dict:
    """The model's `params` and `constants` for rows of `dim` columns."""
    batch = (jnp.zeros((1, dim)), jnp.zeros((1,)))
    if model.conditioning != "none":
        batch += (jnp.zeros((1,)), jnp.ones((1,)))
    return model.init(key, *batch)


def parameter_count(dim: int, width: int = 1024, depth: int = 6, dim_t: int = 128, layer_norm: bool = False,
                    conditioning: str = "none") -> int:
    """Trainable parameters of the denoiser for rows of `dim` columns (the fixed frequencies excluded)."""
    model = ResidualMLPDenoiser(width, depth, dim_t, layer_norm=layer_norm, conditioning=conditioning)
    shapes = jax.eval_shape(lambda: init_variables(model, jax.random.PRNGKey(0), dim))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))
