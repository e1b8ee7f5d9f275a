"""Training the denoiser (paper Appendix B.2): one model, or one per seed as one vmapped program.

`train_diffusion` fits the normaliser, then runs `num_train_steps` AdamW steps in jitted chunks of
`steps_per_call` steps (`train_steps`: one `lax.scan` each, minibatches drawn on device), keeps the
EMA of the weights exactly as ema-pytorch 0.1.2 does, and checkpoints so an interrupted run
resumes to the same parameters (`storage`).

Given a stack of S keys it trains S models as one vmapped program (online SynthER's per-seed
models; offline SynthER's `denoiser_per_seed`, where every seed fits the same rows with its own
key), checkpointed and resumable like one model. One key is the one-seed case of the same program,
and its model has no seed axis. Seed s of a stack gets what keys[s] alone gives, up to float32
rounding (a batched matmul may sum in another order).

A conditional model (`conditioning` "add" or "concat") also takes one condition value per row:
it is min-max normalised (`guidance.ConditionNormalizer`, stored with the model) and dropped with
probability `condition_dropout` per training row (classifier-free guidance's unconditional model).

With a `mesh` (see `synther_jax.sharding`), one model trains data-parallel: its parameters and
data are replicated on the devices and each minibatch is split across them. A stack of seeds is
split across the devices instead, whole seeds on each. Without a mesh everything runs on the
default device.

Deviation from the original, without effect on the model's behaviour: minibatches are drawn
uniformly with replacement instead of by a shuffled DataLoader with a partial batch at each epoch
end.
"""
import dataclasses
import hashlib
import os
from functools import partial
from typing import Callable, Dict, Optional, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh

from synther_jax import distributed, sharding
from synther_jax.atomic import read_json, write_json
from synther_jax.checkpoint import Checkpointer
from synther_jax.diffusion import edm
from synther_jax.diffusion.config import DiffusionConfig
from synther_jax.diffusion.guidance import ConditionNormalizer
from synther_jax.diffusion.model import (Diffusion, TrainState, check_divisible, denoiser_fn, init_state, is_one_key,
                                         make_optimizer, stacked, with_seed_axis, without_seed_axis)
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.storage import checkpoint_tree, write_config
from synther_jax.errors import InvalidDatasetError, WorkdirError
from synther_jax.progress import Progress

FIT_FILE = "fit.json"  # in a training workdir: what the checkpoints there were fitted to (`claim_fit`)


def ema_decay(k: jax.Array, config: DiffusionConfig):
    """(copy, decay) for ema-pytorch 0.1.2's k-th `update()` call (k counts from 0, one per step).

    Only calls with k % update_every == 0 act. Up to update_after, and on the first acting call
    after it (ema-pytorch's `initted` flag), the EMA is a plain copy. After that
    decay = min(1 - (1 + k - update_after)^(-power), ema_decay): ema-pytorch increments its
    counter before computing the decay, so the epoch is k - update_after.
    """
    first_average = (config.ema_update_after // config.ema_update_every + 1) * config.ema_update_every
    copy = k <= first_average
    epoch = jnp.maximum(k - config.ema_update_after, 0).astype(jnp.float32)
    decay = jnp.clip(1.0 - (1.0 + epoch) ** -config.ema_power, 0.0, config.ema_decay)
    return copy, decay


def update_ema(ema_params, params, k, config: DiffusionConfig):
    copy, decay = ema_decay(k, config)
    acts = k % config.ema_update_every == 0

    def leaf(ema, new):
        averaged = ema - (1.0 - decay) * (ema - new)
        return jnp.where(acts, jnp.where(copy, new, averaged), ema)

    return jax.tree.map(leaf, ema_params, params)


def condition_keep(key: jax.Array, batch_size: int, dropout: float) -> jax.Array:
    """Training's per-row mask: 1 keeps the condition, 0 (probability `dropout`) trains the
    unconditional model on that row."""
    return jax.random.bernoulli(key, 1.0 - dropout, (batch_size,)).astype(jnp.float32)


def _train_chunk(state: TrainState, data: jax.Array, key: jax.Array, *, config: DiffusionConfig, num_steps: int,
                batch_size: int, mesh: Optional[Mesh] = None):
    """`num_steps` optimisation steps in one scan over minibatches of the normalised `data`.

    A conditional model's `data` carries the normalised condition as its last column. With a
    `mesh`, pass `state` and `data` replicated on it (`sharding.replicate`): each minibatch is
    split across its devices and the gradients are averaged over all of them.
    """
    optimizer = make_optimizer(config)

    def loss_fn(params, batch, key):
        net = denoiser_fn(config, params, state.constants)
        if config.conditional:
            key, keep_key = jax.random.split(key)
            batch, condition = batch[:, :-1], batch[:, -1]
            keep = condition_keep(keep_key, batch_size, config.condition_dropout)
            return edm.training_loss(lambda x, c_noise: net(x, c_noise, condition, keep), batch, key, config)
        return edm.training_loss(net, batch, key, config)

    def step(state, key):
        batch_key, loss_key = jax.random.split(key)
        batch = sharding.constrain_leading_axis(data[jax.random.randint(batch_key, (batch_size,), 0, data.shape[0])],
                                                mesh)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, batch, loss_key)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = update_ema(state.ema_params, params, state.step, config)
        return state.replace(step=state.step + 1, params=params, ema_params=ema_params, opt_state=opt_state), loss

    state, losses = jax.lax.scan(step, state, jax.random.split(key, num_steps))
    return state, jnp.mean(losses)


