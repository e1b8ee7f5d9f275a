"""Data parallelism over a device mesh: one program, many devices (SPMD), no pmap.

The mesh has one axis, `data`, over all devices of the job (on one host: all local devices; after
`synther_jax.distributed.initialize` on a multi-process job: the devices of every process). Two placements cover what
synther_jax needs:

- `replicate(tree, mesh)`: every device holds a full copy (model parameters, optimiser state, the
  training data from which minibatches are drawn);
- `shard_leading_axis(tree, mesh)`: the leading axis is split across devices (a batch of samples,
  or the vmapped seed axis of the RL learners).

A jitted function whose inputs carry these placements is compiled by XLA's SPMD partitioner for
the whole mesh: each device computes its slice of the batch and gradients are all-reduced, so the
code of the computation stays the same as on one device. Random numbers do not depend on the
placement (JAX's partitionable threefry), so a sharded run matches a one-device run up to the
order of floating-point reductions.
"""
import math
from typing import Any, Optional

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"


def data_mesh(num_devices: Optional[int] = None) -> Mesh:
    """A one-axis mesh over the first `num_devices` devices (default: all of them)."""
    devices = jax.devices()
    num_devices = num_devices or len(devices)
    if not 1 <= num_devices <= len(devices):
        raise ValueError(f"Asked for a mesh of {num_devices} devices but only {len(devices)} exist.")
    return Mesh(np.asarray(devices[:num_devices]), (DATA_AXIS,))


def auto_mesh() -> Optional[Mesh]:
    """All devices when there are several, else None: what launchers pass as `mesh=` to the trainer."""
    return data_mesh() if jax.device_count() > 1 else None


def mesh_for_axis(size: int) -> Mesh:
    """The largest mesh whose device count divides `size`, e.g. 4 seeds on 8 devices use 4 of them."""
    return data_mesh(math.gcd(size, jax.device_count()))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def split_leading(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec(DATA_AXIS))


def _place(tree: Any, sharding: NamedSharding) -> Any:
    """Puts every leaf of `tree` on `sharding`'s devices.

    Each process builds its own shards from its full copy of the value, which is how data enters
    a multi-host mesh (every process loads the same dataset); on one host it is a device_put.
    """
    def leaf(x):
        if jax.process_count() == 1 or (isinstance(x, jax.Array) and not x.is_fully_addressable):
            return jax.device_put(x, sharding)
        host = np.asarray(x)
        return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])

    return jax.tree.map(leaf, tree)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """A copy of every leaf on every device of `mesh`."""
    return _place(tree, replicated(mesh))


def shard_leading_axis(tree: Any, mesh: Optional[Mesh] = None) -> Any:
    """Splits the leading axis of every leaf across `mesh` (default: `mesh_for_axis` of its size).

    All leaves must share the leading size, e.g. a seed-stacked learner state and its keys; the
    size must be a multiple of the mesh's device count.
    """
    sizes = {np.shape(x)[0] if np.ndim(x) else None for x in jax.tree.leaves(tree)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(f"shard_leading_axis needs leaves with one common leading axis; got leading sizes {sizes}.")
    size = sizes.pop()
    mesh = mesh or mesh_for_axis(size)
    if size % mesh.size:
        raise ValueError(f"A leading axis of {size} cannot be split evenly over {mesh.size} devices: use a multiple "
                         f"of {mesh.size}, or mesh_for_axis({size}) for a mesh that divides it.")
    return _place(tree, split_leading(mesh))


def constrain_leading_axis(x: jax.Array, mesh: Optional[Mesh]) -> jax.Array:
    """Inside jit: asks XLA to split `x`'s leading axis across `mesh` (no-op without a mesh)."""
    if mesh is None:
        return x
    return jax.lax.with_sharding_constraint(x, split_leading(mesh))


def to_host(x: jax.Array) -> np.ndarray:
    """The full value of a possibly sharded array as NumPy, on every process of a multi-host job."""
    if isinstance(x, jax.Array) and not x.is_fully_addressable:
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)
