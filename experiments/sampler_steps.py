"""How few sampler steps are enough: one denoiser, sampled at several Heun step counts, with and
without churn, each setting measured by the fidelity report and timed. The paper samples with 128
Heun steps and S_churn 80 "for improved sample fidelity" (its Appendix B.2) and shows no fewer.
Our CPU-scale run and the paper-size one:

    python -m experiments.sampler_steps --workdir=DIR --train_steps=10000 --num_samples=4000 --physics_rows=4000
    python -m experiments.sampler_steps --workdir=runs/sampler_steps    # paper size: 50K samples per setting
    python -m experiments.sampler_steps --smoke --out=/tmp/smoke.json   # a small denoiser, CPU-minutes

Results: `RESULTS` in experiments/results/ (a plot of every figure against the step count beside it).
Tables: `sampler-steps` (`steps_table`) in docs/benchmarks.md; `summary_rows` in docs/results.md and
README.md.

One denoiser (configs/d4rl.py:walker2d, the paper's width 1024 and depth 6, or `--smoke`'s small
one) is trained on the bundled walker2d data, with checkpoints in `<workdir>/diffusion`. From it,
every setting (a step count of `--steps`, churn on (the paper's S_churn = 80) or off (S_churn = 0,
a deterministic Heun sampler), sampler seed 0..`--sampler_seeds`-1) draws `--num_samples` rows
that `synther_jax.analysis.analyze` measures against the real data (no augmentation baselines);
its headline figures, the samples/s of the timed chunks (all but the first, which compiles) and
the setting's name go to `<workdir>/settings/<name>.json`, so a rerun skips finished settings.
128 steps go first, so a run cut short still has its reference (rerun with fewer `--steps`).

The noise of a figure is the spread (max - min) over the sampler seeds at the paper's 128 steps,
with the same churn. A step count "matches 128" when, for every headline figure, its mean over
seeds lies within that noise of the 128-step mean. The JSON names the fewest matching steps per
churn setting and its speed-up in samples/s over 128 steps, measured in the same run; it is used
as `--config.diffusion.num_sample_steps=<steps>` (the default stays the paper's 128).
"""
import dataclasses
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
from synther_jax.diffusion import Diffusion, DiffusionConfig, train_diffusion  # noqa: E402

RESULTS = ("sampler_steps_cpu.json",)
DETAILS = "docs/results.md#sampler-steps"
PAPER_STEPS = 128
# Headline figures of the fidelity report, compared between step counts.
FIGURES = ("marginal_score", "correlation_score", "dynamics_mse_median", "dynamics_mse_mean", "terminal_fraction",
           "min_distance_median")
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
    flags.DEFINE_list("steps", None, "Sampler step counts (default: 8,16,32,64,128; smoke: 8,16,128).")
    flags.DEFINE_integer("num_samples", None, "Samples per setting (default: 50000; smoke: 1000).")
    flags.DEFINE_integer("train_steps", None, "Denoiser training steps (default: the config's 100000; smoke: 1500).")
    flags.DEFINE_integer("sampler_seeds", 2, "Sampler seeds per setting; their spread at 128 steps is the noise.")
    flags.DEFINE_integer("physics_rows", None, "Rows per setting replayed in MuJoCo and measured for novelty "
                                               "(default: 10000; smoke: 500).")
    flags.DEFINE_integer("chunk_size", None, "Samples per jitted sampler call (default: num_samples / 10).")
    flags.DEFINE_string("scale_note", None, "Why this run's scale differs from the paper-size default, for the JSON.")


def setting_name(steps: int, churn: bool, seed: int) -> str:
    return f"steps{steps}-{'churn' if churn else 'nochurn'}-seed{seed}"


def measure_setting(real: Transitions, model: Diffusion, steps: int, churn: bool, seed: int, settings_dir: str,
                    scale: "Scale", terminal_threshold: float) -> Dict[str, object]:
    """One setting's headline figures and samples/s (read back if a previous run finished it)."""
    name = setting_name(steps, churn, seed)
    path = os.path.join(settings_dir, f"{name}.json")
    done = atomic.read_json(path, None)
    if done is not None:
        return done
    sampler = dataclasses.replace(model.config, num_sample_steps=steps, S_churn=model.config.S_churn if churn else 0.0)
    rows, samples_per_s = timed_samples(model.replace(config=sampler), scale.num_samples,
                                        jax.random.PRNGKey(1000 + seed), scale.chunk_size)
    synthetic = Transitions.from_rows(rows, real.obs_dim, real.action_dim, True, terminal_threshold)
    report = analyze(real, synthetic, None, os.path.join(settings_dir, name), baselines=(), seed=seed,
                     fidelity_rows=scale.num_samples, physics_rows=scale.physics_rows, progress=False)
    figures = headline_figures(report)
    record = {"name": name, "steps": steps, "churn": churn, "sampler_seed": seed, "samples_per_s": samples_per_s,
              **figures, "terminals": figures["synthetic_terminals"],
              "terminal_fraction": figures["synthetic_terminals"] / scale.num_samples}
    atomic.write_json(path, record)
    return record


