"""The online loop: online SynthER (Algorithm 1 of the paper) and its SAC/REDQ baselines.

`launch.online` runs it from the command line; `launch.collect` (behaviour policies) and the
benchmarks call `train` directly.

Every environment step: act (uniform random actions for the first `start_steps`), step each seed's
own environment, store the transition in the seed's real replay buffer, then run one environment
step's worth of agent updates (`utd_ratio` critic updates in one jitted scan) on minibatches mixed
from the real and synthetic buffers. With SynthER on, every `retrain_every` steps a fresh diffusion
model per seed is trained on all of that seed's real data and refills that seed's synthetic buffer
with its samples (paper Section 3.2; `pipelines.online_synthesis`). Seeds are a vmapped axis of
the agents, the buffers and the diffusion models (all seeds' models train and sample as one program).

Guided (PGR, `config.guidance.condition` set): at each retrain every real transition of a seed is
labelled with its relevance under that seed's current learners (`agents.relevance`, in jitted
chunks; only the real buffer is read), the diffusion model trains on the rows with their labels,
and samples guided towards the real top `top_frac` of relevance. The generated rows are labelled
the same way, and `relevance.json` records real against generated at each retrain. With
curiosity, each seed's ICM takes one Adam step per environment step on a real minibatch once
updates start (PGR: on the last of the UTD iterations), and is checkpointed with the agents.

`train` writes into the work directory: `config.json`, resumable checkpoints (agents, both
buffers, environment step, RNG key, timings), `metrics.jsonl` (+ TensorBoard), `evaluations.json`,
`results.json`, `learning_curve.png` and `timings.json`; guided, also `relevance.json` (also in
results.json) and `relevance_seed<i>.png` (the newest retrain's histogram, real against
generated, and each retrain's means). A rerun in the same folder resumes; the
unfinished episodes are rebuilt by resetting with their recorded seeds and replaying their stored
actions, so a resumed run ends identical to an uninterrupted one.

Fixed relative to the original: generated rows never touch the live rollout state (its issue #9).
"""
import dataclasses
import os
from functools import partial
from typing import Callable, Dict, List, Optional, Sequence

import gymnasium as gym
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging

from agents import icm, relevance, sac
from configs import online as online_config
from configs.checks import terminal_rule
from pipelines.workdir import StageTimer, check_workdir, claim_workdir, command_line, metrics_writer
from synther_jax import replay
from synther_jax.analysis.plots import plot_relevance
from synther_jax.analysis.relevance_report import relevance_report
from synther_jax.atomic import read_json, write_json
from synther_jax.checkpoint import Checkpointer
from synther_jax.curves import plot_learning_curve
from synther_jax.data.transitions import Transitions
from synther_jax.envs import make_env
from synther_jax.envs.evaluation import evaluate
from synther_jax.progress import Progress
from synther_jax.termination import has_terminal_column, synthetic_transitions

# synthesize(real_rows (S, N, d), keys (S, ...)[, condition (S, N)]) -> synthetic rows (S, M, d), one
# slice per seed, in the layout of `Transitions.to_rows`; a guided run passes each real row's relevance.
Synthesize = Callable[..., np.ndarray]
# on_eval(env_step, mean_return, agent_states) -> True to stop training.
OnEval = Callable[[int, float, sac.SACState], bool]

TIMERS = (  # the stages whose seconds a checkpoint keeps, in this order
    "acting", "env_stepping", "replay_insert", "agent_updates", "synthesis", "evaluation", "checkpointing")


@dataclasses.dataclass
class TrainResult:
    agent_state: sac.SACState  # leading seed axis
    real_data: List[Transitions]  # one per seed, in collection order, with timeouts and episode ids
    evaluations: List[dict]  # {"env_step", "returns" (per seed), "mean_return", "std_return"}
    timings: Dict[str, float]  # seconds per stage
    env_steps: int
    curiosity_models: Optional[icm.ICMState] = None  # leading seed axis; guided by curiosity only
    relevance: List[dict] = dataclasses.field(default_factory=list)  # guided: one record per retrain


