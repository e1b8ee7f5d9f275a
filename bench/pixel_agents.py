"""The pixel pipeline's speeds: frames rendered per second, DrQ+BC and BC updates per second for 1
and n seeds (a vmapped seed axis), and the latent stages (encoding, denoiser training, sampling,
head updates).

    python -m bench.pixel_agents                                        # paper sizes (a GPU job)
    python -m bench.pixel_agents --batch_size=32 --num_steps=5 --diffusion=small --out=bench/results/pixels_cpu.json

Learners run V-D4RL's networks at 84 px on a frame store of random uint8 frames held on the
device (frames stacked at sample time, as in training); compilation is excluded (one untimed call
first) and the fastest of `--repeats` calls counts. On a CPU the pixel updates run as launch.pixels
runs them there, in calls of 2 fully unrolled updates (XLA:CPU is ~30x slower on convolution
gradients inside a loop). "updates/s" counts scan steps per second (each
advances every seed once), "agent updates/s" multiplies by the seeds. The latent stages use
cheetah-run's 207-dim latent rows (4 x 50 + 6 + 1); `--diffusion=paper` is the paper's denoiser
(width 1024, depth 6), `small` the smoke config's (256 x 3). Rendering runs MuJoCo's renderer
(`MUJOCO_GL=egl` unless set), which is software rendering on a CPU.
"""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import flags  # noqa: E402

from agents import PIXEL_LEARNERS  # noqa: E402
from bench.timing import best_time, environment, write_json  # noqa: E402
from launch import boundary  # noqa: E402
from launch.cli import INPUT_ERRORS  # noqa: E402
from launch.pixels import run_updates  # noqa: E402
from synther_jax.data.pixel_datasets import FIRST, LAST, MID, PixelDataset  # noqa: E402
from synther_jax.diffusion import DiffusionConfig, train_diffusion  # noqa: E402
from synther_jax.diffusion.model import with_seed_axis  # noqa: E402
from synther_jax.diffusion.sampling import sample_rows  # noqa: E402
from synther_jax.envs.pixel_env import PixelEnv  # noqa: E402

ACTION_DIM, FEATURE_DIM, IMAGE_SHAPE = 6, 50, (9, 84, 84)
DIFFUSION = {"paper": DiffusionConfig(), "small": DiffusionConfig(width=256, depth=3, dim_t=64)}

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["1", "4"], "Numbers of seeds trained together.")
flags.DEFINE_integer("batch_size", 256, "Minibatch size per seed (V-D4RL: 256).")
flags.DEFINE_integer("num_steps", 20, "Pixel updates per timed call (one lax.scan).")
flags.DEFINE_integer("latent_steps", 500, "Latent head updates and denoiser steps per timed call.")
flags.DEFINE_integer("frames", 200, "Frames to render for the rendering rate.")
flags.DEFINE_integer("store_frames", 5010, "Frames in the random frame store (10 episodes of 501).")
flags.DEFINE_integer("sample_chunk", 10_000, "Latent rows per sampler call.")
flags.DEFINE_enum("diffusion", "paper", list(DIFFUSION), "Denoiser size for the latent stages.")
flags.DEFINE_integer("cpu_unrolled_updates", 2, "On a CPU, pixel updates per call, fully unrolled (as launch.pixels).")
flags.DEFINE_integer("repeats", 2, "Timed calls; the fastest counts.")
flags.DEFINE_string("out", None, "JSON file (default: bench/results/pixels_<platform>.json).")


def frames_per_second(num_frames: int) -> float:
    env = PixelEnv("walker-walk", 0)
    env.reset(0)
    start = time.perf_counter()
    for i in range(num_frames):
        if env.step(np.zeros(env.action_dim, np.float32))[3]:
            env.reset()
    return num_frames / (time.perf_counter() - start)


def frame_store(num_frames: int):
    rng = np.random.default_rng(0)
    steps = np.full(num_frames, MID, np.uint8)
    steps[::501], steps[500::501] = FIRST, LAST
    steps[-1] = LAST
    data = PixelDataset(rng.integers(0, 256, (num_frames, 3, 84, 84), dtype=np.uint8),
                        rng.uniform(-1, 1, (num_frames, ACTION_DIM)).astype(np.float32),
                        rng.uniform(0, 1, num_frames).astype(np.float32), np.ones(num_frames, np.float32), steps)
    return data.device_store()


def timed_scan(run, state, repeats: int) -> float:
    """Seconds of the fastest call of `run(state, key) -> (state, metrics)` after a warm-up call."""

    def call():
        nonlocal state
        state, metrics = run(state, jax.random.PRNGKey(int(np.ravel(state.step)[0])))
        jax.block_until_ready(metrics)

    call()
    return best_time(call, repeats)


