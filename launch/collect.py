"""Makes a real offline dataset the way D4RL did, as a Minari dataset in the local store.

    python -m launch.collect --env=Walker2d-v5 --level=random --num_steps=100000
    python -m launch.collect --env=Walker2d-v5 --level=medium-replay --seed=0
    python -m launch.collect --env=maze2d-umaze --num_steps=1000000
    python -m launch.collect --env=maze2d-umaze --reference_scores

Levels (D4RL's):
- `random`: uniform random actions for `--num_steps` steps;
- `medium`: `--num_steps` steps of a SAC policy stopped when its evaluation return first reaches
  `--medium_fraction` (a third) of the expert return (by default D4RL's reference expert return,
  `synther_jax.data.scores`; `--medium_return` sets the threshold directly);
- `medium-replay`: everything that SAC run collected up to that point (its replay buffer, random
  warm-up included; `--num_steps` does not apply);
- `expert`: `--num_steps` steps of the SAC policy at the end of its full training budget;
- `medium-expert`: the medium and the expert rollouts together.

maze2d tasks (`maze2d-umaze`, `maze2d-medium`, `maze2d-large`) have one level, D4RL's: the noisy
waypoint controller in one continuous trajectory with goal switches (`synther_jax.data.maze2d`);
`--num_steps` defaults to D4RL's sizes (1M / 2M / 4M), the id to `synther/maze2d/<layout>-v0`.
`--reference_scores` measures the task's reference returns D4RL's way instead (random policy and
noise-free controller, `--reference_episodes` episodes each, seeds `--seed` onwards) and prints them
as JSON: the numbers in `synther_jax.data.scores.MAZE2D_REFERENCE_SCORES`.

The behaviour policy trains with `launch.online_loop.train` and `configs/online.py:<env>-sac` (or
`--sac_config`), in `--behaviour_workdir`. Policies are saved there as Orbax checkpoints (actor
parameters; `medium-<return>/policy`, `expert/policy`) and the medium-replay buffer as
`medium-<return>/replay.hdf5`, so a rerun with the same work directory regenerates any level
without training again. Everything is
a function of `--seed`. The dataset lands in `$MINARI_DATASETS_PATH` (else `~/.minari/datasets`)
and loads with `synther_jax.data.load_dataset(dataset_id)`; `--bundle=PATH` also writes every step
(or with `--bundle_size` a seeded sample of whole episodes) in D4RL's gzip-compressed HDF5 layout,
padded so that D4RL's `qlearning_dataset` pairs every step with its true next observation
(`synther_jax.data.d4rl_hdf5`); this is how the bundled datasets are made.

With `--pixels --out=DIR` (DMC tasks: walker-walk, cheetah-run) the same behaviour policies act on
the proprioceptive state while 84x84 frames of camera 0 are rendered alongside, at action repeat 2
in 501-step episodes, and DIR receives V-D4RL's hdf5 layout (`synther_jax.data.pixels`), one file
per rollout; `medium-replay` re-simulates the SAC run's replay stream from its episodes' reset
seeds and renders it (`synther_jax.envs.pixels.render_replay`). The behaviour SAC itself trains
without action repeat, so at action repeat 2 its policies act on every second simulator step.
"""
import json
import os
import sys
import time
from typing import List, Optional

import jax
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from agents import sac
from configs import online
from configs.checks import ConfigError
from launch import boundary, online_loop
from launch.common import INPUT_ERRORS
from synther_jax.checkpoint import Checkpointer
from synther_jax.data import load_dataset
from synther_jax.data import maze2d as maze2d_data
from synther_jax.data import reference_scores
from synther_jax.data.collection import Policy, check_new_minari_id, rollout, uniform_random_policy, write_minari
from synther_jax.data.d4rl_hdf5 import write_d4rl_hdf5
from synther_jax.data.flatten import Episode, episodes_to_transitions, transitions_to_episodes
from synther_jax.envs import dmc_task_names, make_env
from synther_jax.envs.maze2d import MAZE_NAMES

DMC_MAX_RETURN = 1000.0  # every DMC task's reward is in [0, 1] over 1000 steps

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


