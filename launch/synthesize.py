"""Train the diffusion model on a dataset and upsample it (the original's `train_diffuser.py`).

    python -m launch.synthesize --config=configs/d4rl.py:walker2d --workdir=runs/walker2d

Writes into the work directory: `config.json`, `diffusion/` (checkpoints of the denoiser, its EMA
and the normaliser), `metrics.jsonl` and TensorBoard files, and `samples.npz` with the original's
keys (observations, actions, rewards, next_observations, terminals; float32, terminals
thresholded). Rerunning the command resumes training from the last checkpoint and skips what is
already finished.
"""
import os

import jax
import ml_collections
from absl import flags

from configs import d4rl
from launch import boundary
from launch.common import INPUT_ERRORS, check_workdir, claim_workdir, define_flags, metrics_writer
from synther_jax import sharding
from synther_jax.data import InvalidDatasetError, SyntheticWriter, Transitions, load_dataset
from synther_jax.diffusion import Diffusion, DiffusionConfig, iterate_samples, train_diffusion
from synther_jax.metrics import MetricsWriter

SAMPLES_FILE = "samples.npz"


def train_model(config: ml_collections.ConfigDict, real: Transitions, workdir: str,
                metrics: MetricsWriter) -> Diffusion:
    """Stage: fit the denoiser to the real transitions (resumes from `workdir/diffusion`)."""
    rows = real.to_rows(config.modelled_terminals)
    skip_norm_dims = (rows.shape[1] - 1,) if config.modelled_terminals else ()
    return train_diffusion(rows, DiffusionConfig(**config.diffusion), jax.random.PRNGKey(config.seed), skip_norm_dims,
                           workdir=os.path.join(workdir, "diffusion"),
                           log_fn=lambda step, m: metrics.write("diffusion", step, m), mesh=sharding.auto_mesh())


def write_samples(config: ml_collections.ConfigDict, real: Transitions, model: Diffusion, workdir: str) -> str:
    """Stage: generate `config.num_samples` transitions into `workdir/samples.npz`.

    The writer streams chunks to disk and renames the file into place only when complete, so an
    existing file is a finished stage and is kept.
    """
    path = os.path.join(workdir, SAMPLES_FILE)
    if os.path.exists(path):
        return path
    sample_key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 1)
    with SyntheticWriter(path, source_dataset=config.dataset, config=config, seed=config.seed,
                         model_checkpoint=os.path.join(workdir, "diffusion"),
                         env_id=real.metadata.get("env_id")) as writer:
        for rows in iterate_samples(model, config.num_samples, sample_key, mesh=sharding.auto_mesh()):
            writer.write(Transitions.from_rows(rows, real.obs_dim, real.action_dim, config.modelled_terminals,
                                               config.terminal_threshold))
    return path


def load_real(config: ml_collections.ConfigDict) -> Transitions:
    """The configured dataset, checked to hold enough transitions to fit a model to."""
    real = load_dataset(config.dataset, env_id=config.env_id)
    if len(real) < 2:
        raise InvalidDatasetError(f"{config.dataset} holds {len(real)} transition; the diffusion model and the agents "
                                  "need at least 2 (a real dataset has thousands).")
    return real


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    sharding.initialize_distributed()
    config = d4rl.validate(FLAGS.config)
    check_workdir(FLAGS.workdir)
    real = load_real(config)
    path = os.path.join(FLAGS.workdir, SAMPLES_FILE)
    with claim_workdir(FLAGS.workdir, config):
        if os.path.exists(path):  # finished earlier: the model and its checkpoints are not needed again
            print(f"{path} exists already (delete it to generate it again).")
            return
        metrics = metrics_writer(config, FLAGS.workdir)
        model = train_model(config, real, FLAGS.workdir, metrics)
        write_samples(config, real, model, FLAGS.workdir)
        metrics.close()
    print(f"Wrote {config.num_samples} synthetic transitions to {path}")


if __name__ == "__main__":
    define_flags("configs/d4rl.py:walker2d")
    boundary.run(main, INPUT_ERRORS)
