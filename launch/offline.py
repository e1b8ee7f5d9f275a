"""Offline SynthER end to end (paper Section 4.1): upsample a dataset, train agents on it, score them.

    python -m launch.offline --config=configs/d4rl.py:walker2d --workdir=runs/walker2d

Stages, each leaving its output in the work directory so that a rerun resumes after the last
finished stage (and inside the diffusion and agent stages from their last checkpoint):
  (a) load the real dataset, subsampled to `real_fraction` (a default maze2d dataset is made first if absent);
  (b) train the diffusion model                         -> diffusion/
  (c) generate `num_samples` synthetic transitions       -> samples.npz, analysis/ (report.json, PNGs)
      (with `augmentation`, an explicit augmentation of the real data replaces (b) and (c); with
      `denoiser_per_seed`, one denoiser per agent seed, all trained and sampled as one vmapped
      program, each into samples/seed<i>.npz and analysis/seed<i>/);
  (d) train `num_seeds` agents as one vmapped program on the synthetic, real or mixed data (seed i
      on denoiser i's samples with `denoiser_per_seed`)  -> agent/
  (e) evaluate all seeds every `eval_every` updates on `eval_episodes` episodes in the real simulator
                                                         -> evaluations.json, metrics.jsonl, TensorBoard
  (f) results.json (the run's score, each seed's mean over its last 3 evaluations; per-seed and
      mean/std final normalised scores, the scores at every evaluation,
      each seed's agent and denoiser seed, the fidelity per denoiser, seconds per stage, the command
      line) and learning_curve.png.

Guided (`--config.guidance.condition=return` or `reward`): (b) trains on each real transition's
condition, computed on the loaded data before `real_fraction` cuts its episodes, and (c) prompts
every sample from the real top `guidance.top_frac`; the analysis adds `condition.json` and
`condition.png` (the condition of real against generated rows; a generated row's return-to-go is
that of its nearest real row), which results.json's `guidance` section repeats per denoiser.
"""
import os
from typing import Dict, List, Optional, Tuple

import jax
import ml_collections
import numpy as np
from absl import flags, logging

from agents import OFFLINE_LEARNERS
from configs import d4rl
from configs.checks import ConfigError
from launch import boundary
from launch.cli import INPUT_ERRORS, define_flags
from pipelines.synthesis import (denoiser_seeds, distill_model, guidance_condition, load_real, samples_paths,
                                 train_model, write_samples)
from pipelines.workdir import StageTimer, check_workdir, claim_workdir, command_line, metrics_writer
from synther_jax import augment, distributed, sharding
from synther_jax.analysis.fidelity_report import REPORT_FILE, analyze, headline_figures
from synther_jax.analysis.novelty import nearest_neighbours, standardize
from synther_jax.analysis.plots import plot_relevance
from synther_jax.analysis.protocol import run_score
from synther_jax.analysis.relevance_report import relevance_report
from synther_jax.atomic import read_json, write_json
from synther_jax.checkpoint import Checkpointer
from synther_jax.curves import plot_learning_curve
from synther_jax.data import Transitions, dataset_task, read_synthetic, write_synthetic
from synther_jax.data.maze2d_datasets import ensure_default_dataset
from synther_jax.diffusion import DiffusionConfig, edm
from synther_jax.diffusion.denoiser import parameter_count
from synther_jax.envs.evaluation import evaluate
from synther_jax.errors import DamagedFileError, InvalidDatasetError
from synther_jax.metrics import MetricsWriter
from synther_jax.progress import Progress
from synther_jax.scores import reference_scores
from synther_jax.termination import has_terminal_column

DEFAULT_AGENT_STEPS = {"td3_bc": 1_000_000, "iql": 1_000_000, "edac": 3_000_000}
CONDITION_FILE, CONDITION_PNG = "condition.json", "condition.png"
CONDITION_ROWS = 10_000  # generated rows whose condition the report estimates


