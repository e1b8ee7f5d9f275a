"""The EDM diffusion model over flat transition rows (SynthER's generative core)."""
from synther_jax.diffusion.denoiser import ResidualMLPDenoiser
from synther_jax.diffusion.edm import EDMConfig
from synther_jax.diffusion.guidance import ConditionNormalizer, top_fraction_prompts
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.trainer import (Diffusion, DiffusionConfig, generate, generate_seeds, iterate_samples,
                                           iterate_samples_seeds, load_diffusion, train_diffusion,
                                           train_diffusion_seeds)
