"""How few sampler steps are enough: one denoiser, sampled at several step counts by several samplers,
each setting measured by the fidelity report and timed. The paper samples with 128 Heun steps and
S_churn 80 "for improved sample fidelity" (its Appendix B.2) and shows no fewer. The samplers:
`churn` (the paper's stochastic Heun), `no_churn` (deterministic Heun, S_churn = 0), `dpmpp_2m`
(DPM-Solver++(2M), deterministic, one network evaluation per step) and `distilled` (the denoiser
consistency-distilled, `synther_jax.diffusion.distillation`, at 1, 2 or 4 evaluations). Our
CPU-scale runs and the paper-size one:

    python -m experiments.sampler_steps --workdir=DIR --train_steps=10000 --num_samples=4000 --physics_rows=4000 --samplers=churn,no_churn --steps=8,16,32,64,128
    python -m experiments.sampler_steps --teacher=runs/offline-evidence/base/diffusion --workdir=DIR --num_samples=10000 --physics_rows=4000 --out=experiments/results/sampler_steps_solvers_cpu.json
    python -m experiments.sampler_steps --teacher=runs/offline-evidence/base/diffusion --workdir=DIR --num_samples=10000 --physics_rows=4000 --samplers=no_churn,distilled --steps=1,2,4,128 --out=experiments/results/sampler_steps_distilled_cpu.json
    python -m experiments.sampler_steps --workdir=runs/sampler_steps    # paper size: 50K samples per setting
    python -m experiments.sampler_steps --smoke --out=/tmp/smoke.json   # a small denoiser, CPU-minutes

Results: `RESULTS` in experiments/results/ (a plot of every figure against the step count beside
each). Tables: `sampler-steps` and `sampler-solvers` (`steps_table`) in docs/benchmarks.md;
`summary_rows` in docs/results.md and README.md.

One denoiser is trained on the bundled walker2d data (configs/d4rl.py:walker2d, the paper's width
1024 and depth 6, or `--smoke`'s small one), with checkpoints in `<workdir>/diffusion`, or read from
`--teacher` (a trained diffusion folder, its first seed's model). From it, every setting (a
sampler, a step count of `--steps`, sampler seed 0..`--sampler_seeds`-1) draws `--num_samples` rows
that `synther_jax.analysis.analyze` measures against the real data (no augmentation baselines); its
headline figures, the samples/s of the timed chunks (all but the first, which compiles), its
network evaluations per sample and its name go to `<workdir>/settings/<name>.json`, so a rerun
skips finished settings. 128 steps go first, so a run cut short still has its references. The
`distilled` sampler is measured at the step counts of `DISTILLED_STEPS` only, the training-free ones
at 4 steps or more; its student is distilled from the denoiser (`DistillConfig`'s defaults, with
`--distill_steps`) in `<workdir>/distill`, resumably.

The noise of a figure is the spread (max - min) over the sampler seeds of the reference: the
sampler's own 128 steps, and for `dpmpp_2m` deterministic Heun's 128 steps (the same ODE solved
finely). A setting "matches" when, for every headline figure, its mean over seeds lies within that
noise of the reference mean. The JSON names the fewest matching steps per sampler and its speed-up
in samples/s over the reference, measured in the same run; it is used as
`--config.diffusion.num_sample_steps=<steps>` (and `--config.diffusion.solver=dpmpp_2m
--config.diffusion.S_churn=0` for DPM-Solver++; the default stays the paper's 128 with churn).
"""
import dataclasses
import functools
import os
import tempfile
import time
from typing import Dict, List, Optional

import jax
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from absl import flags, logging  # noqa: E402

from bench.timing import environment, timed_samples, write_json  # noqa: E402
from configs import d4rl  # noqa: E402
from experiments.tables import RESULTS as RESULTS_DIR  # noqa: E402
from experiments.tables import load, table  # noqa: E402
from launch import boundary  # noqa: E402
from launch.cli import INPUT_ERRORS  # noqa: E402
from pipelines.synthesis import load_real  # noqa: E402
from synther_jax.analysis.fidelity_report import analyze, headline_figures  # noqa: E402
from synther_jax import atomic  # noqa: E402
from synther_jax.data import Transitions  # noqa: E402
from synther_jax.diffusion import (Diffusion, DiffusionConfig, DistillConfig, distill, load_diffusion,  # noqa: E402
                                   train_diffusion)
from synther_jax.diffusion.config import DISTILLED_STEPS  # noqa: E402
from synther_jax.diffusion.model import without_seed_axis  # noqa: E402

