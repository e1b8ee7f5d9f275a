"""Does offline SynthER gain on walker2d at CPU scale, and if not, why not? One factor at a time
from a named base, on the bundled walker2d medium-replay data (30K transitions), TD3+BC, 6 paired
seeds. The plan, with every arm's command, is `experiments/offline_evidence.md`.

    python -m experiments.offline_evidence --workdir=runs/offline-evidence               # every arm, then the report
    python -m experiments.offline_evidence --workdir=runs/offline-evidence --only=real   # some arms, in parallel
    python -m experiments.offline_evidence --workdir=runs/offline-evidence --report      # the report of finished arms

Each arm is one `launch.offline` run in `<workdir>/<arm>`, so a rerun resumes it and a finished one
is only read back. The base trains one denoiser per agent seed and draws its samples; the other
synthetic arms never train again: `env_rule`, `first100k` and `clipped` are the base's sample files
relabelled, cut or clipped; `steps32` draws new samples from the base's denoisers (so it can
start once they are trained, while the base still samples), and `distilled4` and `distilled1` from
students distilled from them (`<workdir>/distillation`, one per seed, shared by both). Their files
are written into the arm's folder before its run starts, where `launch.offline` finds them finished.

The report is `launch.compare`'s table and interval plot of the finished arms against the base
(`experiments/results/offline_evidence_walker2d_cpu/`), and one JSON (`--out`) with, per arm, its
command, its per-seed scores, the intervals of its mean, IQM and paired difference, each
denoiser's fidelity figures and its stage times; arms not yet finished are listed as pending. A
second comparison against the real arm (`against_real/`) says whether SynthER gains at all.

Results: `RESULTS` in experiments/results/ (the comparisons' tables and plots in the folder of the
same name, and in its `arms/` each finished arm's results.json, so the report outlives the run
folders). Tables: `offline-evidence` in docs/offline.md; `summary_rows` in docs/results.md and
README.md.
"""
import dataclasses
import os
import subprocess
import sys
from typing import Dict, List, Optional

from absl import app, flags

from bench.timing import environment
from configs import d4rl
from experiments.tables import RESULTS as RESULTS_DIR
from experiments.tables import load, table
from launch import boundary, compare
from launch.cli import INPUT_ERRORS
from pipelines.synthesis import (denoiser_seeds, distill_model, load_real, samples_paths, synthetic_terminal_rule,
                                 write_samples)
from synther_jax.atomic import read_json, write_json
from synther_jax.checkpoint import Checkpointer
from synther_jax.data import read_synthetic, write_synthetic
from synther_jax.diffusion import DiffusionConfig
from synther_jax.diffusion.storage import load_diffusion
from synther_jax.termination import label_terminals

CONFIG = "walker2d"  # configs/d4rl.py's argument: the bundled walker2d medium-replay data
NUM_SEEDS = 6
COMMON = {"num_seeds": NUM_SEEDS, "agent_steps": 100_000, "eval_every": 10_000, "eval_episodes": 10}
BASE = {**COMMON, "denoiser_per_seed": True, "diffusion.width": 256, "diffusion.depth": 3,
        "diffusion.num_train_steps": 30_000, "diffusion.sample_chunk_size": 50_000, "num_samples": 500_000,
        "diffusion.num_sample_steps": 128, "diffusion.S_churn": 80.0, "terminals": "modelled"}


@dataclasses.dataclass(frozen=True)
class Arm:
    name: str
    factor: str  # what differs from the base, in words
    overrides: Dict[str, object]  # --config.<key>=<value> of launch.offline
    derived: Optional[str] = None  # how its files come from the base's: relabel, first_rows, clip, resample