def subsample_index(num: int, fraction: float, seed: int) -> Optional[np.ndarray]:
    """The sorted rows a uniform random `fraction` of `num` keeps (None: all of them)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"real_fraction must be in (0, 1], got {fraction}.")
    if fraction == 1.0:
        return None
    return np.sort(np.random.default_rng(seed).choice(num, max(2, round(fraction * num)), replace=False))


def subsample(real: Transitions, fraction: float, seed: int) -> Transitions:
    """A uniform random `fraction` of the transitions (paper Figure 4), in their original order."""
    keep = subsample_index(len(real), fraction, seed)
    if keep is None:
        return real
    arrays = {key: value[keep] for key, value in real.as_dict().items()}
    return Transitions(**arrays, metadata=dict(real.metadata or {}, real_fraction=fraction))


def training_data(config: ml_collections.ConfigDict, real: Transitions, workdir: str, timer: StageTimer,
                  metrics: MetricsWriter, condition: Optional[np.ndarray] = None) -> List[Transitions]:
    """Stages (b) and (c): the transitions the agents learn from, one dataset for all seeds, or
    with `denoiser_per_seed` one per agent seed (seed i: denoiser i's samples). A guided run
    passes each real transition's `condition`."""
    if config.data == "real":
        return [real]
    paths = samples_paths(config, workdir)
    denoiser_params = None
    if config.augmentation != "none":
        if distributed.is_main() and not os.path.exists(paths[0]):
            with timer("generate"):
                augmented = augment.augment(real, config.augmentation, config.seed, config.num_samples)
            write_synthetic(paths[0], augmented, source_dataset=config.dataset, config=config, seed=config.seed,
                            model_checkpoint=None, env_id=real.metadata.get("env_id"))
        distributed.barrier("augmented data written")
    else:
        diffusion = DiffusionConfig(**config.diffusion)
        row_dim = real.to_rows(has_terminal_column(config.terminals)).shape[1]
        denoiser_params = parameter_count(row_dim, diffusion.width, diffusion.depth, diffusion.dim_t,
                                          diffusion.layer_norm, diffusion.conditioning)
        if distributed.from_main(all(map(os.path.exists, paths))):  # finished: its model and checkpoints not needed
            logging.info("Using the synthetic data in %s (diffusion and generation finished earlier).",
                         ", ".join(paths))
        else:
            with timer("diffusion"):
                model = train_model(config, real, workdir, metrics, condition)
            if config.distill.num_steps:
                with timer("distill"):
                    model = distill_model(config, real, model, workdir)
            with timer("generate"):
                write_samples(config, real, model, workdir, condition)
    synthetic = [read_stage_output(path) for path in paths]
    analyzed = False
    # The analysis only writes files: process 0's work alone.
    folders = analysis_dirs(config, workdir) if distributed.is_main() else []
    for folder, data, seed in zip(folders, synthetic, denoiser_seeds(config)):
        if config.analyze and not os.path.exists(os.path.join(folder, REPORT_FILE)):
            with timer("analyze"):
                analyze(real, data, real.metadata.get("env_id"), folder, denoiser_params=denoiser_params,
                        sampler=None if denoiser_params is None else sampler_summary(config), seed=seed)
            analyzed = True
        if condition is not None and not os.path.exists(os.path.join(folder, CONDITION_FILE)):
            with timer("analyze"):
                write_condition_report(config, real, condition, data, folder, seed)
    if analyzed:  # at the denoiser's last training step, beside its loss curve
        step = 0 if denoiser_params is None else config.diffusion.num_train_steps
        write_fidelity_metrics(config, workdir, metrics, step)
    if config.data == "mixed":  # real and synthetic pooled into one dataset, sampled uniformly
        return [Transitions(**{key: np.concatenate([getattr(real, key), getattr(data, key)]) for key in real.as_dict()},
                            metadata=real.metadata) for data in synthetic]
    return synthetic


def generated_condition(config: ml_collections.ConfigDict, real: Transitions, condition: np.ndarray,
                        generated: Transitions) -> np.ndarray:
    """The condition of generated transitions: their reward, or the return-to-go of each one's
    nearest real transition (whole rows, in the real data's standardised space), which a single
    generated transition does not carry itself."""
    if config.guidance.condition == "reward":
        return generated.rewards
    rows = lambda data: data.to_rows(has_terminal_column(config.terminals)).astype(np.float64)
    real_rows, generated_rows = standardize(rows(real), rows(generated))
    _, nearest = nearest_neighbours(generated_rows, real_rows, progress=False)
    return condition[nearest]


def write_condition_report(config: ml_collections.ConfigDict, real: Transitions, condition: np.ndarray,
                           synthetic: Transitions, folder: str, seed: int) -> dict:
    """condition.json and condition.png in `folder`: the condition of the real rows against up to
    `CONDITION_ROWS` generated ones (`generated_condition`)."""
    rows = np.sort(np.random.default_rng(seed).permutation(len(synthetic))[:CONDITION_ROWS])
    report = relevance_report(condition, generated_condition(config, real, condition, synthetic.subset(rows)),
                              config.guidance.top_frac)
    os.makedirs(folder, exist_ok=True)
    write_json(os.path.join(folder, CONDITION_FILE), report)
    plot_relevance([report], [None], os.path.join(folder, CONDITION_PNG), f"{config.name}, guidance w = "
                   f"{config.guidance.scale}", "return-to-go" if config.guidance.condition == "return" else "reward")
    return report


def guidance_summary(config: ml_collections.ConfigDict, workdir: str) -> Optional[dict]:
    """results.json's guidance section: the settings and each denoiser's condition report."""
    if config.guidance.condition == "none":
        return None
    reports = [read_json(os.path.join(folder, CONDITION_FILE), None) for folder in analysis_dirs(config, workdir)]
    return {**config.guidance.to_dict(), "per_denoiser": reports}


def analysis_dirs(config: ml_collections.ConfigDict, workdir: str) -> List[str]:
    """Where each synthetic file's fidelity report goes: `analysis/`, or `analysis/seed<i>/` per denoiser."""
    if not config.denoiser_per_seed:
        return [os.path.join(workdir, "analysis")]
    return [os.path.join(workdir, "analysis", f"seed{i}") for i in range(config.num_seeds)]


def fidelity_summary(config: ml_collections.ConfigDict, workdir: str) -> Optional[dict]:
    """The headline figures of every synthetic file's fidelity report, and their mean and std over
    the denoisers (None where a figure is missing from any report); None without reports."""
    reports = [read_json(os.path.join(folder, REPORT_FILE), None) for folder in analysis_dirs(config, workdir)]
    if config.data == "real" or any(report is None for report in reports):
        return None
    figures = [headline_figures(report) for report in reports]

    def over_denoisers(statistic):
        return {name: None if any(f[name] is None for f in figures) else float(statistic([f[name] for f in figures]))
                for name in figures[0]}

    return {"per_denoiser": figures, "mean": over_denoisers(np.mean), "std": over_denoisers(np.std)}


def sampler_summary(config: ml_collections.ConfigDict) -> dict:
    """How the synthetic rows were drawn: the solver, its steps and churn, and the network
    evaluations per sample that set its cost; a distilled sampler names its teacher's solver."""
    diffusion = DiffusionConfig(**config.diffusion)
    solver = {"solver": diffusion.solver, "steps": diffusion.num_sample_steps, "S_churn": diffusion.S_churn,
              "network_evaluations": edm.network_evaluations(diffusion)}
    if not config.distill.num_steps:
        return solver
    steps = config.distill.num_steps
    return {"solver": "consistency_distilled", "steps": steps, "network_evaluations": steps, "teacher": solver}


def write_fidelity_metrics(config: ml_collections.ConfigDict, workdir: str, metrics: MetricsWriter,
                           step: int) -> None:
    """The fidelity reports' headline figures as one `fidelity` record at `step` (TensorBoard,
    metrics.jsonl, W&B): their mean over the denoisers, and with `denoiser_per_seed` each
    denoiser's as its seed's; a figure missing from any report is left out."""
    summary = fidelity_summary(config, workdir)
    if summary is None:
        return
    names = [name for name, value in summary["mean"].items() if value is not None]
    per_seed = ({name: [figures[name] for figures in summary["per_denoiser"]] for name in names}
                if config.denoiser_per_seed else None)
    metrics.write("fidelity", step, {name: summary["mean"][name] for name in names}, per_seed=per_seed)


def agent_dataset(data: List[Transitions]) -> Tuple[Dict[str, np.ndarray], bool]:
    """The arrays the agents draw minibatches from and whether they carry a leading seed axis (one
    dataset per seed: seed i learns only from `data[i]`)."""
    if len(data) == 1:
        return data[0].as_dict(), False
    return {key: np.stack([getattr(d, key) for d in data]) for key in data[0].as_dict()}, True


def read_stage_output(path: str) -> Transitions:
    """The synthetic data a finished stage wrote; DamagedFileError, saying to delete it, if it is damaged."""
    try:
        return read_synthetic(path)
    except InvalidDatasetError as error:
        raise DamagedFileError(f"{error} Delete {path} and rerun the same command: it generates the file again "
                               "(from the diffusion checkpoints when they are there).") from error


def init_agents(config: ml_collections.ConfigDict, real: Transitions, num_updates: int):
    """`num_seeds` fresh learners stacked on a leading seed axis; state and reward statistics come
    from the real data, as CORL computes them, whatever the agents then train on."""
    learner = OFFLINE_LEARNERS[config.algorithm][0]
    statistics = learner.data_statistics(real.observations, real.rewards, real.terminals,
                                         dataset_task(config.dataset) or "", num_updates)
    keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 2), config.num_seeds)
    return learner.init_seeds(keys, real.obs_dim, real.action_dim, **config[config.algorithm], **statistics)