@jax.jit(static_argnames=("config", "num_steps", "batch_size", "shared_data", "batch_mesh"),
        donate_argnames=("states",))
def train_steps(states: TrainState, data: jax.Array, keys: jax.Array, *, config: DiffusionConfig, num_steps: int,
                batch_size: int, shared_data: bool = False, batch_mesh: Optional[Mesh] = None):
    """`_train_chunk` for every seed at once: states, data (S, N, d) and keys carry a leading seed
    axis, and so do the returned states and mean losses. With `shared_data`, data is one (N, d)
    array that every seed trains on (passed once, not copied per seed). With a `batch_mesh`, each
    seed's minibatches are split across its devices (one model, data-parallel)."""
    chunk = partial(_train_chunk, config=config, num_steps=num_steps, batch_size=batch_size, mesh=batch_mesh)
    return jax.vmap(chunk, in_axes=(0, None if shared_data else 0, 0))(states, data, keys)


def train_diffusion(rows: np.ndarray, config: DiffusionConfig, key: jax.Array, skip_norm_dims: Sequence[int] = (),
                    workdir: Optional[str] = None, log_fn: Optional[Callable[[int, Dict[str, float]], None]] = None,
                    progress: bool = True, mesh: Optional[Mesh] = None,
                    warm_start: Optional[Diffusion] = None, condition: Optional[np.ndarray] = None) -> Diffusion:
    """Trains a denoiser on (N, d) transition rows and returns the EMA model; one per seed for a
    stack of keys.

    `key` is one key (one model, no seed axis) or a stack of S keys (S models, their arrays with a
    leading seed axis), which train on rows (N, d) shared by every seed or on (S, N, d), one set
    per seed. `skip_norm_dims` stay unnormalised (SynthER: the terminal column). With a `workdir`,
    a checkpoint is written every `checkpoint_every` steps and at the end, and a rerun resumes from
    the newest one (a finished run just loads); a workdir holding a fit of other rows or settings
    is refused before anything in it changes (`claim_fit`). `log_fn(step, {"loss": ...})` is
    called after each jitted chunk, with the loss averaged over the chunk and the seeds. With a
    `mesh`, one model's minibatches are split across its devices (the batch size must be a
    multiple of their number), and a stack's seeds likewise (so must the number of seeds).
    `warm_start` starts from another model's EMA weights and Fourier frequencies instead of a fresh
    draw (online SynthER's option; the original retrains from scratch), seed by seed for a stack;
    optimiser, schedule and EMA restart. A conditional config needs `condition`, one value per row
    (the rows' leading shape: (N,) or (S, N)), and only it takes one.
    """
    key = jnp.asarray(key)
    one = is_one_key(key)
    keys = key[None] if one else key
    shared = np.ndim(rows) == 2
    rows = _check_rows(rows, 2 if shared or one else 3, "(N, d)" if one else "(N, d) or (seeds, N, d)")
    num_seeds, dim = len(keys), rows.shape[-1]
    if not shared and len(rows) != num_seeds:
        raise ValueError(f"rows hold {len(rows)} seeds' data but {num_seeds} keys were given.")
    batch_size = config.resolve_batch_size(rows.shape[-2])
    check_divisible(batch_size if one else num_seeds, mesh, "batch size" if one else "number of seeds")
    condition_normalizer, condition = _check_condition(config, condition, rows.shape[:-1])
    if shared:
        normalizer = Normalizer.fit(rows, skip_norm_dims)
        data = _training_data(normalizer.normalize(rows), condition_normalizer, condition)
        normalizer = stacked(normalizer, num_seeds)
        if condition_normalizer is not None:
            condition_normalizer = stacked(condition_normalizer, num_seeds)
    else:
        normalizer = jax.tree.map(lambda *xs: jnp.stack(xs), *[Normalizer.fit(r, skip_norm_dims) for r in rows])
        data = _training_data(jax.vmap(Normalizer.normalize)(normalizer, jnp.asarray(rows)), condition_normalizer,
                              condition)
    # For one key, the warm start, the checkpoints and the model returned have no seed axis.
    add_axis, drop_axis = (with_seed_axis, without_seed_axis) if one else (lambda tree: tree,) * 2
    init_keys, train_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    state = jax.vmap(lambda key: init_state(config, key, dim))(init_keys)
    if warm_start is not None:
        state = _warm_started(state, add_axis(warm_start))

    checkpointer = None
    if workdir is not None:
        claim_fit(workdir, fit_record(rows, config, key, skip_norm_dims, condition, warm_start is not None))
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
        write_config(workdir, config, dim, None if one else num_seeds)
        restored = checkpointer.restore_latest(drop_axis(checkpoint_tree(state, normalizer, condition_normalizer)))
        if restored is not None:
            state = add_axis(restored[1]["state"])
            logging.info("Resuming diffusion training (%d model(s)) in %s at step %d of %d.", num_seeds,
                         checkpointer.directory, restored[0], config.num_train_steps)
    if mesh is not None and one:
        state, data = sharding.replicate((state, data), mesh)
    elif mesh is not None:
        state, train_keys = sharding.shard_leading_axis((state, train_keys), mesh)
        data = sharding.replicate(data, mesh) if shared else sharding.shard_leading_axis(data, mesh)

    def run_chunk(states, step, num_steps):
        chunk_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(train_keys, step)
        return train_steps(states, data, chunk_keys, config=config, num_steps=num_steps, batch_size=batch_size,
                           shared_data=shared, batch_mesh=mesh if one else None)

    def save(states, step):
        checkpointer.save(step, drop_axis(checkpoint_tree(states, normalizer, condition_normalizer)))

    state = run_chunks(state, int(np.max(state.step)), run_chunk, config, progress,
                       None if checkpointer is None else save, log_fn)
    if checkpointer is not None:
        checkpointer.close()
    return drop_axis(Diffusion(config, dim, state.ema_params, state.constants, normalizer, condition_normalizer))


