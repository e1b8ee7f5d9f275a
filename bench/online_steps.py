"""Online loop throughput: environment steps per second for SAC (UTD 1), REDQ (UTD 20) and
SAC(SynthER) (UTD 20), and several seeds vmapped in one process against separate processes.

    python -m bench.online_steps --env=hopper --steps=500 --out=bench/results/online_cpu_hopper.json

Each variant runs the real loop (`pipelines.online_loop.train`, paper-size networks and 1M-row buffers)
for `--warmup` random steps and then `--steps` learning steps; compilation is done by a short run
beforehand and excluded. A step's time is acting + environment + buffer insert + agent updates.
For SynthER the synthetic buffer is filled once with resampled real rows ("diffusion excluded");
"diffusion included" adds the measured cost of one retrain of the online denoiser (width 1024,
depth 6, dim_t 256: 100K training steps at batch 256, then 1M samples with 128 sampler steps),
extrapolated from timed chunks and spread over the 10K environment steps between retrains.
The retrain is also timed for `--seeds` seeds' models both ways: one after another, and as one
vmapped training and sampling program (what `launch.online` runs).
"""
import multiprocessing
import os
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import flags

from bench.timing import best_time, environment, write_json
from configs.online import get_config
from launch import boundary
from launch.cli import INPUT_ERRORS
from pipelines import online_loop
from synther_jax.diffusion import Diffusion, DiffusionConfig
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.model import init_state
from synther_jax.diffusion.sampling import sample_rows
from synther_jax.diffusion.training import train_steps
from synther_jax.envs import make_env
from synther_jax.termination import has_terminal_column

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "hopper", "Environment short name of configs/online.py (hopper, walker2d, cheetah-run...).")
flags.DEFINE_integer("warmup", 1_000, "Random-action steps before learning starts (the paper: 5000).")
flags.DEFINE_integer("steps", 500, "Learning steps timed per variant.")
flags.DEFINE_integer("seeds", 2, "Seeds for the vmapped-vs-processes comparison (SAC UTD 1; 0 skips it) and for "
                                  "the diffusion retrain one by one against one program.")
flags.DEFINE_string("out", None, "JSON file (default: bench/results/online_<platform>_<env>.json).")


def bench_config(env: str, variant: str, warmup: int, steps: int, num_seeds: int = 1):
    config = get_config(f"{env}-{variant}")
    config.start_steps = warmup
    config.total_steps = warmup + steps
    config.eval_every = config.checkpoint_every = config.total_steps  # one of each, at the end, not timed
    config.eval_episodes = 1
    config.num_seeds = num_seeds
    config.synther.retrain_every = warmup  # fill the synthetic buffer once, before learning starts
    return config


def resampled_real_rows(real_rows: np.ndarray, key: jax.Array) -> np.ndarray:
    """Stand-in generator with the real one's output size: real rows drawn with replacement."""
    index = np.asarray(jax.random.randint(key, (1_000_000,), 0, len(real_rows)))
    return real_rows[index]


def loop_seconds_per_step(env: str, variant: str, warmup: int, steps: int, num_seeds: int = 1) -> float:
    """Seconds per learning step of the loop (all seeds together), compilation excluded."""
    synthesize = resampled_real_rows if variant == "synther" else None
    with tempfile.TemporaryDirectory() as workdir:
        online_loop.train(bench_config(env, variant, warmup, 3, num_seeds), os.path.join(workdir, "compile"),
                          synthesize)
        config = bench_config(env, variant, warmup, steps, num_seeds)
        seconds = online_loop.train(config, os.path.join(workdir, "run"), synthesize).timings
    per_step = sum(seconds[k] for k in ("acting", "env_stepping", "replay_insert")) / config.total_steps
    return per_step + seconds["agent_updates"] / steps


