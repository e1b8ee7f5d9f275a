"""Generating transitions with a trained model (paper Appendix B.2): one model, or one per seed as one
vmapped program.

`iterate_samples` and `generate` sample with the EMA weights in fixed-size chunks, one jitted
sampler call each (`sample_rows`). Given a stack of S models (their arrays with a leading seed
axis, as `train_diffusion` returns them for a stack of keys) and S keys, all seeds sample in each
call; seed s's rows are those of its model alone with keys[s], up to float32 rounding. One model
with one key is the one-seed case of the same program.

A conditional model samples guided by targets in the condition's own units at a guidance scale w
(`edm.guided_sample`; the condition is never dropped at sampling), or unconditionally without
targets. A distilled model samples in its few steps (`synther_jax.diffusion.distillation`). With
a `mesh` (see `synther_jax.sharding`), one model's chunks are split across its devices, and a
stack's seeds likewise.
"""
from typing import Iterator, Optional

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from synther_jax import sharding
from synther_jax.diffusion import edm
from synther_jax.diffusion.distillation import consistency_sample
from synther_jax.diffusion.model import Diffusion, check_divisible, denoiser_fn, is_one_key, with_seed_axis
from synther_jax.progress import Progress


def _sample_rows(model: Diffusion, key: jax.Array, num: int, mesh: Optional[Mesh] = None,
                 condition: Optional[jax.Array] = None, guidance: jax.Array = 1.0) -> jax.Array:
    """`num` un-normalised rows from one model.

    For a conditional model, `condition` holds each row's target (num,) in the condition's own
    units and `guidance` the scale w (traced: one compilation for every w); without a condition
    it samples the model's unconditional half. With a `mesh`, pass the model replicated on it: the
    rows are split across its devices.
    """
    net = denoiser_fn(model.config, model.params, model.constants, mesh)
    if model.distilled is not None:  # unconditional: `distill` refuses a conditional teacher
        x = consistency_sample(net, key, num, model.dim, model.config, model.distilled)
    elif condition is not None:
        if not model.config.conditional:
            raise ValueError("This model is unconditional; sample it without a condition, or train it with "
                             "conditioning='add' and a condition to guide it.")
        target = model.condition_normalizer.normalize(jnp.asarray(condition, jnp.float32))
        x = edm.guided_sample(net, key, target, jnp.float32(guidance), model.dim, model.config,
                              model.config.guidance_corrector)
    elif model.config.conditional:
        unconditional = jnp.zeros((num,))
        x = edm.sample(lambda x, c_noise: net(x, c_noise, unconditional, unconditional), key, num, model.dim,
                       model.config)
    else:
        x = edm.sample(net, key, num, model.dim, model.config)
    return sharding.constrain_leading_axis(model.normalizer.unnormalize(x), mesh)


@jax.jit(static_argnames=("num", "mesh"))
def sample_rows(models: Diffusion, keys: jax.Array, num: int, condition: Optional[jax.Array] = None,
                guidance: jax.Array = 1.0, mesh: Optional[Mesh] = None) -> jax.Array:
    """`_sample_rows` for every seed's model at once: (S, num, d) rows from models, keys and
    conditions (S, num) with a leading seed axis. With a `mesh`, pass the models replicated on it:
    each seed's rows are split across its devices (one model, data-parallel)."""
    if condition is None:
        return jax.vmap(lambda model, key: _sample_rows(model, key, num, mesh))(models, keys)
    return jax.vmap(lambda model, key, c: _sample_rows(model, key, num, mesh, condition=c, guidance=guidance))(
        models, keys, condition)


def _condition_chunk(condition: Optional[np.ndarray], start: int, chunk_size: int) -> Optional[np.ndarray]:
    """The targets of the chunk that starts at `start` (last axis), padded to the chunk size with
    the last target (the rows they give are cut)."""
    if condition is None:
        return None
    chunk = condition[..., start:start + chunk_size]
    pad = [(0, 0)] * (chunk.ndim - 1) + [(0, chunk_size - chunk.shape[-1])]
    return np.pad(chunk, pad, mode="edge")


def _check_targets(condition, shape: tuple) -> Optional[np.ndarray]:
    if condition is None:
        return None
    condition = np.asarray(condition, np.float32)
    if condition.shape != shape or not np.all(np.isfinite(condition)):
        raise ValueError(f"Guidance needs one finite target per sample, shape {shape}; got shape {condition.shape}.")
    return condition


def iterate_samples(model: Diffusion, num_samples: int, key: jax.Array, chunk_size: Optional[int] = None,
                    progress: bool = True, mesh: Optional[Mesh] = None, condition: Optional[np.ndarray] = None,
                    guidance: float = 1.0, start: int = 0) -> Iterator[np.ndarray]:
    """Yields host chunks of un-normalised rows, `num_samples` in all per model, deterministic for
    `key`: (rows, d) for one model and one key, (S, rows, d) for S models and a stack of S keys.
    Rows before `start` are not yielded (a resumed writer holds them); the rest are the same rows
    that a run from 0 yields there.

    Chunk c uses fold_in(key, c) (each seed's own key); every call compiles one shape (the last
    chunk is cut), so only one chunk at a time lives on the host beyond what the caller keeps. With
    a `mesh`, one model's chunks are split across its devices, the chunk size then rounded up to a
    multiple of their number; a stack's seeds are split across them (the number of seeds must be a
    multiple). A conditional model samples guided by `condition`, one target per sample
    ((num_samples,), or (S, num_samples) for a stack), at scale `guidance`, or unconditionally
    without one.
    """
    key = jnp.asarray(key)
    one = is_one_key(key)
    models, keys = (with_seed_axis(model), key[None]) if one else (model, key)
    num_seeds = len(keys)
    condition = _check_targets(condition, (num_samples,) if one else (num_seeds, num_samples))
    if one and condition is not None:
        condition = condition[None]
    chunk_size = min(chunk_size or model.config.sample_chunk_size, num_samples)
    if mesh is not None and one:
        chunk_size = -(-chunk_size // mesh.size) * mesh.size
        models = sharding.replicate(models, mesh)
    elif mesh is not None:
        check_divisible(num_seeds, mesh, "number of seeds")
        models, keys = sharding.shard_leading_axis((models, keys), mesh)
    with Progress(num_samples * num_seeds, "generating", unit="sample", enabled=progress,
                  initial=start * num_seeds) as bar:
        for c in range(start // chunk_size, -(-num_samples // chunk_size)):
            first = c * chunk_size
            chunk_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, c)
            targets = _condition_chunk(condition, first, chunk_size)
            rows = sharding.to_host(sample_rows(models, chunk_keys, chunk_size, targets, guidance,
                                                mesh=mesh if one else None))
            rows = rows[:, max(start - first, 0): num_samples - first]
            bar.update(rows.size // model.dim)
            yield rows[0] if one else rows


def generate(model: Diffusion, num_samples: int, key: jax.Array, chunk_size: Optional[int] = None,
             progress: bool = True, mesh: Optional[Mesh] = None, condition: Optional[np.ndarray] = None,
             guidance: float = 1.0) -> np.ndarray:
    """The rows of `iterate_samples` gathered into one float32 array: (num_samples, d) for one
    model and one key, (S, num_samples, d) for a stack."""
    shape = (num_samples, model.dim) if is_one_key(jnp.asarray(key)) else (len(key), num_samples, model.dim)
    out = np.empty(shape, np.float32)
    start = 0
    for rows in iterate_samples(model, num_samples, key, chunk_size, progress, mesh, condition, guidance):
        out[..., start:start + rows.shape[-2], :] = rows
        start += rows.shape[-2]
    return out
