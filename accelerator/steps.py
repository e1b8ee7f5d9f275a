"""The runbook's own measurements (`accelerator.runbook` runs each as a child process, from scratch):

    python -m accelerator.steps --step=device --out=W/device.json [--smoke]

  device           the device, the installed versions and the matmul peak at each precision;
  online_updates   SAC's UTD-20 update (SynthER's online learner, 2 Qs, mixed real:synthetic
                   minibatches, what `pipelines.online_loop` runs per environment step) at 1 and 4 seeds;
  diffusion_train  the paper's denoiser trained for 100K steps on the bundled walker2d data;
  samples          5M samples from the paper's denoiser, in its 100K-sample chunks (fresh weights:
                   the sampler's cost does not depend on them);
  td3_bc           1M TD3+BC updates for 4 seeds together on the bundled walker2d data;
  online_retrain   the online loop (walker2d SynthER, 4 seeds) up to one step past its first
                   retrain, so one diffusion retrain and generation really run and are timed, with the
                   denoiser's training loss at the retrain's first and last chunk.

`--smoke` shrinks each to CPU-seconds. Every step writes one JSON record (`--out`) with its figures.
"""
import os
import platform
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from bench.timing import PRECISIONS, best_time, environment, matmul_peak_flops, package_versions, write_json
from launch import boundary
from launch.cli import INPUT_ERRORS

PACKAGES = ("jax", "jaxlib", "jax-cuda12-plugin", "jax-cuda13-plugin", "flax", "optax", "orbax-checkpoint", "chex",
            "numpy", "scipy", "h5py", "distrax", "tfp-nightly", "tensorflow-probability", "gymnasium", "mujoco",
            "ml-collections")

FLAGS = flags.FLAGS


def device(smoke: bool) -> dict:
    sizes, repeats = ((256, 512), 2) if smoke else ((2048, 4096, 8192), 5)
    peaks, unsupported = {}, {}
    for precision in PRECISIONS:
        try:
            peaks[precision] = matmul_peak_flops(sizes, repeats, precision)
        except Exception as error:  # a precision the device lacks: XLA says so when compiling
            unsupported[precision] = " ".join(str(error).split())[:200]
    devices = jax.devices()
    return {"devices": [f"{d.platform}:{d.device_kind}" for d in devices], "matmul_sizes": list(sizes),
            "matmul_peak_flops_per_s": peaks, "unsupported_precisions": unsupported,
            "packages": {"python": platform.python_version(), **package_versions(PACKAGES)}, "memory_stats": _memory_stats(devices[0])}


def _memory_stats(dev) -> dict:
    stats = dev.memory_stats() or {}  # None on CPU
    return {k: stats[k] for k in ("bytes_limit", "bytes_in_use") if k in stats}


def online_updates(smoke: bool) -> dict:
    from agents import sac
    from synther_jax import replay
    from synther_jax.data.transitions import Transitions

    obs_dim, action_dim, rows = 17, 6, 2_000 if smoke else 100_000
    hidden, batch, calls = ((64, 64), 64, 3) if smoke else ((256, 256), 256, 50)
    rng = np.random.default_rng(0)
    data = Transitions(rng.normal(size=(rows, obs_dim)), rng.uniform(-1, 1, (rows, action_dim)),
                       rng.normal(size=rows), rng.normal(size=(rows, obs_dim)), np.zeros(rows))
    buffer = replay.insert_transitions(replay.create_buffer(rows, obs_dim, action_dim), data)
    # One environment step's learning for every seed, as pipelines.online_loop.update_agents runs it.
    update = jax.jit(jax.vmap(lambda state, real, synthetic, key: sac.update(state, real, synthetic, key,
                                                                             synthetic_ratio=0.5)))
    results = []
    for num_seeds in (1, 4):
        keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
        states = sac.init_seeds(keys, obs_dim, action_dim, hidden_dims=hidden, batch_size=batch, utd_ratio=20)
        buffers = jax.tree.map(lambda x: jnp.stack([x] * num_seeds), buffer)

        def run():
            nonlocal states
            for i in range(calls):
                states, metrics = update(states, buffers, buffers, jax.random.split(jax.random.PRNGKey(i), num_seeds))
            jax.block_until_ready((states, metrics))

        run()  # compile
        env_steps_per_s = calls / best_time(run, 1 if smoke else 3)
        results.append({"num_seeds": num_seeds, "env_steps_per_s": env_steps_per_s,
                        "critic_updates_per_s": 20 * env_steps_per_s,
                        "seed_critic_updates_per_s": 20 * num_seeds * env_steps_per_s})
        print(f"SAC UTD 20, {num_seeds} seed(s): {env_steps_per_s:.1f} environment steps of updates/s")
    return {"utd_ratio": 20, "hidden_dims": list(hidden), "batch_size": batch, "synthetic_ratio": 0.5,
            "results": results}


def _paper_denoiser(smoke: bool, **overrides):
    from synther_jax.diffusion import DiffusionConfig

    if smoke:
        return DiffusionConfig(width=64, depth=2, dim_t=16, num_train_steps=200, steps_per_call=50,
                               sample_chunk_size=1_000, num_sample_steps=16, **overrides)
    return DiffusionConfig(**overrides)  # the paper's: 1024 x 6, 100K steps, 128 sampler steps


