"""Latent SynthER on pixels (paper Section 4.3, Table 4, Appendix E): DrQ+BC or BC on V-D4RL-style
data, then the same agents' heads retrained on 5M latent transitions from a diffusion model.

    python -m launch.pixels --config=configs/vd4rl.py:walker-walk-medium --workdir=runs/ww-medium
    python -m launch.pixels --config=configs/vd4rl.py:walker-walk-medium,smoke --workdir=runs/ww-smoke

Stages, each leaving its output in the work directory so that a rerun resumes after the last
finished one (and inside the agent and diffusion stages from their last checkpoint):
  (a) load the pixel dataset (with `config.dataset` None, first render `render_steps` time steps
      of a uniform random policy into dataset/);
  (b) stage 1: train `num_seeds` agents on the pixels, one vmapped program, evaluating every
      `eval_every` updates in the rendered environment                    -> original/, evaluations.json
  (c) encode: every seed's frozen encoder and trunks turn each real transition into latent rows
      [actor_trunk(h), critic_trunk(h), a, r, actor_trunk(h'), critic_trunk(h')] -> latents.npz
  (d) per seed, train the denoiser on its latents and generate `latent.num_samples` rows
                                                   -> diffusion/seed<i>/, synthetic/seed<i>.npz, analysis/
  (e) stage 2: train only the heads of every seed on its own synthetic latents (a vmapped
      program), evaluating in the environment                             -> synther/, evaluations.json
  (f) results.json: per-seed and mean/std final scores of the stage-1 agents ("original") and of
      the stage-2 agents ("synther") on V-D4RL's scale, return / 10 as Table 4 prints it, seconds
      per stage; learning_curve.png; metrics.jsonl and TensorBoard files throughout.

Each seed has its own encoder, so each has its own latent space, denoiser and samples; the
denoisers train one after another.
"""
import os
from typing import Dict, List, Optional

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import flags, logging

from agents import PIXEL_LEARNERS
from configs.checks import ConfigError
from configs.vd4rl import validate
from launch import boundary
from launch.cli import INPUT_ERRORS, define_flags
from pipelines.workdir import StageTimer, check_workdir, claim_workdir, command_line, metrics_writer
from synther_jax.analysis.fidelity_report import REPORT_FILE, analyze
from synther_jax.atomic import atomic_path, read_json, write_json
from synther_jax.checkpoint import Checkpointer
from synther_jax.curves import plot_learning_curve
from synther_jax.data import KEYS, SyntheticWriter, Transitions, read_synthetic
from synther_jax.data.collection import uniform_random_policy
from synther_jax.data.latents import latent_transitions, learner_batch
from synther_jax.data.pixel_datasets import (FRAME_STACK, PixelDataset, load_pixel_dataset, stacked_frames,
                                             write_pixel_hdf5)
from synther_jax.data.pixel_rendering import render_dataset
from synther_jax.diffusion import DiffusionConfig, iterate_samples, train_diffusion
from synther_jax.envs import make_env
from synther_jax.envs.pixel_env import evaluate
from synther_jax.metrics import MetricsWriter
from synther_jax.progress import Progress

LATENTS_FILE = "latents.npz"
LATENT_KEYS = KEYS[:-1]  # latents.npz has no terminals: DMC tasks never terminate
SCORE_SCALE = 10.0  # V-D4RL's Table 4 prints return / 10 (DMC returns lie in [0, 1000])


# --- (a) data -------------------------------------------------------------------------------------

def load_data(config: ml_collections.ConfigDict, workdir: str) -> PixelDataset:
    """The configured dataset, or (no dataset configured) a random-policy one rendered once into
    `workdir/dataset/`."""
    path = config.dataset
    if path is None:
        path = os.path.join(workdir, "dataset", "random.hdf5")
        if not os.path.exists(path):
            policy = uniform_random_policy(make_env(config.env).action_space, config.seed)
            write_pixel_hdf5(path, render_dataset(config.env, policy, config.render_steps, config.seed,
                                                  config.episode_steps, description=f"random {config.env}"))
    data = load_pixel_dataset(path)
    recorded = data.metadata.get("env_id")
    if recorded is not None and recorded != config.env:
        raise ConfigError(f"{path} was rendered from {recorded}, but the config evaluates on {config.env}; set "
                         f"--config.dataset to a {config.env} dataset.")
    return data


