"""Consistency distillation (Song et al. 2023, "Consistency Models", Algorithm 2) of a trained EDM
denoiser into a sampler of 1, 2 or 4 network evaluations.

The student is a consistency function f(x, sigma) that maps any point of the teacher's
probability-flow ODE trajectory to its end. It keeps the teacher's network and preconditioning
except c_skip and c_out, shifted so that f(x, sigma_min) = x exactly:

    f(x, sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x, c_noise(sigma))
    c_skip = sigma_data^2 / ((sigma - sigma_min)^2 + sigma_data^2)
    c_out  = sigma_data (sigma - sigma_min) / sqrt(sigma^2 + sigma_data^2)

and starts from the teacher's weights. Each training step draws real rows y, a pair of adjacent
noise levels sigma_n < sigma_{n+1} of a Karras grid of `grid_points`, and noise z; the teacher takes
one deterministic Heun step from x = y + sigma_{n+1} z down to sigma_n, and the student learns
f(x, sigma_{n+1}) = stop_gradient(f(x_teacher, sigma_n)) under the pseudo-Huber distance weighted
by 1 / (sigma_{n+1} - sigma_n); the distance and the weight are the improved recipe's (Song and
Dhariwal 2023). The weight decides the quality on transitions: on walker2d medium-replay it lifted
the marginal score of one step from 0.63 to 0.88 and of four from 0.76 to 0.89
(docs/benchmarks.md#distilled-samplers). Sampling denoises sigma_max noise in one evaluation and,
for more steps, adds noise back to the levels `sampler_sigmas` gives and denoises again.

The training loop is one `lax.scan` per chunk of steps, vmapped over a seed axis like the
teacher's training, checkpointed and resumable. `distill` returns the teacher's `Diffusion` with
the student's weights and its `DistillConfig`, which `sampling.iterate_samples` draws from in
`num_steps` evaluations (`consistency_sample`).
"""
import dataclasses
import os
from functools import partial
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging

from synther_jax.checkpoint import Checkpointer
from synther_jax.diffusion import edm
from synther_jax.diffusion.config import DiffusionConfig, DistillConfig
from synther_jax.diffusion.model import Diffusion, denoiser_fn, is_one_key, with_seed_axis, without_seed_axis
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.training import claim_fit, fingerprint, run_chunks


class DistillState(flax.struct.PyTreeNode):
    """What a distillation step updates and each checkpoint holds."""

    step: jax.Array
    params: dict
    ema_params: dict
    opt_state: optax.OptState


def sampler_sigmas(config: DistillConfig, edm_config: edm.EDMConfig) -> np.ndarray:
    """The levels the distilled sampler denoises from: sigma_max, then `num_steps - 1` levels evenly
    spaced in log(sigma) from `restart_high` down to `restart_low` (one step between them: their
    geometric mean); e.g. 80 and 0.35 for two steps, 80, 1, 0.35 and 0.12 for four."""
    restarts = np.geomspace(config.restart_high, config.restart_low, config.num_steps - 1)
    if config.num_steps == 2:
        restarts = np.sqrt([config.restart_high * config.restart_low])
    return np.concatenate([[edm_config.sigma_max], restarts]).astype(np.float32)


def consistency_function(net: edm.Network, x: jax.Array, sigma: jax.Array, config: edm.EDMConfig) -> jax.Array:
    """f(x, sigma) with the boundary-respecting c_skip and c_out (module docstring)."""
    sigma = jnp.broadcast_to(sigma, x.shape[:1])
    _, _, c_in, c_noise = edm.preconditioning(sigma, config.sigma_data)
    c_skip = config.sigma_data**2 / ((sigma - config.sigma_min) ** 2 + config.sigma_data**2)
    c_out = config.sigma_data * (sigma - config.sigma_min) / jnp.sqrt(sigma**2 + config.sigma_data**2)
    return c_skip[:, None] * x + c_out[:, None] * net(c_in[:, None] * x, c_noise)