def _walker2d():
    """The bundled walker2d transitions, read without `load_dataset`'s check against the Gymnasium
    environment, which a node without the `envs` extra cannot make."""
    from synther_jax.data.d4rl_hdf5 import read_d4rl_hdf5
    from synther_jax.data.loaders import BUNDLED_DIR

    return read_d4rl_hdf5(os.path.join(BUNDLED_DIR, "walker2d-medium-replay.hdf5"), keep_timeouts=False)


def diffusion_train(smoke: bool) -> dict:
    from synther_jax.diffusion import train_diffusion

    rows = _walker2d().to_rows(True)
    config = _paper_denoiser(smoke)
    losses = []
    start = time.perf_counter()
    model = train_diffusion(rows, config, jax.random.PRNGKey(0), skip_norm_dims=(rows.shape[1] - 1,),
                            log_fn=lambda step, metrics: losses.append(metrics["loss"]), progress=False)
    jax.block_until_ready(model)
    seconds = time.perf_counter() - start
    return {"rows": len(rows), "num_train_steps": config.num_train_steps, "width": config.width,
            "depth": config.depth, "batch_size": config.resolve_batch_size(len(rows)), "seconds": seconds,
            "train_steps_per_s": config.num_train_steps / seconds, "first_chunk_loss": losses[0],
            "last_chunk_loss": losses[-1]}


def samples(smoke: bool) -> dict:
    from synther_jax.diffusion import Diffusion, iterate_samples
    from synther_jax.diffusion.model import init_state
    from synther_jax.diffusion.normalizer import Normalizer

    config, dim = _paper_denoiser(smoke), 42
    num = 2_000 if smoke else 5_000_000
    state = init_state(config, jax.random.PRNGKey(0), dim)
    model = Diffusion(config, dim, state.ema_params, state.constants,
                      Normalizer(np.zeros(dim, np.float32), np.ones(dim, np.float32)))
    start, made = time.perf_counter(), 0
    for chunk in iterate_samples(model, num, jax.random.PRNGKey(1), progress=False):
        made += len(chunk)  # each chunk reaches the host, as the pipeline's writer gets it
    seconds = time.perf_counter() - start
    return {"num_samples": made, "chunk_size": config.sample_chunk_size, "num_sample_steps": config.num_sample_steps,
            "seconds": seconds, "samples_per_s": made / seconds}


def td3_bc(smoke: bool) -> dict:
    from agents import td3_bc as learner

    data = _walker2d()
    dataset = {k: jnp.asarray(v) for k, v in data.as_dict().items()}
    num_seeds, total, per_call = (2, 200, 100) if smoke else (4, 1_000_000, 10_000)
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    states = learner.init_seeds(keys, data.obs_dim, data.action_dim)
    start = time.perf_counter()
    for call in range(total // per_call):
        states, metrics = learner.update_steps_seeds(states, dataset, jax.random.split(jax.random.PRNGKey(call),
                                                                                       num_seeds),
                                                     num_steps=per_call, batch_size=256)
    jax.block_until_ready((states, metrics))
    seconds = time.perf_counter() - start
    return {"num_seeds": num_seeds, "updates": total, "steps_per_call": per_call, "seconds": seconds,
            "updates_per_s": total / seconds}


def online_retrain(smoke: bool) -> dict:
    from configs.online import get_config, validate
    from pipelines import online_loop, online_synthesis

    config = get_config("walker2d-synther,smoke" if smoke else "walker2d-synther")
    config.num_seeds = 2 if smoke else 4
    if smoke:
        config.start_steps, config.synther.retrain_every = 100, 200
        config.agent.utd_ratio = 2
        config.synther.diffusion.update(num_train_steps=200, steps_per_call=50)
    # One step past the first retrain: the loop skips a retrain at its last step.
    config.total_steps = config.synther.retrain_every + 1
    config.eval_every = config.checkpoint_every = config.total_steps
    config.eval_episodes = 1
    validate(config)
    losses = []
    synthesize = online_synthesis.make_synthesizer(config, log_fn=lambda step, metrics: losses.append(metrics["loss"]),
                                              progress=False)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        result = online_loop.train(config, os.path.join(workdir, "run"), synthesize)
        seconds = time.perf_counter() - start
    return {"num_seeds": config.num_seeds, "env_steps": result.env_steps, "retrain_every": config.synther.retrain_every,
            "diffusion_train_steps": config.synther.diffusion.num_train_steps,
            "num_samples_per_seed": config.synther.num_samples, "retrains": synthesize.retrains, "seconds": seconds,
            "stage_seconds": result.timings, "first_chunk_loss": losses[0], "last_chunk_loss": losses[-1]}


MEASUREMENTS = {"device": device, "online_updates": online_updates, "diffusion_train": diffusion_train,
                "samples": samples, "td3_bc": td3_bc, "online_retrain": online_retrain}


def main(argv):
    del argv
    record = {"step": FLAGS.step, "smoke": FLAGS.smoke, **MEASUREMENTS[FLAGS.step](FLAGS.smoke), **environment()}
    write_json(FLAGS.out, record)


if __name__ == "__main__":
    flags.DEFINE_enum("step", None, list(MEASUREMENTS), "The measurement to make.")
    flags.DEFINE_string("out", None, "JSON file for its figures.")
    flags.DEFINE_bool("smoke", False, "CPU-seconds sizes (checks the runbook itself).")
    flags.mark_flags_as_required(["step", "out"])
    boundary.run(main, INPUT_ERRORS, resumes=False)