def learner_kwargs(config: ml_collections.ConfigDict) -> Dict:
    return dict(config[config.algorithm])


# --- (b) and (e): training with evaluations ------------------------------------------------------------

def run_updates(update_steps, states, dataset, keys, num_steps: int, batch_size: int, unrolled: int, **kwargs):
    """`num_steps` updates of every seed: one scan, or with `unrolled` > 0 calls of that many fully
    unrolled updates (XLA:CPU runs convolution gradients about 30x slower inside a loop)."""
    if not unrolled:
        return update_steps(states, dataset, keys, num_steps=num_steps, batch_size=batch_size, **kwargs)
    history = []
    for start in range(0, num_steps, unrolled):
        size = min(unrolled, num_steps - start)
        call_keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(keys, start)
        states, call_metrics = update_steps(states, dataset, call_keys, num_steps=size, batch_size=batch_size,
                                            unroll=size, **kwargs)
        history.append(jax.tree.map(lambda m: m * size, call_metrics))
    return states, jax.tree.map(lambda *m: sum(m) / num_steps, *history)


def train_stage(stage: str, config, learner, states, dataset, update_steps, num_updates: int, workdir: str,
                metrics: MetricsWriter, timer: StageTimer, batch_size: int, unrolled: int = 0, **scan_kwargs):
    """Updates in jitted chunks of `eval_every`, each followed by an evaluation of every seed and a
    checkpoint under `workdir/<stage>`. Returns the final states and the stage's evaluations."""
    checkpointer = Checkpointer(os.path.join(workdir, stage))
    evaluations_path = os.path.join(workdir, "evaluations.json")
    history = read_json(evaluations_path, {})
    step, evaluations = 0, []
    restored = checkpointer.restore_latest({"states": states})
    if restored is not None:
        step, states = restored[0], restored[1]["states"]
        evaluations = [e for e in history.get(stage, []) if e["step"] <= step]
        logging.info("Resumed the %s agents in %s at update %d of %d.", stage, checkpointer.directory, step,
                     num_updates)
    stream = {"original": 3, "synther": 6}[stage]
    seed_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), stream), config.num_seeds)
    bar = Progress(num_updates, f"{stage} agents", unit="update", initial=step)
    while step < num_updates:
        num_steps = min(config.eval_every, num_updates - step)
        keys = jax.vmap(jax.random.fold_in, in_axes=(0, None))(seed_keys, step)
        with timer(stage):
            states, update_metrics = jax.block_until_ready(run_updates(
                update_steps, states, dataset, keys, num_steps, batch_size, unrolled, **scan_kwargs))
        step += num_steps
        with timer(f"{stage}_evaluate"):
            returns = evaluate(learner.act, states, config.env, config.eval_episodes,
                               seed=config.seed * 1_000_003 + step, frame_stack=FRAME_STACK,
                               episode_steps=config.episode_steps)
        scores = (returns.mean(1) / SCORE_SCALE).tolist()
        evaluations.append({"step": step, "scores": scores})
        write_json(evaluations_path, {**history, stage: evaluations})
        checkpointer.save(step, {"states": states})
        metrics.write(stage, step, {k: float(np.mean(v)) for k, v in update_metrics.items()}, per_seed=update_metrics)
        metrics.write(f"{stage}_eval", step, {"score_mean": float(np.mean(scores)), "score_std": float(np.std(scores))},
                      per_seed={"score": scores})
        bar.update(num_steps)
        bar.set_postfix(score=f"{np.mean(scores):.1f}")
    bar.close()
    checkpointer.close()
    return states, evaluations


# --- (c) encoding ----------------------------------------------------------------------------------------