def train_agents(config: ml_collections.ConfigDict, real: Transitions, data: List[Transitions], env_id: str,
                 workdir: str, metrics: MetricsWriter, timer: StageTimer) -> List[dict]:
    """Stages (d) and (e): updates in jitted chunks of `eval_every`, each followed by an evaluation
    of every seed and a checkpoint, under a progress bar. `data` holds one dataset for all seeds or
    one per seed. Returns the evaluation history."""
    learner = OFFLINE_LEARNERS[config.algorithm][0]
    num_updates = config.agent_steps or DEFAULT_AGENT_STEPS[config.algorithm]
    states = init_agents(config, real, num_updates)
    dataset, per_seed = agent_dataset(data)
    seed_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 3), config.num_seeds)

    evaluations_path = os.path.join(workdir, "evaluations.json")
    evaluations = read_json(evaluations_path, [])
    if distributed.from_main(bool(evaluations) and evaluations[-1]["step"] >= num_updates):  # finished: no checkpoint
        logging.info("The agents finished their %d updates earlier; writing the results from %s.", num_updates,
                     evaluations_path)
        return evaluations
    checkpointer = Checkpointer(os.path.join(workdir, "agent"))
    step, evaluations = 0, []
    restored = checkpointer.restore_latest({"states": states})
    if restored is not None:
        step, states = restored[0], restored[1]["states"]
        # Evaluations written after the last checkpoint belong to the crashed run's future.
        evaluations = [e for e in read_json(evaluations_path, []) if e["step"] <= step]
        logging.info("Resumed the agents in %s at update %d of %d.", checkpointer.directory, step, num_updates)

    # Seeds are split across the local devices (data parallel over the seed axis), a shared dataset
    # copied to each, per-seed datasets split with their seeds.
    mesh = sharding.mesh_for_axis(config.num_seeds)
    states, seed_keys = sharding.shard_leading_axis((states, seed_keys), mesh)
    dataset = sharding.shard_leading_axis(dataset, mesh) if per_seed else sharding.replicate(dataset, mesh)
    # The bar closes before an error reaches the launcher, so the error stays the last line.
    with Progress(num_updates, "agent training", unit="update", initial=step) as bar:
        while step < num_updates:
            num_steps = min(config.eval_every, num_updates - step)
            keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(seed_keys, step)
            with timer("agent"):
                states, update_metrics = jax.block_until_ready(learner.update_steps_seeds(
                    states, dataset, keys, num_steps=num_steps, batch_size=config.batch_size,
                    dataset_per_seed=per_seed))
            update_metrics = {name: sharding.to_host(values) for name, values in update_metrics.items()}
            step += num_steps
            bar.clear()  # the log lines below start on a line of their own; the bar is redrawn after them
            with timer("evaluate"):
                result = evaluate(learner.act, states, env_id, config.eval_episodes,
                                  seed=config.seed * 1_000_003 + step)
            evaluations.append({"step": step, "returns": result.seed_returns.tolist(),
                                "scores": None if result.seed_scores is None else result.seed_scores.tolist()})
            write_json(evaluations_path, evaluations)
            checkpointer.save(step, {"states": states})
            metrics.write("agent", step, {k: float(np.mean(v)) for k, v in update_metrics.items()},
                          per_seed=update_metrics)
            summary = result.summary()
            metrics.write("eval", step, summary, per_seed={"return": result.seed_returns, "score": result.seed_scores})
            logging.info("updates %d/%d: return %.1f +- %.1f%s", step, num_updates, summary["return_mean"],
                         summary["return_std"], "" if result.scores is None else
                         f", normalised score {summary['score_mean']:.1f} +- {summary['score_std']:.1f}")
            shown = "return" if result.scores is None else "score"
            bar.set_postfix(**{shown: f"{summary[shown + '_mean']:.1f}"})
            bar.update(num_steps)
    checkpointer.close()
    return evaluations


