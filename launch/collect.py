"""Makes a real offline dataset the way D4RL did, as a Minari dataset in the local store.

    python -m launch.collect --env=Walker2d-v5 --level=random --num_steps=100000
    python -m launch.collect --env=Walker2d-v5 --level=medium-replay --seed=0
    python -m launch.collect --env=maze2d-umaze --num_steps=1000000
    python -m launch.collect --env=maze2d-umaze --reference_scores

Levels (D4RL's):
- `random`: uniform random actions for `--num_steps` steps;
- `medium`: `--num_steps` steps of a SAC policy stopped when its evaluation return first reaches
  `--medium_fraction` (a third) of the expert return (by default D4RL's reference expert return,
  `synther_jax.scores`; `--medium_return` sets the threshold directly);
- `medium-replay`: everything that SAC run collected up to that point (its replay buffer, random
  warm-up included; `--num_steps` does not apply);
- `expert`: `--num_steps` steps of the SAC policy at the end of its full training budget;
- `medium-expert`: the medium and the expert rollouts together.

maze2d tasks (`maze2d-umaze`, `maze2d-medium`, `maze2d-large`) have one level, D4RL's: the noisy
waypoint controller in one continuous trajectory with goal switches (`synther_jax.data.maze2d_datasets`);
`--num_steps` defaults to D4RL's sizes (1M / 2M / 4M), the id to `synther/maze2d/<layout>-v0`.
`--reference_scores` measures the task's reference returns D4RL's way instead (random policy and
noise-free controller, `--reference_episodes` episodes each, seeds `--seed` onwards) and prints them
as JSON: the numbers in `synther_jax.scores.MAZE2D_REFERENCE_SCORES`.

The behaviour policy (`pipelines.behaviour`) trains with `pipelines.online_loop.train` and
`configs/online.py:<env>-sac` (or `--sac_config`), in `--behaviour_workdir`. Policies are saved
there as Orbax checkpoints (actor parameters; `medium-<return>/policy`, `expert/policy`) and the
medium-replay buffer as `medium-<return>/replay.hdf5`, so a rerun with the same work directory
regenerates any level without training again. Everything is
a function of `--seed`. The dataset lands in `$MINARI_DATASETS_PATH` (else `~/.minari/datasets`)
and loads with `synther_jax.data.load_dataset(dataset_id)`; `--bundle=PATH` also writes every step
(or with `--bundle_size` a seeded sample of whole episodes) in D4RL's gzip-compressed HDF5 layout,
padded so that D4RL's `qlearning_dataset` pairs every step with its true next observation
(`synther_jax.data.d4rl_hdf5`); this is how the bundled datasets are made.

With `--pixels --out=DIR` (DMC tasks: walker-walk, cheetah-run) the same behaviour policies act on
the proprioceptive state while 84x84 frames of camera 0 are rendered alongside, at action repeat 2
in 501-step episodes, and DIR receives V-D4RL's hdf5 layout (`synther_jax.data.pixel_datasets`), one file
per rollout; `medium-replay` re-simulates the SAC run's replay stream from its episodes' reset
seeds and renders it (`synther_jax.data.pixel_rendering.render_replay`). The behaviour SAC itself trains
without action repeat, so at action repeat 2 its policies act on every second simulator step.
"""
import json
import os
import sys
import time
from typing import List, Optional

from absl import app, flags
from ml_collections import config_flags

from launch import boundary
from launch.cli import INPUT_ERRORS
from pipelines.behaviour import BehaviourPolicies, medium_threshold, sac_config
from synther_jax.data import maze2d_datasets
from synther_jax.data.collection import (check_new_minari_id, episode_sample, rollout, uniform_random_policy,
                                         write_minari)
from synther_jax.data.d4rl_hdf5 import write_d4rl_hdf5
from synther_jax.data.flatten import Episode, episodes_to_transitions
from synther_jax.envs import make_env
from synther_jax.envs.maze2d import MAZE_NAMES

LEVELS = ("random", "medium", "medium-replay", "expert", "medium-expert")

flags.DEFINE_string("env", "Walker2d-v5", "Gymnasium id or DMC domain-task (see synther_jax.envs.make_env).")
flags.DEFINE_enum("level", "random", LEVELS, "Which D4RL-style level to collect.")
flags.DEFINE_integer("num_steps", None, "Environment steps to roll out (per policy; not for medium-replay); default "
                     "100000, for maze2d D4RL's sizes (1M / 2M / 4M).", lower_bound=1)