def encode_latents(config, learner, states, data: PixelDataset) -> List[Transitions]:
    """Every seed's latent transitions of the real data: `encodings_per_transition` rounds, each
    with fresh random shifts of s and s' (independent, as in training)."""
    store = data.device_store(FRAME_STACK)
    ends = np.asarray(store["ends"])
    features = jax.jit(jax.vmap(learner.features, in_axes=(0, None, 0)))
    gather = jax.jit(stacked_frames)
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 4)
    per_seed = [[] for _ in range(config.num_seeds)]
    for round_index in range(config.latent.encodings_per_transition):
        for start in range(0, len(ends), config.latent.encode_batch_size):
            batch = jnp.asarray(ends[start:start + config.latent.encode_batch_size])
            batch_key = jax.random.fold_in(jax.random.fold_in(key, round_index), start)
            obs_keys, next_keys = jax.random.split(batch_key, (2, config.num_seeds))
            now = features(states, gather(store["frames"], store["stacks"], batch - 1), obs_keys)
            after = features(states, gather(store["frames"], store["stacks"], batch), next_keys)
            rows = slice(start, start + len(batch))
            for seed in range(config.num_seeds):
                per_seed[seed].append(latent_transitions(
                    {k: np.asarray(v[seed]) for k, v in now.items()}, {k: np.asarray(v[seed]) for k, v in after.items()},
                    data.actions[ends[rows]], data.rewards[ends[rows]], learner.TRUNKS))
    return [Transitions(*(np.concatenate([getattr(t, k) for t in parts]) for k in KEYS)) for parts in per_seed]


def write_latents(path: str, latents: List[Transitions], trunks) -> None:
    """latents.npz: every seed's real latent transitions, arrays with a leading seed axis."""
    arrays = {key: np.stack([getattr(t, key) for t in latents])
              for key in LATENT_KEYS}
    with atomic_path(path) as temporary:
        with open(temporary, "wb") as file:
            np.savez(file, **arrays, trunks=np.array(trunks))


def read_latents(path: str) -> List[Transitions]:
    with np.load(path) as file:
        arrays = {key: file[key] for key in LATENT_KEYS}
    return [Transitions(arrays["observations"][s], arrays["actions"][s], arrays["rewards"][s],
                        arrays["next_observations"][s], np.zeros(arrays["rewards"].shape[1], np.float32))
            for s in range(len(arrays["rewards"]))]


# --- (d) diffusion ----------------------------------------------------------------------------------------

def synthesize(config, real: Transitions, seed: int, workdir: str, metrics: MetricsWriter, timer: StageTimer) -> str:
    """Seed `seed`'s denoiser on its latents and its `num_samples` synthetic latents (resumable)."""
    path = os.path.join(workdir, "synthetic", f"seed{seed}.npz")
    if os.path.exists(path):
        return path
    key = jax.random.fold_in(jax.random.PRNGKey(config.seed), 100 + seed)
    with timer("diffusion"):
        model = train_diffusion(real.to_rows(terminal_column=False), DiffusionConfig(**config.diffusion), key,
                                workdir=os.path.join(workdir, "diffusion", f"seed{seed}"),
                                log_fn=lambda step, m: metrics.write(f"diffusion_seed{seed}", step, m))
    with timer("generate"):
        with SyntheticWriter(path, source_dataset=os.path.join(workdir, LATENTS_FILE), config=config, seed=seed,
                             model_checkpoint=os.path.join(workdir, "diffusion", f"seed{seed}"),
                             env_id=None) as writer:
            for rows in iterate_samples(model, config.latent.num_samples, jax.random.fold_in(key, 1)):
                writer.write(Transitions.from_rows(rows, real.obs_dim, real.action_dim, terminal_column=False))
    return path


# --- the pipeline ----------------------------------------------------------------------------------------

def run(config: ml_collections.ConfigDict, workdir: str) -> dict:
    """The whole pipeline; returns what it writes to results.json. The config, the work directory's
    path and a configured dataset are checked before the work directory is touched, and one run
    owns the work directory at a time (`claim_workdir`)."""
    validate(config)
    check_workdir(workdir)
    load_timer = StageTimer()
    with load_timer("data"):
        data = None if config.dataset is None else load_data(config, workdir)
    with claim_workdir(workdir, config):
        return _run_in_claimed_workdir(config, workdir, data, load_timer.seconds["data"])