def diffusion_retrain_seconds(config: DiffusionConfig, row_dim: int, num_samples: int, num_seeds: int) -> dict:
    """One online retrain (training, then `num_samples` samples), extrapolated from timed chunks:
    for one seed's model, and for `num_seeds` seeds' models both ways, one after another (the
    one-seed time, `num_seeds` times) and as one vmapped program (`train_steps` and `sample_rows`
    over all seeds, as `launch.online` runs them)."""
    keys = jax.random.split(jax.random.PRNGKey(0), num_seeds)
    states = jax.vmap(lambda key: init_state(config, key, row_dim))(keys)
    state = jax.tree.map(lambda x: x[:1], states)  # one seed: a seed axis of 1
    data = jax.random.normal(jax.random.PRNGKey(1), (num_seeds, 10_000, row_dim))
    chunk, num = 10, 64

    def train_one():
        nonlocal state
        state, loss = train_steps(state, data[0], jax.random.PRNGKey(2)[None], config=config, num_steps=chunk,
                                  batch_size=config.batch_size, shared_data=True)
        loss.block_until_ready()

    def train_seeds():
        nonlocal states
        states, loss = train_steps(states, data, keys, config=config, num_steps=chunk, batch_size=config.batch_size)
        loss.block_until_ready()

    normalizer = Normalizer(np.zeros(row_dim, np.float32), np.ones(row_dim, np.float32))
    models = Diffusion(config, row_dim, *jax.tree.map(jnp.copy, (states.ema_params, states.constants)),
                       jax.tree.map(lambda x: np.stack([x] * num_seeds), normalizer))
    model = jax.tree.map(lambda x: x[:1], models)
    sample_one = lambda: sample_rows(model, keys[:1], num).block_until_ready()
    sample_seeds = lambda: sample_rows(models, keys, num).block_until_ready()
    seconds = {}
    for name, fn in (("train_one", train_one), ("train_seeds", train_seeds), ("sample_one", sample_one),
                     ("sample_seeds", sample_seeds)):
        fn()  # compile
        seconds[name] = best_time(fn, 2)
    one_seed = {"training_seconds": seconds["train_one"] / chunk * config.num_train_steps,
                "generation_seconds": seconds["sample_one"] / num * num_samples}
    one_program = {"training_seconds": seconds["train_seeds"] / chunk * config.num_train_steps,
                   "generation_seconds": seconds["sample_seeds"] / num * num_samples}
    one_by_one = {k: num_seeds * v for k, v in one_seed.items()}
    return {"train_step_seconds": seconds["train_one"] / chunk, "sample_seconds": seconds["sample_one"] / num,
            **one_seed,
            "seeds": {"num_seeds": num_seeds, "one_by_one": one_by_one, "one_program": one_program,
                      "one_program_speedup": sum(one_by_one.values()) / sum(one_program.values())}}


def _separate_process(queue, *args) -> None:
    queue.put(loop_seconds_per_step(*args))


def separate_processes_seconds_per_step(num: int, env: str, warmup: int, steps: int) -> float:
    """Wall seconds per learning step when `num` single-seed SAC runs go side by side in processes
    (each process times its own learning steps; they overlap, so the slowest sets the pace)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    processes = [context.Process(target=_separate_process, args=(queue, env, "sac", warmup, steps))
                 for _ in range(num)]
    for p in processes:
        p.start()
    results = [queue.get() for _ in processes]
    for p in processes:
        p.join()
    return max(results)


def main(argv):
    del argv
    record = {"env": FLAGS.env, "warmup_steps": FLAGS.warmup, "timed_steps": FLAGS.steps, **environment()}
    for variant, label in (("sac", "sac_utd1"), ("redq", "redq_utd20"), ("synther", "synther_utd20")):
        start = time.perf_counter()
        per_step = loop_seconds_per_step(FLAGS.env, variant, FLAGS.warmup, FLAGS.steps)
        record[f"{label}_env_steps_per_s"] = 1.0 / per_step
        print(f"{label}: {1.0 / per_step:.1f} env steps/s ({time.perf_counter() - start:.0f} s to measure)")

    config = get_config(f"{FLAGS.env}-synther")
    probe = make_env(config.env_name)
    obs_dim, action_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
    probe.close()
    row_dim = 2 * obs_dim + action_dim + 1 + int(has_terminal_column(config.synther.terminals))
    retrain = diffusion_retrain_seconds(DiffusionConfig(**config.synther.diffusion), row_dim,
                                        config.synther.num_samples, max(FLAGS.seeds, 1))
    amortised = (retrain["training_seconds"] + retrain["generation_seconds"]) / config.synther.retrain_every
    record["diffusion_retrain"] = retrain
    record["synther_utd20_with_diffusion_env_steps_per_s"] = 1.0 / (1.0 / record["synther_utd20_env_steps_per_s"]
                                                                    + amortised)
    print(f"synther_utd20 with diffusion: {record['synther_utd20_with_diffusion_env_steps_per_s']:.3f} env steps/s "
          f"(one retrain: {retrain['training_seconds'] / 3600:.2f} h training + "
          f"{retrain['generation_seconds'] / 3600:.2f} h generation)")
    seeds = retrain["seeds"]
    print(f"one retrain of {seeds['num_seeds']} seeds' models: one by one "
          f"{sum(seeds['one_by_one'].values()) / 3600:.2f} h, as one vmapped program "
          f"{sum(seeds['one_program'].values()) / 3600:.2f} h ({seeds['one_program_speedup']:.2f}x)")

    if FLAGS.seeds > 1:
        vmapped = loop_seconds_per_step(FLAGS.env, "sac", FLAGS.warmup, FLAGS.steps, FLAGS.seeds)
        processes = separate_processes_seconds_per_step(FLAGS.seeds, FLAGS.env, FLAGS.warmup, FLAGS.steps)
        record["seeds"] = {"num_seeds": FLAGS.seeds,
                           "vmapped_seed_steps_per_s": FLAGS.seeds / vmapped,
                           "separate_processes_seed_steps_per_s": FLAGS.seeds / processes,
                           "one_seed_steps_per_s": record["sac_utd1_env_steps_per_s"]}
        print(f"{FLAGS.seeds} seeds, SAC UTD 1: vmapped {FLAGS.seeds / vmapped:.1f} seed-steps/s, separate "
              f"processes {FLAGS.seeds / processes:.1f} seed-steps/s")

    out = FLAGS.out or f"bench/results/online_{jax.devices()[0].platform}_{FLAGS.env}.json"
    write_json(out, record)


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS, resumes=False)
