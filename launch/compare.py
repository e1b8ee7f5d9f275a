"""Compares finished offline runs of one task: can the evaluation protocol tell the arms apart?

    python -m launch.compare runs/real runs/synthetic runs/mixed --out=runs/comparison

Each run directory (a `launch.offline` work directory) is an arm, named by its folder or
`--names`. An arm's per-seed scores are each seed's mean over its last 3 evaluations (results.json's
`score`, or computed the same way from `scores_by_step` for runs made before it). The command
writes to `--out`:
  comparison.md    one table: per arm its mean and IQM with 95 % intervals; per paired arm the
                   difference from the reference arm (`--baseline`, default the first) in mean and
                   IQM, with a Holm-adjusted interval and p-value, or why it is not paired;
  comparison.json  the same numbers, the per-seed scores, and how they were made (bootstrap
                   resamples and seed, levels, the evaluations averaged);
  intervals.png    rliable's interval plot of each arm's mean and IQM.
The statistics and why they are these: `synther_jax.analysis.intervals`.

Two arms are paired when seed i of each has the same agent seed, and the same denoiser seed where
both arms train denoisers (an arm on real data, or on an explicit augmentation, has none to share):
then seed i of both arms starts from the same networks and minibatch keys, and the differences
are taken seed by seed. The command refuses, in one line, runs it cannot compare fairly: a missing
results.json, different tasks or update counts, fewer than 2 seeds, fewer than 10 episodes per
evaluation, or fewer than 3 evaluations.
"""
import os
from typing import Dict, List, Optional, Sequence

import numpy as np
from absl import app, flags

from launch import boundary
from launch.cli import INPUT_ERRORS
from pipelines.workdir import check_workdir
from synther_jax.analysis import intervals
from synther_jax.analysis.protocol import LAST_EVALUATIONS, MIN_EPISODES, MIN_SEEDS, run_score
from synther_jax.atomic import atomic_path, read_json, write_json
from synther_jax.data import dataset_task
from synther_jax.errors import IncomparableRunsError

TABLE_FILE, JSON_FILE, PLOT_FILE = "comparison.md", "comparison.json", "intervals.png"


def read_arm(run_dir: str, name: str) -> dict:
    """One arm from its run directory: its task, update count, metric, score block and seeds;
    IncomparableRunsError where its results cannot carry an interval."""
    results = read_json(os.path.join(run_dir, "results.json"), None)
    if results is None:
        raise IncomparableRunsError(f"{run_dir} has no results.json: give the work directory of a finished "
                                    "launch.offline run (results.json is written when its agents finish).")
    needed = ("dataset", "num_updates") + (() if "score" in results else ("scores_by_step",))
    missing = [key for key in needed if key not in results]
    if missing:
        raise IncomparableRunsError(f"{run_dir}/results.json has no {', '.join(missing)}: it is not the results of "
                                    "a launch.offline run; give the work directories of offline runs.")
    score = results.get("score") or legacy_score(run_dir, results)
    num_seeds, episodes = len(score["per_seed"]), score["episodes_per_evaluation"]
    evaluations = len(score["evaluations_used"])
    if num_seeds < MIN_SEEDS:
        raise IncomparableRunsError(f"{name} ({run_dir}) has {num_seeds} seed; an interval needs at least "
                                    f"{MIN_SEEDS}: rerun it with --config.num_seeds={MIN_SEEDS} or more.")
    if episodes < MIN_EPISODES:
        raise IncomparableRunsError(f"{name} ({run_dir}) evaluated on {episodes} episodes per evaluation; the "
                                    f"protocol needs at least {MIN_EPISODES}: rerun it with "
                                    f"--config.eval_episodes={MIN_EPISODES}.")
    if evaluations < LAST_EVALUATIONS:
        raise IncomparableRunsError(f"{name} ({run_dir}) made {evaluations} evaluations; a score is the mean of "
                                    f"the last {LAST_EVALUATIONS}: rerun it with a smaller --config.eval_every.")
    return {"name": name, "run_dir": run_dir, "task": dataset_task(results["dataset"]) or results["dataset"],
            "num_updates": results["num_updates"], "metric": score["metric"], "score": score,
            "seeds": results.get("seeds")}


def legacy_score(run_dir: str, results: dict) -> dict:
    """The score block of a run made before results.json carried one: from its `scores_by_step`,
    with the episode count from the config.json of its work directory."""
    episodes = (read_json(os.path.join(run_dir, "config.json"), None) or {}).get("eval_episodes")
    if episodes is None:
        raise IncomparableRunsError(f"{run_dir}/results.json has no score block and {run_dir}/config.json does not "
                                    "say how many episodes each evaluation had; rerun the run's launch.offline "
                                    "command (a finished run only rewrites its results).")
    metric = "D4RL-normalised score" if results.get("final_normalized_score") else "return"
    curve = results["scores_by_step"]
    return run_score(curve["steps"], curve["per_seed"], episodes, metric)


