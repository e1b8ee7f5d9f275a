"""Online arms for one environment, as in the paper's Figure 6: evaluation return against environment
steps for SAC at UTD 1, SAC(SynthER) at UTD 20 and, optionally, REDQ at UTD 20 and PGR (SynthER's
generator guided towards curious transitions, at UTD 20 on a denoiser of the same size), each with
several seeds. It makes the results of `experiments.figure6_hopper` and
`experiments.pgr_cheetah_run`, whose results JSONs record the commands.

    python -m experiments.online_arms --workdir=runs/figure6-hopper                 # the paper's setting (GPU)
    python -m experiments.online_arms --env=cheetah-run --variants=sac,synther,pgr --workdir=DIR
    python -m experiments.online_arms --smoke --workdir=DIR --out=F.json              # about a minute

Every variant is one `pipelines.online_loop.train` run (configs/online.py:<env>-<variant>) in
`<workdir>/<variant>`, with its seeds vmapped in one process, so a rerun resumes and a finished run
is only read back. Flags left unset keep the config's values: the paper's 100K environment steps
(200K on DMC), retraining every 10K steps, the online denoiser (width 1024, depth 6, 100K steps)
and 1M samples.

The JSON at `--out` is rewritten after every variant, and a variant that an earlier JSON there
records as finished with the very same config is kept without its work directory: a figure too
long to make in one go is made a variant at a time, the JSON committed after each.

With `--max_hours`, a variant still running when the budget is spent stops at its next evaluation
and checkpoints there, and the variants after it do not start; the JSON records the steps each
variant reached (`env_steps`), and a rerun without the flag goes on from there.

Then, so that the curves can be read against the quality of the data each synthesizing variant
trained on, one more denoiser of the run's size is fitted to the first seed's final real data (what
a retrain at the end would see; guided runs label those rows with their relevance under that
seed's final learners and prompt from the top fraction), its samples are compared with that data
by the fidelity report, and the headline figures go into that variant's `fidelity`. A guided
variant also records the relevance of real against generated rows at every retrain
(`relevance`). The JSON holds the device, versions, scale, per-variant evaluation curves (per
seed) and stage timings; a PNG of the curves (mean and std over seeds) goes beside it, and for
each guided variant `<out>_<variant>_relevance_seed<i>.png`, its real and generated relevance.
"""
import json
import os
import time
from typing import Optional

import jax
import numpy as np
from absl import flags, logging

