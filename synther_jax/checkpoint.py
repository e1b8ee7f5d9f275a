"""Resumable checkpoints of any pytree, on top of Orbax.

Orbax writes each step into a temporary folder and renames it when complete, so a crash never
leaves a half-written checkpoint that a later run would load. Restoring needs a target pytree of
the same structure (e.g. a freshly initialised state), which also restores dtypes and shapes.
"""
import os
from typing import Any, Optional, Tuple

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    """Saves pytrees under `directory/<step>/` and restores the latest one."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(os.path.abspath(directory), options=options)

    def save(self, step: int, tree: Any) -> None:
        self._manager.save(int(step), args=ocp.args.StandardSave(jax.device_get(tree)), force=True)
        self._manager.wait_until_finished()

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def restore_latest(self, target: Any) -> Optional[Tuple[int, Any]]:
        """Returns (step, tree) of the newest checkpoint, or None when there is none."""
        step = self._manager.latest_step()
        if step is None:
            return None
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        return step, self._manager.restore(step, args=ocp.args.StandardRestore(abstract))

    def close(self) -> None:
        self._manager.close()