def summarise(records: List[dict], steps_list: List[int]) -> dict:
    """Per (churn, steps): mean and spread of every figure over sampler seeds, whether it matches
    128 steps within the 128-step noise, and its speed-up; the fewest matching steps per churn."""
    summary = {}
    for churn in sorted({r["churn"] for r in records}, reverse=True):
        rows = {}
        for steps in steps_list:
            group = [r for r in records if r["steps"] == steps and r["churn"] == churn]
            rows[steps] = {"steps": steps,
                           "samples_per_s": float(np.mean([r["samples_per_s"] for r in group])),
                           **{f: float(np.mean([r[f] for r in group])) for f in FIGURES},
                           "spread": {f: float(np.ptp([r[f] for r in group])) for f in FIGURES}}
        paper = rows.get(PAPER_STEPS)
        fewest = None
        for steps in steps_list:
            row = rows[steps]
            if paper is None:
                continue
            row["speedup_vs_128"] = row["samples_per_s"] / paper["samples_per_s"]
            row["off_by_noise"] = {f: abs(row[f] - paper[f]) / paper["spread"][f] if paper["spread"][f] else None
                                   for f in FIGURES}
            row["matches_128"] = all(abs(row[f] - paper[f]) <= paper["spread"][f] for f in FIGURES)
            if row["matches_128"] and steps < PAPER_STEPS and (fewest is None or steps < fewest):
                fewest = steps
        key = "churn" if churn else "no_churn"
        summary[key] = {"settings": [rows[s] for s in steps_list],
                        "fewest_matching_steps": fewest,
                        "speedup_vs_128": rows[fewest]["speedup_vs_128"] if fewest else None}
    return summary