def default_dataset_id(env: str, level: str) -> str:
    if env in MAZE_NAMES:
        return maze2d_data.default_dataset_id(env, FLAGS.num_steps)
    name = env.split("-v")[0].lower().replace("_", "-")
    return f"synther/{name}/{level}-v0"


# --- SAC behaviour policies ----------------------------------------------------------------------

def sac_config(env: str, seed: int):
    """`--sac_config`, else `configs/online.py:<env>-sac` (environments without their own config get
    the Gym SAC settings), for `env` and `seed`."""
    config = FLAGS.sac_config
    if config is None:
        family = {v: k for k, v in online.GYM_ENVS.items()}.get(env, env.split("-v")[0].lower())
        known = family in (*online.GYM_ENVS, *online.DMC_ENVS)
        config = online.get_config(f"{family if known else 'walker2d'}-sac")
    config.env_name = env
    config.seed = seed
    return config


def medium_threshold(env: str) -> float:
    """`--medium_return`, else `--medium_fraction` of D4RL's expert reference return for `env` (of
    the maximum return, 1000, for DMC tasks)."""
    if FLAGS.medium_return is not None:
        return FLAGS.medium_return
    if env in dmc_task_names():
        return FLAGS.medium_fraction * DMC_MAX_RETURN
    return FLAGS.medium_fraction * reference_scores(env).max_score  # Raises for envs without references.


def first_reaching(evaluations: List[dict], threshold: float) -> Optional[int]:
    """The environment step of the first evaluation whose mean return reaches `threshold`."""
    return next((e["env_step"] for e in evaluations if e["mean_return"] >= threshold), None)


