"""The offline pipeline end to end, stage by stage, in arms: a learner (TD3+BC by default,
`--algorithm`) on the real data against the same learner on synthetic data from one or more
denoisers (and on explicit augmentations of the real data), with the wall time of every stage. It
makes the results of `experiments.table1_walker2d`, `experiments.figure1a` and
`experiments.table1_maze2d`, whose results JSONs record the commands.

    python -m experiments.offline_arms --workdir=runs/offline-arms     # the paper's setting (a GPU job)
    python -m experiments.offline_arms --config=walker2d --augmentations=additive,multiplicative,dynamics \
        --denoisers=1024x6:100000 --num_samples=500000 --agent_steps=100000 --workdir=runs/figure1a
                                       # paper Figure 1a: every explicit augmentation against SynthER
                                       # on the bundled (reduced) walker2d medium-replay data

Each arm is one `launch.offline` run in `<workdir>/real`, `<workdir>/augmentation-<kind>` or
`<workdir>/synthetic-<denoiser>`, so a rerun resumes, and finished runs are only read back. A
denoiser is `WIDTHxDEPTH:TRAIN_STEPS`; none given means the config's own (the paper's width, depth
6, 100K steps). Only the flags that concern a run are applied to it: the real-data run has no
diffusion stage and no fidelity report. Each synthetic run trains one denoiser per agent seed
(`--denoiser_per_seed`, the default), so its mean +- std over seeds covers the generative model, not
only the agents; `--denoiser_per_seed=false` shares one denoiser between the seeds. `--only` runs
some arms (parallel processes may share one work directory); a run without it gathers them.

The JSON records the command line, the device and versions, the mean normalised return of the
dataset's own episodes (the behaviour policy), and per run the final scores (per seed, mean, std
over seeds), the scores at every evaluation, each seed's agent and denoiser seed, the seconds per
stage, the fidelity reports' headline figures (per denoiser, their mean and std) and the command
that made the run. A bar chart of the final scores goes beside it, and the runs' learning curves
(`<out>_curves.png`) where they were evaluated more than once.
"""
import copy
import os
from typing import List, Optional, Tuple

import gymnasium
import matplotlib
import ml_collections

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402

from bench.timing import environment, parse_denoiser, write_json  # noqa: E402
from configs import d4rl  # noqa: E402
from launch import boundary  # noqa: E402
from launch.cli import INPUT_ERRORS  # noqa: E402
from launch import offline  # noqa: E402
from pipelines.synthesis import load_real  # noqa: E402
from synther_jax.analysis.fidelity_report import REPORT_FILE  # noqa: E402
from synther_jax.atomic import read_json  # noqa: E402
from synther_jax.curves import plot_learning_curves  # noqa: E402
from synther_jax.data import Transitions  # noqa: E402
from synther_jax.scores import normalized_score  # noqa: E402
from synther_jax.termination import TERMINALS  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("config", "walker2d-medium", "Argument of configs/d4rl.py, e.g. walker2d-medium.")
flags.DEFINE_enum("algorithm", "td3_bc", ["td3_bc", "iql", "edac"], "The offline learner.")
flags.DEFINE_string("dataset", None, "Dataset id or path (default: the config's).")
flags.DEFINE_string("env_id", None, "Environment to evaluate in (default: the config's).")
flags.DEFINE_list("denoisers", [], "WIDTHxDEPTH:TRAIN_STEPS per synthetic run (default: the config's denoiser).")
flags.DEFINE_list("augmentations", [], "Explicit augmentations of the real data to run as well (additive, "
                  "multiplicative, dynamics; paper Figure 1a), each with --num_samples transitions.")
flags.DEFINE_integer("num_samples", None, "Synthetic transitions per run (default: the config's, 5M).")
flags.DEFINE_integer("sample_chunk_size", None, "Samples per jitted sampler call (default: the config's).")
flags.DEFINE_integer("num_sample_steps", None, "Heun steps of the sampler (default: the config's, the paper's 128).")
flags.DEFINE_float("S_churn", None, "The sampler's churn (default: the config's, the paper's 80; 0 for none).")
flags.DEFINE_enum("terminals", None, list(TERMINALS), "How synthetic terminals are made (default: "
                  "the config's: env_rule where the task has a rule, modelled elsewhere; runs made before that "
                  "default recorded --terminals=modelled).")
