"""Training the denoiser and generating transitions with it (spec section 4).

`train_diffusion` fits the normaliser, then runs `num_train_steps` AdamW steps in jitted chunks of
`steps_per_call` steps (one `lax.scan` each, minibatches drawn on device), keeps the EMA of the
weights exactly as ema-pytorch 0.1.2 does, and checkpoints so an interrupted run resumes to the
same parameters. `generate` samples with the EMA weights in fixed-size chunks.

A conditional model (`conditioning` "add" or "concat") also takes one condition value per row:
it is min-max normalised (`guidance.ConditionNormalizer`, stored with the model), dropped with
probability `condition_dropout` per training row (classifier-free guidance's unconditional
model; never at sampling), and sampling takes targets in the condition's own units and a guidance
scale w (`edm.guided_sample`).

`train_diffusion_seeds` and `generate_seeds` (`iterate_samples_seeds`) do the same for one model
per seed as one vmapped program (online SynthER's per-seed models, and offline SynthER's
`denoiser_per_seed`, where every seed fits the same rows with its own key, checkpointed and
resumable like one model): seed s gets what `train_diffusion` and `generate` give for its rows and
key, up to float32 rounding (a batched matmul may sum in another order).

Deviations from the original, all without effect on the model's behaviour:
- minibatches are drawn uniformly with replacement instead of by a shuffled DataLoader with a
  partial batch at each epoch end;
- optax's AdamW decays every parameter, torch's skips biases; SynthER uses weight decay 0.

Every entry point takes an optional `mesh` (see `synther_jax.sharding`): parameters and data are
then replicated on its devices and each minibatch, and each chunk of samples, is split across
them. Without a mesh everything runs on the default device, exactly as before.
"""
import dataclasses
import hashlib
import os
from functools import partial
from typing import Callable, Dict, Iterator, Optional, Sequence

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from jax.sharding import Mesh
from tqdm.auto import tqdm

from synther_jax import sharding
from synther_jax.atomic import read_json, write_json
from synther_jax.checkpoint import Checkpointer
from synther_jax.diffusion import edm
from synther_jax.diffusion.denoiser import ResidualMLPDenoiser, init_variables
from synther_jax.diffusion.guidance import ConditionNormalizer
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.errors import InvalidDatasetError, WorkdirError
from synther_jax.nn import ACTIVATIONS, MATMUL_PRECISIONS

LARGE_DATASET = 800_000  # datasets at least this big train with batch 1024, smaller ones with 256
CONDITIONINGS = ("none", "add", "concat")
FIT_FILE = "fit.json"  # in a training workdir: what the checkpoints there were fitted to (`claim_fit`)


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


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array  # optimisation steps done
    params: dict
    ema_params: dict
    constants: dict  # the denoiser's fixed Fourier frequencies
    opt_state: optax.OptState


class Diffusion(flax.struct.PyTreeNode):
    """A trained model: EMA weights, fixed frequencies, the data normaliser and, for a conditional
    model, the condition's."""

    config: DiffusionConfig = flax.struct.field(pytree_node=False)
    dim: int = flax.struct.field(pytree_node=False)
    params: dict
    constants: dict
    normalizer: Normalizer
    condition_normalizer: Optional[ConditionNormalizer] = None


def make_optimizer(config: DiffusionConfig) -> optax.GradientTransformation:
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_train_steps)
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2, eps=1e-8, weight_decay=config.weight_decay),
    )


def init_state(config: DiffusionConfig, key: jax.Array, dim: int) -> TrainState:
    variables = init_variables(config.denoiser(), key, dim)
    params = variables["params"]
    ema_params = jax.tree.map(jnp.copy, params)  # a separate buffer: the train step donates the state
    return TrainState(jnp.int32(0), params, ema_params, variables["constants"], make_optimizer(config).init(params))


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


def _net(config: DiffusionConfig, params, constants, mesh: Optional[Mesh] = None):
    """The denoiser as a function of (x, c_noise[, condition, keep]); with a mesh, its batch is split
    across the devices."""
    denoiser = config.denoiser()

    def net(x, c_noise, *condition_and_keep):
        inputs = [sharding.constrain_leading_axis(a, mesh) for a in (x, c_noise, *condition_and_keep)]
        return denoiser.apply({"params": params, "constants": constants}, *inputs)

    return net