flags.DEFINE_string("dataset_id", None, "Minari id `namespace/name-vN`; default synther/<env>/<level>-v0.")
flags.DEFINE_integer("seed", 0, "Seeds the environment, the policy and the behaviour policy's training.", lower_bound=0)
flags.DEFINE_string("bundle", None, "Also write the steps to this D4RL-layout .hdf5 file.")
flags.DEFINE_integer("bundle_size", None, "At most this many steps in the bundle: a uniform, seeded sample of whole "
                     "episodes; the Minari dataset keeps them all.", lower_bound=1)
# Named apart from the pipelines' --workdir/--config: they configure the behaviour policy's SAC run.
flags.DEFINE_string("behaviour_workdir", None, "Behaviour-policy training and checkpoints; default "
                    "runs/behaviour/<env>-seed<seed>.")
config_flags.DEFINE_config_file("sac_config", None, "SAC config for the behaviour policy; default "
                                "configs/online.py:<env>-sac with --env and --seed.")
flags.DEFINE_float("medium_fraction", 1 / 3, "Medium policy: this fraction of the expert return.")
flags.DEFINE_float("medium_return", None, "Medium policy: stop at this evaluation return (overrides the fraction).")
flags.DEFINE_bool("pixels", False, "Render V-D4RL-style 84x84 pixel datasets of a DMC task into --out.")
flags.DEFINE_string("out", None, "With --pixels: the folder that receives the dataset's hdf5 files.")
flags.DEFINE_bool("reference_scores", False, "maze2d: measure and print the reference returns instead of collecting.")
flags.DEFINE_integer("reference_episodes", 100, "Episodes per policy for --reference_scores (D4RL: 100).")
FLAGS = flags.FLAGS


def default_dataset_id(env: str, level: str, num_steps: Optional[int]) -> str:
    """synther/<env>/<level>-v0; maze2d tasks have their own id, by size."""
    if env in MAZE_NAMES:
        return maze2d_datasets.default_dataset_id(env, num_steps)
    name = env.split("-v")[0].lower().replace("_", "-")
    return f"synther/{name}/{level}-v0"


def behaviour_policies(env: str, seed: int) -> BehaviourPolicies:
    """The SAC behaviour policies the flags ask for, in `--behaviour_workdir`."""
    workdir = FLAGS.behaviour_workdir or os.path.join("runs", "behaviour", f"{env}-seed{seed}")
    return BehaviourPolicies(sac_config(env, seed, FLAGS.sac_config), workdir,
                             medium_threshold(env, FLAGS.medium_fraction, FLAGS.medium_return))


def num_steps() -> int:
    if FLAGS.num_steps is not None:
        return FLAGS.num_steps
    return maze2d_datasets.DEFAULT_NUM_STEPS[FLAGS.env] if FLAGS.env in MAZE_NAMES else 100_000


def collect_episodes(level: str, env, behaviour: Optional[BehaviourPolicies]) -> List[Episode]:
    seed, steps = FLAGS.seed, num_steps()
    if FLAGS.env in MAZE_NAMES:
        return maze2d_datasets.generate_episodes(FLAGS.env, steps, seed)
    if level == "random":
        return rollout(env, uniform_random_policy(env.action_space, seed), steps, seed, f"random {FLAGS.env}")
    if level == "medium-replay":
        return behaviour.medium_replay()
    episodes = []
    for name in ("medium", "expert"):
        if name in level.split("-"):
            episodes += rollout(env, behaviour.policy(name, seed), steps, seed, f"{name} {FLAGS.env}")
    return episodes