ARMS = (
    Arm("real", "the 30K real transitions, no denoiser", {**COMMON, "data": "real"}),
    Arm("base", "one 256x3 denoiser per seed, 30K steps; 500K samples, 128 Heun steps with churn; terminals "
        "modelled", BASE),
    Arm("env_rule", "the base's files, terminals relabelled by walker2d's health rule",
        {**BASE, "terminals": "env_rule"}, "relabel"),
    Arm("first100k", "the first 100K rows of each base file", {**BASE, "num_samples": 100_000}, "first_rows"),
    Arm("steps32", "the base's denoisers sampled again with 32 Heun steps and no churn",
        {**BASE, "diffusion.num_sample_steps": 32, "diffusion.S_churn": 0.0}, "resample"),
    Arm("clipped", "the base's files, actions clipped to [-1, 1]", {**BASE, "clip_actions": True}, "clip"),
    Arm("distilled4", "the base's denoisers distilled into a 4-evaluation sampler", {**BASE, "distill.num_steps": 4},
        "distill"),
    Arm("distilled1", "the base's denoisers distilled into a 1-evaluation sampler", {**BASE, "distill.num_steps": 1},
        "distill"),
)
DISTILLATION = "distillation"  # the workdir's folder of the students the distilled arms share
ARM_NAMES = [arm.name for arm in ARMS]
REFERENCE = "base"
AGAINST_REAL = "against_real"  # the report folder's subfolder comparing every arm with the real one
ARM_RECORDS = "arms"  # the report folder's subfolder keeping each finished arm's results.json
RESULTS = ("offline_evidence_walker2d_cpu.json",)
DETAILS = "docs/results.md#offline-evidence-walker2d-medium-replay"
DEFAULT_WORKDIR = "runs/offline-evidence"  # as the plan's commands write it

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line; defined only when run as a program, so experiments.report can import the tables."""
    flags.DEFINE_string("workdir", None, "Where the arms' runs live; rerun to resume.")
    flags.DEFINE_list("only", [], f"Run just these arms ({', '.join(ARM_NAMES)}) and write no report; the base's "
                      "files (its denoisers for steps32) must be finished before the arms derived from them start.")
    flags.DEFINE_bool("report", False, "Only gather the finished arms into the report.")
    flags.DEFINE_string("out", os.path.join("experiments", "results", RESULTS[0]),
                        "The report's JSON; launch.compare's tables and plots go to the folder of the same name.")


def command(arm: Arm, workdir: str) -> List[str]:
    """The arm's `launch.offline` command line."""
    def literal(value):
        return str(value).lower() if isinstance(value, bool) else str(value)

    return ["python", "-m", "launch.offline", f"--config=configs/d4rl.py:{CONFIG}",
            *(f"--config.{key}={literal(value)}" for key, value in arm.overrides.items()),
            f"--workdir={os.path.join(workdir, arm.name)}"]


def arm_config(arm: Arm):
    """The arm's validated config, as `launch.offline` builds it from `command(arm)`."""
    config = d4rl.get_config(CONFIG)
    config.update_from_flattened_dict(arm.overrides)
    return d4rl.validate(config)


def derive_files(arm: Arm, workdir: str) -> None:
    """Writes the arm's sample files from the base's files or denoisers (nothing for the base and
    the real arm, or when they exist)."""
    if arm.derived is None:
        return
    config, folder, base_folder = arm_config(arm), os.path.join(workdir, arm.name), os.path.join(workdir, REFERENCE)
    paths, base_paths = samples_paths(config, folder), samples_paths(config, base_folder)
    if all(os.path.exists(path) for path in paths):
        return
    if arm.derived in ("resample", "distill"):  # need the base's trained denoisers only, not its samples
        denoisers = os.path.join(base_folder, "diffusion")
        if Checkpointer(os.path.join(denoisers, "checkpoints")).latest_step() != config.diffusion.num_train_steps:
            raise app.UsageError(f"The {arm.name} arm samples the base's denoisers, which are not trained yet: run "
                                 f"--only={REFERENCE} first (it trains them before it samples).")
        real = load_real(config)
        model = load_diffusion(denoisers).replace(config=DiffusionConfig(**config.diffusion))
        if arm.derived == "distill":  # one student per seed serves every step count: the arms share it
            print(f"== {arm.name}: distilling the denoisers of {base_folder}", flush=True)
            model = distill_model(config, real, model, os.path.join(workdir, DISTILLATION))
        print(f"== {arm.name}: sampling the denoisers of {base_folder} again", flush=True)
        write_samples(config, real, model, folder)
        return
    if not all(os.path.exists(path) for path in base_paths):
        raise app.UsageError(f"The {arm.name} arm is made from the base's files, which are not finished: run "
                             f"--only={REFERENCE} first (its samples are written before its agents train).")
    real = load_real(config)
    print(f"== {arm.name}: deriving its files from {base_folder} ({arm.derived})", flush=True)
    rule = synthetic_terminal_rule(config, real)
    for path, base_path, seed in zip(paths, base_paths, denoiser_seeds(config)):
        data = read_synthetic(base_path)
        if arm.derived == "relabel":
            data = label_terminals(data, rule)
        elif arm.derived == "first_rows":
            data = data.subset(slice(0, config.num_samples))
        else:
            data = data.clip_actions()
        write_synthetic(path, data, source_dataset=config.dataset, config=config, seed=seed,
                        model_checkpoint=os.path.join(base_folder, "diffusion"), env_id=real.metadata.get("env_id"))


