"""Diffusion throughput on 1 device vs all devices: data-parallel training and generation.

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python -m bench.scaling --size=small
    python -m bench.scaling --size=paper                      # on a multi-GPU or TPU machine

For each mesh (the first device alone, then all of them) it times `train_steps` with the global
batch split across the mesh (strong scaling: the same batch size, so the same training) and
`sample_rows` with each chunk split across the mesh. Takes bench.diffusion's flags (--size,
--train_steps, --num_samples, --repeats, --out); --num_samples must be a multiple of the device
count. Forced CPU devices share the machine's cores, so on a CPU the figures show the overhead of
sharding rather than a speed-up; real speed-ups need real devices.
"""

import jax
import numpy as np
from absl import flags

from bench import diffusion as diffusion_benchmark
from bench.diffusion import DIM, FLAGS, SIZES
from bench.timing import best_time, environment, write_json
from launch import boundary
from launch.cli import INPUT_ERRORS
from synther_jax import sharding
from synther_jax.diffusion import Diffusion, DiffusionConfig
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.model import init_state, with_seed_axis
from synther_jax.diffusion.sampling import sample_rows
from synther_jax.diffusion.training import train_steps

flags.adopt_module_key_flags(diffusion_benchmark)  # --help lists bench.diffusion's flags, which this benchmark takes


def measure(config: DiffusionConfig, num_devices: int) -> dict:
    """Training steps/s and samples/s on a mesh of the first `num_devices` devices."""
    mesh = sharding.data_mesh(num_devices)
    state = sharding.replicate(with_seed_axis(init_state(config, jax.random.PRNGKey(0), DIM)), mesh)  # one model
    data = sharding.replicate(np.random.default_rng(1).normal(size=(100_000, DIM)).astype(np.float32), mesh)

    def train():
        nonlocal state
        state, loss = train_steps(state, data, jax.random.PRNGKey(2)[None], config=config, num_steps=FLAGS.train_steps,
                                  batch_size=config.batch_size, shared_data=True, batch_mesh=mesh)
        loss.block_until_ready()

    train()  # compile
    train_steps_per_s = FLAGS.train_steps / best_time(train, FLAGS.repeats)

    normalizer = with_seed_axis(Normalizer(np.zeros(DIM, np.float32), np.ones(DIM, np.float32)))
    model = sharding.replicate(Diffusion(config, DIM, state.ema_params, state.constants, normalizer), mesh)
    sample = lambda: sample_rows(model, jax.random.PRNGKey(3)[None], FLAGS.num_samples, mesh=mesh).block_until_ready()
    sample()  # compile
    samples_per_s = FLAGS.num_samples / best_time(sample, FLAGS.repeats)
    print(f"{num_devices} device(s): train {train_steps_per_s:.2f} steps/s | sample {samples_per_s:.1f} samples/s",
          flush=True)
    return {"num_devices": num_devices, "train_steps_per_s": train_steps_per_s, "samples_per_s": samples_per_s}


def main(argv):
    del argv
    config = DiffusionConfig(**SIZES[FLAGS.size], num_train_steps=100_000)
    counts = sorted({1, jax.device_count()})
    runs = [measure(config, n) for n in counts]
    one, full = runs[0], runs[-1]
    record = {
        "size": FLAGS.size, "width": config.width, "depth": config.depth, "batch_size": config.batch_size,
        "num_sample_steps": config.num_sample_steps, "row_dim": DIM, "num_samples": FLAGS.num_samples,
        "runs": runs,
        "train_speedup": full["train_steps_per_s"] / one["train_steps_per_s"],
        "sample_speedup": full["samples_per_s"] / one["samples_per_s"],
        **environment(),
    }
    print(f"{counts[-1]} vs 1 device(s): training x{record['train_speedup']:.2f}, "
          f"generation x{record['sample_speedup']:.2f} on {record['device']}")
    platform = jax.devices()[0].platform
    write_json(FLAGS.out or f"bench/results/scaling_{platform}{jax.device_count()}_{FLAGS.size}.json", record)


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS, resumes=False)
