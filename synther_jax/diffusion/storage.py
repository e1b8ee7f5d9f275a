"""What a diffusion workdir holds, and the model read back from it.

`train_diffusion(..., workdir=...)` writes
- `fit.json`: what the checkpoints were fitted to (`training.claim_fit`);
- `diffusion_config.json`: the config, the row size `dim` and, for models with a seed axis
  (trained from a stack of keys), `num_seeds`;
- `checkpoints/<step>/`: `checkpoint_tree`, i.e. the `TrainState`, the data normaliser and, for a
  conditional model, the condition's; with the seed axis when there is one, without it for one key.
"""
import dataclasses
import os
from typing import Optional

import jax
import jax.numpy as jnp

from synther_jax.atomic import read_json, write_json
from synther_jax.checkpoint import Checkpointer
from synther_jax.diffusion.config import DiffusionConfig
from synther_jax.diffusion.guidance import ConditionNormalizer
from synther_jax.diffusion.model import Diffusion, TrainState, init_state, stacked
from synther_jax.diffusion.normalizer import Normalizer

CONFIG_FILE = "diffusion_config.json"


def checkpoint_tree(state: TrainState, normalizer: Normalizer,
                    condition_normalizer: Optional[ConditionNormalizer]) -> dict:
    """What a training checkpoint holds."""
    tree = {"state": state, "normalizer": normalizer}
    if condition_normalizer is not None:
        tree["condition_normalizer"] = condition_normalizer
    return tree


def write_config(workdir: str, config: DiffusionConfig, dim: int, num_seeds: Optional[int] = None) -> None:
    """diffusion_config.json: what `load_diffusion` rebuilds the model from (`num_seeds` for models
    with a seed axis)."""
    seeds = {} if num_seeds is None else {"num_seeds": num_seeds}
    write_json(os.path.join(workdir, CONFIG_FILE), {"dim": dim, **seeds, **dataclasses.asdict(config)})


def load_diffusion(workdir: str) -> Diffusion:
    """The EMA model of the newest checkpoint that `train_diffusion(..., workdir=workdir)` wrote
    (the seeds' models, with their leading seed axis, when it was trained from a stack of keys)."""
    fields = read_json(os.path.join(workdir, CONFIG_FILE), None)
    if fields is None:
        raise FileNotFoundError(f"No diffusion model in {workdir!r} (missing {CONFIG_FILE}); train one "
                                "with launch.synthesize first.")
    dim, num_seeds = fields.pop("dim"), fields.pop("num_seeds", None)
    config = DiffusionConfig(**fields)
    template = model_template(config, dim)
    target = checkpoint_tree(init_state(config, jax.random.PRNGKey(0), dim), template.normalizer,
                             template.condition_normalizer)
    if num_seeds is not None:
        target = stacked(target, num_seeds)
    restored = Checkpointer(os.path.join(workdir, "checkpoints")).restore_latest(target)
    if restored is None:
        raise FileNotFoundError(f"No checkpoint under {workdir!r}/checkpoints.")
    tree = restored[1]
    return Diffusion(config, dim, tree["state"].ema_params, tree["state"].constants, tree["normalizer"],
                     tree.get("condition_normalizer"))


def model_template(config: DiffusionConfig, dim: int) -> Diffusion:
    """A model of the right structure and shapes for `config`, to restore a saved one into."""
    fresh = init_state(config, jax.random.PRNGKey(0), dim)
    condition_normalizer = ConditionNormalizer(jnp.float32(0), jnp.float32(1)) if config.conditional else None
    return Diffusion(config, dim, fresh.ema_params, fresh.constants, Normalizer(jnp.zeros(dim), jnp.ones(dim)),
                     condition_normalizer)
