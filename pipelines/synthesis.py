"""The offline pipeline's data stages, from a `configs/d4rl.py` config: load the real dataset, fit
the denoiser (one shared by every agent seed, or one per seed with `denoiser_per_seed`), distil it
into a few-step sampler if `distill.num_steps` asks, and write its samples. `launch.synthesize`
runs them alone, `launch.offline` before the agents.

With `guidance.condition` (return or reward), the denoiser trains on each transition's condition
(`guidance_condition`) and every sample is prompted with a condition drawn from the real rows' top
`guidance.top_frac`, at guidance scale `guidance.scale` (docs/guided.md).

Synthetic terminals follow `terminals` (`synther_jax.termination`): the generated column, the
termination rule of the data's environment (`env_rule`; `load_real` refuses data of an environment
without one) or 0.
"""
import contextlib
import os
from typing import List, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from configs.checks import terminal_rule
from synther_jax import distributed, sharding
from synther_jax.data import SyntheticWriter, Transitions, dataset_task, load_dataset
from synther_jax.data.returns import episode_starts, returns_to_go
from synther_jax.diffusion import (Diffusion, DiffusionConfig, DistillConfig, distill, iterate_samples,
                                  top_fraction_prompts, train_diffusion)
from synther_jax.errors import InvalidDatasetError
from synther_jax.metrics import MetricsWriter
from synther_jax.termination import HealthRule, has_terminal_column, synthetic_transitions

SAMPLES_FILE = "samples.npz"  # one denoiser shared by every agent seed
SEED_SAMPLES_FILE = os.path.join("samples", "seed{}.npz")  # denoiser_per_seed: agent seed i's data
SHORT_EPISODES = 10  # mean episode length (rows) below which return guidance warns that episodes are cut


def denoiser_seeds(config: ml_collections.ConfigDict) -> List[int]:
    """Each agent seed's denoiser seed: `seed` for all of them with one shared denoiser (the
    original's scripts); `seed + i` for agent seed i with `denoiser_per_seed`, so that denoiser i
    is the model `--config.seed=<seed + i>` trains alone (to float32 rounding)."""
    return [config.seed + i if config.denoiser_per_seed else config.seed for i in range(config.num_seeds)]


def samples_paths(config: ml_collections.ConfigDict, workdir: str) -> List[str]:
    """The synthetic files: `samples.npz` of the shared denoiser, or `samples/seed<i>.npz` per agent
    seed, each a file of the original's five keys that its loader reads."""
    if not config.denoiser_per_seed:
        return [os.path.join(workdir, SAMPLES_FILE)]
    return [os.path.join(workdir, SEED_SAMPLES_FILE.format(i)) for i in range(config.num_seeds)]


def guidance_condition(config: ml_collections.ConfigDict, real: Transitions) -> Optional[np.ndarray]:
    """Each real transition's condition (N,) float32 for `config.guidance.condition`: its reward,
    or its discounted return-to-go within its episode; None unguided. Pass whole episodes: a
    subsample cuts them (compute on the loaded data, then index)."""
    condition = config.guidance.condition
    if condition == "none":
        return None
    if condition == "reward":
        return real.rewards.astype(np.float32)
    mean_length = len(real) / np.sum(episode_starts(real))
    (logging.warning if mean_length < SHORT_EPISODES else logging.info)(
        "Return-to-go over episodes of %.1f rows on average%s.", mean_length,
        " (the data holds cut episodes, so it is close to the reward)" if mean_length < SHORT_EPISODES else "")
    return returns_to_go(real, config.guidance.discount).astype(np.float32)


def train_model(config: ml_collections.ConfigDict, real: Transitions, workdir: str, metrics: MetricsWriter,
                condition: Optional[np.ndarray] = None) -> Diffusion:
    """Stage: fit the denoiser to the real transitions (resumes from `workdir/diffusion`); with
    `denoiser_per_seed`, one per agent seed as one vmapped program, the seeds split across the
    local devices as the agents' are (a model with a leading seed axis). A guided run passes each
    transition's `condition`."""
    column = has_terminal_column(config.terminals)
    rows = real.to_rows(column)
    skip_norm_dims = (rows.shape[1] - 1,) if column else ()  # the 0/1 terminal stays raw
    diffusion, folder = DiffusionConfig(**config.diffusion), os.path.join(workdir, "diffusion")
    log_fn = lambda step, m: metrics.write("diffusion", step, m)
    if config.denoiser_per_seed:
        keys = jnp.stack([jax.random.PRNGKey(seed) for seed in denoiser_seeds(config)])
        return train_diffusion(rows, diffusion, keys, skip_norm_dims, workdir=folder, log_fn=log_fn,
                               mesh=sharding.mesh_for_axis(config.num_seeds), condition=condition)
    return train_diffusion(rows, diffusion, jax.random.PRNGKey(config.seed), skip_norm_dims, workdir=folder,
                           log_fn=log_fn, mesh=sharding.auto_mesh(), condition=condition)