flags.DEFINE_integer("num_seeds", None, "Seeds per run (default: the config's, 4).")
flags.DEFINE_integer("agent_steps", None, "Agent updates (default: 1M; EDAC 3M).")
flags.DEFINE_integer("eval_every", None, "Updates between evaluations (default: the config's, 5000).")
flags.DEFINE_integer("eval_episodes", None, "Episodes per seed and evaluation (default: the config's, 10).")
flags.DEFINE_string("note", None, "Free text recorded in the JSON, e.g. why this scale was chosen.")
flags.DEFINE_bool("denoiser_per_seed", True, "Each synthetic run trains one denoiser per agent seed (launch.offline's "
                  "--config.denoiser_per_seed), so the mean +- std over seeds covers the generative model too; "
                  "false: one denoiser shared by the seeds, as the original's scripts (and results made before).")
flags.DEFINE_list("only", [], "Run just the runs whose names start with these (e.g. real,augmentation or "
                  "synthetic) and write no JSON: arms in parallel processes; a final run without it gathers.")
flags.DEFINE_string("workdir", None, "Where the runs live; rerun to resume.")
flags.DEFINE_string("out", None, "JSON file (default: experiments/results/offline_<config>_<platform>.json); "
                                 "the plot is written beside it as .png.")
flags.mark_flag_as_required("workdir")


def base_config() -> ml_collections.ConfigDict:
    config = d4rl.get_config(FLAGS.config)
    config.algorithm = FLAGS.algorithm
    for field in ("dataset", "env_id", "terminals", "num_seeds", "agent_steps", "eval_every", "eval_episodes"):
        if getattr(FLAGS, field) is not None:
            config[field] = getattr(FLAGS, field)
    return config


def run_configs() -> List[Tuple[str, ml_collections.ConfigDict]]:
    """(name, config) of the real-data run, one run per explicit augmentation and one synthetic
    run per denoiser, every config validated (so its per-dataset values are filled in)."""
    base = base_config()
    if FLAGS.num_samples is not None:
        base.num_samples = FLAGS.num_samples
    real = copy.deepcopy(base)
    real.data, real.analyze = "real", False
    runs = [("real", real)]
    for kind in FLAGS.augmentations:
        config = copy.deepcopy(base)
        config.data, config.augmentation = "synthetic", kind
        runs.append((f"augmentation-{kind}", config))
    for spec in FLAGS.denoisers or [None]:
        config = copy.deepcopy(base)
        config.data, config.denoiser_per_seed = "synthetic", FLAGS.denoiser_per_seed
        if spec is not None:
            width, depth, steps = parse_denoiser(spec)
            config.diffusion.update(width=width, depth=depth, num_train_steps=steps)
        for field in ("sample_chunk_size", "num_sample_steps", "S_churn"):
            if getattr(FLAGS, field) is not None:
                config.diffusion[field] = getattr(FLAGS, field)
        runs.append(("synthetic-{width}x{depth}-{num_train_steps}", config))  # named by its resolved denoiser
    validated = [(name, d4rl.validate(config)) for name, config in runs]
    return [(name.format(**config.diffusion), config) for name, config in validated]


def dataset_episode_score(real: Transitions, env_id: str) -> Optional[float]:
    """Mean normalised return of the dataset's episodes (the behaviour policy's score), when it
    holds whole episodes: each one but the last ends in a terminal or runs to the time limit (less
    the timeout row, which D4RL's rules drop). A subsampled dataset does not."""
    if real.episode_ids is None:
        return None
    ends = np.flatnonzero(np.diff(real.episode_ids) != 0)
    lengths = np.bincount(real.episode_ids)[real.episode_ids[ends]]
    if not np.all((real.terminals[ends] > 0) | (lengths >= gymnasium.spec(env_id).max_episode_steps - 1)):
        return None
    returns = np.bincount(real.episode_ids, weights=real.rewards)[np.unique(real.episode_ids)]
    try:
        return float(np.mean(normalized_score(env_id, returns)))
    except ValueError:  # no reference scores for this environment
        return None


def fidelity(config: ml_collections.ConfigDict, results: dict, workdir: str) -> Optional[dict]:
    """Headline figures of the run's fidelity reports (their mean over the denoisers, with `std` and
    `per_denoiser` beside it; one report's own figures for a shared denoiser or an augmentation) and
    the denoiser's size (none for augmentations)."""
    summary = results["fidelity"]
    if summary is None:
        return None
    report = read_json(os.path.join(offline.analysis_dirs(config, workdir)[0], REPORT_FILE), {})
    figures = summary["per_denoiser"][0] if len(summary["per_denoiser"]) == 1 else summary["mean"]
    return {**figures, "std": summary["std"], "per_denoiser": summary["per_denoiser"],
            "denoiser_params": report.get("compression", {}).get("denoiser_params")}


