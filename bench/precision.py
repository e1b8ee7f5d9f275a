"""What the denoiser's matmul precision costs in fidelity and buys in speed: one denoiser per
`--config.diffusion.matmul_precision` (float32, tf32, bfloat16) trained and sampled on the bundled
walker2d data, each measured by the fidelity report and timed.

    python -m bench.precision --workdir=runs/precision                 # CPU scale: 256x3, 10K steps, 20K samples
    python -m bench.precision --smoke --out=/tmp/precision_smoke.json  # a tiny denoiser, CPU-minutes

Every precision trains from the same key on the same rows (configs/d4rl.py:walker2d with the
denoiser size of `--denoiser`), samples `--num_samples` rows with the paper's 128-step sampler and
measures them with `synther_jax.analysis.analyze`. float32 also trains with a second key: the
difference between its two denoisers is the noise a lower precision is judged against (a figure
"matches float32" when it lies within that difference of the first float32 denoiser's). Training
steps/s and samples/s leave out the first chunk, which compiles. Where the device computes tf32 in
float32 (a CPU: bit-identical products, checked on a probe), tf32 is not trained again and the JSON
says so. Finished precisions are read back from `<workdir>/<name>.json`, so a rerun resumes.
"""
import dataclasses
import os
import tempfile
import time
from typing import Dict, List

import jax
import numpy as np
from absl import flags, logging

from bench.timing import environment, parse_denoiser, timed_samples, write_json
from configs import d4rl
from launch import boundary
from launch.cli import INPUT_ERRORS
from pipelines.synthesis import load_real
from synther_jax import atomic
from synther_jax.analysis.fidelity_report import analyze, headline_figures
from synther_jax.data import Transitions
from synther_jax.diffusion import DiffusionConfig, train_diffusion
from synther_jax.nn import MATMUL_PRECISIONS, matmul

FIGURES = ("marginal_score", "correlation_score", "dynamics_mse_median", "min_distance_median")
SMOKE = dict(denoiser="32x1:300", num_samples=400, physics_rows=100)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line; defined only when run as a program, so tests can import the module's functions."""
    flags.DEFINE_bool("smoke", False, "A tiny denoiser and few samples: checks the benchmark in CPU-minutes.")
    flags.DEFINE_string("workdir", None, "Where the finished precisions live; rerun to resume (default: a temporary "
                                         "directory, not kept).")
    flags.DEFINE_string("out", None, "JSON file (default: bench/results/precision_<platform>.json).")
    flags.DEFINE_string("denoiser", "256x3:10000", "WIDTHxDEPTH:TRAIN_STEPS of every denoiser (the paper's is "
                                                  "1024x6:100000).")
    flags.DEFINE_integer("num_samples", 20_000, "Samples per denoiser.")
    flags.DEFINE_integer("physics_rows", 2_000, "Rows per denoiser replayed in MuJoCo and measured for novelty.")


def computes_tf32_as_float32() -> bool:
    """Whether the default device's tf32 products are bit-identical to its float32 ones (a CPU)."""
    x = jax.random.normal(jax.random.PRNGKey(0), (64, 256))
    w = jax.random.normal(jax.random.PRNGKey(1), (256, 64))
    return bool(np.array_equal(jax.jit(matmul, static_argnums=2)(x, w, "tf32"),
                               jax.jit(matmul, static_argnums=2)(x, w, "float32")))