def write_results(config: ml_collections.ConfigDict, env_id: str, evaluations: List[dict], timer: StageTimer,
                  workdir: str) -> dict:
    """Stage (f): results.json (with every evaluation's per-seed normalised scores, or returns where
    the environment has none) and learning_curve.png of them.

    `score` is the run's score by the evaluation protocol that `launch.compare` reads: each seed's
    mean over the last 3 evaluations (`synther_jax.analysis.protocol`); `final_normalized_score`
    stays the last evaluation alone. results.json says which denoiser protocol made the data
    (`denoiser_protocol`: "shared", "per_seed", or None without a denoiser), and per agent seed i
    (`seeds`) its agent seed (agent i draws the i-th of `num_seeds` keys split from it), its
    denoiser seed and its samples file; `fidelity` holds each denoiser's headline figures and their
    spread; `command` the command line that made the run (kept when a later command only reads the
    finished run back).
    """
    final = evaluations[-1]
    scores = final["scores"] is not None
    curve = {"steps": [e["step"] for e in evaluations],
             "per_seed": [e["scores" if scores else "returns"] for e in evaluations]}
    try:
        score_table = reference_scores(env_id).table
    except ValueError:
        score_table = None

    def stats(values):
        return None if values is None else {"per_seed": values, "mean": float(np.mean(values)),
                                            "std": float(np.std(values))}

    denoiser = config.data != "real" and config.augmentation == "none"
    paths = [None] if config.data == "real" else samples_paths(config, workdir)
    files = paths if config.denoiser_per_seed else paths * config.num_seeds  # agent seed i's samples
    seeds = [{"agent": i, "agent_seed": config.seed, "denoiser_seed": denoiser_seed if denoiser else None,
              "samples": None if path is None else os.path.relpath(path, workdir)}
             for i, (denoiser_seed, path) in enumerate(zip(denoiser_seeds(config), files))]
    results = {
        "name": config.name, "dataset": config.dataset, "env_id": env_id, "algorithm": config.algorithm,
        "data": config.data, "augmentation": config.augmentation, "real_fraction": config.real_fraction,
        "num_seeds": config.num_seeds, "num_updates": final["step"], "score_table": score_table,
        "denoiser_protocol": None if not denoiser else "per_seed" if config.denoiser_per_seed else "shared",
        "seeds": seeds, "score": run_score(curve["steps"], curve["per_seed"], config.eval_episodes,
                                           "D4RL-normalised score" if scores else "return"),
        "final_normalized_score": stats(final["scores"]), "final_return": stats(final["returns"]),
        "scores_by_step": curve, "fidelity": fidelity_summary(config, workdir),
        "sampler": sampler_summary(config) if denoiser else None,
        "guidance": guidance_summary(config, workdir), "stage_seconds": timer.seconds,
        # A rerun of a finished run only reads it back: the command that made it stays recorded.
        "command": read_json(os.path.join(workdir, "results.json"), {}).get("command") or command_line(),
    }
    write_json(os.path.join(workdir, "results.json"), results)
    plot_learning_curve(curve["steps"], curve["per_seed"], os.path.join(workdir, "learning_curve.png"), "agent updates",
                        "D4RL-normalised score" if scores else "return",
                        f"{config.algorithm} on {config.data} data, {config.name}")
    return results