RESULTS = ("sampler_steps_cpu.json", "sampler_steps_solvers_cpu.json", "sampler_steps_distilled_cpu.json")
DETAILS = "docs/results.md#sampler-steps"
PAPER_STEPS = 128
# Headline figures of the fidelity report, compared between step counts.
FIGURES = ("marginal_score", "correlation_score", "dynamics_mse_median", "dynamics_mse_mean", "terminal_fraction",
           "min_distance_median")
# Each sampler's settings, and the sampler whose 128 steps are its reference.
SAMPLERS = {"churn": dict(solver="heun"), "no_churn": dict(solver="heun", S_churn=0.0),
            "dpmpp_2m": dict(solver="dpmpp_2m", S_churn=0.0), "distilled": {}}
REFERENCE = {"churn": "churn", "no_churn": "no_churn", "dpmpp_2m": "no_churn", "distilled": "no_churn"}
DISTILLED = "distilled"
SMOKE = dict(width=128, depth=2, dim_t=32, num_train_steps=1_500, steps_per_call=500, checkpoint_every=500)

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line; defined only when run as a program, so tests can import the module's functions."""
    flags.DEFINE_bool("smoke", False, "A small denoiser, few samples and step counts: checks the benchmark in "
                                      "CPU-minutes.")
    flags.DEFINE_string("workdir", None, "Where the denoiser and finished settings live; rerun to resume "
                                         "(default: a temporary directory, not kept).")
    flags.DEFINE_string("out", None, "JSON file (default: experiments/results/sampler_steps_<platform>.json); the plot "
                                     "goes beside it as .png.")
    flags.DEFINE_list("steps", None, "Sampler step counts (default: 4,8,16,32,64,128; smoke: 8,16,128).")
    flags.DEFINE_list("samplers", list(SAMPLERS), f"Samplers to measure, of {', '.join(SAMPLERS)}; each needs its "
                      "reference's.")
    flags.DEFINE_string("teacher", None, "A diffusion folder trained on the bundled walker2d data "
                                         "(launch.offline's <workdir>/diffusion) to sample, its first seed's "
                                         "model, instead of training one.")
    flags.DEFINE_integer("num_samples", None, "Samples per setting (default: 50000; smoke: 1000).")
    flags.DEFINE_integer("train_steps", None, "Denoiser training steps (default: the config's 100000; smoke: 1500).")
    flags.DEFINE_integer("sampler_seeds", 2, "Sampler seeds per setting; their spread at 128 steps is the noise.")
    flags.DEFINE_integer("physics_rows", None, "Rows per setting replayed in MuJoCo and measured for novelty "
                                               "(default: 10000; smoke: 500).")
    flags.DEFINE_integer("chunk_size", None, "Samples per jitted sampler call (default: num_samples / 10).")
    flags.DEFINE_integer("distill_steps", None, "Distillation steps of the `distilled` sampler's student (default: "
                                                "DistillConfig's 20000; smoke: 500).")
    flags.DEFINE_string("scale_note", None, "Why this run's scale differs from the paper-size default, for the JSON.")


def setting_name(steps: int, sampler: str, seed: int) -> str:
    return f"steps{steps}-{sampler.replace('_', '')}-seed{seed}"


def measures(sampler: str, steps: int) -> bool:
    """Whether the experiment measures `sampler` at `steps`: the distilled one at its step counts,
    the others at 4 or more (below, their rows are mostly beyond the velocity bounds)."""
    return steps in DISTILLED_STEPS if sampler == DISTILLED else steps >= 4


def measure_setting(real: Transitions, model: Diffusion, steps: int, sampler: str, seed: int, settings_dir: str,
                    scale: "Scale", terminal_threshold: float) -> Dict[str, object]:
    """One setting's headline figures and samples/s (read back if a previous run finished it);
    `model` is the distilled student for the `distilled` sampler, else the denoiser."""
    name = setting_name(steps, sampler, seed)
    path = os.path.join(settings_dir, f"{name}.json")
    done = atomic.read_json(path, None)
    if done is not None:
        return done
    if sampler == DISTILLED:
        model = model.replace(distilled=dataclasses.replace(model.distilled, num_steps=steps))
    else:
        model = model.replace(config=dataclasses.replace(model.config, num_sample_steps=steps, **SAMPLERS[sampler]))
    rows, samples_per_s = timed_samples(model, scale.num_samples, jax.random.PRNGKey(1000 + seed), scale.chunk_size)
    synthetic = Transitions.from_rows(rows, real.obs_dim, real.action_dim, True, terminal_threshold)
    report = analyze(real, synthetic, None, os.path.join(settings_dir, name), baselines=(), seed=seed,
                     fidelity_rows=scale.num_samples, physics_rows=scale.physics_rows, progress=False)
    figures = headline_figures(report)
    record = {"name": name, "steps": steps, "sampler": sampler, "sampler_seed": seed,
              "network_evaluations": model.network_evaluations, "samples_per_s": samples_per_s,
              **figures, "terminals": figures["synthetic_terminals"],
              "terminal_fraction": figures["synthetic_terminals"] / scale.num_samples}
    atomic.write_json(path, record)
    return record