def condition_keep(key: jax.Array, batch_size: int, dropout: float) -> jax.Array:
    """Training's per-row mask: 1 keeps the condition, 0 (probability `dropout`) trains the
    unconditional model on that row."""
    return jax.random.bernoulli(key, 1.0 - dropout, (batch_size,)).astype(jnp.float32)


def check_divisible(size: int, mesh: Optional[Mesh], what: str) -> None:
    if mesh is not None and size % mesh.size:
        raise ValueError(f"The {what} ({size}) must be a multiple of the number of devices ({mesh.size}) to be "
                         f"split across them; change it or use a mesh of fewer devices.")


def _train_chunk(state: TrainState, data: jax.Array, key: jax.Array, *, config: DiffusionConfig, num_steps: int,
                batch_size: int, mesh: Optional[Mesh] = None):
    """`num_steps` optimisation steps in one scan over minibatches of the normalised `data`.

    A conditional model's `data` carries the normalised condition as its last column. With a `mesh`, pass `state` and `data` replicated on it (`sharding.replicate`): each minibatch
    is split across its devices and the gradients are averaged over all of them.
    """
    optimizer = make_optimizer(config)

    def loss_fn(params, batch, key):
        net = _net(config, params, state.constants)
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


train_steps = jax.jit(_train_chunk, static_argnames=("config", "num_steps", "batch_size", "mesh"),
                      donate_argnames=("state",))


@jax.jit(static_argnames=("config", "num_steps", "batch_size", "shared_data"), donate_argnames=("states",))
def train_steps_seeds(states: TrainState, data: jax.Array, keys: jax.Array, *, config: DiffusionConfig,
                      num_steps: int, batch_size: int, shared_data: bool = False):
    """`train_steps` for every seed at once: states, data (S, N, d) and keys carry a leading seed
    axis, and so do the returned states and mean losses. With `shared_data`, data is one (N, d)
    array that every seed trains on (passed once, not copied per seed)."""
    chunk = partial(_train_chunk, config=config, num_steps=num_steps, batch_size=batch_size)
    return jax.vmap(chunk, in_axes=(0, None if shared_data else 0, 0))(states, data, keys)


def _check_rows(rows: np.ndarray, ndim: int, shape: str) -> np.ndarray:
    rows = np.asarray(rows, np.float32)
    if rows.ndim != ndim or not np.all(np.isfinite(rows)):
        raise InvalidDatasetError(f"Training rows must be a finite {shape} array; got shape {rows.shape}"
                         f"{'' if rows.ndim != ndim else ' with NaN or inf values'}.")
    return rows


def _warm_started(state: TrainState, warm_start: Diffusion) -> TrainState:
    """`state` with the EMA weights and Fourier frequencies of `warm_start` (same architecture)."""
    if jax.tree.map(jnp.shape, warm_start.params) != jax.tree.map(jnp.shape, state.params):
        raise ValueError("warm_start has another architecture or row size than this config; start fresh instead.")
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # own buffers: the train step donates the state
    return state.replace(params=copy(warm_start.params), ema_params=copy(warm_start.params),
                         constants=copy(warm_start.constants))


def _run_chunks(state, step: int, run_chunk, config: DiffusionConfig, progress: bool, after_chunk=None):
    """Calls `run_chunk(state, step, num_steps) -> (state, loss)` until `num_train_steps`, with a
    progress bar; `after_chunk(state, step, calls, loss)` runs after each call."""
    with tqdm(total=config.num_train_steps, initial=step, desc="diffusion training", disable=not progress,
              unit="step") as bar:
        calls = 0
        while step < config.num_train_steps:
            num_steps = min(config.steps_per_call, config.num_train_steps - step)
            state, loss = run_chunk(state, step, num_steps)
            step, calls = step + num_steps, calls + 1
            loss = float(jnp.mean(loss))
            if after_chunk is not None:
                after_chunk(state, step, calls, loss)
            bar.update(num_steps)
            bar.set_postfix(loss=f"{loss:.4f}")
    return state