def check_comparable(arms: Sequence[dict]) -> None:
    """IncomparableRunsError unless every arm has the first arm's task, update count and metric."""
    first = arms[0]
    for arm in arms[1:]:
        for key, what, fix in (("task", "tasks", "compare arms of one task"),
                               ("num_updates", "update counts", "compare runs trained for as many updates"),
                               ("metric", "metrics", "compare runs whose environments score alike")):
            if arm[key] != first[key]:
                raise IncomparableRunsError(f"{first['name']} and {arm['name']} differ in their {what} "
                                            f"({first[key]} against {arm[key]}); {fix}.")


def pairing_problem(reference: dict, arm: dict) -> Optional[str]:
    """Why `arm` cannot be paired seed by seed with `reference`, or None when it can."""
    if reference["seeds"] is None or arm["seeds"] is None:
        return "results.json records no seeds"
    if len(reference["seeds"]) != len(arm["seeds"]):
        return f"{len(arm['seeds'])} seeds against {len(reference['seeds'])}"
    for ours, theirs in zip(arm["seeds"], reference["seeds"]):
        if (ours["agent"], ours["agent_seed"]) != (theirs["agent"], theirs["agent_seed"]):
            return f"agent seeds differ (--config.seed {ours['agent_seed']} against {theirs['agent_seed']})"
        if None not in (ours["denoiser_seed"], theirs["denoiser_seed"]) and \
                ours["denoiser_seed"] != theirs["denoiser_seed"]:
            return (f"denoiser seeds differ ({[s['denoiser_seed'] for s in arm['seeds']]} against "
                    f"{[s['denoiser_seed'] for s in reference['seeds']]})")
    return None


def compare(arms: Sequence[dict], baseline: str, reps: int, seed: int) -> dict:
    """The comparison of checked arms (`read_arm`, `check_comparable`): what comparison.json holds."""
    scores = {arm["name"]: np.asarray(arm["score"]["per_seed"]) for arm in arms}
    estimates = intervals.interval_estimates(scores, reps=reps, seed=seed)
    reference = next(arm for arm in arms if arm["name"] == baseline)
    problems = {arm["name"]: pairing_problem(reference, arm) for arm in arms if arm is not reference}
    differences = intervals.paired_differences(
        {name: (scores[baseline], scores[name]) for name, problem in problems.items() if problem is None},
        reps=reps, seed=seed)
    rows = []
    for arm in arms:
        name = arm["name"]
        points, bounds = estimates[name]
        rows.append({
            "name": name, "run_dir": arm["run_dir"], "num_seeds": len(scores[name]),
            "per_seed": arm["score"]["per_seed"], "evaluations_used": arm["score"]["evaluations_used"],
            "episodes_per_evaluation": arm["score"]["episodes_per_evaluation"],
            "seeds": arm["seeds"],
            **{statistic: {"estimate": float(points[i]), "low": float(bounds[0, i]), "high": float(bounds[1, i])}
               for i, statistic in enumerate(intervals.STATISTICS)},
            "baseline": arm is reference, "paired": None if arm is reference else problems[name] is None,
            "unpaired_reason": problems.get(name), "difference": differences.get(name)})
    return {
        "task": arms[0]["task"], "num_updates": arms[0]["num_updates"], "metric": arms[0]["metric"],
        "score": arms[0]["score"]["protocol"], "baseline": baseline, "confidence": intervals.CONFIDENCE,
        "bootstrap": {"reps": reps, "seed": seed,
                      "arms": "rliable stratified bootstrap over seeds; Student's t interval on its standard error",
                      "differences": "scipy.stats.bootstrap, paired over seeds; t interval and p-value on its "
                                     "standard error; Holm's correction over every difference shown"},
        "holm_family_size": sum(len(difference) for difference in differences.values()),
        "arms": rows}


def interval_text(value: dict) -> str:
    """An estimate with its interval, as every table of arms writes it: `13.5 [8.6, 18.3]`."""
    return f"{value['estimate']:.1f} [{value['low']:.1f}, {value['high']:.1f}]"


