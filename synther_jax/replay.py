"""A fixed-capacity FIFO replay buffer that lives on the device, and real/synthetic batch mixing.

The buffer is a pytree (`flax.struct`), so inserting and sampling run inside jitted code and a
leading seed axis is just `jax.vmap`. Rows are written at `pointer` modulo the capacity; `size`
counts the valid rows. Every column is stored separately:
- `terminals`: 1 only where the episode really ended (the bootstrap mask is 1 - terminals);
- `timeouts`: 1 where a time limit cut the episode (bookkeeping for datasets; never a terminal);
- `episode_ids`: which episode a row came from (-1 for synthetic rows).

Online SynthER keeps two buffers, real and synthetic, and draws each minibatch from both with a
fixed synthetic fraction (paper Section 3.2: 0.5 gives 128 real + 128 synthetic rows of 256).
"""
from typing import Dict, Optional

import flax
import jax
import jax.numpy as jnp
import numpy as np

from synther_jax.data.transitions import KEYS, Transitions

Batch = Dict[str, jax.Array]


class ReplayBuffer(flax.struct.PyTreeNode):
    observations: jax.Array  # (capacity, obs_dim)
    actions: jax.Array  # (capacity, action_dim)
    rewards: jax.Array  # (capacity,)
    next_observations: jax.Array  # (capacity, obs_dim)
    terminals: jax.Array  # (capacity,)
    timeouts: jax.Array  # (capacity,)
    episode_ids: jax.Array  # (capacity,) int32
    size: jax.Array  # () int32: number of valid rows
    pointer: jax.Array  # () int32: where the next row goes

    @property
    def capacity(self) -> int:
        return self.rewards.shape[-1]


def create_buffer(capacity: int, obs_dim: int, action_dim: int) -> ReplayBuffer:
    """An empty buffer for `capacity` transitions."""
    if capacity < 1:
        raise ValueError(f"A replay buffer needs a positive capacity, got {capacity}.")
    zeros = lambda *shape: jnp.zeros((capacity, *shape), jnp.float32)
    return ReplayBuffer(zeros(obs_dim), zeros(action_dim), zeros(), zeros(obs_dim), zeros(), zeros(),
                        jnp.full((capacity,), -1, jnp.int32), jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32))


def insert(buffer: ReplayBuffer, rows: Dict[str, jax.Array]) -> ReplayBuffer:
    """Appends N transitions (a dict of arrays with a leading axis N), overwriting the oldest rows.

    `rows` needs the five batch keys; `timeouts` and `episode_ids` are optional (0 and -1).
    """
    n = rows["rewards"].shape[0]
    if n > buffer.capacity:
        raise ValueError(f"Cannot insert {n} rows into a buffer of capacity {buffer.capacity}; keep the newest "
                         "rows only or enlarge the buffer.")
    index = (buffer.pointer + jnp.arange(n)) % buffer.capacity
    defaults = {"timeouts": jnp.zeros(n, jnp.float32), "episode_ids": jnp.full(n, -1, jnp.int32)}
    updates = {key: getattr(buffer, key).at[index].set(rows.get(key, defaults.get(key)))
               for key in (*KEYS, "timeouts", "episode_ids")}
    return buffer.replace(**updates, size=jnp.minimum(buffer.size + n, buffer.capacity),
                          pointer=(buffer.pointer + n) % buffer.capacity)


def sample(buffer: ReplayBuffer, key: jax.Array, batch_size: int) -> Batch:
    """`batch_size` valid rows drawn uniformly with replacement (as the original's FIFO buffer)."""
    index = jax.random.randint(key, (batch_size,), 0, buffer.size)
    return {k: getattr(buffer, k)[index] for k in KEYS}


def sample_mixed(real: ReplayBuffer, synthetic: Optional[ReplayBuffer], key: jax.Array, batch_size: int,
                 synthetic_ratio: float) -> Batch:
    """A batch whose last round(ratio * batch_size) rows come from `synthetic`, the rest from `real`.

    As the original, the whole batch is real while the synthetic buffer holds fewer rows than its
    share (before the first generation), and when there is no synthetic buffer or the ratio is 0.
    `synthetic_ratio` must be a Python float (it fixes the batch layout at trace time).
    """
    num_synthetic = int(round(synthetic_ratio * batch_size))
    if not 0 <= num_synthetic <= batch_size:
        raise ValueError(f"synthetic_ratio must lie in [0, 1], got {synthetic_ratio}.")
    real_key, synthetic_key = jax.random.split(key)
    real_batch = sample(real, real_key, batch_size)
    if synthetic is None or num_synthetic == 0:
        return real_batch
    synthetic_batch = sample(synthetic, synthetic_key, num_synthetic)
    use_synthetic = synthetic.size >= num_synthetic
    num_real = batch_size - num_synthetic
    return {k: jnp.where(use_synthetic, jnp.concatenate([real_batch[k][:num_real], synthetic_batch[k]]), real_batch[k])
            for k in KEYS}


def insert_transitions(buffer: ReplayBuffer, transitions: Transitions) -> ReplayBuffer:
    """Appends host `Transitions` (e.g. generated rows), keeping at most the newest `capacity`."""
    rows = dict(transitions.as_dict())
    if transitions.timeouts is not None:
        rows["timeouts"] = np.asarray(transitions.timeouts, np.float32)
    if transitions.episode_ids is not None:
        rows["episode_ids"] = np.asarray(transitions.episode_ids, np.int32)
    rows = {k: jnp.asarray(v[-buffer.capacity:]) for k, v in rows.items()}
    return insert(buffer, rows)


def to_transitions(buffer: ReplayBuffer) -> Transitions:
    """The valid rows of one (un-vmapped) buffer, oldest first, as host `Transitions`."""
    buffer = jax.device_get(buffer)
    size, pointer, capacity = int(buffer.size), int(buffer.pointer), buffer.capacity
    if size == 0:
        raise ValueError("The replay buffer is empty: it holds no transitions.")
    order = (np.arange(size) + (pointer - size)) % capacity
    return Transitions(**{k: np.asarray(getattr(buffer, k))[order] for k in KEYS},
                       timeouts=np.asarray(buffer.timeouts)[order], episode_ids=np.asarray(buffer.episode_ids)[order])
