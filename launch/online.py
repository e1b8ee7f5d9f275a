"""Online SynthER (Algorithm 1 of the paper) and its SAC/REDQ baselines, from the command line.

    python -m launch.online --config=configs/online.py:hopper-synther,smoke --workdir=runs/hopper-synther-smoke

The loop itself, its outputs and how a rerun resumes are in `pipelines/online_loop.py`.
"""
from absl import flags

from configs import online as online_config
from launch import boundary
from launch.cli import INPUT_ERRORS, define_flags
from pipelines.online_loop import train
from pipelines.online_synthesis import make_synthesizer


def main(_):
    FLAGS = flags.FLAGS
    config = FLAGS.config
    online_config.validate(config)  # before the synthesizer is built from it
    result = train(config, FLAGS.workdir, synthesize=make_synthesizer(config))
    final = result.evaluations[-1]
    print("%s: %d environment steps, final return %.1f +- %.1f over %d seeds; outputs in %s."
          % (config.name, result.env_steps, final["mean_return"], final["std_return"], config.num_seeds, FLAGS.workdir))


if __name__ == "__main__":
    define_flags("configs/online.py:hopper-synther")
    boundary.run(main, INPUT_ERRORS, one_process=True)