def learner_rates(module, store, num_seeds: int) -> dict:
    keys = jax.random.split(jax.random.PRNGKey(1), num_seeds)
    states = module.init_seeds(keys, IMAGE_SHAPE, ACTION_DIM)
    unrolled = FLAGS.cpu_unrolled_updates if jax.default_backend() == "cpu" else 0
    seconds = timed_scan(lambda s, k: run_updates(module.update_steps_seeds, s, store, jax.random.split(k, num_seeds),
                                                  FLAGS.num_steps, FLAGS.batch_size, unrolled), states, FLAGS.repeats)
    pixel = FLAGS.num_steps / seconds
    latents = {name: jax.random.uniform(jax.random.PRNGKey(i), (num_seeds, 100_000, FEATURE_DIM), minval=-1,
                                        maxval=1) for i, name in enumerate(("actor", "critic", "next_actor",
                                                                            "next_critic"))}
    latents.update(actions=jax.random.uniform(jax.random.PRNGKey(5), (num_seeds, 100_000, ACTION_DIM)),
                   rewards=jax.random.uniform(jax.random.PRNGKey(6), (num_seeds, 100_000)))
    heads = module.begin_latent_stage_seeds(states, keys)
    seconds = timed_scan(lambda s, k: module.latent_update_steps_seeds(
        s, latents, jax.random.split(k, num_seeds), num_steps=FLAGS.latent_steps, batch_size=FLAGS.batch_size,
        dataset_per_seed=True), heads, FLAGS.repeats)
    latent = FLAGS.latent_steps / seconds
    return {"pixel_updates_per_s": pixel, "pixel_agent_updates_per_s": pixel * num_seeds,
            "latent_head_updates_per_s": latent, "latent_agent_head_updates_per_s": latent * num_seeds}


def encode_rate(module, store) -> float:
    """Transitions per second through one seed's encoder and trunks (both frames of each)."""
    state = module.init(jax.random.PRNGKey(0), IMAGE_SHAPE, ACTION_DIM)
    frames = jnp.asarray(np.random.default_rng(0).integers(0, 256, (256, *IMAGE_SHAPE), dtype=np.uint8))
    call = lambda: jax.block_until_ready(module.features(state, frames, jax.random.PRNGKey(0)))
    call()
    return 256 / (2 * best_time(call, FLAGS.repeats))


def diffusion_rates(dim: int) -> dict:
    config = DIFFUSION[FLAGS.diffusion]
    config = DiffusionConfig(**{**config.__dict__, "num_train_steps": FLAGS.latent_steps,
                                "steps_per_call": FLAGS.latent_steps})
    rows = np.random.default_rng(0).normal(size=(20_000, dim)).astype(np.float32)
    train_diffusion(rows, config, jax.random.PRNGKey(0), progress=False)  # compiles
    start = time.perf_counter()
    model = train_diffusion(rows, config, jax.random.PRNGKey(1), progress=False)
    train = FLAGS.latent_steps / (time.perf_counter() - start)
    models, keys = with_seed_axis(model), jax.random.PRNGKey(2)[None]
    call = lambda: jax.block_until_ready(sample_rows(models, keys, FLAGS.sample_chunk))
    call()
    return {"denoiser": FLAGS.diffusion, "row_dim": dim, "train_steps_per_s": train,
            "samples_per_s": FLAGS.sample_chunk / best_time(call, FLAGS.repeats)}


def main(argv):
    del argv
    record = {**environment(), "batch_size": FLAGS.batch_size, "image_shape": IMAGE_SHAPE}
    record["frames_rendered_per_s"] = frames_per_second(FLAGS.frames)
    print(f"rendering: {record['frames_rendered_per_s']:.1f} frames/s (84x84, walker-walk)")
    store = frame_store(FLAGS.store_frames)
    record["learners"] = {}
    for name, (module, _) in PIXEL_LEARNERS.items():
        rates = {"encode_transitions_per_s": encode_rate(module, store)}
        for num_seeds in map(int, FLAGS.seeds):
            rates[f"{num_seeds}_seeds"] = learner_rates(module, store, num_seeds)
            print(f"{name}, {num_seeds} seeds: {rates[f'{num_seeds}_seeds']}")
        record["learners"][name] = rates
    record["diffusion"] = diffusion_rates(4 * FEATURE_DIM + ACTION_DIM + 1)
    print(f"latent diffusion: {record['diffusion']}")
    out = FLAGS.out or os.path.join("bench", "results", f"pixels_{jax.devices()[0].platform}.json")
    write_json(out, record)


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS, resumes=False)
