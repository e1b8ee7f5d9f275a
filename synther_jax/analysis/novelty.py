"""Novelty: how far is each synthetic transition from the real data? (paper Figure 5, x axis)

For every query row we find the nearest real row in the normalised space (each column divided by
the real data's standard deviation after subtracting its mean, so no dimension dominates because
of its units) and report the L2 distance. The search is exact and brute force, in chunks on the
device: a jitted function scans over blocks of the reference set keeping the running minimum of
||q||^2 - 2 q.r + ||r||^2 for a block of queries. That expansion loses precision for near
duplicates, so the distance to the winning neighbour is then recomputed directly as ||q - r||.
"""
from typing import Tuple

import jax
import jax.numpy as jnp
import numpy as np

from synther_jax.progress import Progress


def standardize(real: np.ndarray, *others: np.ndarray) -> Tuple[np.ndarray, ...]:
    """Every array shifted and scaled by the real data's per-column mean and std (std 0 -> 1)."""
    mean = real.mean(axis=0)
    std = real.std(axis=0)
    std = np.where(std > 0, std, 1.0)
    return tuple(((x - mean) / std).astype(np.float32) for x in (real, *others))


@jax.jit
def _nearest_in_blocks(queries: jax.Array, blocks: jax.Array, block_valid: jax.Array) -> jax.Array:
    """Index of the nearest reference row for every query row; `blocks` (num_blocks, block_size, D)
    holds the references, padded to whole blocks, and `block_valid` marks the real (unpadded) rows."""
    num_blocks, block_size, _ = blocks.shape
    query_norms = jnp.sum(queries ** 2, axis=1, keepdims=True)

    def scan_block(carry, inputs):
        best_dist, best_idx = carry
        block, valid, offset = inputs
        dist = query_norms - 2.0 * queries @ block.T + jnp.sum(block ** 2, axis=1)[None, :]
        dist = jnp.where(valid[None, :], dist, jnp.inf)
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

    Memory per step is query_chunk x block_size floats. The references go to the device once,
    padded to whole blocks, and the last query chunk is padded, so the search compiles once.
    """
    if queries.ndim != 2 or references.ndim != 2 or queries.shape[1] != references.shape[1]:
        raise ValueError(f"Expected (Q, D) queries and (R, D) references, got {queries.shape} and {references.shape}.")
    queries = np.asarray(queries, np.float32)
    block_size = min(block_size, len(references))
    num_blocks = -(-len(references) // block_size)
    padded_references = np.zeros((num_blocks * block_size, references.shape[1]), np.float32)
    padded_references[:len(references)] = references
    blocks = jnp.asarray(padded_references.reshape(num_blocks, block_size, -1))
    block_valid = jnp.asarray((np.arange(num_blocks * block_size) < len(references)).reshape(num_blocks, block_size))
    query_chunk = min(query_chunk, len(queries))
    indices = np.zeros(len(queries), np.int64)
    starts = range(0, len(queries), query_chunk)
    for start in Progress(len(starts), "nearest neighbours", unit="chunk", enabled=progress, leave=False).track(starts):
        chunk = queries[start:start + query_chunk]
        padded = np.zeros((query_chunk, queries.shape[1]), np.float32)
        padded[:len(chunk)] = chunk
        nearest = _nearest_in_blocks(padded, blocks, block_valid)
        indices[start:start + len(chunk)] = np.asarray(nearest)[:len(chunk)]
    nearest_rows = np.asarray(references)[indices].astype(np.float64)
    distances = np.linalg.norm(queries.astype(np.float64) - nearest_rows, axis=1)
    return distances, indices


def min_distances(real_rows: np.ndarray, query_rows: np.ndarray, **kwargs) -> np.ndarray:
    """Each query row's minimum L2 distance to the real rows, in the real data's normalised space."""
    real, queries = standardize(np.asarray(real_rows, np.float64), np.asarray(query_rows, np.float64))
    distances, _ = nearest_neighbours(queries, real, **kwargs)
    return distances