def _check_rows(rows: np.ndarray, ndim: int, shape: str) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    if rows.ndim != ndim or not np.all(np.isfinite(rows)):
        raise InvalidDatasetError(f"Training rows must be a finite {shape} array; got shape {rows.shape}"
                         f"{'' if rows.ndim != ndim else ' with NaN or inf values'}.")
    return rows


def _check_condition(config: DiffusionConfig, condition, shape: tuple):
    """(its normaliser, the condition as float32) for a conditional config; (None, None) otherwise."""
    if not config.conditional:
        if condition is not None:
            raise ValueError("A condition was given but the config is unconditional; set conditioning='add' (or "
                             "'concat') to train a guided model.")
        return None, None
    if condition is None:
        raise ValueError(f"conditioning={config.conditioning!r} needs a condition: one value per training row.")
    condition = np.asarray(condition, np.float32)
    if condition.shape != shape:
        raise ValueError(f"The condition must hold one value per row, shape {shape}; got {condition.shape}.")
    if condition.ndim == 1:
        return ConditionNormalizer.fit(condition), condition
    return jax.tree.map(lambda *xs: jnp.stack(xs), *[ConditionNormalizer.fit(c) for c in condition]), condition


def _training_data(normalized_rows, condition_normalizer: Optional[ConditionNormalizer], condition):
    """The normalised rows, with a conditional model's normalised condition as an extra last column."""
    if condition_normalizer is None:
        return normalized_rows
    normalize = ConditionNormalizer.normalize
    for _ in range(condition.ndim - 1):  # one normaliser per seed
        normalize = jax.vmap(normalize)
    column = normalize(condition_normalizer, jnp.asarray(condition))
    return jnp.concatenate([jnp.asarray(normalized_rows), jnp.asarray(column)[..., None]], axis=-1)


