"""The diffusion model's arrays: the trained model, the training state, and their seed axis.

`Diffusion` is what sampling reads and `load_diffusion` returns; `TrainState` is what training
updates and each checkpoint holds. Training, sampling and storage all build or read them, so they
live below those three modules.

Any of them may carry a leading seed axis: S models that train and sample together as one vmapped
program (online SynthER's per-seed models, offline SynthER's `denoiser_per_seed`), which a GPU
runs side by side. One model is the one-seed case: the entry points take one key or a stack of
keys (`is_one_key`), add the axis for one key (`with_seed_axis`), run the vmapped program and
drop the axis again (`without_seed_axis`).

Deviation from the original, without effect on SynthER (weight decay 0): optax's AdamW decays
every parameter, torch's skips biases.
"""
from typing import Optional

import flax.struct
import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from synther_jax import sharding
from synther_jax.diffusion import edm
from synther_jax.diffusion.config import DiffusionConfig, DistillConfig
from synther_jax.diffusion.denoiser import init_variables
from synther_jax.diffusion.guidance import ConditionNormalizer
from synther_jax.diffusion.normalizer import Normalizer


class Diffusion(flax.struct.PyTreeNode):
    """A trained model: EMA weights, fixed frequencies, the data normaliser and, for a conditional
    model, the condition's. A distilled model (`distilled` set) holds the weights of a consistency
    function with the teacher's architecture (`config`) and samples in `distilled.num_steps`
    evaluations (`synther_jax.diffusion.distillation`)."""

    config: DiffusionConfig = flax.struct.field(pytree_node=False)
    dim: int = flax.struct.field(pytree_node=False)
    params: dict
    constants: dict
    normalizer: Normalizer
    condition_normalizer: Optional[ConditionNormalizer] = None
    distilled: Optional[DistillConfig] = flax.struct.field(pytree_node=False, default=None)

    @property
    def network_evaluations(self) -> int:
        """Network evaluations per sample of the sampler `generate` uses for this model."""
        return self.distilled.num_steps if self.distilled is not None else edm.network_evaluations(self.config)


class TrainState(flax.struct.PyTreeNode):
    step: jax.Array  # optimisation steps done
    params: dict
    ema_params: dict
    constants: dict  # the denoiser's fixed Fourier frequencies
    opt_state: optax.OptState


def make_optimizer(config: DiffusionConfig) -> optax.GradientTransformation:
    schedule = optax.cosine_decay_schedule(config.learning_rate, config.num_train_steps)
    return optax.chain(
        optax.clip_by_global_norm(config.grad_clip),
        optax.adamw(schedule, b1=config.adam_b1, b2=config.adam_b2, eps=1e-8, weight_decay=config.weight_decay),
    )


def init_state(config: DiffusionConfig, key: jax.Array, dim: int) -> TrainState:
    variables = init_variables(config.denoiser(), key, dim)
    params = variables["params"]
    ema_params = jax.tree.map(jnp.copy, params)  # a separate buffer: the train step donates the state
    return TrainState(jnp.int32(0), params, ema_params, variables["constants"], make_optimizer(config).init(params))


def denoiser_fn(config: DiffusionConfig, params, constants, mesh: Optional[Mesh] = None):
    """The denoiser as a function of (x, c_noise[, condition, keep]); with a mesh, its batch is split
    across the devices."""
    denoiser = config.denoiser()

    def net(x, c_noise, *condition_and_keep):
        inputs = [sharding.constrain_leading_axis(a, mesh) for a in (x, c_noise, *condition_and_keep)]
        return denoiser.apply({"params": params, "constants": constants}, *inputs)

    return net


def is_one_key(key: jax.Array) -> bool:
    """Whether `key` is one PRNG key (a raw `jax.random.PRNGKey`, or a typed scalar key) rather than
    a stack of keys with a leading seed axis."""
    typed = jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key)
    return key.ndim == (0 if typed else 1)


def with_seed_axis(tree):
    """`tree` as the one seed of a leading seed axis."""
    return jax.tree.map(lambda x: x[None], tree)


def without_seed_axis(tree):
    """The one seed of `tree`'s leading seed axis."""
    return jax.tree.map(lambda x: x[0], tree)


def stacked(tree, num_seeds: int):
    """`tree` repeated along a new leading seed axis."""
    return jax.tree.map(lambda x: jnp.stack([x] * num_seeds), tree)


def check_divisible(size: int, mesh: Optional[Mesh], what: str) -> None:
    if mesh is not None and size % mesh.size:
        raise ValueError(f"The {what} ({size}) must be a multiple of the number of devices ({mesh.size}) to be "
                         f"split across them; change it or use a mesh of fewer devices.")