def train_diffusion(rows: np.ndarray, config: DiffusionConfig, key: jax.Array, skip_norm_dims: Sequence[int] = (),
                    workdir: Optional[str] = None, log_fn: Optional[Callable[[int, Dict[str, float]], None]] = None,
                    progress: bool = True, mesh: Optional[Mesh] = None,
                    warm_start: Optional[Diffusion] = None, condition: Optional[np.ndarray] = None) -> Diffusion:
    """Trains a denoiser on (N, d) transition rows and returns the EMA model.

    `skip_norm_dims` stay unnormalised (SynthER: the terminal column). With a `workdir`, a
    checkpoint is written every `checkpoint_every` steps and at the end, and a rerun resumes from
    the newest one (a finished run just loads); a workdir holding a fit of other rows or settings
    is refused before anything in it changes (`claim_fit`). `log_fn(step, {"loss": ...})` is called after each
    jitted chunk, with the loss averaged over the chunk. With a `mesh`, each minibatch is split
    across its devices (the batch size must be a multiple of their number). `warm_start` starts
    from another model's EMA weights and Fourier frequencies instead of a fresh draw (online
    SynthER's option; the original retrains from scratch); optimiser, schedule and EMA restart.
    A conditional config needs `condition`, one value per row (N,), and only it takes one.
    """
    rows = _check_rows(rows, 2, "(N, d)")
    batch_size = config.resolve_batch_size(len(rows))
    check_divisible(batch_size, mesh, "batch size")
    normalizer = Normalizer.fit(rows, skip_norm_dims)
    condition_normalizer, condition = _check_condition(config, condition, rows.shape[:1])
    data = _training_data(normalizer.normalize(rows), condition_normalizer, condition)
    data = jax.device_put(data) if mesh is None else sharding.replicate(data, mesh)
    init_key, train_key = jax.random.split(key)
    state = init_state(config, init_key, rows.shape[1])
    if warm_start is not None:
        state = _warm_started(state, warm_start)

    checkpointer = None
    if workdir is not None:
        claim_fit(workdir, fit_record(rows, config, key, skip_norm_dims, condition, warm_start is not None))
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
        _write_config(workdir, config, rows.shape[1])
        restored = checkpointer.restore_latest(_saved(state, normalizer, condition_normalizer))
        if restored is not None:
            state = restored[1]["state"]
            logging.info("Resuming diffusion training in %s at step %d of %d.", checkpointer.directory, restored[0],
                         config.num_train_steps)
    if mesh is not None:
        state = sharding.replicate(state, mesh)
    calls_per_checkpoint = max(1, -(-config.checkpoint_every // config.steps_per_call))

    def run_chunk(state, step, num_steps):
        return train_steps(state, data, jax.random.fold_in(train_key, step), config=config, num_steps=num_steps,
                           batch_size=batch_size, mesh=mesh)

    def after_chunk(state, step, calls, loss):
        if checkpointer is not None and (calls % calls_per_checkpoint == 0 or step == config.num_train_steps):
            checkpointer.save(step, _saved(state, normalizer, condition_normalizer))
        if log_fn is not None:
            log_fn(step, {"loss": loss})

    state = _run_chunks(state, int(state.step), run_chunk, config, progress, after_chunk)
    if checkpointer is not None:
        checkpointer.close()
    return Diffusion(config, rows.shape[1], state.ema_params, state.constants, normalizer, condition_normalizer)


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


def _saved(state: TrainState, normalizer: Normalizer, condition_normalizer: Optional[ConditionNormalizer]) -> dict:
    """What a training checkpoint holds."""
    tree = {"state": state, "normalizer": normalizer}
    if condition_normalizer is not None:
        tree["condition_normalizer"] = condition_normalizer
    return tree


def _stacked(tree, num_seeds: int):
    """`tree` repeated along a new leading seed axis."""
    return jax.tree.map(lambda x: jnp.stack([x] * num_seeds), tree)


def train_diffusion_seeds(rows: np.ndarray, config: DiffusionConfig, keys: jax.Array,
                          skip_norm_dims: Sequence[int] = (), progress: bool = True,
                          warm_start: Optional[Diffusion] = None, condition: Optional[np.ndarray] = None,
                          workdir: Optional[str] = None,
                          log_fn: Optional[Callable[[int, Dict[str, float]], None]] = None,
                          mesh: Optional[Mesh] = None) -> Diffusion:
    """One model per seed, trained together as one vmapped program, on rows (S, N, d) with keys (S, ...).

    Rows of shape (N, d) are shared by every seed (offline SynthER with one denoiser per agent
    seed: the same real data, another key), passed once instead of copied per seed.
    Returns a `Diffusion` whose arrays carry a leading seed axis; seed s's model is
    `train_diffusion(rows[s], config, keys[s], skip_norm_dims)` (or `rows`, when shared) up to
    float32 rounding, so a GPU trains all seeds' models at once instead of one after another.
    `warm_start`, if given, holds one model per seed (a leading seed axis, as returned here); a
    conditional model's `condition` has the rows' leading shape ((S, N), or (N,) when shared).
    `workdir` and `log_fn` act as in `train_diffusion`: all seeds' states go into one checkpoint,
    and a rerun resumes from it. With a `mesh`, the seeds are split across its devices (the number
    of seeds must be a multiple of its size), as the agents' seeds are.
    """
    shared = np.ndim(rows) == 2
    rows = _check_rows(rows, 2 if shared else 3, "(N, d) or (seeds, N, d)")
    num_seeds, dim = len(keys), rows.shape[-1]
    if not shared and len(rows) != num_seeds:
        raise ValueError(f"rows hold {len(rows)} seeds' data but {num_seeds} keys were given.")
    check_divisible(num_seeds, mesh, "number of seeds")
    batch_size = config.resolve_batch_size(rows.shape[-2])
    condition_normalizer, condition = _check_condition(config, condition, rows.shape[:-1])
    if shared:
        normalizer = Normalizer.fit(rows, skip_norm_dims)
        data = _training_data(normalizer.normalize(rows), condition_normalizer, condition)
        normalizer = _stacked(normalizer, num_seeds)
        if condition_normalizer is not None:
            condition_normalizer = _stacked(condition_normalizer, num_seeds)
    else:
        normalizer = jax.tree.map(lambda *xs: jnp.stack(xs), *[Normalizer.fit(r, skip_norm_dims) for r in rows])
        data = _training_data(jax.vmap(Normalizer.normalize)(normalizer, jnp.asarray(rows)), condition_normalizer,
                              condition)
    init_keys, train_keys = jnp.moveaxis(jax.vmap(jax.random.split)(keys), 1, 0)
    state = jax.vmap(lambda key: init_state(config, key, dim))(init_keys)
    if warm_start is not None:
        state = _warm_started(state, warm_start)

    checkpointer = None
    if workdir is not None:
        claim_fit(workdir, fit_record(rows, config, keys, skip_norm_dims, condition, warm_start is not None))
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
        _write_config(workdir, config, dim, num_seeds)
        restored = checkpointer.restore_latest(_saved(state, normalizer, condition_normalizer))
        if restored is not None:
            state = restored[1]["state"]
            logging.info("Resuming the %d seeds' diffusion training in %s at step %d of %d.", num_seeds,
                         checkpointer.directory, restored[0], config.num_train_steps)
    if mesh is not None:
        state, train_keys = sharding.shard_leading_axis((state, train_keys), mesh)
        data = sharding.replicate(data, mesh) if shared else sharding.shard_leading_axis(data, mesh)
    calls_per_checkpoint = max(1, -(-config.checkpoint_every // config.steps_per_call))

    def run_chunk(states, step, num_steps):
        chunk_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(train_keys, step)
        return train_steps_seeds(states, data, chunk_keys, config=config, num_steps=num_steps, batch_size=batch_size,
                                 shared_data=shared)

    def after_chunk(states, step, calls, loss):
        if checkpointer is not None and (calls % calls_per_checkpoint == 0 or step == config.num_train_steps):
            checkpointer.save(step, _saved(states, normalizer, condition_normalizer))
        if log_fn is not None:
            log_fn(step, {"loss": loss})

    state = _run_chunks(state, int(np.max(state.step)), run_chunk, config, progress, after_chunk)
    if checkpointer is not None:
        checkpointer.close()
    return Diffusion(config, dim, state.ema_params, state.constants, normalizer, condition_normalizer)


def _fingerprint(array) -> dict:
    array = np.ascontiguousarray(array)
    return {"shape": list(array.shape), "dtype": str(array.dtype), "sha256": hashlib.sha256(array.tobytes()).hexdigest()}


def fit_record(rows: np.ndarray, config: DiffusionConfig, key: jax.Array, skip_norm_dims: Sequence[int],
               condition: Optional[np.ndarray], warm_started: bool) -> dict:
    """What makes two fits the same: the rows (shape, dtype and a hash), the config, the key, the
    raw columns, the condition and whether it was warm-started."""
    key_data = jax.random.key_data(key) if jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key) else key
    return {"rows": _fingerprint(rows), "config": dataclasses.asdict(config), "key": np.asarray(key_data).tolist(),
            "skip_norm_dims": sorted(int(d) for d in skip_norm_dims),
            "condition": None if condition is None else _fingerprint(condition), "warm_started": warm_started}


def claim_fit(workdir: str, record: dict) -> None:
    """Makes `workdir` the folder of the fit `record` describes, or refuses (WorkdirError, nothing
    touched) when it holds another fit: other rows, another config, key or condition. Only the
    same fit may resume there, never someone else's model."""
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


def _write_config(workdir: str, config: DiffusionConfig, dim: int, num_seeds: Optional[int] = None) -> None:
    """diffusion_config.json: what `load_diffusion` rebuilds the model from (`num_seeds` for the
    models of `train_diffusion_seeds`)."""
    os.makedirs(workdir, exist_ok=True)
    seeds = {} if num_seeds is None else {"num_seeds": num_seeds}
    write_json(os.path.join(workdir, "diffusion_config.json"), {"dim": dim, **seeds, **dataclasses.asdict(config)})


def load_diffusion(workdir: str) -> Diffusion:
    """The EMA model of the newest checkpoint that `train_diffusion(..., workdir=workdir)` wrote
    (the seeds' models, with their leading seed axis, for `train_diffusion_seeds`)."""
    fields = read_json(os.path.join(workdir, "diffusion_config.json"), None)
    if fields is None:
        raise FileNotFoundError(f"No diffusion model in {workdir!r} (missing diffusion_config.json); train one "
                                "with launch.synthesize first.")
    dim, num_seeds = fields.pop("dim"), fields.pop("num_seeds", None)
    config = DiffusionConfig(**fields)
    template = model_template(config, dim)
    target = _saved(init_state(config, jax.random.PRNGKey(0), dim), template.normalizer,
                    template.condition_normalizer)
    if num_seeds is not None:
        target = _stacked(target, num_seeds)
    restored = Checkpointer(os.path.join(workdir, "checkpoints")).restore_latest(target)
    if restored is None:
        raise FileNotFoundError(f"No checkpoint under {workdir!r}/checkpoints.")
    tree = restored[1]
    return Diffusion(config, dim, tree["state"].ema_params, tree["state"].constants, tree["normalizer"],
                     tree.get("condition_normalizer"))


def model_template(config: DiffusionConfig, dim: int) -> Diffusion:
    """A model of the right structure and shapes for `config`, to restore a saved one into."""
    fresh = init_state(config, jax.random.PRNGKey(0), dim)
    condition_normalizer = ConditionNormalizer(jnp.float32(0), jnp.float32(1)) if config.conditional else None
    return Diffusion(config, dim, fresh.ema_params, fresh.constants, Normalizer(jnp.zeros(dim), jnp.ones(dim)),
                     condition_normalizer)


def _sample_rows(model: Diffusion, key: jax.Array, num: int, mesh: Optional[Mesh] = None,
                 condition: Optional[jax.Array] = None, guidance: jax.Array = 1.0) -> jax.Array:
    """`num` un-normalised rows from the model, one jitted sampler call.

    For a conditional model, `condition` holds each row's target (num,) in the condition's own
    units and `guidance` the scale w (traced: one compilation for every w); without a condition
    it samples the model's unconditional half. With a `mesh`, pass the model replicated on it: the
    rows are split across its devices.
    """
    net = _net(model.config, model.params, model.constants, mesh)
    if condition is not None:
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


sample_rows = jax.jit(_sample_rows, static_argnames=("num", "mesh"))


@jax.jit(static_argnames=("num",))
def sample_rows_seeds(models: Diffusion, keys: jax.Array, num: int, condition: Optional[jax.Array] = None,
                      guidance: jax.Array = 1.0) -> jax.Array:
    """`sample_rows` for every seed's model at once: (S, num, d) rows from models, keys and
    conditions (S, num) with a leading seed axis."""
    if condition is None:
        return jax.vmap(lambda model, key: _sample_rows(model, key, num))(models, keys)
    return jax.vmap(lambda model, key, c: _sample_rows(model, key, num, condition=c, guidance=guidance))(
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
                    guidance: float = 1.0) -> Iterator[np.ndarray]:
    """Yields host chunks of un-normalised rows, `num_samples` in all, deterministic for `key`.

    Chunk c uses fold_in(key, c); every call compiles one shape (the last chunk is cut), so only
    one chunk at a time lives on the host beyond what the caller keeps. With a `mesh`, each chunk
    is split across its devices; the chunk size is then rounded up to a multiple of their number.
    A conditional model samples guided by `condition` (num_samples,) at scale `guidance`, or
    unconditionally without one.
    """
    condition = _check_targets(condition, (num_samples,))
    chunk_size = min(chunk_size or model.config.sample_chunk_size, num_samples)
    if mesh is not None:
        chunk_size = -(-chunk_size // mesh.size) * mesh.size
        model = sharding.replicate(model, mesh)
    with tqdm(total=num_samples, desc="generating", disable=not progress, unit="sample") as bar:
        for c, start in enumerate(range(0, num_samples, chunk_size)):
            rows = sharding.to_host(sample_rows(model, jax.random.fold_in(key, c), chunk_size, mesh=mesh,
                                                condition=_condition_chunk(condition, start, chunk_size),
                                                guidance=guidance))
            rows = rows[: num_samples - start]
            bar.update(len(rows))
            yield rows


def generate(model: Diffusion, num_samples: int, key: jax.Array, chunk_size: Optional[int] = None,
             progress: bool = True, mesh: Optional[Mesh] = None, condition: Optional[np.ndarray] = None,
             guidance: float = 1.0) -> np.ndarray:
    """(num_samples, d) float32 un-normalised rows, gathered chunk by chunk into one array."""
    out = np.empty((num_samples, model.dim), np.float32)
    start = 0
    for rows in iterate_samples(model, num_samples, key, chunk_size, progress, mesh, condition, guidance):
        out[start:start + len(rows)] = rows
        start += len(rows)
    return out


def iterate_samples_seeds(models: Diffusion, num_samples: int, keys: jax.Array, chunk_size: Optional[int] = None,
                          progress: bool = True, condition: Optional[np.ndarray] = None, guidance: float = 1.0,
                          mesh: Optional[Mesh] = None) -> Iterator[np.ndarray]:
    """Yields host chunks (S, rows, d) from the S models of `train_diffusion_seeds`, all seeds in
    each vmapped sampler call; seed s's rows are those of `iterate_samples(model s, num_samples,
    keys[s], chunk_size, condition=condition[s], guidance=guidance)` up to float32 rounding (the
    same chunks and chunk keys). With a `mesh`, the seeds are split across its devices."""
    num_seeds = len(keys)
    condition = _check_targets(condition, (num_seeds, num_samples))
    chunk_size = min(chunk_size or models.config.sample_chunk_size, num_samples)
    if mesh is not None:
        check_divisible(num_seeds, mesh, "number of seeds")
        models, keys = sharding.shard_leading_axis((models, keys), mesh)
    with tqdm(total=num_samples * num_seeds, desc="generating", disable=not progress, unit="sample") as bar:
        for c, start in enumerate(range(0, num_samples, chunk_size)):
            chunk_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, c)
            targets = _condition_chunk(condition, start, chunk_size)
            rows = sharding.to_host(sample_rows_seeds(models, chunk_keys, chunk_size, targets, guidance))
            rows = rows[:, : num_samples - start]
            bar.update(rows.size // models.dim)
            yield rows


def generate_seeds(models: Diffusion, num_samples: int, keys: jax.Array, chunk_size: Optional[int] = None,
                   progress: bool = True, condition: Optional[np.ndarray] = None, guidance: float = 1.0) -> np.ndarray:
    """(S, num_samples, d) rows of `iterate_samples_seeds`, gathered into one array; seed s's rows
    are `generate(model s, num_samples, keys[s], chunk_size, condition=condition[s],
    guidance=guidance)` up to float32 rounding."""
    out = np.empty((len(keys), num_samples, models.dim), np.float32)
    start = 0
    for rows in iterate_samples_seeds(models, num_samples, keys, chunk_size, progress, condition, guidance):
        out[:, start:start + rows.shape[1]] = rows
        start += rows.shape[1]
    return out
