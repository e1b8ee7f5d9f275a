"""The EDM diffusion model over flat transition rows (SynthER's generative core)."""
from synther_jax.diffusion.config import DiffusionConfig, DistillConfig
from synther_jax.diffusion.denoiser import ResidualMLPDenoiser
from synther_jax.diffusion.distillation import distill
from synther_jax.diffusion.edm import EDMConfig
from synther_jax.diffusion.guidance import ConditionNormalizer, top_fraction_prompts
from synther_jax.diffusion.model import Diffusion
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.sampling import generate, iterate_samples
from synther_jax.diffusion.storage import load_diffusion
from synther_jax.diffusion.training import train_diffusion
