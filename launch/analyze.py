"""Is the synthetic data good? Fidelity, novelty, physical validity and compression in one command.

    python -m launch.analyze --dataset=bundled/walker2d-medium-replay --samples=DIR/samples.npz --out=DIR

writes DIR/report.json and the PNGs described in `synther_jax.analysis.fidelity_report`. `--dataset` is
anything `synther_jax.data.load_dataset` reads (a bundled name, a D4RL name or file, a Minari id,
an `.npz` with the five keys). The environment for the physical-validity check comes from
`--env_id`, else from the dataset's or the samples' metadata. The denoiser's parameter count (for
the compression figure) comes from `--denoiser_params`, else from the denoiser config recorded in
the samples' metadata, else from `--denoiser_width/depth/dim_t` (the paper's 1024/6/128).
"""
import json

from absl import app, flags

from launch import boundary
from launch.cli import INPUT_ERRORS
from pipelines.workdir import check_workdir
from synther_jax.analysis.fidelity_report import analyze
from synther_jax.augment import AUGMENTATIONS
from synther_jax.data import Transitions, load_dataset, read_synthetic
from synther_jax.diffusion.denoiser import parameter_count
from synther_jax.termination import has_terminal_column, recorded_terminals

flags.DEFINE_string("dataset", None, "The real dataset the generator was trained on.", required=True)
flags.DEFINE_string("samples", None, "The synthetic transitions (samples.npz).", required=True)
flags.DEFINE_string("out", None, "Folder for report.json and the PNGs.", required=True)
flags.DEFINE_string("env_id", None, "Gymnasium id of the data's environment, e.g. Walker2d-v5 (default: metadata).")
flags.DEFINE_integer("denoiser_params", None, "The denoiser's parameter count (default: metadata, else the widths).")
flags.DEFINE_integer("denoiser_width", 1024, "Denoiser width, used when no parameter count is known.")
flags.DEFINE_integer("denoiser_depth", 6, "Denoiser depth (residual blocks), used when no parameter count is known.")
flags.DEFINE_integer("denoiser_dim_t", 128, "Denoiser time-embedding size, used when no parameter count is known.")
flags.DEFINE_list("baselines", list(AUGMENTATIONS), f"Augmentations to compare with, from {list(AUGMENTATIONS)}.")
flags.DEFINE_integer("fidelity_rows", 100_000, "Rows per side for the marginal and correlation scores.", lower_bound=2)
flags.DEFINE_integer("physics_rows", 10_000, "Rows per source for novelty and the simulator check.", lower_bound=1)
flags.DEFINE_enum("correlation", "spearman", ["spearman", "pearson"], "Correlation for the correlation score.")
flags.DEFINE_integer("seed", 0, "Seed for subsets and augmentations.")
FLAGS = flags.FLAGS


def count_denoiser_params(real: Transitions, samples_metadata: dict) -> int:
    """--denoiser_params if given, else from the denoiser config that generated the samples
    (launch.synthesize records it), else from the --denoiser_* flags."""
    if FLAGS.denoiser_params:
        return FLAGS.denoiser_params
    config = samples_metadata.get("config") or {}
    denoiser = config.get("diffusion") or {}
    width = denoiser.get("width", FLAGS.denoiser_width)
    depth = denoiser.get("depth", FLAGS.denoiser_depth)
    dim_t = denoiser.get("dim_t", FLAGS.denoiser_dim_t)
    row_dim = 2 * real.obs_dim + real.action_dim + 1 + int(has_terminal_column(recorded_terminals(config)))
    return parameter_count(row_dim, width, depth, dim_t, denoiser.get("layer_norm", False))


def main(_):
    unknown = set(FLAGS.baselines) - set(AUGMENTATIONS)
    if unknown:
        raise app.UsageError(f"--baselines: unknown {sorted(unknown)}; choose from {sorted(AUGMENTATIONS)}.")
    check_workdir(FLAGS.out, "--out")
    real = load_dataset(FLAGS.dataset, env_id=FLAGS.env_id)
    synthetic = read_synthetic(FLAGS.samples)
    env_id = FLAGS.env_id or real.metadata.get("env_id") or synthetic.metadata.get("env_id")
    denoiser_params = count_denoiser_params(real, synthetic.metadata)
    report = analyze(real, synthetic, env_id, FLAGS.out, denoiser_params=int(denoiser_params),
                     baselines=FLAGS.baselines, seed=FLAGS.seed, fidelity_rows=FLAGS.fidelity_rows,
                     physics_rows=FLAGS.physics_rows, correlation_method=FLAGS.correlation)
    headline = {key: report[key] for key in ("env_id", "marginal_score", "correlation_score")}
    if "real_dynamics" in report:
        headline["real_dynamics_mse_mean"] = report["real_dynamics"].get("dynamics_mse_mean")
    headline["terminal_consistency"] = report.get("terminal_consistency")
    for name, source in report["sources"].items():
        dynamics = source.get("dynamics", {})
        headline[f"{name}_dynamics_mse_mean"] = dynamics.get("dynamics_mse_mean")
        headline[f"{name}_min_distance_median"] = source["min_distance_median"]
    print(json.dumps(headline, indent=2))
    print(f"Wrote {FLAGS.out}/report.json and {', '.join(report['plots'])}.")


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS, resumes=False, one_process=True)