# --- jitted pieces, vmapped over seeds -----------------------------------------------------------

@jax.jit
def policy_actions(states: sac.SACState, observations: jax.Array, key: jax.Array) -> jax.Array:
    """One sampled action per seed: observations (S, o) -> actions (S, a)."""
    keys = jax.random.split(key, observations.shape[0])
    return jax.vmap(lambda state, obs, k: sac.act(state, obs[None], k)[0])(states, observations, keys)


insert_rows = jax.jit(jax.vmap(replay.insert), donate_argnums=0)


@partial(jax.jit, static_argnames="synthetic_ratio", donate_argnums=0)
def update_agents(states, real, synthetic, key, synthetic_ratio):
    keys = jax.random.split(key, jax.tree.leaves(real)[0].shape[0])
    update = partial(sac.update, synthetic_ratio=synthetic_ratio)
    return jax.vmap(update)(states, real, synthetic, keys)


update_icms = jax.jit(jax.vmap(icm.update), donate_argnums=0)


@partial(jax.jit, static_argnames="kind")
def label_seeds(kind: str, agents: sac.SACState, icms: Optional[icm.ICMState], batches) -> jax.Array:
    """The relevance `kind` of every row of every seed's batch (S, N, ...) under that seed's
    learners: (S, N)."""
    return jax.vmap(lambda agent, model, batch: relevance.label(kind, agent, model, batch))(agents, icms, batches)


def seed_slice(tree, index: int):
    return jax.tree.map(lambda x: x[index], tree)


def stack_seeds(trees: Sequence):
    """The inverse of `seed_slice`: one tree with a leading seed axis."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def episode_seed(run_seed: int, seed_index: int, episode_id: int) -> int:
    """The reset seed of a training episode, a function of its id, so a resumed run can rebuild it."""
    return int(np.random.SeedSequence([run_seed, 0, seed_index, episode_id]).generate_state(1)[0])


def evaluation_seed(run_seed: int, env_step: int) -> int:
    """The first reset seed of the evaluation at `env_step` (episode i gets this + i)."""
    return int(np.random.SeedSequence([run_seed, 1, env_step]).generate_state(1)[0] % 2 ** 31)


# --- the loop ---------------------------------------------------------------------------------

class _Rollouts:
    """Each seed's live environment and episode: observation, episode id, length and return."""

    def __init__(self, env_name: str, run_seed: int, num_seeds: int):
        self.run_seed = run_seed
        self.envs = [make_env(env_name) for _ in range(num_seeds)]
        self.observations = np.zeros((num_seeds, self.envs[0].observation_space.shape[0]), np.float32)
        self.episode_ids = np.zeros(num_seeds, np.int64)
        self.lengths = np.zeros(num_seeds, np.int64)
        self.returns = np.zeros(num_seeds)
        self.finished_returns: List[float] = []  # since the last log
        for i in range(num_seeds):
            self.reset(i, 0)

    def reset(self, seed_index: int, episode_id: int) -> None:
        obs, _ = self.envs[seed_index].reset(seed=episode_seed(self.run_seed, seed_index, episode_id))
        self.observations[seed_index] = obs
        self.episode_ids[seed_index], self.lengths[seed_index], self.returns[seed_index] = episode_id, 0, 0.0

    def step(self, actions: np.ndarray) -> Dict[str, np.ndarray]:
        """Steps every seed's environment; returns the transitions with a leading (seed, 1) shape."""
        rows = {k: [] for k in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                                "episode_ids")}
        for i, env in enumerate(self.envs):
            next_obs, reward, terminated, truncated, _ = env.step(actions[i])
            for key, value in (("observations", self.observations[i].copy()), ("actions", actions[i]),
                               ("rewards", reward), ("next_observations", next_obs), ("terminals", terminated),
                               ("timeouts", truncated and not terminated), ("episode_ids", self.episode_ids[i])):
                rows[key].append(value)
            self.observations[i] = next_obs
            self.lengths[i] += 1
            self.returns[i] += reward
            if terminated or truncated:
                self.finished_returns.append(float(self.returns[i]))
                self.reset(i, self.episode_ids[i] + 1)
        dtypes = {"episode_ids": np.int32}
        return {k: np.asarray(v, dtypes.get(k, np.float32))[:, None] for k, v in rows.items()}

    def rebuild(self, seed_index: int, episode_id: int, episode: Optional[Transitions]) -> None:
        """Puts seed `seed_index`'s environment back into the unfinished episode `episode` (its stored
        transitions, oldest first) by resetting with the episode's seed and replaying the actions."""
        self.reset(seed_index, episode_id)
        if episode is None:
            return
        for action, stored in zip(episode.actions, episode.next_observations):
            obs, reward, *_ = self.envs[seed_index].step(action)
            self.returns[seed_index] += reward
            if not np.array_equal(obs, stored):
                raise RuntimeError("Replaying the unfinished episode's actions did not reproduce its observations; "
                                   "the environment is not deterministic, so this run cannot resume exactly.")
        self.observations[seed_index] = obs
        self.lengths[seed_index] = len(episode)