class BehaviourPolicies:
    """Trains SAC once (or reuses what an earlier run saved in `workdir`) and serves the medium and
    expert policies and the medium-replay buffer.

    `workdir/sac` is the SAC run; `workdir/medium-<return>/` holds the medium policy and replay for
    that threshold (so one run serves several thresholds), `workdir/expert/` the final policy.
    """

    def __init__(self, config, workdir: str, medium_return: float):
        if config.synther.enabled or config.num_seeds != 1:
            raise ConfigError("Behaviour policies need a plain SAC config with one seed "
                             "(e.g. configs/online.py:walker2d-sac).")
        self.config, self.workdir, self.medium_return = config, workdir, medium_return
        self.env, self.seed = config.env_name, config.seed
        probe = make_env(self.env)
        self.obs_dim, self.action_dim = probe.observation_space.shape[0], probe.action_space.shape[0]
        agent_kwargs = dict(self.config.agent)
        agent_kwargs["hidden_dims"] = tuple(agent_kwargs["hidden_dims"])
        self.template = sac.init(jax.random.PRNGKey(0), self.obs_dim, self.action_dim, **agent_kwargs)
        self.medium_dir = os.path.join(workdir, f"medium-{medium_return:g}")
        self.replay_path = os.path.join(self.medium_dir, "replay.hdf5")

    def _policy_dir(self, name: str) -> str:
        return os.path.join(self.medium_dir if name == "medium" else os.path.join(self.workdir, name), "policy")

    def _saved(self, name: str):
        """(env_step, SAC state with the saved actor) of a saved policy, or None."""
        checkpointer = Checkpointer(self._policy_dir(name))
        restored = checkpointer.restore_latest(self.template.actor.params)
        checkpointer.close()
        if restored is None:
            return None
        return restored[0], self.template.replace(actor=self.template.actor.replace(params=restored[1]))

    def _save(self, name: str, env_step: int, states) -> None:
        """Saves seed 0's actor parameters (all a rollout needs) as an Orbax checkpoint."""
        checkpointer = Checkpointer(self._policy_dir(name))
        checkpointer.save(env_step, jax.tree.map(lambda x: x[0], states.actor.params))
        checkpointer.close()

    def train(self, need_expert: bool) -> None:
        """Runs (or resumes) SAC in `workdir/sac`. At the first evaluation reaching the medium return
        it saves the medium policy (and stops unless `need_expert`); the replay up to that step is
        saved after the run, and the expert policy at the end of the budget when `need_expert`."""
        threshold, run_dir = self.medium_return, os.path.join(self.workdir, "sac")

        def on_eval(env_step, mean_return, states):
            with open(os.path.join(run_dir, "evaluations.json")) as file:  # Written before on_eval runs.
                medium_step = first_reaching(json.load(file), threshold)
            if medium_step == env_step and self._saved("medium") is None:
                self._save("medium", env_step, states)
                print(f"Medium policy at step {env_step}: evaluation return {mean_return:.1f} >= {threshold:.1f}.")
            return medium_step is not None and not need_expert

        result = online_loop.train(self.config, run_dir, on_eval=on_eval)
        medium_step = first_reaching(result.evaluations, threshold)
        if medium_step is None:
            raise ConfigError(f"SAC never reached the medium return {threshold:.1f} in {result.env_steps} steps "
                               f"(best {max(e['mean_return'] for e in result.evaluations):.1f}); raise the budget "
                               "(--sac_config.total_steps) or lower --medium_fraction / --medium_return.")
        if not os.path.exists(self.replay_path):
            replay = result.real_data[0]
            if len(replay) < medium_step or replay.episode_ids[0] != 0:
                raise RuntimeError("The replay buffer no longer holds the start of training; raise "
                                   "--sac_config.replay_capacity to at least the medium step.")
            # One row per environment step, oldest first.
            write_d4rl_hdf5(self.replay_path, replay.subset(slice(0, medium_step)), {
                "env_id": self.env, "level": "medium-replay", "seed": self.seed, "medium_return": threshold,
                "env_steps": medium_step})
        if need_expert:
            self._save("expert", result.env_steps, result.agent_state)

    def policy(self, name: str, seed: int) -> Policy:
        """A sampling policy (D4RL rolled out stochastic SAC policies), training SAC if needed."""
        saved = self._saved(name)
        if saved is None:
            self.train(need_expert=name == "expert")
            saved = self._saved(name)
        if saved is None:
            raise ConfigError(f"The SAC run in {self.workdir} passed the medium return {self.medium_return:g} "
                               "before a policy for it was saved (an earlier call used another threshold); use a "
                               "fresh --behaviour_workdir for this threshold.")
        state = saved[1]
        key = jax.random.PRNGKey(seed)

        def sample(observation: np.ndarray) -> np.ndarray:
            nonlocal key
            key, step_key = jax.random.split(key)
            return np.asarray(sac.act(state, observation[None], step_key)[0])

        return sample

    def medium_replay(self) -> List[Episode]:
        """The SAC run's episodes up to the medium policy, with the reset seeds that run gave them."""
        if not os.path.exists(self.replay_path):
            self.train(need_expert=False)
        replay = load_dataset(self.replay_path, keep_timeouts=True)
        return [episode._replace(seed=online_loop.episode_seed(self.seed, 0, int(episode_id)))
                for episode, episode_id in zip(transitions_to_episodes(replay), np.unique(replay.episode_ids))]


# --- the command -------------------------------------------------------------------------------

def episode_sample(episodes: List[Episode], max_steps: int, seed: int) -> List[Episode]:
    """Whole episodes in a seeded random order, as many as fit in `max_steps` steps, in collection
    order (a uniform sample of episodes, so the levels' mixture of policies is kept)."""
    order = np.random.default_rng(seed).permutation(len(episodes))
    lengths = np.array([len(episodes[i].rewards) for i in order])
    chosen = np.sort(order[np.cumsum(lengths) <= max_steps])
    if len(chosen) == 0:
        raise ValueError(f"--bundle_size={max_steps} holds not even one episode (the first drawn has "
                         f"{lengths[0]} steps); raise it.")
    return [episodes[i] for i in chosen]


def num_steps() -> int:
    if FLAGS.num_steps is not None:
        return FLAGS.num_steps
    return maze2d_data.DEFAULT_NUM_STEPS[FLAGS.env] if FLAGS.env in MAZE_NAMES else 100_000


def collect_episodes(level: str, env, behaviour: Optional[BehaviourPolicies]) -> List[Episode]:
    seed, steps = FLAGS.seed, num_steps()
    if FLAGS.env in MAZE_NAMES:
        return maze2d_data.generate_episodes(FLAGS.env, steps, seed)
    if level == "random":
        return rollout(env, uniform_random_policy(env.action_space, seed), steps, seed, f"random {FLAGS.env}")
    if level == "medium-replay":
        return behaviour.medium_replay()
    episodes = []
    for name in ("medium", "expert"):
        if name in level.split("-"):
            episodes += rollout(env, behaviour.policy(name, seed), steps, seed, f"{name} {FLAGS.env}")
    return episodes


