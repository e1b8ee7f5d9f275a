"""The paper's Figure 6 for one environment: evaluation return against environment steps for SAC at
UTD 1, SAC(SynthER) at UTD 20 and, optionally, REDQ at UTD 20, each with several seeds.

    python -m bench.online_curves --workdir=runs/figure6-hopper                   # the paper's setting (GPU)
    python -m bench.online_curves --env=hopper --num_seeds=3 --total_steps=30000 --retrain_every=10000 \\
        --denoiser=256x3:10000 --num_samples=100000 --max_hours=H --workdir=runs/figure6-hopper-cpu \\
        --out=bench/results/online_curves_hopper_cpu.json                          # the committed CPU run
    python -m bench.online_curves --smoke --workdir=DIR --out=F.json                   # about a minute

The committed CPU run (`bench/results/online_curves_hopper_cpu.json`) ran the CPU-sized flags above
in stretches: SynthER was stopped by `--max_hours` at its 15K-step checkpoint, then resumed to 30K
steps; the fidelity of the extra denoiser was measured in the first stretch, on 15K real rows.

Every variant is one `launch.online_loop.train` run (configs/online.py:<env>-<variant>) in
`<workdir>/<variant>`, with its seeds vmapped in one process, so a rerun resumes and a finished run
is only read back. Flags left unset keep the config's values: the paper's 100K environment steps,
retraining every 10K steps, the online denoiser (width 1024, depth 6, 100K steps) and 1M samples.

With `--max_hours`, a variant still running when the budget is spent stops at its next evaluation
and checkpoints there; the JSON records the steps each variant reached (`env_steps`), and a rerun
without the flag goes on from there.

Then, so that the curves can be read against the quality of the data SynthER trained on, one more
denoiser of the run's size is fitted to the first seed's final real data (what a retrain at the
end would see), its samples are compared with that data by the fidelity report, and the headline
figures go into the JSON. The JSON holds the device, versions, scale, per-variant evaluation curves (per seed)
and stage timings; a PNG of the curves (mean and std over seeds) goes beside it.
"""
import os
import time
from typing import Optional

import jax
from absl import flags, logging

from bench.common import environment, parse_denoiser, write_json
from configs import online as online_configs
from launch import boundary
from launch.common import INPUT_ERRORS
from launch import online_loop
from synther_jax.analysis.report import REPORT_FILE, analyze, headline_figures
from synther_jax.atomic import read_json
from synther_jax.curves import plot_learning_curves
from synther_jax.data import Transitions
from synther_jax.diffusion import DiffusionConfig, generate, train_diffusion

FLAGS = flags.FLAGS
flags.DEFINE_string("env", "hopper", "Environment short name of configs/online.py (hopper, walker2d, cheetah-run...).")
flags.DEFINE_list("variants", ["sac", "synther"], "Variants of configs/online.py: sac (UTD 1), synther, redq.")
flags.DEFINE_integer("num_seeds", 4, "Seeds per variant, vmapped in one process (the paper: 4).")
flags.DEFINE_integer("total_steps", None, "Environment steps (default: the config's, 100K for Gym tasks).")
flags.DEFINE_integer("retrain_every", None, "Environment steps between diffusion retrains (default: 10K).")
flags.DEFINE_string("denoiser", None, "WIDTHxDEPTH:TRAIN_STEPS of the online denoiser (default: the config's).")
flags.DEFINE_integer("num_samples", None, "Synthetic transitions per retrain (default: the config's, 1M).")
flags.DEFINE_integer("eval_every", None, "Environment steps between evaluations (default: the config's, 5000).")
flags.DEFINE_integer("eval_episodes", None, "Episodes per seed and evaluation (default: the config's, 10).")
flags.DEFINE_integer("fidelity_samples", 20_000, "Samples of the extra denoiser scored by the fidelity report.")
flags.DEFINE_float("max_hours", None, "Wall-clock budget of this process: a variant still running after it stops at "
                   "its next evaluation (checkpointed, so a rerun without it goes on); the JSON records where.")