def summarise(records: List[dict], steps_list: List[int]) -> dict:
    """Per (sampler, steps): mean and spread of every figure over sampler seeds, whether it matches
    its reference (`REFERENCE`'s 128 steps) within that reference's noise, and its speed-up over
    it; the fewest matching steps per sampler."""
    rows = {}
    for sampler, steps in {(r["sampler"], r["steps"]) for r in records}:
        group = [r for r in records if r["steps"] == steps and r["sampler"] == sampler]
        rows[sampler, steps] = {"steps": steps, "network_evaluations": group[0]["network_evaluations"],
                                "samples_per_s": float(np.mean([r["samples_per_s"] for r in group])),
                                **{f: float(np.mean([r[f] for r in group])) for f in FIGURES},
                                "spread": {f: float(np.ptp([r[f] for r in group])) for f in FIGURES}}
    summary = {}
    for sampler in (s for s in SAMPLERS if any(key[0] == s for key in rows)):
        reference = rows[REFERENCE[sampler], PAPER_STEPS]
        fewest = None
        measured = [steps for steps in steps_list if (sampler, steps) in rows]
        for steps in measured:  # main() refuses samplers without their reference
            row = rows[sampler, steps]
            row["speedup_vs_128"] = row["samples_per_s"] / reference["samples_per_s"]
            row["off_by_noise"] = {f: abs(row[f] - reference[f]) / reference["spread"][f]
                                   if reference["spread"][f] else None for f in FIGURES}
            row["matches_128"] = all(abs(row[f] - reference[f]) <= reference["spread"][f] for f in FIGURES)
            if row["matches_128"] and steps < PAPER_STEPS and (fewest is None or steps < fewest):
                fewest = steps
        summary[sampler] = {"reference": f"{REFERENCE[sampler]} at {PAPER_STEPS} steps",
                            "settings": [rows[sampler, s] for s in measured], "fewest_matching_steps": fewest,
                            "speedup_vs_128": rows[sampler, fewest]["speedup_vs_128"] if fewest else None}
    return summary


def plot(summary: dict, path: str, title: str) -> None:
    panels = (*FIGURES, "samples_per_s")
    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    for ax, figure in zip(axes.flat, panels):
        for key, color in (("churn", "tab:blue"), ("no_churn", "tab:orange"), ("dpmpp_2m", "tab:green"),
                           (DISTILLED, "tab:red")):
            if key not in summary:
                continue
            settings = summary[key]["settings"]
            steps = [s["steps"] for s in settings]
            values = [s[figure] for s in settings]
            errors = None if figure == "samples_per_s" else [s["spread"][figure] / 2 for s in settings]
            ax.errorbar(steps, values, yerr=errors, marker="o", color=color, capsize=3, label=key.replace("_", " "))
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sampler steps")
        ax.set_title(figure.replace("_", " "), fontsize=9)
    axes.flat[0].legend(fontsize=8)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