def _last_rows(buffer: replay.ReplayBuffer, num: int) -> Optional[Transitions]:
    """The newest `num` rows of one seed's buffer, oldest first."""
    if num == 0:
        return None
    data = replay.to_transitions(buffer)
    if num > len(data):
        raise RuntimeError("The unfinished episode is longer than the replay buffer; it cannot be rebuilt.")
    return Transitions(*(getattr(data, k)[-num:] for k in ("observations", "actions", "rewards",
                                                           "next_observations", "terminals")))


def train(config: ml_collections.ConfigDict, workdir: str, synthesize: Optional[Synthesize] = None,
          on_eval: Optional[OnEval] = None) -> TrainResult:
    """Runs (or resumes) the online loop of `config` (see configs/online.py) in `workdir`.

    `synthesize(real_rows, keys)` is called every `config.synther.retrain_every` steps when
    `config.synther.enabled`, with every seed's real data as rows (seed axis first) and one key
    per seed; its slice s replaces seed s's synthetic buffer. If it has a `seconds` dict (e.g. diffusion training and
    generation), that breakdown is added to the timings. `on_eval(env_step, mean_return,
    agent_states)` runs after every evaluation (mean over seeds and episodes) and may stop training
    by returning True.
    """
    online_config.validate(config)
    if config.synther.enabled and synthesize is None:
        raise ValueError("config.synther.enabled needs a `synthesize` function "
                         "(`online_synthesis.make_synthesizer(config)` builds one from the diffusion model); "
                         "pass one or use a sac/redq config.")
    check_workdir(workdir)
    with claim_workdir(workdir, config):
        return _train_in_claimed_workdir(config, workdir, synthesize, on_eval)