def distill_model(config: ml_collections.ConfigDict, real: Transitions, model: Diffusion, workdir: str) -> Diffusion:
    """Stage: with `distill.num_steps`, distil the trained denoiser (each seed's, as one vmapped
    program) into a sampler of that many steps, resuming from `workdir/distill`; the model as it
    is without. Denoiser seed s distils with the key fold_in(PRNGKey(s), 3). One process only
    (`configs.checks.check_distill` refuses more)."""
    if not config.distill.num_steps:
        return model
    keys = [jax.random.fold_in(jax.random.PRNGKey(seed), 3) for seed in denoiser_seeds(config)]
    return distill(model, real.to_rows(has_terminal_column(config.terminals)), DistillConfig(**config.distill),
                   jnp.stack(keys) if config.denoiser_per_seed else keys[0], workdir=os.path.join(workdir, "distill"))


def write_samples(config: ml_collections.ConfigDict, real: Transitions, model: Diffusion, workdir: str,
                  condition: Optional[np.ndarray] = None) -> List[str]:
    """Stage: generate `config.num_samples` transitions per denoiser into `samples_paths`.

    The writers stream chunks to disk and rename each file into place only when complete, so a
    file that exists is finished; the stage is done when all of them exist. An interrupted stage
    resumes after the last chunk that every file holds. With `clip_actions`
    every action entry is clipped to [-1, 1] before it is written. Denoiser seed s
    samples with the key fold_in(PRNGKey(s), 1); guided by the real `condition`, its prompts are
    drawn from the top `guidance.top_frac` with the key fold_in(PRNGKey(s), 2).
    """
    paths = samples_paths(config, workdir)
    if distributed.from_main(all(map(os.path.exists, paths))):
        return paths
    rule = synthetic_terminal_rule(config, real)
    seeds = denoiser_seeds(config)[:len(paths)]  # one per file: the shared denoiser's, or each seed's
    keys = [jax.random.fold_in(jax.random.PRNGKey(seed), 1) for seed in seeds]
    prompts, scale = None, config.guidance.scale
    if condition is not None:
        prompts = np.stack([np.asarray(top_fraction_prompts(jax.random.fold_in(jax.random.PRNGKey(seed), 2), condition,
                                                            config.num_samples, config.guidance.top_frac))
                            for seed in seeds])
    with contextlib.ExitStack() as stack:
        # Process 0 writes the files; in a multi-process job the others take part in sampling only.
        writers = [stack.enter_context(SyntheticWriter(path, source_dataset=config.dataset, config=config, seed=seed,
                                                       model_checkpoint=os.path.join(workdir, "diffusion"),
                                                       env_id=real.metadata.get("env_id"), resumable=True))
                   for path, seed in zip(paths, seeds)] if distributed.is_main() else []
        start = distributed.from_main(min((writer.num_transitions for writer in writers), default=0))
        for writer in writers:
            writer.truncate(start)
        if start:
            logging.info("Resuming the samples at %d of %d per file.", start, config.num_samples)
        if config.denoiser_per_seed:
            chunks = iterate_samples(model, config.num_samples, jnp.stack(keys), condition=prompts, guidance=scale,
                                     mesh=sharding.mesh_for_axis(config.num_seeds), start=start)
        else:
            chunks = (rows[None] for rows in iterate_samples(
                model, config.num_samples, keys[0], mesh=sharding.auto_mesh(), guidance=scale, start=start,
                condition=None if prompts is None else prompts[0]))
        for rows in chunks:  # (denoisers, chunk, d)
            for writer, seed_rows in zip(writers, rows):
                data = synthetic_transitions(seed_rows, real.obs_dim, real.action_dim, config.terminals,
                                             config.terminal_threshold, rule)
                writer.write(data.clip_actions() if config.clip_actions else data)
    distributed.barrier("samples written")  # before any process reads them back
    return paths


def synthetic_terminal_rule(config: ml_collections.ConfigDict, real: Transitions) -> Optional[HealthRule]:
    """The termination rule of the real data's environment that labels synthetic terminals under
    `terminals=env_rule` (None otherwise); ConfigError if that environment has none."""
    return terminal_rule(config, real.metadata.get("env_id") or dataset_task(config.dataset))


def load_real(config: ml_collections.ConfigDict) -> Transitions:
    """The configured dataset, checked to hold enough transitions to fit a model to, and to come
    from an environment with a termination rule if synthetic terminals follow it."""
    real = load_dataset(config.dataset, env_id=config.env_id)
    if len(real) < 2:
        raise InvalidDatasetError(f"{config.dataset} holds {len(real)} transition; the diffusion model and the agents "
                                  "need at least 2 (a real dataset has thousands).")
    synthetic_terminal_rule(config, real)
    return real