def plot(summary: dict, path: str, title: str) -> None:
    panels = (*FIGURES, "samples_per_s")
    fig, axes = plt.subplots(2, 4, figsize=(14, 6))
    for ax, figure in zip(axes.flat, panels):
        for key, color in (("churn", "tab:blue"), ("no_churn", "tab:orange")):
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

    @classmethod
    def from_flags(cls) -> "Scale":
        smoke = FLAGS.smoke
        num_samples = FLAGS.num_samples or (1_000 if smoke else 50_000)
        steps = FLAGS.steps or ((8, 16, 128) if smoke else (8, 16, 32, 64, 128))
        return cls(steps=sorted(int(s) for s in steps), num_samples=num_samples,
                   train_steps=FLAGS.train_steps or (SMOKE["num_train_steps"] if smoke else None),
                   physics_rows=FLAGS.physics_rows or (500 if smoke else 10_000),
                   chunk_size=FLAGS.chunk_size or max(1, num_samples // 10))


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
    offline = d4rl.validate(d4rl.get_config("walker2d"))  # with its per-dataset values (the denoiser width)
    diffusion = DiffusionConfig(**offline.diffusion)
    if FLAGS.smoke:
        diffusion = dataclasses.replace(diffusion, **SMOKE)
    if scale.train_steps:
        diffusion = dataclasses.replace(diffusion, num_train_steps=scale.train_steps)
    real = load_real(offline)
    rows = real.to_rows(True)

    start = time.perf_counter()
    model = train_diffusion(rows, diffusion, jax.random.PRNGKey(0), (rows.shape[1] - 1,),
                            workdir=os.path.join(workdir, "diffusion"))
    training_seconds = time.perf_counter() - start  # of this run (0 when resumed from a finished model)

    settings_dir = os.path.join(workdir, "settings")
    records = []
    for steps in sorted(scale.steps, key=lambda steps: (steps != PAPER_STEPS, steps)):  # the reference first
        for churn in (True, False):
            for seed in range(FLAGS.sampler_seeds):
                record = measure_setting(real, model, steps, churn, seed, settings_dir, scale,
                                         offline.terminal_threshold)
                records.append(record)
                print(f"{record['name']}: {record['samples_per_s']:.0f} samples/s | marginal "
                      f"{record['marginal_score']:.3f} correlation {record['correlation_score']:.3f} | dynamics MSE "
                      f"median {record['dynamics_mse_median']:.4f} | terminals {record['terminals']} | distance "
                      f"{record['min_distance_median']:.3f}", flush=True)

    summary = summarise(records, scale.steps)
    record = {
        **environment(), "smoke": FLAGS.smoke, "dataset": offline.dataset, "num_real": len(real),
        "real_terminal_fraction": float(np.mean(real.terminals > 0.5)),
        "denoiser": {"width": diffusion.width, "depth": diffusion.depth, "dim_t": diffusion.dim_t,
                     "params": sum(int(x.size) for x in jax.tree.leaves(model.params)),
                     "train_steps": diffusion.num_train_steps, "training_seconds_this_run": training_seconds},
        "num_samples_per_setting": scale.num_samples, "physics_rows_per_setting": scale.physics_rows,
        "sampler_seeds": FLAGS.sampler_seeds, "steps": scale.steps, "S_churn": diffusion.S_churn,
        "scale_note": FLAGS.scale_note, "settings": records, "summary": summary,
    }
    for key in summary:
        fewest = summary[key]["fewest_matching_steps"]
        print(f"{key}: " + (f"{fewest} steps match {PAPER_STEPS} within the noise, "
                            f"{summary[key]['speedup_vs_128']:.1f}x the samples/s" if fewest else
                            f"no step count below {PAPER_STEPS} matches it within the noise"))
    platform = record["device"].split(":")[0]
    out = FLAGS.out or f"experiments/results/sampler_steps_{platform}{'_smoke' if FLAGS.smoke else ''}.json"
    write_json(out, record)
    plot(summary, os.path.splitext(out)[0] + ".png",
         f"walker2d denoiser {diffusion.width}x{diffusion.depth} ({diffusion.num_train_steps} steps), "
         f"{scale.num_samples} samples per setting, mean ± half the spread over {FLAGS.sampler_seeds} sampler seeds")
    print(f"wrote {os.path.splitext(out)[0]}.png")


def summary_rows(results: str = RESULTS_DIR) -> List[List[str]]:
    """Rows of experiment, paper, ours and our scale."""
    record = load(RESULTS[0], results)

    def fewest(key: str) -> str:
        row = record["summary"][key]
        return (f"{row['fewest_matching_steps']} match ({row['speedup_vs_128']:.1f}x the samples/s)"
                if row["fewest_matching_steps"] else f"none below {PAPER_STEPS} matches")

    denoiser = record["denoiser"]
    return [["Sampler steps: fewer than 128 Heun steps (Appendix B.2)", "128 steps, S_churn 80; no fewer shown",
             f"with churn {fewest('churn')}; without churn {fewest('no_churn')}",
             f"the {denoiser['width']}x{denoiser['depth']} denoiser trained {denoiser['train_steps'] // 1000}K steps, "
             f"{record['num_samples_per_setting']:,} samples per setting, {record['sampler_seeds']} sampler seeds"]]


def steps_table(results: str = RESULTS_DIR) -> List[str]:
    """Fidelity and samples/s of one denoiser against the number of Heun steps, with and without churn."""
    record = load(RESULTS[0], results)
    num = record["num_samples_per_setting"]
    by_sampler = {name: {s["steps"]: s for s in record["summary"][name]["settings"]} for name in ("churn", "no_churn")}

    def cells(s: dict) -> List[str]:
        return [f"{s['marginal_score']:.3f} / {s['correlation_score']:.3f}", f"{s['dynamics_mse_median']:.3g}",
                f"{s['terminal_fraction'] * num:.1f}", f"{s['samples_per_s']:.0f}"]

    rows = [[f"{steps}" + (" (the paper's)" if steps == PAPER_STEPS else "")] + cells(by_sampler["churn"][steps])
            + cells(by_sampler["no_churn"][steps]) for steps in sorted(by_sampler["churn"])]
    per_sampler = ["marginal / correlation", "dynamics MSE median", f"terminals / {num}", "samples/s"]
    return table(["steps"] + [f"churn: {h}" if i == 0 else h for i, h in enumerate(per_sampler)]
                 + [f"no churn: {h}" if i == 0 else h for i, h in enumerate(per_sampler)], rows)


TABLES = {"sampler-steps": steps_table}


if __name__ == "__main__":
    define_flags()
    boundary.run(main, INPUT_ERRORS)