def _train_in_claimed_workdir(config: ml_collections.ConfigDict, workdir: str, synthesize: Optional[Synthesize],
                              on_eval: Optional[OnEval]) -> TrainResult:
    synther = config.synther
    num_seeds = config.num_seeds
    rollouts = _Rollouts(config.env_name, config.seed, num_seeds)
    obs_dim, action_dim = rollouts.observations.shape[1], rollouts.envs[0].action_space.shape[0]

    key = jax.random.PRNGKey(config.seed)
    init_key, key = jax.random.split(key)
    agent_kwargs = dict(config.agent)
    agent_kwargs["hidden_dims"] = tuple(agent_kwargs["hidden_dims"])
    states = sac.init_seeds(jax.random.split(init_key, num_seeds), obs_dim, action_dim, **agent_kwargs)
    stacked_buffer = lambda capacity: jax.vmap(lambda _: replay.create_buffer(capacity, obs_dim, action_dim))(
        jnp.arange(num_seeds))
    real = stacked_buffer(config.replay_capacity)
    synthetic = stacked_buffer(synther.capacity) if synther.enabled else None
    guidance = config.guidance
    icms = None
    if guidance.condition == "curiosity":  # its own keys: the other learners' key stream is unchanged
        icm_keys = jax.random.split(jax.random.fold_in(init_key, 1), num_seeds)
        icms = jax.vmap(lambda k: icm.init(k, obs_dim, action_dim, **guidance.icm))(icm_keys)

    # --- resume ---
    checkpointer = Checkpointer(os.path.join(workdir, "checkpoints"))
    checkpoint = lambda: {"agent": states, "real": real, "synthetic": synthetic, "key": key,
                          "env_step": np.array(env_step, np.int64), "episode_ids": rollouts.episode_ids,
                          "episode_lengths": rollouts.lengths, "timings": np.array([timer.seconds.get(name, 0.0) for name in TIMERS]),
                          **({} if icms is None else {"icm": icms})}
    env_step, timer = 0, StageTimer()
    restored = checkpointer.restore_latest(checkpoint())
    evaluations: List[dict] = []
    relevance_reports: List[dict] = []
    relevance_path = os.path.join(workdir, "relevance.json")
    if restored is not None:
        tree = restored[1]
        states, real, synthetic, key = tree["agent"], tree["real"], tree["synthetic"], tree["key"]
        icms = tree.get("icm")
        env_step, timer = int(tree["env_step"]), StageTimer(dict(zip(TIMERS, tree["timings"].tolist())))
        for i in range(num_seeds):
            length = int(tree["episode_lengths"][i])
            rollouts.rebuild(i, int(tree["episode_ids"][i]), _last_rows(seed_slice(real, i), length))
        evaluations = [e for e in read_json(os.path.join(workdir, "evaluations.json"), [])
                       if e["env_step"] <= env_step]
        relevance_reports = [r for r in read_json(relevance_path, []) if r["env_step"] <= env_step]
        logging.info("Resumed %s at environment step %d.", workdir, env_step)

    metrics = metrics_writer(config, workdir)
    stop = False
    rule = terminal_rule(synther, config.env_name, prefix="synther.")  # labels synthetic terminals under env_rule
    with Progress(config.total_steps, f"online {config.name}", unit="step", initial=env_step) as bar:
        while env_step < config.total_steps and not stop:
            key, step_key = jax.random.split(key)
            act_key, update_key, synth_key = jax.random.split(step_key, 3)
            with timer("acting"):
                if env_step <= config.start_steps:  # the original: random while the buffer holds <= start_steps
                    actions = jax.random.uniform(act_key, (num_seeds, action_dim), minval=-1.0, maxval=1.0)
                else:
                    actions = policy_actions(states, rollouts.observations, act_key)
                actions = np.asarray(actions)
            with timer("env_stepping"):
                rows = rollouts.step(actions)
            with timer("replay_insert"):
                real = insert_rows(real, rows)
            env_step += 1

            if env_step > config.start_steps:
                with timer("agent_updates"):
                    states, update_metrics = update_agents(states, real, synthetic, update_key,
                                                           synthetic_ratio=synther.synthetic_ratio)
                    if icms is not None:
                        icm_keys = jax.random.split(jax.random.fold_in(update_key, 1), num_seeds)
                        icms, icm_metrics = update_icms(icms, real, icm_keys)
                        update_metrics = {**update_metrics, **icm_metrics}
                    jax.block_until_ready((states, icms))  # else the ICM's step is timed as the next "acting"
                if env_step % config.log_every == 0:
                    metrics.write("agent", env_step, jax.tree.map(lambda x: float(jnp.mean(x)), update_metrics),
                                  per_seed=update_metrics)

            # No retrain at the last step: nothing would learn from its samples.
            if synther.enabled and env_step % synther.retrain_every == 0 and env_step < config.total_steps:
                with timer("synthesis"):
                    labeller = None
                    if guidance.condition != "none":
                        labeller = partial(label_seeds, guidance.condition, states, icms)
                    synthetic, relevances = _refill_synthetic(synthesize, real, synthetic, synth_key, obs_dim,
                                                              action_dim, synther.terminals,
                                                              synther.terminal_threshold, rule, labeller)
                if relevances is not None:
                    relevance_reports.append(_relevance_record(env_step, *relevances, guidance.top_frac))
                    write_json(relevance_path, relevance_reports)
                    metrics.write("relevance", env_step, _relevance_metrics(relevance_reports[-1]))

            if env_step % config.log_every == 0 and rollouts.finished_returns:
                metrics.write("train", env_step, {"episode_return": np.mean(rollouts.finished_returns),
                                                  "episodes": len(rollouts.finished_returns)})
                rollouts.finished_returns.clear()

            if env_step % config.eval_every == 0 or env_step == config.total_steps:
                with timer("evaluation"):
                    result = evaluate(sac.act, states, config.env_name, config.eval_episodes,
                                      seed=evaluation_seed(config.seed, env_step),
                                      make_vec_env=_vector_env, score_fn=None)
                record = {"env_step": env_step, "returns": result.seed_returns.tolist(),
                          "mean_return": float(result.seed_returns.mean()),
                          "std_return": float(result.seed_returns.std())}
                evaluations.append(record)
                write_json(os.path.join(workdir, "evaluations.json"), evaluations)
                metrics.write("eval", env_step, {"return_mean": record["mean_return"],
                                                 "return_std": record["std_return"]},
                              per_seed={"return": record["returns"]})
                bar.set_postfix(eval_return=f"{record['mean_return']:.1f}")
                if on_eval is not None:
                    stop = bool(on_eval(env_step, record["mean_return"], states))

            if env_step % config.checkpoint_every == 0 or env_step == config.total_steps or stop:
                with timer("checkpointing"):
                    checkpointer.save(env_step, checkpoint())
            bar.update(1)
    checkpointer.close()
    metrics.close()

    timings = dict(timer.seconds)
    timings.update({f"synthesis/{k}": v for k, v in getattr(synthesize, "seconds", {}).items()})
    real_data = [replay.to_transitions(seed_slice(real, i)) for i in range(num_seeds)]
    result = TrainResult(states, real_data, evaluations, timings, env_step, icms, relevance_reports)
    _write_outputs(config, workdir, result)
    return result


