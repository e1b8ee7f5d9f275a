"""Offline learner throughput: gradient updates per second for TD3+BC, IQL and EDAC at batch 256,
with 1, 4 and 16 seeds trained together (a vmapped seed axis) in one jitted `lax.scan`.

    python -m bench.agents --num_steps=50 --out=bench/results/agents_cpu.json

Networks are the paper-size defaults of each learner (EDAC: 10 critics) on a walker2d-shaped
dataset (obs 17, action 6) of random rows held on the device. One seed runs the plain
`update_steps`; n seeds run `update_steps_seeds`. "updates/s" counts scan steps per second (each
advances every seed once); "agent updates/s" multiplies by the number of seeds, and "vs 1 seed"
divides that by the single-seed figure: how much more training one program gets done by vmapping.
Compilation is excluded (one untimed call first); the fastest of `--repeats` calls counts. The
JSON also records the device's measured matmul FLOP/s and the 1-minute load average: at batch 256
a single seed already keeps a small CPU busy, so vmapping seeds pays off on accelerators.
"""

import jax
import jax.numpy as jnp
from absl import app, flags

from agents import edac, iql, td3_bc
from bench.timing import best_time, environment, matmul_peak_flops, write_json
from launch import boundary
from launch.cli import INPUT_ERRORS

LEARNERS = {"td3_bc": (td3_bc, {}), "td3_bc_large": (td3_bc, {"hidden_dims": td3_bc.LARGE_HIDDEN_DIMS}),
            "iql": (iql, {}), "edac": (edac, {})}
OBS_DIM, ACTION_DIM = 17, 6

FLAGS = flags.FLAGS
flags.DEFINE_list("learners", ["td3_bc", "iql", "edac"], f"Learners to measure, from {sorted(LEARNERS)}.")
flags.DEFINE_list("seeds", ["1", "4", "16"], "Numbers of seeds trained together.")
flags.DEFINE_integer("batch_size", 256, "Minibatch size per seed.")
flags.DEFINE_integer("num_steps", 50, "Updates per timed call (one lax.scan).")
flags.DEFINE_integer("repeats", 3, "Timed calls; the fastest counts.")
flags.DEFINE_integer("dataset_size", 200_000, "Rows of the random dataset.")
flags.DEFINE_string("out", None, "JSON file (default: bench/results/agents_<platform>.json).")


def random_dataset(size: int):
    keys = jax.random.split(jax.random.PRNGKey(0), 4)
    return {"observations": jax.random.normal(keys[0], (size, OBS_DIM)),
            "actions": jax.random.uniform(keys[1], (size, ACTION_DIM), minval=-1, maxval=1),
            "rewards": jax.random.normal(keys[2], (size,)),
            "next_observations": jax.random.normal(keys[3], (size, OBS_DIM)),
            "terminals": jnp.zeros(size)}


def updates_per_second(module, hyperparameters, dataset, num_seeds: int) -> float:
    """Scan steps per second with `num_seeds` agents, compilation excluded."""
    keys = jax.random.split(jax.random.PRNGKey(1), num_seeds)
    if num_seeds == 1:
        state = module.init(keys[0], OBS_DIM, ACTION_DIM, **hyperparameters)
        run = lambda state, key: module.update_steps(state, dataset, key, num_steps=FLAGS.num_steps,
                                                     batch_size=FLAGS.batch_size)
    else:
        state = module.init_seeds(keys, OBS_DIM, ACTION_DIM, **hyperparameters)
        run = lambda state, key: module.update_steps_seeds(state, dataset, jax.random.split(key, num_seeds),
                                                           num_steps=FLAGS.num_steps, batch_size=FLAGS.batch_size)

    def timed_call():
        nonlocal state
        state, metrics = run(state, jax.random.PRNGKey(int(state.step.ravel()[0])))
        jax.block_until_ready((state, metrics))

    timed_call()  # compile
    return FLAGS.num_steps / best_time(timed_call, FLAGS.repeats)


def main(argv):
    del argv
    unknown = set(FLAGS.learners) - set(LEARNERS)
    if unknown:
        raise app.UsageError(f"Unknown learners {sorted(unknown)}; choose from {sorted(LEARNERS)}.")
    seed_counts = [int(s) for s in FLAGS.seeds]
    dataset = random_dataset(FLAGS.dataset_size)
    results = {}
    print(f"{'learner':<14}{'seeds':>6}{'updates/s':>12}{'agent updates/s':>18}{'vs 1 seed':>11}")
    for name in FLAGS.learners:
        module, hyperparameters = LEARNERS[name]
        rows, single = [], None
        for num_seeds in seed_counts:
            rate = updates_per_second(module, hyperparameters, dataset, num_seeds)
            single = single or (rate if num_seeds == 1 else None)
            ratio = num_seeds * rate / single if single else None
            rows.append({"num_seeds": num_seeds, "updates_per_s": rate, "agent_updates_per_s": num_seeds * rate,
                         "agent_updates_vs_1_seed": ratio})
            print(f"{name:<14}{num_seeds:>6}{rate:>12.1f}{num_seeds * rate:>18.1f}"
                  f"{'' if ratio is None else f'{ratio:>10.2f}x'}")
        results[name] = rows
    record = {"batch_size": FLAGS.batch_size, "num_steps_per_call": FLAGS.num_steps, "repeats": FLAGS.repeats,
              "obs_dim": OBS_DIM, "action_dim": ACTION_DIM, "dataset_size": FLAGS.dataset_size,
              "matmul_peak_flops_per_s": matmul_peak_flops(),
              "results": results, **environment()}
    write_json(FLAGS.out or f"bench/results/agents_{jax.devices()[0].platform}.json", record)


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS, resumes=False)
