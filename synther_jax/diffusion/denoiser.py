"""The residual-MLP denoiser network F of SynthER (spec section 1).

    t = c_noise(sigma)                      # one scalar per sample
    emb = [t, sin(2 pi t w), cos(2 pi t w)]  # w: 8 fixed N(0, 1) frequencies -> 17 dims
    h = Linear(x) + TimeMLP(emb)            # the time embedding is added, not concatenated
    h = Linear_width(h)
    h = h + Linear(act(LN(h)))  x depth     # pre-activation residual blocks, one layer each
    out = Linear_d(act(LN(h)))

The Fourier frequencies are drawn once at initialisation and never trained; they live in the
`constants` collection so that optimisers, EMA and parameter counts see only the `params`.
"""
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
    """F(x, c_noise) -> (B, d): the raw EDM network output (preconditioning lives in `edm.py`)."""

    width: int = 1024
    depth: int = 6
    dim_t: int = 128
    activation: str = "relu"
    layer_norm: bool = False

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array) -> jax.Array:
        act = activation(self.activation)
        norm = nn.LayerNorm if self.layer_norm else (lambda: (lambda h: h))
        time_embedding = Linear(self.dim_t)(nn.silu(Linear(self.dim_t)(RandomFourierFeatures()(c_noise))))
        h = Linear(self.dim_t)(x) + time_embedding
        h = Linear(self.width)(h)
        for _ in range(self.depth):
            h = h + Linear(self.width)(act(norm()(h)))
        return Linear(x.shape[-1])(act(norm()(h)))


def parameter_count(dim: int, width: int = 1024, depth: int = 6, dim_t: int = 128, layer_norm: bool = False) -> int:
    """Trainable parameters of the denoiser for rows of `dim` columns (the fixed frequencies excluded)."""
    model = ResidualMLPDenoiser(width, depth, dim_t, layer_norm=layer_norm)
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, dim)), jnp.zeros((1,)))
    return sum(int(np.prod(leaf.shape)) for leaf in jax.tree.leaves(shapes["params"]))