@dataclasses.dataclass
class Scale:
    """What one run measures: the flags, filled in from the paper-size or smoke defaults."""

    steps: List[int]
    num_samples: int
    train_steps: Optional[int]  # None: the config's
    physics_rows: int
    chunk_size: int
    distill_steps: int

    @classmethod
    def from_flags(cls) -> "Scale":
        smoke = FLAGS.smoke
        num_samples = FLAGS.num_samples or (1_000 if smoke else 50_000)
        steps = FLAGS.steps or ((8, 16, 128) if smoke else (4, 8, 16, 32, 64, 128))
        return cls(steps=sorted(int(s) for s in steps), num_samples=num_samples,
                   train_steps=FLAGS.train_steps or (SMOKE["num_train_steps"] if smoke else None),
                   physics_rows=FLAGS.physics_rows or (500 if smoke else 10_000),
                   chunk_size=FLAGS.chunk_size or max(1, num_samples // 10),
                   distill_steps=FLAGS.distill_steps or (500 if smoke else DistillConfig.num_train_steps))


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    temporary = tempfile.TemporaryDirectory() if FLAGS.workdir is None else None  # removed at exit
    workdir = FLAGS.workdir or temporary.name
    scale = Scale.from_flags()
    if PAPER_STEPS not in scale.steps:
        raise ValueError(f"--steps must include the paper's {PAPER_STEPS}: its sampler-seed spread is the noise.")
    if FLAGS.sampler_seeds < 2:
        raise ValueError("--sampler_seeds must be at least 2: their spread at 128 steps is the noise.")
    unknown = sorted(set(FLAGS.samplers) - set(SAMPLERS))
    if unknown:
        raise ValueError(f"--samplers: unknown {', '.join(unknown)}; choose from {', '.join(SAMPLERS)}.")
    missing = sorted({REFERENCE[s] for s in FLAGS.samplers} - set(FLAGS.samplers))
    if missing:
        raise ValueError(f"--samplers must include {', '.join(missing)}: its 128 steps are a reference.")
    offline = d4rl.validate(d4rl.get_config("walker2d"))  # with its per-dataset values (the denoiser width)
    real = load_real(offline)
    start = time.perf_counter()
    if FLAGS.teacher:
        model = load_diffusion(FLAGS.teacher)
        if model.normalizer.mean.ndim > 1:  # a stack of seeds' models: the first
            model = without_seed_axis(model)
        diffusion = model.config
    else:
        diffusion = DiffusionConfig(**offline.diffusion)
        if FLAGS.smoke:
            diffusion = dataclasses.replace(diffusion, **SMOKE)
        if scale.train_steps:
            diffusion = dataclasses.replace(diffusion, num_train_steps=scale.train_steps)
        rows = real.to_rows(True)
        model = train_diffusion(rows, diffusion, jax.random.PRNGKey(0), (rows.shape[1] - 1,),
                                workdir=os.path.join(workdir, "diffusion"))
    training_seconds = time.perf_counter() - start  # of this run (0 when resumed or read from --teacher)
    student = None
    if DISTILLED in FLAGS.samplers:
        start = time.perf_counter()
        student = distill(model, real.to_rows(True), DistillConfig(num_train_steps=scale.distill_steps),
                          jax.random.PRNGKey(3), workdir=os.path.join(workdir, "distill"))
        distillation_seconds = time.perf_counter() - start

    settings_dir = os.path.join(workdir, "settings")
    records = []
    for steps in sorted(scale.steps, key=lambda steps: (steps != PAPER_STEPS, steps)):  # the references first
        for sampler in (sampler for sampler in FLAGS.samplers if measures(sampler, steps)):
            for seed in range(FLAGS.sampler_seeds):
                record = measure_setting(real, student if sampler == DISTILLED else model, steps, sampler, seed,
                                         settings_dir, scale, offline.terminal_threshold)
                records.append(record)
                print(f"{record['name']}: {record['samples_per_s']:.0f} samples/s | marginal "
                      f"{record['marginal_score']:.3f} correlation {record['correlation_score']:.3f} | dynamics MSE "
                      f"median {record['dynamics_mse_median']:.4f} | terminals {record['terminals']} | distance "
                      f"{record['min_distance_median']:.3f}", flush=True)

    summary = summarise(records, scale.steps)
    record = {
        **environment(), "smoke": FLAGS.smoke, "dataset": offline.dataset, "num_real": len(real),
        "real_terminal_fraction": float(np.mean(real.terminals > 0.5)),
        "denoiser": {"teacher": FLAGS.teacher, "width": diffusion.width, "depth": diffusion.depth,
                     "dim_t": diffusion.dim_t,
                     "params": sum(int(x.size) for x in jax.tree.leaves(model.params)),
                     "train_steps": diffusion.num_train_steps, "training_seconds_this_run": training_seconds},
        "num_samples_per_setting": scale.num_samples, "physics_rows_per_setting": scale.physics_rows,
        "sampler_seeds": FLAGS.sampler_seeds, "steps": scale.steps, "samplers": FLAGS.samplers,
        "S_churn": diffusion.S_churn,
        "distillation": None if student is None else {**dataclasses.asdict(student.distilled),
                                                       "seconds_this_run": distillation_seconds},
        "scale_note": FLAGS.scale_note, "settings": records, "summary": summary,
    }
    for key in summary:
        fewest = summary[key]["fewest_matching_steps"]
        print(f"{key}: " + (f"{fewest} steps match {summary[key]['reference']} within the noise, "
                            f"{summary[key]['speedup_vs_128']:.1f}x the samples/s" if fewest else
                            f"no step count below {PAPER_STEPS} matches {summary[key]['reference']} within the "
                            "noise"))
    platform = record["device"].split(":")[0]
    out = FLAGS.out or f"experiments/results/sampler_steps_{platform}{'_smoke' if FLAGS.smoke else ''}.json"
    write_json(out, record)
    plot(summary, os.path.splitext(out)[0] + ".png",
         f"walker2d denoiser {diffusion.width}x{diffusion.depth} ({diffusion.num_train_steps} steps), "
         f"{scale.num_samples} samples per setting, mean ± half the spread over {FLAGS.sampler_seeds} sampler seeds")
    print(f"wrote {os.path.splitext(out)[0]}.png")


def _fewest(summary: dict, sampler: str) -> str:
    row = summary[sampler]
    return (f"{row['fewest_matching_steps']} match ({row['speedup_vs_128']:.1f}x the samples/s)"
            if row["fewest_matching_steps"] else f"none below {PAPER_STEPS} matches")


def _scale(record: dict) -> str:
    denoiser = record["denoiser"]
    return (f"the {denoiser['width']}x{denoiser['depth']} denoiser trained {denoiser['train_steps'] // 1000}K steps, "
            f"{record['num_samples_per_setting']:,} samples per setting, {record['sampler_seeds']} sampler seeds")


def summary_rows(results: str = RESULTS_DIR) -> List[List[str]]:
    """Rows of experiment, paper, ours and our scale."""
    steps, solvers, distilled = (load(name, results) for name in RESULTS)
    return [["Sampler steps: fewer than 128 Heun steps (Appendix B.2)", "128 steps, S_churn 80; no fewer shown",
             f"with churn {_fewest(steps['summary'], 'churn')}; without churn "
             f"{_fewest(steps['summary'], 'no_churn')}", _scale(steps)],
            ["Few-step sampling, no training: DPM-Solver++(2M) vs 128 deterministic Heun steps", "not shown",
             f"DPM-Solver++ {_fewest(solvers['summary'], 'dpmpp_2m')}; deterministic Heun "
             f"{_fewest(solvers['summary'], 'no_churn')}", _scale(solvers)],
            ["Few-step sampling, distilled (consistency) vs 128 deterministic Heun steps", "not shown",
             _distilled(distilled["summary"]), _scale(distilled)]]


def _distilled(summary: dict) -> str:
    """The distilled step counts' marginal scores beside the reference's, their speed-ups, and
    whether any matches."""
    rows = summary[DISTILLED]["settings"]
    reference = next(row for row in summary[REFERENCE[DISTILLED]]["settings"] if row["steps"] == PAPER_STEPS)
    steps = " / ".join(str(row["steps"]) for row in rows)
    scores = " / ".join(f"{row['marginal_score']:.3f}" for row in rows)
    speedups = " / ".join(f"{row['speedup_vs_128']:.0f}x" for row in rows)
    fewest = summary[DISTILLED]["fewest_matching_steps"]
    return (f"{steps} steps: marginal {scores} vs {reference['marginal_score']:.3f} ({speedups} faster); "
            + (f"{fewest} match" if fewest else "none match"))


def steps_table(result: str, results: str = RESULTS_DIR) -> List[str]:
    """Fidelity and samples/s of one denoiser against the sampler and its number of steps: one row
    per (sampler, steps), means over the sampler seeds, and whether it matches its reference."""
    record = load(result, results)
    num = record["num_samples_per_setting"]
    rows = []
    for sampler, summary in record["summary"].items():
        for s in summary["settings"]:
            rows.append([sampler.replace("_", " "), f"{s['steps']}", f"{s['network_evaluations']}",
                         f"{s['marginal_score']:.3f} / {s['correlation_score']:.3f}", f"{s['dynamics_mse_median']:.3g}",
                         f"{s['terminal_fraction'] * num:.1f}", f"{s['samples_per_s']:.0f}",
                         "reference" if s["steps"] == PAPER_STEPS and REFERENCE[sampler] == sampler else
                         "yes" if s["matches_128"] else "no"])
    return table(["sampler", "steps", "network evaluations", "marginal / correlation", "dynamics MSE median",
                  f"terminals / {num}", "samples/s", "matches its reference"], rows)


TABLES = {"sampler-steps": functools.partial(steps_table, RESULTS[0]),
          "sampler-solvers": functools.partial(steps_table, RESULTS[1]),
          "sampler-distilled": functools.partial(steps_table, RESULTS[2])}


if __name__ == "__main__":
    define_flags()
    boundary.run(main, INPUT_ERRORS)