def plot(runs: List[dict], behaviour: Optional[float], path: str, title: str) -> None:
    fig, ax = plt.subplots(figsize=(max(4.5, 1.6 + 1.3 * len(runs)), 3.8))
    for i, run in enumerate(runs):
        score = run["final_normalized_score"]
        color = {"real": "tab:gray", "augmentation": "tab:orange"}.get(run["name"].split("-")[0], "tab:blue")
        ax.bar(i, score["mean"], yerr=score["std"], color=color, capsize=4, alpha=0.8)
        ax.scatter(np.full(len(score["per_seed"]), i), score["per_seed"], color="black", s=12, zorder=3)
    if behaviour is not None:
        ax.axhline(behaviour, color="tab:red", linestyle="--", label=f"dataset episodes ({behaviour:.1f})")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xticks(range(len(runs)), [run["name"].replace("-", "\n", 1) for run in runs], fontsize=8)
    ax.set_ylabel("normalised score")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    configs = run_configs()
    real_config, runs = configs[0][1], []
    if FLAGS.only:
        configs = [(name, config) for name, config in configs if name.startswith(tuple(FLAGS.only))]
        if not configs:
            raise app.UsageError(f"--only={','.join(FLAGS.only)} matches none of the runs.")
    for name, config in configs:
        workdir = os.path.join(FLAGS.workdir, name)
        print(f"== {name} ({workdir})", flush=True)
        results = offline.run(config, workdir)
        if name == "real":
            real_results = results
        trained_denoiser = name.startswith("synthetic")
        runs.append({"name": name, "diffusion": config.diffusion.to_dict() if trained_denoiser else None,
                     "augmentation": config.augmentation, "num_samples": None if name == "real" else config.num_samples,
                     "denoiser_protocol": results["denoiser_protocol"], "seeds": results["seeds"],
                     "final_normalized_score": results["final_normalized_score"],
                     "scores_by_step": results["scores_by_step"],
                     "stage_seconds": results["stage_seconds"], "fidelity": fidelity(config, results, workdir),
                     "command": results["command"]})
        score = results["final_normalized_score"]
        protocol = {"per_seed": " (one denoiser per seed)", "shared": " (one denoiser shared by the seeds)"}
        print(f"{name}: {score['mean']:.1f} +- {score['std']:.1f}{protocol.get(results['denoiser_protocol'], '')}; "
              "seconds per stage "
              + ", ".join(f"{stage} {seconds:.0f}" for stage, seconds in results["stage_seconds"].items()))

    if FLAGS.only:
        return
    real, env_id = load_real(real_config), real_results["env_id"]
    behaviour = dataset_episode_score(real, env_id)
    record = {**environment(), "config": FLAGS.config, "dataset": real_config.dataset, "env_id": env_id,
              "algorithm": real_config.algorithm, "num_real": len(real), "real_terminals": int(real.terminals.sum()),
              "dataset_episode_score": behaviour, "score_table": real_results["score_table"], "num_seeds": real_config.num_seeds,
              "agent_steps": real_results["num_updates"], "denoiser_per_seed": FLAGS.denoiser_per_seed,
              "note": FLAGS.note, "runs": runs}
    suffix = "" if FLAGS.algorithm == "td3_bc" else f"_{FLAGS.algorithm}"
    out = FLAGS.out or f"experiments/results/offline_{FLAGS.config}_{record['device'].split(':')[0]}{suffix}.json"
    write_json(out, record)
    seeds = "seeds, each with its own denoiser" if FLAGS.denoiser_per_seed else "seeds"
    plot(runs, behaviour, os.path.splitext(out)[0] + ".png",
         f"{real_config.algorithm} on {real_config.dataset}\n"
         f"{record['num_seeds']} {seeds}, {record['agent_steps']} updates, mean ± std over seeds")
    if any(len(run["scores_by_step"]["steps"]) > 1 for run in runs):
        plot_learning_curves({run["name"]: (run["scores_by_step"]["steps"], run["scores_by_step"]["per_seed"])
                              for run in runs}, os.path.splitext(out)[0] + "_curves.png", "agent updates",
                             "normalised score", f"{real_config.algorithm} on {real_config.dataset}")
    print(f"wrote {os.path.splitext(out)[0]}.png")


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS)
