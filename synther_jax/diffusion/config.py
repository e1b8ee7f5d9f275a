"""The diffusion model's settings: every number of the denoiser, its training and its sampler
(`DiffusionConfig`), and of its distillation into a few-step sampler (`DistillConfig`).

The defaults are the paper's (Appendix B). A config is frozen and hashable, so the jitted
training chunk and sampler take it as a static argument; values that cannot train or sample are
refused on construction, before anything is compiled.
"""
import dataclasses

from synther_jax.diffusion import edm
from synther_jax.diffusion.denoiser import ResidualMLPDenoiser
from synther_jax.nn import ACTIVATIONS, MATMUL_PRECISIONS

LARGE_DATASET = 800_000  # datasets at least this big train with batch 1024, smaller ones with 256
CONDITIONINGS = ("none", "add", "concat")


@dataclasses.dataclass(frozen=True)
class DiffusionConfig(edm.EDMConfig):
    """Every number of the denoiser, its training and its sampler; defaults are the paper's."""

    width: int = 1024
    depth: int = 6
    dim_t: int = 128
    activation: str = "relu"
    layer_norm: bool = False
    learning_rate: float = 3e-4  # cosine-decayed to 0 over num_train_steps, no warmup
    adam_b1: float = 0.9
    adam_b2: float = 0.99
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    num_train_steps: int = 100_000
    batch_size: int = 0  # 0: 1024 if the dataset has >= 800K rows, else 256
    ema_decay: float = 0.995
    ema_update_every: int = 10
    ema_update_after: int = 100
    ema_power: float = 2.0 / 3.0
    steps_per_call: int = 1_000  # optimisation steps per jitted call
    checkpoint_every: int = 10_000  # in steps; rounded up to a whole number of calls
    sample_chunk_size: int = 100_000  # samples per jitted sampler call
    conditioning: str = "none"  # "none": SynthER; "add" / "concat": a conditional model (denoiser.py)
    condition_dropout: float = 0.25  # a conditional model's training rows that drop the condition (PGR)
    guidance_corrector: str = "full"  # the guided Heun corrector: "full" CFG or PGR's "conditional"
    # The denoiser's matrix products in training and sampling: "float32" (the original's), "tf32" or
    # "bfloat16" (`synther_jax.nn.MATMUL_PRECISIONS`; fidelity of each in bench/results/precision_*.json).
    matmul_precision: str = "float32"

    def __post_init__(self):
        """Refuses values that cannot train or sample, before anything is compiled."""
        positive = ("width", "depth", "dim_t", "learning_rate", "grad_clip", "num_train_steps", "ema_update_every",
                    "steps_per_call", "checkpoint_every", "sample_chunk_size", "num_sample_steps", "sigma_data",
                    "sigma_min", "rho", "S_noise")
        not_negative = ("batch_size", "weight_decay", "ema_update_after", "S_churn", "S_tmin")
        problems = [f"{name} must be positive, got {getattr(self, name)!r}" for name in positive
                    if not getattr(self, name) > 0]
        problems += [f"{name} must not be negative, got {getattr(self, name)!r}" for name in not_negative
                     if getattr(self, name) < 0]
        if not self.sigma_min < self.sigma_max:
            problems.append(f"sigma_min ({self.sigma_min}) must be below sigma_max ({self.sigma_max})")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if not 0 <= self.condition_dropout <= 1:
            problems.append(f"condition_dropout must lie in [0, 1], got {self.condition_dropout!r}")
        if self.conditioning not in CONDITIONINGS:
            problems.append(f"conditioning must be one of {CONDITIONINGS}, got {self.conditioning!r}")
        if self.guidance_corrector not in edm.CORRECTORS:
            problems.append(f"guidance_corrector must be one of {edm.CORRECTORS}, got {self.guidance_corrector!r}")
        if self.solver not in edm.SOLVERS:
            problems.append(f"solver must be one of {edm.SOLVERS}, got {self.solver!r}")
        elif self.solver == "dpmpp_2m" and self.S_churn:
            problems.append(f"solver 'dpmpp_2m' is deterministic: set S_churn=0 (got {self.S_churn!r})")
        if self.matmul_precision not in MATMUL_PRECISIONS:
            problems.append(f"matmul_precision must be one of {MATMUL_PRECISIONS}, got {self.matmul_precision!r}")
        if self.activation not in ACTIVATIONS:
            problems.append(f"activation must be one of {sorted(ACTIVATIONS)}, got {self.activation!r}")
        if problems:
            raise ValueError("Invalid DiffusionConfig: " + "; ".join(problems) + ".")

    def denoiser(self) -> ResidualMLPDenoiser:
        return ResidualMLPDenoiser(self.width, self.depth, self.dim_t, self.activation, self.layer_norm,
                                   self.conditioning, self.matmul_precision)

    @property
    def conditional(self) -> bool:
        return self.conditioning != "none"

    def resolve_batch_size(self, num_rows: int) -> int:
        if self.batch_size:
            return self.batch_size
        return 1024 if num_rows >= LARGE_DATASET else 256


DISTILLED_STEPS = (1, 2, 4)


@dataclasses.dataclass(frozen=True)
class DistillConfig:
    """The settings of `synther_jax.diffusion.distillation`: the original consistency distillation's
    grid, optimiser and stop-gradient target, with the improved recipe's pseudo-Huber distance
    (scaled to the row size) and weights. `num_steps` is the sampler's network evaluations per
    sample; it and the restart levels do not change training."""

    num_steps: int = 4
    grid_points: int = 18  # the Karras grid the teacher steps along (the original CIFAR-10 CD's N)
    num_train_steps: int = 20_000
    batch_size: int = 256
    learning_rate: float = 1e-4  # Adam, constant, as the original CD
    ema_decay: float = 0.999  # of the weights the sampler uses
    huber_scale: float = 0.001  # pseudo-Huber c = huber_scale sqrt(d)
    # The noise levels a sampler of several steps adds back, in the rows' standardised units: from
    # restart_high down to restart_low, evenly in log(sigma) (distillation.sampler_sigmas). Chosen
    # on walker2d medium-replay's marginal score; the EDM schedule's 2.5 for two steps lost 0.02.
    restart_high: float = 1.0
    restart_low: float = 0.12
    steps_per_call: int = 1_000
    checkpoint_every: int = 5_000

    def __post_init__(self):
        problems = []
        if self.num_steps not in DISTILLED_STEPS:
            problems.append(f"num_steps must be one of {DISTILLED_STEPS}, got {self.num_steps!r}")
        if self.grid_points < 2:
            problems.append(f"grid_points must be at least 2, got {self.grid_points!r}")
        for name in ("num_train_steps", "batch_size", "learning_rate", "huber_scale", "restart_high", "restart_low",
                     "steps_per_call", "checkpoint_every"):
            if not getattr(self, name) > 0:
                problems.append(f"{name} must be positive, got {getattr(self, name)!r}")
        if not self.restart_high >= self.restart_low:
            problems.append(f"restart_high ({self.restart_high!r}) must be at least restart_low ({self.restart_low!r})")
        if not 0 <= self.ema_decay < 1:
            problems.append(f"ema_decay must lie in [0, 1), got {self.ema_decay!r}")
        if problems:
            raise ValueError("Invalid DistillConfig: " + "; ".join(problems) + ".")