flags.DEFINE_string("note", None, "Free text recorded in the JSON, e.g. why this scale was chosen.")
flags.DEFINE_bool("smoke", False, "The configs' smoke size: every variant in about a minute on a CPU.")
flags.DEFINE_string("workdir", None, "Where the runs live; rerun to resume.")
flags.DEFINE_string("out", None, "JSON file (default: bench/results/online_curves_<env>_<platform>.json); "
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


def data_fidelity(config, real: Transitions, out_dir: str) -> Optional[dict]:
    """The fidelity report of one denoiser of the run's size fitted to `real` (resumes: a finished
    report is read back)."""
    report = read_json(os.path.join(out_dir, REPORT_FILE), None)
    if report is None:
        synther = config.synther
        skip = online_loop.skip_norm_dims(real.obs_dim, real.action_dim, synther.modelled_terminals,
                                     synther.normalise_reward)
        train_key, sample_key = jax.random.split(jax.random.PRNGKey(config.seed))
        model = train_diffusion(real.to_rows(synther.modelled_terminals), DiffusionConfig(**synther.diffusion),
                                train_key, skip)
        rows = generate(model, FLAGS.fidelity_samples, sample_key)
        synthetic = Transitions.from_rows(rows, real.obs_dim, real.action_dim, synther.modelled_terminals, 0.5)
        report = analyze(real, synthetic, config.env_name, out_dir, seed=config.seed, baselines=(),
                         fidelity_rows=FLAGS.fidelity_samples, physics_rows=min(5_000, FLAGS.fidelity_samples))
    return {"real_rows": len(real), **headline_figures(report)}


def main(argv):
    del argv
    logging.set_verbosity(logging.WARNING)
    runs, synther_config, synther_result = {}, None, None
    deadline = None if FLAGS.max_hours is None else time.monotonic() + 3600 * FLAGS.max_hours
    out_of_time = None if deadline is None else (lambda env_step, mean_return, states: time.monotonic() > deadline)
    for variant in FLAGS.variants:
        config = variant_config(variant)
        print(f"== {variant} ({os.path.join(FLAGS.workdir, variant)})", flush=True)
        result = online_loop.train(config, os.path.join(FLAGS.workdir, variant),
                                   synthesize=online_loop.make_synthesizer(config), on_eval=out_of_time)
        agent = config.agent
        runs[variant] = {"label": f"{variant} (UTD {agent.utd_ratio}, {agent.num_qs} Qs)", "config": config.to_dict(),
                         "env_steps": result.env_steps, "evaluations": result.evaluations, "timings": result.timings}
        if config.synther.enabled:
            synther_config, synther_result = config, result
        final = result.evaluations[-1]
        print(f"{variant}: final return {final['mean_return']:.1f} +- {final['std_return']:.1f}", flush=True)

    record = {**environment(), "env": FLAGS.env, "num_seeds": FLAGS.num_seeds, "smoke": FLAGS.smoke, "note": FLAGS.note,
              "runs": runs}
    if synther_config is not None:
        record["denoiser"] = {key: synther_config.synther.diffusion[key] for key in ("width", "depth", "num_train_steps")}
        record["denoiser_fidelity"] = data_fidelity(synther_config, synther_result.real_data[0],
                                                    os.path.join(FLAGS.workdir, "fidelity"))
    out = FLAGS.out or f"bench/results/online_curves_{FLAGS.env}_{record['device'].split(':')[0]}.json"
    write_json(out, record)
    curves = {run["label"]: ([e["env_step"] for e in run["evaluations"]], [e["returns"] for e in run["evaluations"]])
              for run in runs.values()}
    plot_learning_curves(curves, os.path.splitext(out)[0] + ".png", "environment steps", "evaluation return",
                         FLAGS.env)
    print(f"wrote {os.path.splitext(out)[0]}.png")


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS)