def heun_ode_step(D, x: jax.Array, sigma: jax.Array, sigma_next: jax.Array) -> jax.Array:
    """One deterministic Heun step of the probability-flow ODE from sigma to sigma_next (> 0)."""
    d = (x - D(x, sigma)) / sigma[:, None]
    x_euler = x + (sigma_next - sigma)[:, None] * d
    d_next = (x_euler - D(x_euler, sigma_next)) / sigma_next[:, None]
    return x + 0.5 * (sigma_next - sigma)[:, None] * (d + d_next)


def distillation_loss(params, teacher_params, constants, batch: jax.Array, key: jax.Array, *,
                      teacher_config: DiffusionConfig, config: DistillConfig) -> jax.Array:
    """The consistency-distillation loss on a normalised batch (B, d)."""
    grid = jnp.asarray(edm.karras_sigmas(config.grid_points, teacher_config)[::-1])  # ascending
    index_key, noise_key = jax.random.split(key)
    n = jax.random.randint(index_key, batch.shape[:1], 0, config.grid_points - 1)
    sigma, sigma_next = grid[n], grid[n + 1]
    x_next = batch + sigma_next[:, None] * jax.random.normal(noise_key, batch.shape)
    teacher = denoiser_fn(teacher_config, teacher_params, constants)
    D = lambda x, s: edm.denoise(teacher, x, s, teacher_config.sigma_data)
    x = heun_ode_step(D, x_next, sigma_next, sigma)
    student = denoiser_fn(teacher_config, params, constants)
    prediction = consistency_function(student, x_next, sigma_next, teacher_config)
    target = jax.lax.stop_gradient(consistency_function(student, x, sigma, teacher_config))
    c = config.huber_scale * np.sqrt(batch.shape[-1])
    distance = jnp.sqrt(jnp.sum((prediction - target) ** 2, axis=-1) + c**2) - c
    weight = 1.0 / (sigma_next - sigma)
    return jnp.mean(weight * distance) / jnp.mean(1.0 / jnp.diff(grid))  # scaled so that weights average 1


def _optimizer(config: DistillConfig) -> optax.GradientTransformation:
    return optax.adam(config.learning_rate)  # constant, as the original consistency distillation


def initial_states(teacher_params, config: DistillConfig) -> DistillState:
    """The students' first states, each starting from its teacher's weights (leading seed axis)."""
    optimizer = _optimizer(config)
    copy = lambda tree: jax.tree.map(jnp.copy, tree)  # own buffers: the chunk donates the state
    return jax.vmap(lambda p: DistillState(jnp.int32(0), p, copy(p), optimizer.init(p)))(copy(teacher_params))


def _distill_chunk(state: DistillState, teacher_params, constants, data: jax.Array, key: jax.Array, *,
                   teacher_config: DiffusionConfig, config: DistillConfig, num_steps: int):
    optimizer = _optimizer(config)

    def step(state, key):
        batch_key, loss_key = jax.random.split(key)
        batch = data[jax.random.randint(batch_key, (config.batch_size,), 0, data.shape[0])]
        loss, grads = jax.value_and_grad(distillation_loss)(state.params, teacher_params, constants, batch, loss_key,
                                                            teacher_config=teacher_config, config=config)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        ema_params = optax.incremental_update(params, state.ema_params, 1.0 - config.ema_decay)
        return DistillState(state.step + 1, params, ema_params, opt_state), loss

    state, losses = jax.lax.scan(step, state, jax.random.split(key, num_steps))
    return state, jnp.mean(losses)


@jax.jit(static_argnames=("config", "num_steps", "shared_data"), donate_argnames=("states",))
def distill_steps(states: DistillState, teachers: Diffusion, data: jax.Array, keys: jax.Array, *,
                  config: DistillConfig, num_steps: int, shared_data: bool = True):
    """`num_steps` distillation steps for every seed at once (leading seed axis on everything; on
    `data`, the normalised rows, only without `shared_data`, when each seed has rows of its own)."""
    chunk = partial(_distill_chunk, teacher_config=teachers.config, config=config, num_steps=num_steps)
    return jax.vmap(lambda s, t, d, k: chunk(s, t.params, t.constants, d, k),
                    in_axes=(0, 0, None if shared_data else 0, 0))(states, teachers, data, keys)