def seed_batches(data: Sequence[Transitions]) -> Dict[str, jax.Array]:
    """Every seed's transitions as one batch with a leading seed axis."""
    return {k: jnp.asarray(np.stack([d.as_dict()[k] for d in data])) for k in data[0].as_dict()}


def _refill_synthetic(synthesize: Synthesize, real, synthetic, key, obs_dim, action_dim, terminals,
                      terminal_threshold, rule, labeller=None):
    """A fresh synthetic buffer per seed, filled with rows generated from that seed's real data.

    With a `labeller` (a guided run: seed-stacked batch -> relevance (S, N)), the real rows are
    labelled first and passed as the condition, and the generated rows are labelled too; returns
    (buffers, (real relevance, generated relevance) or None). Only the real buffer is read: the
    live rollout state is out of reach (the original's issue #9). Every seed's buffer holds the
    same number of rows (the seeds step together), so they stack.
    """
    num_seeds = jax.tree.leaves(real)[0].shape[0]
    real_data = [replay.to_transitions(seed_slice(real, i)) for i in range(num_seeds)]
    real_rows = np.stack([data.to_rows(has_terminal_column(terminals)) for data in real_data])
    keys = jnp.stack([jax.random.fold_in(key, i) for i in range(num_seeds)])
    if labeller is None:
        synthetic_rows = np.asarray(synthesize(real_rows, keys), np.float32)
    else:
        real_relevance = np.asarray(labeller(seed_batches(real_data)))
        synthetic_rows = np.asarray(synthesize(real_rows, keys, real_relevance), np.float32)
    generated = [synthetic_transitions(rows, obs_dim, action_dim, terminals, terminal_threshold, rule)
                 for rows in synthetic_rows]
    fresh = [replay.insert_transitions(replay.create_buffer(synthetic.capacity, obs_dim, action_dim), data)
             for data in generated]
    relevances = None if labeller is None else (real_relevance, np.asarray(labeller(seed_batches(generated))))
    return stack_seeds(fresh), relevances