def run_arm(arm: Arm, workdir: str) -> None:
    results = read_json(os.path.join(workdir, arm.name, "results.json"), None)
    if results is not None:
        print(f"== {arm.name}: finished earlier", flush=True)
        return
    derive_files(arm, workdir)
    print(f"== {arm.name}: {' '.join(command(arm, workdir))}", flush=True)
    process = subprocess.run([sys.executable, *command(arm, workdir)[1:]])
    if process.returncode != 0:
        raise SystemExit(f"The {arm.name} arm failed (exit {process.returncode}); fix what it printed and rerun "
                         "the same command: it resumes.")


def keep_finished_arms(workdir: str, folder: str) -> Dict[str, dict]:
    """The finished arms, each with its `results.json` kept in `<folder>/arms/<arm>/`: copied there
    from its run in `workdir` when that has finished, else the copy an earlier report kept (run
    folders are scratch; an arm finished on another machine stays in the report): {arm: results}."""
    finished = {}
    for arm in ARMS:
        results = read_json(os.path.join(workdir, arm.name, "results.json"), None)
        kept = os.path.join(folder, ARM_RECORDS, arm.name, "results.json")
        if results is not None:
            write_json(kept, results)
        results = results or read_json(kept, None)
        if results is not None:
            finished[arm.name] = results
    return finished


def report(workdir: str, out: str) -> dict:
    """The report of the finished arms: launch.compare's tables and plots, against the base (each
    factor's effect) and against the real arm (SynthER or not), and the JSON at `out`. The two
    comparisons are separate families for Holm's correction."""
    folder = os.path.splitext(out)[0]
    kept = keep_finished_arms(workdir, folder)
    finished = list(kept)
    if not finished:
        raise app.UsageError(f"No arm in {workdir} has finished; run the experiment first.")
    run_dirs = [os.path.join(folder, ARM_RECORDS, name) for name in finished]
    comparison = compare.run(run_dirs, folder, names=finished,
                             baseline=REFERENCE if REFERENCE in finished else finished[0])
    rows = {row["name"]: row for row in comparison["arms"]}
    from_base = comparison["baseline"] == REFERENCE  # else no difference is the base's yet
    against_real = {}
    if "real" in finished:
        against_real = {row["name"]: row["difference"] for row in compare.run(
            run_dirs, os.path.join(folder, AGAINST_REAL), names=finished, baseline="real")["arms"]}
    arms = []
    for arm in ARMS:
        entry = {"name": arm.name, "factor": arm.factor, "derived_from_base": arm.derived,
                 "command": " ".join(command(arm, DEFAULT_WORKDIR)), "finished": arm.name in finished}
        if arm.name in finished:
            results, row = kept[arm.name], rows[arm.name]
            entry.update({"score": results["score"], "mean": row["mean"], "iqm": row["iqm"],
                          "difference": row["difference"] if from_base else None,
                          "difference_from_real": against_real.get(arm.name),
                          "unpaired_reason": row["unpaired_reason"], "fidelity": results["fidelity"],
                          "stage_seconds": results["stage_seconds"]})
        arms.append(entry)
    record = {**environment(), "experiment": "offline_evidence", "config": CONFIG, "task": comparison["task"],
              "num_updates": comparison["num_updates"], "metric": comparison["metric"], "score": comparison["score"],
              "num_seeds": NUM_SEEDS, "reference": comparison["baseline"], "bootstrap": comparison["bootstrap"],
              "arms": arms, "pending": [name for name in ARM_NAMES if name not in finished],
              "comparison": folder,
              "command": f"python -m experiments.offline_evidence --workdir={DEFAULT_WORKDIR} --report"}
    write_json(out, record)
    with open(os.path.join(folder, compare.TABLE_FILE)) as table:
        print(table.read(), end="")
    return record