def distill(teacher: Diffusion, rows: np.ndarray, config: DistillConfig, key: jax.Array,
            workdir: Optional[str] = None, progress: bool = True) -> Diffusion:
    """Distils `teacher` (one model, or a stack with a leading seed axis and as many keys) on the
    rows it was trained on, un-normalised: (N, d), or for a stack trained on rows of each seed's
    own, (S, N, d). The result samples in `config.num_steps` evaluations (`generate` and
    `iterate_samples` read it like any model). With a `workdir`, checkpoints every
    `checkpoint_every` steps and resumes from the newest on a rerun."""
    if teacher.config.conditional:
        raise ValueError("Distillation does not support a conditional (guided) denoiser yet; distil an "
                         "unconditional one.")
    if teacher.distilled is not None:
        raise ValueError("This model is distilled already; distil the 128-step teacher it came from.")
    key = jnp.asarray(key)
    one = is_one_key(key)
    teachers, keys = (with_seed_axis(teacher), key[None]) if one else (teacher, key)
    add_axis, drop_axis = (with_seed_axis, without_seed_axis) if one else (lambda tree: tree,) * 2
    rows = np.asarray(rows, np.float32)
    shared_data = rows.ndim == 2
    if not shared_data and (one or len(rows) != len(keys)):
        raise ValueError(f"Rows of shape {rows.shape} give each seed its own rows: pass one key per seed "
                         f"({len(rows)}), or (N, d) rows that every seed shares.")
    if shared_data:  # every seed's normaliser was fitted to these rows; the first normalises them
        data = without_seed_axis(teachers.normalizer).normalize(jnp.asarray(rows))
    else:
        data = jax.vmap(Normalizer.normalize)(teachers.normalizer, jnp.asarray(rows))
    state = initial_states(teachers.params, config)

    checkpointer = None
    if workdir is not None:
        # The settings that shape training; a longer num_train_steps resumes.
        sampler_only = ("num_steps", "num_train_steps", "restart_high", "restart_low")
        shaping = {k: v for k, v in dataclasses.asdict(config).items() if k not in sampler_only}
        weights = np.concatenate([np.ravel(leaf) for leaf in jax.tree.leaves(teachers.params)])
        claim_fit(workdir, {"teacher": fingerprint(weights), "rows": fingerprint(rows),
                            "key": np.asarray(keys).tolist(), "config": shaping})
        checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
        restored = checkpointer.restore_latest(drop_axis(state))
        if restored is not None:
            state = add_axis(restored[1])
            logging.info("Resuming distillation in %s at step %d of %d.", workdir, restored[0],
                         config.num_train_steps)

    def run_chunk(states, step, num_steps):
        chunk_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, step)
        return distill_steps(states, teachers, data, chunk_keys, config=config, num_steps=num_steps,
                             shared_data=shared_data)

    save = None if checkpointer is None else lambda states, step: checkpointer.save(step, drop_axis(states))
    state = run_chunks(state, int(np.max(state.step)), run_chunk, config, progress, save, label="distillation")
    if checkpointer is not None:
        checkpointer.close()
    return teacher.replace(params=drop_axis(state.ema_params), distilled=config)


def consistency_sample(net: edm.Network, key: jax.Array, num: int, dim: int, edm_config: edm.EDMConfig,
                       config: DistillConfig) -> jax.Array:
    """`num` normalised rows in `config.num_steps` evaluations of the consistency function of `net`:
    denoise sigma_max noise, then for each further level of `sampler_sigmas` add noise back to it
    and denoise again (multistep consistency sampling)."""
    f = lambda x, sigma: consistency_function(net, x, sigma, edm_config)
    sigmas = sampler_sigmas(config, edm_config)
    keys = jax.random.split(key, config.num_steps)
    x = f(sigmas[0] * jax.random.normal(keys[0], (num, dim)), sigmas[0])
    for sigma, step_key in zip(sigmas[1:], keys[1:]):
        noise = np.sqrt(sigma**2 - edm_config.sigma_min**2) * jax.random.normal(step_key, x.shape)
        x = f(x + noise, sigma)
    return x
