"""Novelty: how far is each synthetic transition from the real data? (paper Figure 5, x axis)

For every query row we find the nearest real row in the normalised space (each column divided by
the real data's standard deviation after subtracting its mean, so no dimension dominates because
of its units) and report the L2 distance. The search is exact and brute force, in chunks on the
device: a jitted function scans over blocks of the reference set keeping the running minimum of
||q||^2 - 2 q.r + ||r||^2 for a block of queries. That expansion loses precision for near
duplicates, so the distance to the winning neighbour is then recomputed directly as ||q - r||.
"""
import functools
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm


def standardize(real: np.ndarray, *others: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Every array shifted and scaled by the real data's per-column mean and std (std 0 -> 1)."""
    mean = real.mean(axis=0)
    std = real.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple(((x - mean) / std).astype(np.float32) for x in (real, *others))


@functools.partial(jax.jit, static_argnames="block_size")
def _nearest_in_blocks(queries: jax.Array, references: jax.Array, block_size: int) -> jax.Array:
    """Index of the nearest reference row for every query row (references padded to whole blocks)."""
    num_refs = references.shape[0]
    num_blocks = -(-num_refs // block_size)
    padded = jnp.zeros((num_blocks * block_size, references.shape[1]), references.dtype).at[:num_refs].set(references)
    valid = jnp.arange(num_blocks * block_size) < num_refs
    blocks = padded.reshape(num_blocks, block_size, -1)
    block_valid = valid.reshape(num_blocks, block_size)
    query_norms = jnp.sum(queries ** 2, axis=1, keepdims=True)

    def scan_block(carry, inputs):
        best_dist, best_idx = carry
        block, block_ok, offset = inputs
        dist = query_norms - 2.0 * queries @ block.T + jnp.sum(block ** 2, axis=1)[None, :]
        dist = jnp.where(block_ok[None, :], dist, jnp.inf)
        idx = jnp.argmin(dist, axis=1)
        dist = jnp.min(dist, axis=1)
        better = dist < best_dist
        return (jnp.where(better, dist, best_dist), jnp.where(better, idx + offset, best_idx)), None

    init = (jnp.full(queries.shape[0], jnp.inf, queries.dtype), jnp.zeros(queries.shape[0], jnp.int32))
    offsets = jnp.arange(num_blocks, dtype=jnp.int32) * block_size
    (_, best_idx), _ = jax.lax.scan(scan_block, init, (blocks, block_valid, offsets))
    return best_idx


def nearest_neighbours(queries: np.ndarray, references: np.ndarray, query_chunk: int = 4096,
                       block_size: int = 8192, progress: bool = True) -> Tuple[np.ndarray, np.ndarray]:
    """Exact nearest reference row for every query row: (distances (Q,), indices (Q,)).

    Memory per step is query_chunk x block_size floats; the last query chunk is padded so the
    jitted function compiles once.
    """
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
        raise ValueError(f"Expected (Q, D) queries and (R, D) references, got {queries.shape} and {references.shape}.")
    queries = np.asarray(queries, np.float32)
    references_device = jnp.asarray(references, jnp.float32)
    block_size = min(block_size, len(references))
    query_chunk = min(query_chunk, len(queries))
    indices = np.zeros(len(queries), np.int64)
    for start in tqdm(range(0, len(queries), query_chunk), desc="nearest neighbours", disable=not progress, leave=False):
        chunk = queries[start:start + query_chunk]
        padded = np.zeros((query_chunk, queries.shape[1]), np.float32)
        padded[:len(chunk)] = chunk
        indices[start:start + len(chunk)] = np.asarray(_nearest_in_blocks(padded, references_device, block_size))[:len(chunk)]
    distances = np.linalg.norm(queries.astype(np.float64) - np.asarray(references, np.float64)[indices], axis=1)
    return distances, indices


def min_distances(real_rows: np.ndarray, query_rows: np.ndarray, **kwargs) -> np.ndarray:
    """Each query row's minimum L2 distance to the real rows, in the real data's normalised space."""
    real, queries = standardize(np.asarray(real_rows, np.float64), np.asarray(query_rows, np.float64))
    distances, _ = nearest_neighbours(queries, real, **kwargs)
    return distances