# --- the tables of README.md and docs/results.md, read from the committed report ----------------

def _difference(difference: Optional[dict]) -> str:
    """A paired difference in the mean with its Holm-level interval; "not shown" where it covers 0."""
    if difference is None:
        return ""
    mean = difference["mean"]
    shown = mean["low"] > 0 or mean["high"] < 0
    return (f"{mean['estimate']:+.1f} [{mean['low']:+.1f}, {mean['high']:+.1f}]"
            + ("" if shown else ", not shown"))


def summary_rows(results: str = RESULTS_DIR) -> List[List[str]]:
    """Rows of experiment, paper, ours and our scale: the synthetic arm furthest above real data
    (the plan's choice for the README), its paired difference, and how many arms are pending."""
    record = load(RESULTS[0], results)
    arms = {arm["name"]: arm for arm in record["arms"] if arm["finished"]}
    against_real = [arm for arm in arms.values() if arm.get("difference_from_real")]
    if against_real:
        best = max(against_real, key=lambda arm: arm["difference_from_real"]["mean"]["estimate"])
        ours = f"{best['name']} - real: {_difference(best['difference_from_real'])}"
    else:
        ours = "; ".join(f"{name} {compare.interval_text(arm['mean'])}" for name, arm in arms.items())
    if record["pending"]:
        ours += f"; {len(record['pending'])} of {len(record['arms'])} arms pending"
    return [["Offline evidence: walker2d medium-replay, TD3+BC, 6 paired seeds",
             "SynthER above real data (Figure 1a)", ours,
             f"the bundled 30K transitions, a 256x3 denoiser per seed, 500K samples each, "
             f"{record['num_updates'] // 1000}K updates, {record['score']}"]]


def arms_table(results: str = RESULTS_DIR) -> List[str]:
    """Every planned arm: what differs from the base, its seeds' scores, mean and IQM with 95 %
    intervals, its paired differences from the base and from real data (Holm-corrected), and its
    denoisers' mean fidelity."""
    record = load(RESULTS[0], results)
    rows = []
    for arm in record["arms"]:
        if not arm["finished"]:
            rows.append([f"`{arm['name']}`", arm["factor"], "pending", "", "", "", "", "", ""])
            continue
        fidelity = (arm["fidelity"] or {}).get("mean") or {}
        falls = fidelity.get("synthetic_falls_flagged")
        rows.append([f"`{arm['name']}`", arm["factor"], ", ".join(f"{s:.1f}" for s in arm["score"]["per_seed"]),
                     compare.interval_text(arm["mean"]), compare.interval_text(arm["iqm"]),
                     _difference(arm["difference"]),
                     _difference(arm.get("difference_from_real")),
                     f"{fidelity['marginal_score']:.3f} / {fidelity['correlation_score']:.3f}" if fidelity else "",
                     "" if falls is None else f"{falls:.0%}"])
    return table(["arm", "what differs from the base", "score per seed", "mean [95 %]", "IQM [95 %]",
                  f"mean - {REFERENCE}", "mean - real", "marginal / correlation",
                  "synthetic falls flagged"], rows)


TABLES = {"offline-evidence": arms_table}


def main(argv):
    del argv
    unknown = sorted(set(FLAGS.only) - set(ARM_NAMES))
    if unknown:
        raise app.UsageError(f"--only={','.join(unknown)} names no arm; choose from {', '.join(ARM_NAMES)}.")
    if not FLAGS.report:
        for arm in ARMS:
            if not FLAGS.only or arm.name in FLAGS.only:
                run_arm(arm, FLAGS.workdir)
    if FLAGS.report or not FLAGS.only:
        report(FLAGS.workdir, FLAGS.out)


if __name__ == "__main__":
    define_flags()
    flags.mark_flag_as_required("workdir")
    boundary.run(main, INPUT_ERRORS)
