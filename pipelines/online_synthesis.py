"""Online SynthER's synthesizer: at each retrain of the online loop (`pipelines.online_loop`), one
diffusion model per seed fitted to that seed's real rows, and its samples."""
import time
from typing import Callable, Dict, Mapping, Optional, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from synther_jax.diffusion import (Diffusion, DiffusionConfig, DistillConfig, distill, generate, top_fraction_prompts,
                                  train_diffusion)
from synther_jax.envs import make_env
from synther_jax.termination import has_terminal_column


class DiffusionSynthesizer:
    """Trains one diffusion model per seed on that seed's real rows, then samples `num_samples`
    rows from each.

    All seeds' models train and sample together as one vmapped program (`train_diffusion` and
    `generate` with a stack of keys), which a GPU runs side by side; the original trains them one
    after another, which gives the same rows up to float32 rounding. By default each retrain starts
    from new weights, optimiser and EMA, as the original (paper Section 3.2). With `warm_start`,
    each seed's model starts from that seed's previous model; after a resume the first retrain
    starts fresh, since models are not checkpointed.

    Guided (a conditional `diffusion` config, called with a `condition` per real row): each seed's
    model learns its rows with their condition, and each sample is prompted with a condition drawn
    from that seed's top `top_frac` (`top_fraction_prompts`) at guidance scale `guidance_scale`.

    With a `distill` section whose `num_steps` is set (1, 2 or 4), each seed's freshly trained model
    is distilled on its rows into a sampler of that many steps, which draws the samples instead.
    """

    def __init__(self, diffusion: ml_collections.ConfigDict, num_samples: int, skip_norm_dims: Sequence[int],
                 warm_start: bool = False, progress: bool = True,
                 guidance_scale: float = 1.0, top_frac: float = 1.0,
                 log_fn: Optional[Callable[[int, Dict[str, float]], None]] = None,
                 distill: Optional[Mapping] = None):
        self.config = DiffusionConfig(**diffusion)
        self.distill = DistillConfig(**distill) if distill and distill["num_steps"] else None
        self.num_samples = num_samples
        self.skip_norm_dims = tuple(skip_norm_dims)
        self.warm_start = warm_start
        self.progress, self.log_fn = progress, log_fn  # log_fn(step, {"loss"}) after each training chunk
        self.guidance_scale, self.top_frac = guidance_scale, top_frac
        self.seconds = {"diffusion_training": 0.0, "generation": 0.0, **({"distillation": 0.0} if self.distill else {})}
        self.retrains = 0
        self._previous: Optional[Diffusion] = None  # every seed's last model, seed axis first

    def __call__(self, real_rows: np.ndarray, keys: jax.Array, condition: Optional[np.ndarray] = None) -> np.ndarray:
        train_keys, sample_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
        warm_start = self._previous if self.warm_start else None
        prompts = None
        if condition is not None:  # a key of its own, so the sampler's noise is that of an unguided run
            prompt_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 1)
            prompts = np.stack([np.asarray(top_fraction_prompts(k, c, self.num_samples, self.top_frac))
                                for k, c in zip(prompt_keys, condition)])
        start = time.perf_counter()
        models = train_diffusion(real_rows, self.config, train_keys, self.skip_norm_dims, progress=self.progress,
                                 warm_start=warm_start, log_fn=self.log_fn, condition=condition)
        jax.block_until_ready(models)
        if self.warm_start:
            self._previous = models  # the teacher, not its distilled sampler
        self.seconds["diffusion_training"] += time.perf_counter() - start
        if self.distill:
            start = time.perf_counter()
            distill_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, 3)  # a stream of its own
            models = jax.block_until_ready(distill(models, real_rows, self.distill, distill_keys,
                                                   progress=self.progress))
            self.seconds["distillation"] += time.perf_counter() - start
        start = time.perf_counter()
        rows = generate(models, self.num_samples, sample_keys, progress=self.progress, condition=prompts,
                        guidance=self.guidance_scale)
        self.seconds["generation"] += time.perf_counter() - start
        self.retrains += 1
        return rows


def skip_norm_dims(obs_dim: int, action_dim: int, terminal_column: bool, normalise_reward: bool) -> tuple:
    """Row columns the normaliser leaves raw, as the original's online code: the terminal (Gym) and,
    for DMC, the reward."""
    dims = []
    if not normalise_reward:
        dims.append(obs_dim + action_dim)
    if terminal_column:
        dims.append(2 * obs_dim + action_dim + 1)
    return tuple(dims)


def make_synthesizer(config: ml_collections.ConfigDict, **options) -> Optional[DiffusionSynthesizer]:
    """The config's synthesizer (None without SynthER); `options` go to `DiffusionSynthesizer`."""
    if not config.synther.enabled:
        return None
    probe = make_env(config.env_name)
    obs_dim, action_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    dims = skip_norm_dims(obs_dim, action_dim, has_terminal_column(config.synther.terminals),
                          config.synther.normalise_reward)
    return DiffusionSynthesizer(config.synther.diffusion, config.synther.num_samples, dims, config.synther.warm_start,
                                guidance_scale=config.guidance.scale, top_frac=config.guidance.top_frac,
                                distill=config.synther.distill, **options)