def _warm_started(state: TrainState, warm_start: Diffusion) -> TrainState:
    """`state` with the EMA weights and Fourier frequencies of `warm_start` (same architecture)."""
    if jax.tree.map(jnp.shape, warm_start.params) != jax.tree.map(jnp.shape, state.params):
        raise ValueError("warm_start has another architecture or row size than this config; start fresh instead.")
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # own buffers: the train step donates the state
    return state.replace(params=copy(warm_start.params), ema_params=copy(warm_start.params),
                         constants=copy(warm_start.constants))


def run_chunks(state, step: int, run_chunk, config, progress: bool, save=None, log_fn=None,
               label="diffusion training"):
    """Calls `run_chunk(state, step, num_steps) -> (state, loss)` until `config.num_train_steps`,
    `config.steps_per_call` steps a call, with a progress bar named `label`. `save(state, step)`
    runs every `config.checkpoint_every` steps (rounded up to whole calls) and at the end,
    `log_fn(step, {"loss"})` after each call."""
    calls_per_checkpoint = max(1, -(-config.checkpoint_every // config.steps_per_call))
    with Progress(config.num_train_steps, label, unit="step", initial=step, enabled=progress) as bar:
        calls = 0
        while step < config.num_train_steps:
            num_steps = min(config.steps_per_call, config.num_train_steps - step)
            state, loss = run_chunk(state, step, num_steps)
            step, calls = step + num_steps, calls + 1
            loss = float(jnp.mean(loss))
            if save is not None and (calls % calls_per_checkpoint == 0 or step == config.num_train_steps):
                save(state, step)
            if log_fn is not None:
                log_fn(step, {"loss": loss})
            bar.update(num_steps)
            bar.set_postfix(loss=f"{loss:.4f}")
    return state


def fingerprint(array) -> dict:
    """Shape, dtype and SHA-256 of an array: how a fit record names its data."""
    array = np.ascontiguousarray(array)
    return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}


def fit_record(rows: np.ndarray, config: DiffusionConfig, key: jax.Array, skip_norm_dims: Sequence[int],
               condition: Optional[np.ndarray], warm_started: bool) -> dict:
    """What makes two fits the same: the rows (shape, dtype and a hash), the config, the key, the
    raw columns, the condition and whether it was warm-started."""
    key_data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return {"rows": fingerprint(rows), "config": dataclasses.asdict(config), "key": np.asarray(key_data).tolist(),
            "skip_norm_dims": sorted(int(d) for d in skip_norm_dims),
            "condition": None if condition is None else fingerprint(condition), "warm_started": warm_started}


def claim_fit(workdir: str, record: dict) -> None:
    """Makes `workdir` the folder of the fit `record` describes, or refuses (WorkdirError, nothing
    touched) when it holds another fit: other rows, another config, key or condition. Only the
    same fit may resume there, never someone else's model. In a multi-process job process 0
    checks and writes, and its refusal is raised on every process."""
    distributed.run_on_main(lambda: _claim_fit(workdir, record), (WorkdirError,))


def _claim_fit(workdir: str, record: dict) -> None:
    path = os.path.join(workdir, FIT_FILE)
    recorded = read_json(path, None)
    if recorded is None:
        if os.path.exists(os.path.join(workdir, "checkpoints")):
            raise WorkdirError(f"{workdir} holds diffusion checkpoints but no {FIT_FILE} saying what they were fitted "
                               "to, so they cannot be resumed safely; use another workdir, or delete this one to "
                               "start over.")
        os.makedirs(workdir, exist_ok=True)
        write_json(path, record)
        return
    different = [name for name in record if recorded.get(name) != record[name]]
    if different:
        config_fields = [f for f in record["config"] if (recorded.get("config") or {}).get(f) != record["config"][f]]
        what = ", ".join(f"config ({', '.join(config_fields)})" if name == "config" else name for name in different)
        raise WorkdirError(f"{workdir} holds a fit of other data or settings (differing: {what}; see {path}); "
                           "use another workdir, or delete this one to start over.")