from bench.timing import environment, parse_denoiser, write_json
from configs import online as online_configs
from launch import boundary
from launch.cli import INPUT_ERRORS
from pipelines import online_loop, online_synthesis
from synther_jax.analysis.fidelity_report import REPORT_FILE, analyze, headline_figures
from synther_jax.atomic import read_json
from synther_jax.curves import plot_learning_curves
from synther_jax.termination import has_terminal_column, rule_for_env, synthetic_transitions

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line; defined only when run as a program, so tests can import the module's functions
    beside launchers that define flags of the same names."""
    flags.DEFINE_string("env", "hopper",
                        "Environment short name of configs/online.py (hopper, walker2d, cheetah-run...).")
    flags.DEFINE_list("variants", ["sac", "synther"], "Variants of configs/online.py: sac (UTD 1), synther, redq, pgr "
                      "(synther guided by curiosity, same denoiser).")
    flags.DEFINE_integer("num_seeds", 4, "Seeds per variant, vmapped in one process (the paper: 4).")
    flags.DEFINE_integer("total_steps", None, "Environment steps (default: the config's, 100K for Gym tasks).")
    flags.DEFINE_integer("retrain_every", None, "Environment steps between diffusion retrains (default: 10K).")
    flags.DEFINE_string("denoiser", None, "WIDTHxDEPTH:TRAIN_STEPS of the online denoiser (default: the config's).")
    flags.DEFINE_integer("num_samples", None, "Synthetic transitions per retrain (default: the config's, 1M).")
    flags.DEFINE_integer("eval_every", None, "Environment steps between evaluations (default: the config's, 5000).")
    flags.DEFINE_integer("eval_episodes", None, "Episodes per seed and evaluation (default: the config's, 10).")
    flags.DEFINE_integer("fidelity_samples", 20_000, "Samples of the extra denoiser scored by the fidelity report.")
    flags.DEFINE_float("max_hours", None, "Wall-clock budget of this process: a variant still running after it stops "
                       "at its next evaluation (checkpointed, so a rerun without it goes on) and the later ones do not "
                       "start; the JSON records where each stopped.")
    flags.DEFINE_string("note", None, "Free text recorded in the JSON, e.g. why this scale was chosen.")
    flags.DEFINE_bool("smoke", False, "The configs' smoke size: every variant in about a minute on a CPU.")
    flags.DEFINE_string("workdir", None, "Where the runs live; rerun to resume.")
    flags.DEFINE_string("out", None, "JSON file (default: experiments/results/online_curves_<env>_<platform>.json); "
                                     "the plot is written beside it as .png.")
    flags.mark_flag_as_required("workdir")


def variant_config(variant: str):
    config = online_configs.get_config(f"{FLAGS.env}-{variant}{',smoke' if FLAGS.smoke else ''}")
    config.num_seeds = FLAGS.num_seeds
    for field in ("total_steps", "eval_every", "eval_episodes"):
        if getattr(FLAGS, field) is not None:
            config[field] = getattr(FLAGS, field)
    if FLAGS.retrain_every is not None:
        config.synther.retrain_every = FLAGS.retrain_every
    if FLAGS.num_samples is not None:
        config.synther.update(num_samples=FLAGS.num_samples, capacity=FLAGS.num_samples)
    if FLAGS.denoiser is not None:
        width, depth, steps = parse_denoiser(FLAGS.denoiser)
        config.synther.diffusion.update(width=width, depth=depth, num_train_steps=steps)
    return config


def data_fidelity(config, result: online_loop.TrainResult, out_dir: str) -> dict:
    """The fidelity report of one more denoiser of the run's size, fitted to the first seed's final
    real data and sampled as the run samples (guided runs: conditioned on each real row's relevance
    under that seed's final learners, prompted from its top `top_frac` at the run's guidance
    scale); resumes: a finished report is read back."""
    real = result.real_data[0]
    report = read_json(os.path.join(out_dir, REPORT_FILE), None)
    if report is None:
        fidelity_config = config.copy_and_resolve_references()
        fidelity_config.synther.num_samples = FLAGS.fidelity_samples
        synthesize = online_synthesis.make_synthesizer(fidelity_config, progress=False)
        rows = real.to_rows(has_terminal_column(config.synther.terminals))[None]
        key = jax.random.PRNGKey(config.seed)[None]
        if config.guidance.condition == "none":
            generated = synthesize(rows, key)
        else:
            first_seed = lambda tree: jax.tree.map(lambda x: x[:1], tree)
            condition = online_loop.label_seeds(config.guidance.condition, first_seed(result.agent_state),
                                                first_seed(result.curiosity_models), online_loop.seed_batches([real]))
            generated = synthesize(rows, key, np.asarray(condition))
        synthetic = synthetic_transitions(generated[0], real.obs_dim, real.action_dim, config.synther.terminals, 0.5,
                                          rule_for_env(config.env_name))
        report = analyze(real, synthetic, config.env_name, out_dir, seed=config.seed, baselines=(),
                         fidelity_rows=FLAGS.fidelity_samples, physics_rows=min(5_000, FLAGS.fidelity_samples))
    return {"real_rows": len(real), **headline_figures(report)}


def finished_run(previous: Optional[dict], variant: str, config) -> Optional[dict]:
    """`variant`'s record in an earlier JSON at `--out` if that run finished with this very config
    (so a long figure can be made a variant at a time, its JSON committed after each), else None."""
    run = (previous or {}).get("runs", {}).get(variant)
    if run is None or run["env_steps"] < config.total_steps:
        return None
    return run if run["config"] == json.loads(json.dumps(config.to_dict())) else None


def run_variant(variant: str, config, deadline: Optional[float]) -> dict:
    """Trains (or resumes) one variant in `<workdir>/<variant>`; its JSON record, with each
    synthesizing variant's fidelity and each guided one's relevance records."""
    out_of_time = None if deadline is None else (lambda env_step, mean_return, states: time.monotonic() > deadline)
    result = online_loop.train(config, os.path.join(FLAGS.workdir, variant),
                               synthesize=online_synthesis.make_synthesizer(config), on_eval=out_of_time)
    agent = config.agent
    run = {"label": f"{variant} (UTD {agent.utd_ratio}, {agent.num_qs} Qs)", "config": config.to_dict(),
           "env_steps": result.env_steps, "evaluations": result.evaluations, "timings": result.timings}
    if config.synther.enabled and result.env_steps >= config.total_steps:
        run["fidelity"] = data_fidelity(config, result, os.path.join(FLAGS.workdir, f"fidelity-{variant}"))
    relevance = online_loop.relevance_summary(config, result.relevance)
    if relevance is not None:
        run["relevance"] = relevance
    final = result.evaluations[-1]
    print(f"{variant}: final return {final['mean_return']:.1f} +- {final['std_return']:.1f}", flush=True)
    return run


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    deadline = None if FLAGS.max_hours is None else time.monotonic() + 3600 * FLAGS.max_hours
    record = {**environment(), "env": FLAGS.env, "num_seeds": FLAGS.num_seeds, "smoke": FLAGS.smoke, "note": FLAGS.note,
              "runs": {}}
    out = FLAGS.out or f"experiments/results/online_curves_{FLAGS.env}_{record['device'].split(':')[0]}.json"
    previous = read_json(out, None)
    out_of_time = False  # set once a variant stops short: the later ones are not started
    for variant in FLAGS.variants:
        config = variant_config(variant)
        kept = finished_run(previous, variant, config)
        if kept is not None:
            print(f"== {variant}: finished in {out}, kept", flush=True)
            record["runs"][variant] = kept
        elif out_of_time:
            print(f"== {variant}: not started, --max_hours is spent", flush=True)
            continue
        else:
            print(f"== {variant} ({os.path.join(FLAGS.workdir, variant)})", flush=True)
            record["runs"][variant] = run_variant(variant, config, deadline)
            out_of_time = record["runs"][variant]["env_steps"] < config.total_steps
        if config.synther.enabled:
            record["denoiser"] = {key: config.synther.diffusion[key] for key in ("width", "depth", "num_train_steps")}
        write_json(out, record)  # after every variant, so each finished one can be committed
    write_plots(record, os.path.splitext(out)[0])


def write_plots(record: dict, stem: str) -> None:
    """`<stem>.png`, every variant's curve (mean and std over seeds); for each guided variant,
    `<stem>_<variant>_relevance_seed<i>.png`, real against generated relevance at each retrain."""
    runs = record["runs"]
    curves = {run["label"]: ([e["env_step"] for e in run["evaluations"]], [e["returns"] for e in run["evaluations"]])
              for run in runs.values()}
    plot_learning_curves(curves, stem + ".png", "environment steps", "evaluation return", record["env"])
    print(f"wrote {stem}.png")
    for variant, run in runs.items():
        if "relevance" in run:
            for path in online_loop.plot_relevance_per_seed(run["relevance"], f"{record['env']} {variant}",
                                                            f"{stem}_{variant}_relevance_seed"):
                print(f"wrote {path}")


if __name__ == "__main__":
    define_flags()
    boundary.run(main, INPUT_ERRORS)