def collect_pixels() -> None:
    """`--pixels`: V-D4RL-style hdf5 files in `--out`, one per behaviour policy's rollout."""
    from synther_jax.data.pixel_datasets import write_pixel_hdf5
    from synther_jax.data.pixel_rendering import render_dataset

    if not FLAGS.out:
        raise app.UsageError("--pixels needs --out=DIR, the folder that receives the dataset.")
    if os.path.isdir(FLAGS.out) and os.listdir(FLAGS.out):
        raise FileExistsError(f"{FLAGS.out} is not empty; give --out a new folder (each dataset has its own).")
    seed, steps, env = FLAGS.seed, num_steps(), FLAGS.env
    behaviour = None if FLAGS.level == "random" else behaviour_policies(env, seed)
    command = "python -m launch.collect " + " ".join(sys.argv[1:])
    if FLAGS.level == "random":
        parts = {"random": render_dataset(env, uniform_random_policy(make_env(env).action_space, seed), steps, seed,
                                          description=f"random {env}")}
    elif FLAGS.level == "medium-replay":
        parts = {"medium-replay": behaviour.rendered_medium_replay()}
    else:
        parts = {name: render_dataset(env, behaviour.policy(name, seed), steps, seed, description=f"{name} {env}")
                 for name in ("medium", "expert") if name in FLAGS.level.split("-")}
    for name, data in parts.items():
        data.metadata.update(level=FLAGS.level, policy=name, command=command)
        path = os.path.join(FLAGS.out, f"{name}.hdf5")
        write_pixel_hdf5(path, data)
        print(f"Wrote {path}: {data.num_episodes} episodes, {len(data)} frames, mean episode return "
              f"{data.episode_returns().mean():.1f}.")


def print_reference_scores() -> None:
    if FLAGS.env not in MAZE_NAMES:
        raise app.UsageError(f"--reference_scores is for the maze2d tasks {MAZE_NAMES}; locomotion tasks use D4RL's "
                         "reference table.")
    scores = maze2d_datasets.reference_returns(FLAGS.env, FLAGS.reference_episodes, FLAGS.seed)
    print(json.dumps({"env": FLAGS.env, **scores}))


def main(_):
    if FLAGS.reference_scores:
        return print_reference_scores()
    if FLAGS.env in MAZE_NAMES and FLAGS.level != "random":
        raise app.UsageError("maze2d data has one level, D4RL's noisy controller: leave --level out.")
    if FLAGS.pixels:
        return collect_pixels()
    dataset_id = FLAGS.dataset_id or default_dataset_id(FLAGS.env, FLAGS.level, FLAGS.num_steps)
    check_new_minari_id(dataset_id)
    env = make_env(FLAGS.env, FLAGS.seed)
    start = time.time()
    behaviour = None
    if FLAGS.level != "random" and FLAGS.env not in MAZE_NAMES:
        behaviour = behaviour_policies(FLAGS.env, FLAGS.seed)
    episodes = collect_episodes(FLAGS.level, env, behaviour)
    total_steps = sum(len(e.rewards) for e in episodes)
    command = "python -m launch.collect " + " ".join(sys.argv[1:])
    level = "noisy waypoint controller" if FLAGS.env in MAZE_NAMES else FLAGS.level
    description = (f"D4RL-style `{level}` data on {FLAGS.env}: {total_steps} steps, seed {FLAGS.seed}, made "
                   f"by synther_jax with `{command}`.")
    algorithm = "uniform-random" if FLAGS.level == "random" else f"SAC ({FLAGS.level})"
    if FLAGS.env in MAZE_NAMES:
        algorithm = maze2d_datasets.ALGORITHM_NAME
    write_minari(dataset_id, episodes, env, algorithm_name=algorithm, description=description)
    print(f"Wrote Minari dataset {dataset_id} ({len(episodes)} episodes, {total_steps} steps) in "
          f"{time.time() - start:.1f} s.")
    if FLAGS.bundle:
        bundled = episodes if FLAGS.bundle_size is None else episode_sample(episodes, FLAGS.bundle_size, FLAGS.seed)
        steps = episodes_to_transitions(bundled, keep_timeouts=True)
        write_d4rl_hdf5(FLAGS.bundle, steps, {
            "env_id": FLAGS.env, "level": FLAGS.level, "seed": FLAGS.seed, "num_steps": len(steps),
            "num_episodes": len(bundled), "subsampled_from": total_steps if len(steps) < total_steps else None,
            "minari_dataset_id": dataset_id, "command": command, "description": description})
        print(f"Wrote {FLAGS.bundle} ({os.path.getsize(FLAGS.bundle) / 2 ** 20:.1f} MB).")


if __name__ == "__main__":
    boundary.run(main, INPUT_ERRORS, one_process=True)