def markdown_table(comparison: dict) -> str:
    """comparison.md: the protocol in two lines, then one row per arm."""
    lines = [f"{comparison['task']}, {comparison['num_updates']} updates, {comparison['metric']}: each seed's "
             f"{comparison['score']}; mean and IQM over seeds with 95 % bootstrap intervals "
             f"({comparison['bootstrap']['reps']} resamples, seed {comparison['bootstrap']['seed']}).",
             f"Differences from {comparison['baseline']}, paired by seed, with Holm's correction over the "
             f"{comparison['holm_family_size']} shown (interval at the Holm level, adjusted p).", "",
             "| arm | seeds | mean | IQM | mean - baseline | p (Holm) | IQM - baseline | p (Holm) | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in comparison["arms"]:
        cells = [row["name"], str(row["num_seeds"]), interval_text(row["mean"]), interval_text(row["iqm"])]
        if row["difference"] is not None:
            for statistic in intervals.STATISTICS:
                difference = row["difference"][statistic]
                cells += [f"{interval_text(difference)} at {100 * difference['level']:.1f} %",
                          f"{difference['p_holm']:.3g}"]
            note = ""
        else:
            cells += [""] * 4
            note = "baseline" if row["baseline"] else f"not paired: {row['unpaired_reason']}"
        lines.append("| " + " | ".join(cells + [note]) + " |")
    return "\n".join(lines) + "\n"


def arm_names(run_dirs: Sequence[str], names: Optional[Sequence[str]]) -> List[str]:
    """Each arm's name: `names`, else its folder's name; UsageError where they do not tell arms apart."""
    if names is not None and len(names) != len(run_dirs):
        raise app.UsageError(f"--names gives {len(names)} names for {len(run_dirs)} run directories; give one each.")
    names = list(names) if names is not None else [os.path.basename(os.path.normpath(d)) for d in run_dirs]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise app.UsageError(f"two arms are named {repeated[0]!r}; name every arm apart with --names=A,B,...")
    return names


def run(run_dirs: Sequence[str], out: str, names: Optional[Sequence[str]] = None, baseline: Optional[str] = None,
        reps: int = 10_000, seed: int = 0) -> dict:
    """Reads and checks the arms, writes comparison.md, comparison.json and intervals.png to `out`,
    and returns the comparison."""
    if not run_dirs:
        raise app.UsageError("give the run directories to compare: python -m launch.compare RUN_DIR ... --out=DIR")
    check_workdir(out, "--out")
    names = arm_names(run_dirs, names)
    baseline = names[0] if baseline is None else baseline
    if baseline not in names:
        raise app.UsageError(f"--baseline={baseline} names no arm; choose from {names}.")
    arms = [read_arm(run_dir, name) for run_dir, name in zip(run_dirs, names)]
    check_comparable(arms)
    comparison = compare(arms, baseline, reps, seed)
    os.makedirs(out, exist_ok=True)
    write_json(os.path.join(out, JSON_FILE), comparison)
    with atomic_path(os.path.join(out, TABLE_FILE)) as temporary, open(temporary, "w") as file:
        file.write(markdown_table(comparison))
    estimates = {row["name"]: (np.array([row[s]["estimate"] for s in intervals.STATISTICS]),
                               np.array([[row[s][bound] for s in intervals.STATISTICS] for bound in ("low", "high")]))
                 for row in comparison["arms"]}
    with atomic_path(os.path.join(out, PLOT_FILE)) as temporary:
        intervals.plot_intervals(estimates, temporary, comparison["metric"])
    return comparison


def define_compare_flags() -> None:
    """The command's flags; defined only when it runs, so tests can import the module beside other launchers."""
    flags.DEFINE_string("out", None, "Folder for comparison.md, comparison.json and intervals.png.", required=True)
    flags.DEFINE_list("names", None, "One name per run directory, in order (default: the folders' names).")
    flags.DEFINE_string("baseline", None, "The arm the differences are taken from (default: the first).")
    flags.DEFINE_integer("reps", 10_000, "Bootstrap resamples per interval.", lower_bound=100)
    flags.DEFINE_integer("seed", 0, "Seed of the bootstrap resamples (the same seed gives the same table).")


def main(argv):
    FLAGS = flags.FLAGS
    comparison = run(argv[1:], FLAGS.out, FLAGS.names, FLAGS.baseline, FLAGS.reps, FLAGS.seed)
    print(markdown_table(comparison), end="")
    print(f"Wrote {', '.join(os.path.join(FLAGS.out, f) for f in (TABLE_FILE, JSON_FILE, PLOT_FILE))}.")


if __name__ == "__main__":
    define_compare_flags()
    boundary.run(main, (*INPUT_ERRORS, IncomparableRunsError), resumes=False)
