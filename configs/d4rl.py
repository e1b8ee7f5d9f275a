"""Offline SynthER on D4RL-style locomotion datasets.

    --config=configs/d4rl.py:walker2d                   the bundled walker2d medium-replay data
    --config=configs/d4rl.py:hopper-medium              D4RL's hopper-medium-v2 file from the local cache
    --config=configs/d4rl.py:walker2d,smoke             every stage shrunk to CPU-minutes
    --config=configs/d4rl.py:walker2d,large             TD3+BC with 3x512 networks and batch 1024 (Table 3)
    --config=configs/d4rl.py:maze2d-umaze               maze2d (also -medium, -large) on PointMaze, data made
                                                        D4RL's way on first use (synther_jax.data.maze2d)
    --config.dataset=mujoco/walker2d/medium-v0          any dataset id or path `load_dataset` accepts
    --config.algorithm=iql --config.iql.beta=10         the learner and any of its hyperparameters

Defaults are the paper's: denoiser width 1024 (2048 for halfcheetah medium-expert and hopper medium
and medium-expert, Appendix B.1), 100K training steps, 5M synthetic transitions that replace the
real data, 4 seeds, CORL's hyperparameters with its per-dataset overrides, evaluation every 5000
updates on 10 episodes.
"""
import dataclasses

import ml_collections

from agents import OFFLINE_LEARNERS, td3_bc
from synther_jax.data import maze2d as maze2d_data
from synther_jax.data.loaders import DEFAULT_DATASET
from synther_jax.diffusion import DiffusionConfig

ENVS = ("walker2d", "hopper", "halfcheetah")
LEVELS = ("random", "medium", "medium-replay", "medium-expert")
WIDE_DENOISER = {"halfcheetah-medium-expert", "hopper-medium", "hopper-medium-expert"}
# D4RL-v2 data is evaluated on the -v4 environments, whose dynamics match it (v5 changed Walker2d).
D4RL_EVAL_ENVS = {"walker2d": "Walker2d-v4", "hopper": "Hopper-v4", "halfcheetah": "HalfCheetah-v4"}
# maze2d tasks: evaluated on `synther_jax.maze2d`'s environment of the same name, trained on our
# D4RL-style data (`synther/maze2d/<layout>-v0`, made by launch.offline when absent; `,smoke`: 50K steps).
MAZES = ("maze2d-umaze", "maze2d-medium", "maze2d-large")
# CORL's maze2d yaml files evaluate TD3+BC and IQL on 100 episodes (EDAC on 10; 100 here too: the
# 300-800-step episodes are cheap and more episodes only lower the variance).
MAZE_EVAL_EPISODES = 100


def get_config(arg: str = "walker2d") -> ml_collections.ConfigDict:
    name, *options = arg.split(",")
    unknown = set(options) - {"smoke", "large"}
    env, _, level = name.partition("-")
    if (name not in MAZES and (env not in ENVS or (level and level not in LEVELS))) or unknown:
        raise ValueError(f"Unknown config {arg!r}: use '<env>[-<level>][,smoke]' with env in {ENVS} and level in "
                         f"{LEVELS} (no level: the bundled {DEFAULT_DATASET}), or one of {MAZES}; "
                         "options: smoke, large.")

    config = ml_collections.ConfigDict()
    config.name = name
    config.seed = 0
    # The data: a dataset id or path (see synther_jax.data.load_dataset) and the env to evaluate on
    # (None: the one the dataset names).
    config.dataset = f"{env}-{level}-v2" if level else DEFAULT_DATASET
    config.env_id = ml_collections.config_dict.placeholder(str)
    if name in MAZES:
        config.dataset = maze2d_data.default_dataset_id(name, maze2d_data.SMOKE_NUM_STEPS if "smoke" in options
                                                        else None)
        config.env_id = name
    elif level:
        config.env_id = D4RL_EVAL_ENVS[env]
    config.modelled_terminals = True
    config.terminal_threshold = 0.5
    config.num_samples = 5_000_000

    width = 2048 if name in WIDE_DENOISER else 1024
    config.diffusion = ml_collections.ConfigDict(dataclasses.asdict(DiffusionConfig(width=width)))

    # What the agent trains on: "synthetic" (replaces the real data, as the paper), "real" or "mixed"
    # (both pooled). `augmentation` replaces the diffusion model by an explicit augmentation of the
    # real data (additive, multiplicative or dynamics noise; Appendix D.1) as a baseline, and
    # `real_fraction` subsamples the real data before anything else (Figure 4).
    config.data = "synthetic"
    config.augmentation = "none"
    config.real_fraction = 1.0
    config.analyze = True  # fidelity / physical-validity report after generation

    config.algorithm = "td3_bc"
    config.num_seeds = 4
    config.agent_steps = ml_collections.config_dict.placeholder(int)  # None: 1M (TD3+BC, IQL), 3M (EDAC)
    config.batch_size = 256
    config.eval_every = 5_000
    config.eval_episodes = MAZE_EVAL_EPISODES if name in MAZES else 10
    for algorithm, (module, config_cls) in OFFLINE_LEARNERS.items():
        # Set by the pipeline: the action dim from the data, IQL's actor LR decay length from agent_steps.
        fields = {f.name: f.default for f in dataclasses.fields(config_cls) if f.name not in ("action_dim", "max_steps")}
        fields.update(module.dataset_overrides(name))
        config[algorithm] = ml_collections.ConfigDict(fields)

    if "large" in options:
        config.td3_bc.hidden_dims = td3_bc.LARGE_HIDDEN_DIMS
        config.batch_size = td3_bc.LARGE_BATCH_SIZE
    if "smoke" in options:
        config.num_samples = 20_000
        config.diffusion.update(width=256, depth=3, dim_t=64, num_train_steps=15_000, steps_per_call=1_000,
                                checkpoint_every=5_000, sample_chunk_size=10_000)
        config.num_seeds = 2
        config.agent_steps = 4_000
        config.eval_every = 2_000
        config.eval_episodes = 2
        config.edac.num_critics = min(config.edac.num_critics, 4)
    return config
