"""Makes a real offline dataset, D4RL's way, as a Minari dataset in the local store.

    python -m launch.collect --env=Walker2d-v5 --level=random --num_steps=100000 \
        --dataset_id=synther/walker2d/random-v0

Levels (D4RL's): `random` rolls out uniform random actions. The others need a SAC behaviour policy
trained here (`launch.online.train` with `configs/online.py:<env>-sac`); see `--help`.
The dataset lands in `$MINARI_DATASETS_PATH` (else `~/.minari/datasets`) and loads with
`synther_jax.data.load_dataset(dataset_id)`. `--bundle=PATH` also writes every step in D4RL's
gzip-compressed HDF5 layout (how the bundled datasets were made).
"""
import time

from absl import app, flags, logging

from synther_jax.data.collection import check_new_minari_id, rollout, uniform_random_policy, write_minari
from synther_jax.data.d4rl_hdf5 import write_d4rl_hdf5
from synther_jax.data.flatten import episodes_to_transitions
from synther_jax.envs import make_env

LEVELS = ("random",)

flags.DEFINE_string("env", "Walker2d-v5", "Gymnasium id or DMC domain-task (see synther_jax.envs.make_env).")
flags.DEFINE_enum("level", "random", LEVELS, "Which D4RL-style level to collect.")
flags.DEFINE_integer("num_steps", 100_000, "Environment steps to roll out.")
flags.DEFINE_string("dataset_id", None, "Minari id `namespace/name-vN`; default synther/<env>/<level>-v0.")
flags.DEFINE_integer("seed", 0, "Seeds the environment, the policy and (for SAC levels) training.")
flags.DEFINE_string("bundle", None, "Also write the steps to this D4RL-layout .hdf5 file.")
FLAGS = flags.FLAGS


def default_dataset_id(env: str, level: str) -> str:
    name = env.split("-v")[0].lower().replace("_", "-")
    return f"synther/{name}/{level}-v0"


def main(_):
    dataset_id = FLAGS.dataset_id or default_dataset_id(FLAGS.env, FLAGS.level)
    check_new_minari_id(dataset_id)
    env = make_env(FLAGS.env, FLAGS.seed)
    start = time.time()
    episodes = rollout(env, uniform_random_policy(env.action_space, FLAGS.seed), FLAGS.num_steps, FLAGS.seed,
                       f"{FLAGS.level} {FLAGS.env}")
    description = (f"D4RL-style `{FLAGS.level}` data on {FLAGS.env}: {FLAGS.num_steps} steps of uniform random "
                   f"actions, seed {FLAGS.seed}, made by synther_jax's launch/collect.py.")
    write_minari(dataset_id, episodes, FLAGS.env, env.observation_space, env.action_space, FLAGS.seed,
                 algorithm_name="uniform-random", description=description)
    logging.info("Wrote Minari dataset %s (%d episodes, %d steps) in %.1f s.", dataset_id, len(episodes),
                 FLAGS.num_steps, time.time() - start)
    if FLAGS.bundle:
        steps = episodes_to_transitions(episodes, keep_timeouts=True)
        write_d4rl_hdf5(FLAGS.bundle, steps, {"env_id": FLAGS.env, "level": FLAGS.level, "seed": FLAGS.seed,
                                              "num_steps": FLAGS.num_steps, "description": description})
        logging.info("Wrote %s.", FLAGS.bundle)


if __name__ == "__main__":
    app.run(main)
