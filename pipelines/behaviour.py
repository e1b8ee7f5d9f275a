"""Behaviour policies for D4RL-style datasets: a SAC run of the online loop, and the medium and
expert policies and medium-replay buffer taken from it (`launch.collect`'s levels)."""
import json
import os
from typing import List, Optional

import jax
import ml_collections
import numpy as np

from agents import sac
from configs import online
from configs.checks import ConfigError
from pipelines import online_loop
from synther_jax.checkpoint import Checkpointer
from synther_jax.data import load_dataset
from synther_jax.data.collection import Policy
from synther_jax.data.d4rl_hdf5 import write_d4rl_hdf5
from synther_jax.data.flatten import Episode, transitions_to_episodes
from synther_jax.envs import dmc_task_names, make_env
from synther_jax.scores import reference_scores

DMC_MAX_RETURN = 1000.0  # every DMC task's reward is in [0, 1] over 1000 steps


def sac_config(env: str, seed: int, config: Optional[ml_collections.ConfigDict] = None) -> ml_collections.ConfigDict:
    """`config` (a SAC config), else `configs/online.py:<env>-sac` (environments without their own
    config get the Gym SAC settings), for `env` and `seed`."""
    if config is None:
        family = {v: k for k, v in online.GYM_ENVS.items()}.get(env, env.split("-v")[0].lower())
        known = family in (*online.GYM_ENVS, *online.DMC_ENVS)
        config = online.get_config(f"{family if known else 'walker2d'}-sac")
    config.env_name = env
    config.seed = seed
    return config


def medium_threshold(env: str, fraction: float, medium_return: Optional[float] = None) -> float:
    """`medium_return`, else `fraction` of D4RL's expert reference return for `env` (of the maximum
    return, 1000, for DMC tasks)."""
    if medium_return is not None:
        return medium_return
    if env in dmc_task_names():
        return fraction * DMC_MAX_RETURN
    return fraction * reference_scores(env).max_score  # Raises for envs without references.


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

    def rendered_medium_replay(self):
        """The SAC run's replay up to the medium policy (trained if needed), re-simulated episode by
        episode from its reset seeds and rendered at action repeat 2."""
        from synther_jax.data.pixel_rendering import render_replay  # dm_control: the `dmc` extra

        self.medium_replay()
        replay = load_dataset(self.replay_path, keep_timeouts=True)
        episodes = [(online_loop.episode_seed(self.seed, 0, int(i)), replay.actions[replay.episode_ids == i],
                     replay.next_observations[replay.episode_ids == i]) for i in np.unique(replay.episode_ids)]
        return render_replay(self.env, episodes, description=f"medium-replay {self.env}")