def _run_in_claimed_workdir(config: ml_collections.ConfigDict, workdir: str, data: Optional[PixelDataset],
                            load_seconds: float) -> dict:
    timer = StageTimer(path=os.path.join(workdir, "stage_seconds.json"))
    timer.add("data", load_seconds)
    metrics = metrics_writer(config, workdir)
    learner = PIXEL_LEARNERS[config.algorithm][0]
    if data is None:  # no dataset configured: rendered once into the work directory
        with timer("data"):
            data = load_data(config, workdir)
    image_shape = (3 * FRAME_STACK, data.image_size, data.image_size)
    init_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 2), config.num_seeds)
    states = learner.init_seeds(init_keys, image_shape, data.action_dim, **learner_kwargs(config))

    states, original = train_stage("original", config, learner, states, data.device_store(FRAME_STACK),
                                   learner.update_steps_seeds, config.agent_steps, workdir, metrics, timer,
                                   config.batch_size, config.cpu_unrolled_updates if jax.default_backend() == "cpu"
                                   else 0)

    latents_path = os.path.join(workdir, LATENTS_FILE)
    if not os.path.exists(latents_path):
        with timer("encode"):
            write_latents(latents_path, encode_latents(config, learner, states, data), learner.TRUNKS)
    real = read_latents(latents_path)
    synthetic = [read_synthetic(synthesize(config, real[seed], seed, workdir, metrics, timer))
                 for seed in range(config.num_seeds)]
    analysis_dir = os.path.join(workdir, "analysis")
    if config.latent.analyze and not os.path.exists(os.path.join(analysis_dir, REPORT_FILE)):
        with timer("analyze"):
            analyze(real[0], synthetic[0], None, analysis_dir, baselines=(), seed=config.seed)

    head_keys = jax.random.split(jax.random.fold_in(jax.random.PRNGKey(config.seed), 5), config.num_seeds)
    heads = learner.begin_latent_stage_seeds(states, head_keys, config.latent.reinit_heads)
    batches = [learner_batch(s, learner.TRUNKS) for s in synthetic]
    latent_data = {key: jnp.asarray(np.stack([b[key] for b in batches])) for key in batches[0]}
    del synthetic, batches
    _, synther = train_stage("synther", config, learner, heads, latent_data, learner.latent_update_steps_seeds,
                             config.latent.agent_steps or config.agent_steps, workdir, metrics, timer,
                             config.latent.batch_size, dataset_per_seed=True)
    metrics.close()
    return write_results(config, data, original, synther, timer, workdir)


def write_results(config, data: PixelDataset, original: List[dict], synther: List[dict], timer: StageTimer,
                  workdir: str) -> dict:
    def stats(values):
        return {"per_seed": values, "mean": float(np.mean(values)), "std": float(np.std(values))}

    results = {
        "name": config.name, "env": config.env, "level": config.level, "algorithm": config.algorithm,
        "dataset": data.metadata.get("source"), "num_transitions": data.num_transitions,
        "dataset_score": float(data.episode_returns().mean() / SCORE_SCALE),
        "num_seeds": config.num_seeds, "score_scale": f"episode return / {SCORE_SCALE:g} (V-D4RL's Table 4)",
        "episode_steps": config.episode_steps,
        "original": stats(original[-1]["scores"]), "synther": stats(synther[-1]["scores"]),
        "stage1_updates": original[-1]["step"], "stage2_updates": synther[-1]["step"],
        "latent_samples_per_seed": config.latent.num_samples, "stage_seconds": timer.seconds,
        "command": command_line(),
    }
    write_json(os.path.join(workdir, "results.json"), results)
    steps = [e["step"] for e in original] + [original[-1]["step"] + e["step"] for e in synther]
    plot_learning_curve(steps, [e["scores"] for e in original + synther], os.path.join(workdir, "learning_curve.png"),
                        f"updates (stage 2, latent heads, after {original[-1]['step']})", "return / 10",
                        f"{config.algorithm}, {config.name}")
    return results


def main(argv):
    del argv
    FLAGS = flags.FLAGS
    results = run(FLAGS.config, FLAGS.workdir)
    print(f"{results['algorithm']} on {results['name']} over {results['num_seeds']} seeds (return / 10): original "
          f"{results['original']['mean']:.1f} +- {results['original']['std']:.1f}, SynthER "
          f"{results['synther']['mean']:.1f} +- {results['synther']['std']:.1f}; results in "
          f"{os.path.join(FLAGS.workdir, 'results.json')}")


if __name__ == "__main__":
    define_flags("configs/vd4rl.py:walker-walk-medium")
    boundary.run(main, INPUT_ERRORS, one_process=True)
