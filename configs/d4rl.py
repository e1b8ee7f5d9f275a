"""Offline SynthER on D4RL-style locomotion datasets.

    --config=configs/d4rl.py:walker2d                   the bundled walker2d medium-replay data
    --config=configs/d4rl.py:hopper-medium              D4RL's hopper-medium-v2 file from the local cache
    --config=configs/d4rl.py:walker2d,smoke             every stage shrunk to CPU-minutes
    --config.dataset=mujoco/walker2d/medium-v0          any dataset id or path `load_dataset` accepts

Defaults are the paper's: denoiser width 1024 (2048 for halfcheetah medium-expert and hopper medium
and medium-expert, Appendix B.1), 100K training steps, 5M synthetic transitions.
"""
import dataclasses

import ml_collections

from synther_jax.data.loaders import DEFAULT_DATASET
from synther_jax.diffusion import DiffusionConfig

ENVS = ("walker2d", "hopper", "halfcheetah")
LEVELS = ("random", "medium", "medium-replay", "medium-expert")
WIDE_DENOISER = {"halfcheetah-medium-expert", "hopper-medium", "hopper-medium-expert"}
# D4RL-v2 data is evaluated on the -v4 environments, whose dynamics match it (v5 changed Walker2d).
D4RL_EVAL_ENVS = {"walker2d": "Walker2d-v4", "hopper": "Hopper-v4", "halfcheetah": "HalfCheetah-v4"}


def get_config(arg: str = "walker2d") -> ml_collections.ConfigDict:
    name, *options = arg.split(",")
    unknown = set(options) - {"smoke"}
    env, _, level = name.partition("-")
    if env not in ENVS or (level and level not in LEVELS) or unknown:
        raise ValueError(f"Unknown config {arg!r}: use '<env>[-<level>][,smoke]' with env in {ENVS} and level in "
                         f"{LEVELS} (no level: the bundled {DEFAULT_DATASET}).")

    config = ml_collections.ConfigDict()
    config.name = name
    config.seed = 0
    # The data: a dataset id or path (see synther_jax.data.load_dataset) and the env to evaluate on
    # (None: the one the dataset names).
    config.dataset = f"{env}-{level}-v2" if level else DEFAULT_DATASET
    config.env_id = ml_collections.config_dict.placeholder(str)
    if level:
        config.env_id = D4RL_EVAL_ENVS[env]
    config.modelled_terminals = True
    config.terminal_threshold = 0.5
    config.num_samples = 5_000_000

    width = 2048 if name in WIDE_DENOISER else 1024
    config.diffusion = ml_collections.ConfigDict(dataclasses.asdict(DiffusionConfig(width=width)))

    if "smoke" in options:
        config.num_samples = 20_000
        config.diffusion.update(width=128, depth=2, dim_t=32, num_train_steps=3_000, steps_per_call=500,
                                checkpoint_every=1_000, sample_chunk_size=10_000)
    return config
