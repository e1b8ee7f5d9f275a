"""Diffusion throughput: training steps/s and generated samples/s, as a fraction of matmul peak,
and the distilled samplers' samples/s beside the 128-step one's, with the distillation's own cost.

    python -m bench.diffusion --size=paper --out=bench/results/diffusion_cpu_paper.json

`paper`: width 1024, depth 6, batch 1024, 128 sampler steps, a 42-dim walker2d row.
`small`: width 256, depth 3, batch 256. Model FLOPs count the dense layers only (2 per
multiply-add; a training step is forward + backward = 3 forward passes; a sample is 255 network
evaluations), divided by the FLOP/s of a large matmul measured in the same run. A distilled
sampler of N steps (consistency distillation) makes N evaluations per sample; its speed does not
depend on how well it was distilled, so it is timed on the same weights, and a distillation step
(a teacher Heun step and two student evaluations, forward and backward) at the training batch.
`minutes_for_5M` extrapolates each sampler to the paper's 5M samples.
"""
import jax
import numpy as np
from absl import flags

from bench.timing import best_time, environment, matmul_peak_flops, write_json
from launch import boundary
from launch.cli import INPUT_ERRORS
from synther_jax.diffusion import Diffusion, DiffusionConfig, DistillConfig, edm
from synther_jax.diffusion.config import DISTILLED_STEPS
from synther_jax.diffusion.distillation import distill_steps, initial_states
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.model import init_state, with_seed_axis
from synther_jax.diffusion.sampling import sample_rows
from synther_jax.diffusion.training import train_steps

SIZES = {"paper": dict(width=1024, depth=6, batch_size=1024), "small": dict(width=256, depth=3, batch_size=256)}
DIM = 42  # walker2d: 17 + 6 + 1 + 17 + 1

FLAGS = flags.FLAGS
flags.DEFINE_enum("size", "paper", list(SIZES), "Model size to measure.")
flags.DEFINE_string("out", None, "JSON file for the figures (default: bench/results/diffusion_<platform>_<size>.json).")
flags.DEFINE_integer("train_steps", 20, "Optimisation steps per timed call (one lax.scan).")
flags.DEFINE_integer("num_samples", 1024, "Samples per timed call of the 128-step sampler.")
flags.DEFINE_integer("distilled_num_samples", 16_384, "Samples per timed call of a distilled sampler.")
flags.DEFINE_integer("repeats", 3, "Timed calls; the fastest counts.")


def dense_macs(config: DiffusionConfig, dim: int) -> int:
    """Multiply-adds of one forward pass for one row."""
    t, w = config.dim_t, config.width
    return 17 * t + t * t + dim * t + t * w + config.depth * w * w + w * dim


def main(argv):
    del argv
    config = DiffusionConfig(**SIZES[FLAGS.size], num_train_steps=100_000)
    state = with_seed_axis(init_state(config, jax.random.PRNGKey(0), DIM))  # one model: a seed axis of 1
    param_count = sum(x.size for x in jax.tree.leaves(state.params))
    data = jax.random.normal(jax.random.PRNGKey(1), (100_000, DIM))
    peak = matmul_peak_flops()

    def train():
        nonlocal state
        state, loss = train_steps(state, data, jax.random.PRNGKey(2)[None], config=config, num_steps=FLAGS.train_steps,
                                  batch_size=config.batch_size, shared_data=True)
        loss.block_until_ready()

    train()  # compile
    train_time = best_time(train, FLAGS.repeats)
    train_steps_per_s = FLAGS.train_steps / train_time
    train_flops = 3 * 2 * dense_macs(config, DIM) * config.batch_size * train_steps_per_s

    model = Diffusion(config, DIM, state.ema_params, state.constants,
                      with_seed_axis(Normalizer(np.zeros(DIM), np.ones(DIM))))
    sample = lambda: sample_rows(model, jax.random.PRNGKey(3)[None], FLAGS.num_samples).block_until_ready()
    sample()  # compile
    samples_per_s = FLAGS.num_samples / best_time(sample, FLAGS.repeats)
    evaluations = edm.network_evaluations(config)
    sample_flops = 2 * dense_macs(config, DIM) * evaluations * samples_per_s

    distilled = {}
    for steps in DISTILLED_STEPS:
        fast = model.replace(distilled=DistillConfig(num_steps=steps))
        sample_fast = lambda: sample_rows(fast, jax.random.PRNGKey(3)[None], FLAGS.distilled_num_samples
                                          ).block_until_ready()
        sample_fast()  # compile
        rate = FLAGS.distilled_num_samples / best_time(sample_fast, FLAGS.repeats)
        distilled[str(steps)] = {"network_evaluations": steps, "samples_per_s": rate,
                                 "speedup_vs_128_steps": rate / samples_per_s, "minutes_for_5M": 5e6 / rate / 60}
    distill_config = DistillConfig(batch_size=config.batch_size)
    students = initial_states(state.params, distill_config)

    def distill():
        nonlocal students
        students, loss = distill_steps(students, model, data, jax.random.PRNGKey(4)[None], config=distill_config,
                                       num_steps=FLAGS.train_steps)
        loss.block_until_ready()

    distill()  # compile
    distill_steps_per_s = FLAGS.train_steps / best_time(distill, FLAGS.repeats)

    record = {
        "size": FLAGS.size, "width": config.width, "depth": config.depth, "dim_t": config.dim_t,
        "batch_size": config.batch_size, "num_sample_steps": config.num_sample_steps, "row_dim": DIM,
        "param_count": int(param_count),
        "train_steps_per_s": train_steps_per_s, "samples_per_s": samples_per_s,
        "matmul_peak_flops_per_s": peak,
        "train_flops_per_s": train_flops, "sample_flops_per_s": sample_flops,
        "train_fraction_of_peak": train_flops / peak, "sample_fraction_of_peak": sample_flops / peak,
        "minutes_for_5M": 5e6 / samples_per_s / 60, "distilled": distilled,
        "distill_steps_per_s": distill_steps_per_s, "distill_batch_size": distill_config.batch_size,
        **environment(),
    }
    print(f"{FLAGS.size}: {param_count:,} params | train {train_steps_per_s:.2f} steps/s "
          f"({record['train_fraction_of_peak']:.0%} of peak) | sample {samples_per_s:.1f} samples/s "
          f"({record['sample_fraction_of_peak']:.0%} of peak) | matmul peak {peak / 1e9:.1f} GFLOP/s "
          f"on {record['device']}")
    for steps, figures in distilled.items():
        print(f"  distilled, {steps} step(s): {figures['samples_per_s']:.0f} samples/s, "
              f"{figures['speedup_vs_128_steps']:.1f}x the 128-step sampler")
    print(f"  distillation: {distill_steps_per_s:.2f} steps/s at batch {distill_config.batch_size}")
    out = FLAGS.out or f"bench/results/diffusion_{jax.devices()[0].platform}_{FLAGS.size}.json"
    write_json(out, record)


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS, resumes=False)
