"""SynthER in JAX: a diffusion model of transitions that upsamples an agent's data (`SynthER`), and
the data, diffusion and analysis layers it is made of."""
from synther_jax.synther import SynthER

__version__ = "0.2.0"