def _relevance_record(env_step: int, real: np.ndarray, generated: np.ndarray, top_frac: float) -> dict:
    """One retrain's relevance of real against generated transitions, per seed."""
    return {"env_step": env_step, "per_seed": [relevance_report(r, g, top_frac) for r, g in zip(real, generated)]}


def _relevance_metrics(record: dict) -> Dict[str, float]:
    """The scalars of a relevance record, averaged over seeds, for metrics.jsonl and TensorBoard."""
    mean = lambda get: float(np.mean([get(report) for report in record["per_seed"]]))
    return {"real_mean": mean(lambda r: r["real"]["mean"]), "real_top_mean": mean(lambda r: r["real_top_mean"]),
            "generated_mean": mean(lambda r: r["generated"]["mean"]),
            "generated_above_top_cut": mean(lambda r: r["generated_above_top_cut"])}


def _vector_env(env_name: str, num_envs: int) -> gym.vector.VectorEnv:
    return gym.vector.SyncVectorEnv([lambda: make_env(env_name) for _ in range(num_envs)])


def _write_outputs(config: ml_collections.ConfigDict, workdir: str, result: TrainResult) -> None:
    """results.json (with the command line), timings.json and learning_curve.png."""
    total = sum(v for k, v in result.timings.items() if "/" not in k)
    write_json(os.path.join(workdir, "timings.json"), {
        "seconds": result.timings, "env_steps": result.env_steps, "num_seeds": config.num_seeds,
        "env_steps_per_second": result.env_steps / total if total else None})
    final = result.evaluations[-1] if result.evaluations else None
    relevance = relevance_summary(config, result.relevance)
    write_json(os.path.join(workdir, "results.json"), {
        "name": config.name, "env_name": config.env_name, "env_steps": result.env_steps,
        "num_seeds": config.num_seeds, "final_mean_return": final and final["mean_return"],
        "final_std_return": final and final["std_return"], "evaluations": result.evaluations,
        "relevance": relevance, "command": command_line()})
    if result.evaluations:
        plot_learning_curve([e["env_step"] for e in result.evaluations], [e["returns"] for e in result.evaluations],
                            os.path.join(workdir, "learning_curve.png"), "environment steps", "evaluation return",
                            config.name)
    if relevance is not None:
        plot_relevance_per_seed(relevance, config.name, os.path.join(workdir, "relevance_seed"))


def relevance_summary(config: ml_collections.ConfigDict, records: List[dict]) -> Optional[dict]:
    """A guided run's relevance section (results.json's, the benchmarks'): the guidance settings,
    every retrain's record and the last one's scalars; None for an unguided run."""
    if config.guidance.condition == "none":
        return None
    guidance = config.guidance
    return {"condition": guidance.condition, "scale": guidance.scale, "top_frac": guidance.top_frac,
            "retrains": records, "last": _relevance_metrics(records[-1]) if records else None}


def plot_relevance_per_seed(summary: dict, title: str, stem: str) -> List[str]:
    """`<stem><i>.png` for every seed i of a relevance summary: real against generated relevance at
    each retrain (none before the first retrain); the paths written."""
    retrains = summary["retrains"]
    if not retrains:
        return []
    steps = [record["env_step"] for record in retrains]
    paths = []
    for seed in range(len(retrains[0]["per_seed"])):
        paths.append(f"{stem}{seed}.png")
        plot_relevance([record["per_seed"][seed] for record in retrains], steps, paths[-1], f"{title}, seed {seed}",
                       f"{summary['condition']} relevance")
    return paths