def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The whole pipeline; returns what it writes to results.json.

    The config is checked (`configs.d4rl.validate`) and the real data loaded before the work
    directory is touched, so a bad config or a missing dataset leaves nothing behind.
    """
    config = d4rl.validate(config)
    check_workdir(workdir)
    load_timer = StageTimer()
    with load_timer("load"):
        ensure_default_dataset(config.dataset)  # maze2d: our default data is made on first use
        loaded = load_real(config)
        real = subsample(loaded, config.real_fraction, config.seed)
        condition = guidance_condition(config, loaded)  # on whole episodes, before the subsample cuts them
        keep = subsample_index(len(loaded), config.real_fraction, config.seed)
        if condition is not None and keep is not None:
            condition = condition[keep]
    env_id = real.metadata.get("env_id")
    if env_id is None:
        raise ConfigError(f"The dataset {config.dataset!r} does not say which environment it comes from; "
                          "set --config.env_id (e.g. Walker2d-v4 for D4RL v2 data).")
    with claim_workdir(workdir, config):
        timer = StageTimer(path=os.path.join(workdir, "stage_seconds.json"))
        timer.add("load", load_timer.seconds["load"])
        metrics = metrics_writer(config, workdir)
        data = training_data(config, real, workdir, timer, metrics, condition)
        evaluations = train_agents(config, real, data, env_id, workdir, metrics, timer)
        metrics.close()
        return write_results(config, env_id, evaluations, timer, workdir)


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    distributed.initialize()
    results = run(FLAGS.config, FLAGS.workdir)
    score = results["final_normalized_score"] or results["final_return"]
    print(f"{results['algorithm']} on {results['data']} data ({results['name']}): final "
          f"{'normalised score' if results['final_normalized_score'] else 'return'} "
          f"{score['mean']:.1f} +- {score['std']:.1f} over {results['num_seeds']} seeds; "
          f"results in {os.path.join(FLAGS.workdir, 'results.json')}")


if __name__ == "__main__":
    define_flags("configs/d4rl.py:walker2d")
    boundary.run(main, INPUT_ERRORS)