def render_medium_replay(behaviour: BehaviourPolicies):
    """The SAC run's replay up to the medium policy (trained if needed), re-simulated episode by
    episode from its reset seeds and rendered at action repeat 2."""
    from synther_jax.envs.pixels import render_replay

    behaviour.medium_replay()
    replay = load_dataset(behaviour.replay_path, keep_timeouts=True)
    episodes = [(online_loop.episode_seed(behaviour.seed, 0, int(i)), replay.actions[replay.episode_ids == i],
                 replay.next_observations[replay.episode_ids == i]) for i in np.unique(replay.episode_ids)]
    return render_replay(behaviour.env, episodes, description=f"medium-replay {behaviour.env}")


def collect_pixels() -> None:
    """`--pixels`: V-D4RL-style hdf5 files in `--out`, one per behaviour policy's rollout."""
    from synther_jax.data.pixels import write_pixel_hdf5
    from synther_jax.envs.pixels import render_dataset

    if not FLAGS.out:
        raise app.UsageError("--pixels needs --out=DIR, the folder that receives the dataset.")
    if os.path.isdir(FLAGS.out) and os.listdir(FLAGS.out):
        raise FileExistsError(f"{FLAGS.out} is not empty; give --out a new folder (each dataset has its own).")
    seed, steps, env = FLAGS.seed, num_steps(), FLAGS.env
    behaviour = None
    if FLAGS.level != "random":
        workdir = FLAGS.behaviour_workdir or os.path.join("runs", "behaviour", f"{env}-seed{seed}")
        behaviour = BehaviourPolicies(sac_config(env, seed), workdir, medium_threshold(env))
    command = "python -m launch.collect " + " ".join(sys.argv[1:])
    if FLAGS.level == "random":
        parts = {"random": render_dataset(env, uniform_random_policy(make_env(env).action_space, seed), steps, seed,
                                          description=f"random {env}")}
    elif FLAGS.level == "medium-replay":
        parts = {"medium-replay": render_medium_replay(behaviour)}
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
    scores = maze2d_data.reference_returns(FLAGS.env, FLAGS.reference_episodes, FLAGS.seed)
    print(json.dumps({"env": FLAGS.env, **scores}))


def main(_):
    if FLAGS.reference_scores:
        return print_reference_scores()
    if FLAGS.env in MAZE_NAMES and FLAGS.level != "random":
        raise app.UsageError("maze2d data has one level, D4RL's noisy controller: leave --level out.")
    if FLAGS.pixels:
        return collect_pixels()
    dataset_id = FLAGS.dataset_id or default_dataset_id(FLAGS.env, FLAGS.level)
    check_new_minari_id(dataset_id)
    env = make_env(FLAGS.env, FLAGS.seed)
    start = time.time()
    behaviour = None
    if FLAGS.level != "random" and FLAGS.env not in MAZE_NAMES:
        workdir = FLAGS.behaviour_workdir or os.path.join("runs", "behaviour", f"{FLAGS.env}-seed{FLAGS.seed}")
        behaviour = BehaviourPolicies(sac_config(FLAGS.env, FLAGS.seed), workdir, medium_threshold(FLAGS.env))
    episodes = collect_episodes(FLAGS.level, env, behaviour)
    total_steps = sum(len(e.rewards) for e in episodes)
    command = "python -m launch.collect " + " ".join(sys.argv[1:])
    level = "noisy waypoint controller" if FLAGS.env in MAZE_NAMES else FLAGS.level
    description = (f"D4RL-style `{level}` data on {FLAGS.env}: {total_steps} steps, seed {FLAGS.seed}, made "
                   f"by synther_jax with `{command}`.")
    algorithm = "uniform-random" if FLAGS.level == "random" else f"SAC ({FLAGS.level})"
    if FLAGS.env in MAZE_NAMES:
        algorithm = maze2d_data.ALGORITHM_NAME
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
    boundary.run(main, INPUT_ERRORS)