def measure(name: str, real: Transitions, rows: np.ndarray, config: DiffusionConfig, seed: int, workdir: str,
            num_samples: int, physics_rows: int, terminal_threshold: float) -> Dict[str, object]:
    """One denoiser's headline figures, training steps/s and samples/s (read back if already finished)."""
    path = os.path.join(workdir, f"{name}.json")
    done = atomic.read_json(path, None)
    if done is not None:
        return done
    chunk_ends = []
    model = train_diffusion(rows, config, jax.random.PRNGKey(seed), (rows.shape[1] - 1,), progress=False,
                            log_fn=lambda step, stats: chunk_ends.append((step, time.perf_counter())))
    (first_step, first_time), (last_step, last_time) = chunk_ends[0], chunk_ends[-1]
    train_steps_per_s = (last_step - first_step) / (last_time - first_time) if last_step > first_step else None
    sampled, samples_per_s = timed_samples(model, num_samples, jax.random.PRNGKey(1000 + seed),
                                           max(1, num_samples // 4))
    synthetic = Transitions.from_rows(sampled, real.obs_dim, real.action_dim, True, terminal_threshold)
    report = analyze(real, synthetic, None, os.path.join(workdir, name), baselines=(), seed=seed,
                     fidelity_rows=num_samples, physics_rows=physics_rows, progress=False)
    record = {"name": name, "matmul_precision": config.matmul_precision, "seed": seed,
              "train_steps_per_s": train_steps_per_s, "samples_per_s": samples_per_s, **headline_figures(report)}
    atomic.write_json(path, record)
    return record


def compare(records: List[dict]) -> Dict[str, dict]:
    """Per precision: each figure's difference from the first float32 denoiser, whether it lies
    within the float32 seed difference, and the speed-ups over float32."""
    reference, other_seed = records[0], records[1]
    noise = {f: abs(other_seed[f] - reference[f]) for f in FIGURES}
    summary = {}
    for record in records[2:]:
        difference = {f: record[f] - reference[f] for f in FIGURES}
        outside = [f for f in FIGURES if abs(difference[f]) > noise[f]]
        summary[record["matmul_precision"]] = {
            "difference_from_float32": difference,
            "outside_the_seed_difference": outside,
            "matches_float32": not outside,
            "train_speedup": (record["train_steps_per_s"] / reference["train_steps_per_s"]
                              if record["train_steps_per_s"] and reference["train_steps_per_s"] else None),
            "sample_speedup": record["samples_per_s"] / reference["samples_per_s"]}
    return {"float32_seed_difference": noise, "precisions": summary}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    temporary = tempfile.TemporaryDirectory() if FLAGS.workdir is None else None  # removed at exit
    workdir = FLAGS.workdir or temporary.name
    os.makedirs(workdir, exist_ok=True)
    spec, num_samples, physics_rows = ((SMOKE["denoiser"], SMOKE["num_samples"], SMOKE["physics_rows"]) if FLAGS.smoke
                                       else (FLAGS.denoiser, FLAGS.num_samples, FLAGS.physics_rows))
    width, depth, train_steps = parse_denoiser(spec)
    offline = d4rl.validate(d4rl.get_config("walker2d"))
    base = dataclasses.replace(DiffusionConfig(**offline.diffusion), width=width, depth=depth,
                               num_train_steps=train_steps, steps_per_call=max(1, train_steps // 10),
                               checkpoint_every=train_steps)
    real = load_real(offline)
    rows = real.to_rows(True)
    tf32_is_float32 = computes_tf32_as_float32()
    runs = [("float32-seed0", "float32", 0), ("float32-seed1", "float32", 1), ("bfloat16-seed0", "bfloat16", 0)]
    if not tf32_is_float32:
        runs.insert(2, ("tf32-seed0", "tf32", 0))
    records = []
    for name, precision, seed in runs:
        config = dataclasses.replace(base, matmul_precision=precision)
        record = measure(name, real, rows, config, seed, workdir, num_samples, physics_rows,
                         offline.terminal_threshold)
        records.append(record)
        print(f"{name}: {record['train_steps_per_s'] or 0:.0f} train steps/s, {record['samples_per_s']:.0f} "
              f"samples/s | marginal {record['marginal_score']:.3f} correlation {record['correlation_score']:.3f} | "
              f"dynamics MSE median {record['dynamics_mse_median']:.4f} | distance "
              f"{record['min_distance_median']:.3f}", flush=True)
    summary = compare(records)
    for precision, row in summary["precisions"].items():
        outside = ", ".join(row["outside_the_seed_difference"])
        verdict = (f"differs from float32 by more than its seed difference in {outside}" if outside else
                   "matches float32 within its seed difference")
        print(f"{precision}: {verdict}; {row['train_speedup'] or 0:.2f}x the training steps/s, "
              f"{row['sample_speedup']:.2f}x the samples/s")
    record = {**environment(), "smoke": FLAGS.smoke, "dataset": offline.dataset, "num_real": len(real),
              "denoiser": {"width": width, "depth": depth, "dim_t": base.dim_t, "train_steps": train_steps},
              "num_samples": num_samples, "physics_rows": physics_rows, "sampler_steps": base.num_sample_steps,
              "tf32_computed_as_float32": tf32_is_float32, "precisions": list(MATMUL_PRECISIONS),
              "runs": records, "summary": summary}
    platform = record["device"].split(":")[0]
    out = FLAGS.out or f"bench/results/precision_{platform}{'_smoke' if FLAGS.smoke else ''}.json"
    write_json(out, record)


if __name__ == "__main__":
    define_flags()
    boundary.run(main, INPUT_ERRORS)
