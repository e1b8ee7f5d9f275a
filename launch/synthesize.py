"""Train the diffusion model on a dataset and upsample it (the original's `train_diffuser.py`).

    python -m launch.synthesize --config=configs/d4rl.py:walker2d --workdir=runs/walker2d

Writes into the work directory: `config.json`, `diffusion/` (checkpoints of the denoiser, its EMA
and the normaliser), `metrics.jsonl` and TensorBoard files, and `samples.npz` with the original's
keys (observations, actions, rewards, next_observations, terminals; float32, terminals
thresholded). With `--config.denoiser_per_seed`, one denoiser per agent seed (`num_seeds`, denoiser
seed `seed + i`) trains and samples as one vmapped program, into `samples/seed<i>.npz`. Rerunning
the command resumes training from the last checkpoint and skips what is already finished.

With `--config.guidance.condition` (return or reward) the samples are guided (docs/guided.md).
With `--config.distill.num_steps=N` (1, 2 or 4) the trained denoiser is distilled into an N-step
sampler (`distill/`) that draws the samples (docs/benchmarks.md).
The stages are `pipelines.synthesis`'s.
"""
import os

from absl import flags

from configs import d4rl
from launch import boundary
from launch.cli import INPUT_ERRORS, define_flags
from pipelines.synthesis import distill_model, guidance_condition, load_real, samples_paths, train_model, write_samples
from pipelines.workdir import check_workdir, claim_workdir, metrics_writer
from synther_jax import distributed


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    distributed.initialize()
    config = d4rl.validate(FLAGS.config)
    check_workdir(FLAGS.workdir)
    real = load_real(config)
    paths = samples_paths(config, FLAGS.workdir)
    with claim_workdir(FLAGS.workdir, config):
        if distributed.from_main(all(map(os.path.exists, paths))):  # finished earlier: no model or checkpoint needed
            print(f"{', '.join(paths)} exist already (delete them to generate them again).")
            return
        metrics = metrics_writer(config, FLAGS.workdir)
        condition = guidance_condition(config, real)
        model = distill_model(config, real, train_model(config, real, FLAGS.workdir, metrics, condition), FLAGS.workdir)
        write_samples(config, real, model, FLAGS.workdir, condition)
        metrics.close()
    print(f"Wrote {config.num_samples} synthetic transitions to each of {', '.join(paths)}")


if __name__ == "__main__":
    define_flags("configs/d4rl.py:walker2d")
    boundary.run(main, INPUT_ERRORS)
