"""Resumable checkpoints of any pytree, on top of Orbax.

Orbax writes each step into a temporary folder and renames it when complete, so a crash never
leaves a half-written checkpoint that a later run would load. Restoring needs a target pytree of
the same structure (e.g. a freshly initialised state), which also restores dtypes and shapes.
A checkpoint damaged afterwards (a file truncated or lost, say by a full disk or a copy cut short)
is skipped for the one before it, as Orbax's own manager keeps several steps for.
"""
import os
from typing import Any, Optional, Set, Tuple

import jax
import orbax.checkpoint as ocp
from absl import logging

from synther_jax import sharding
from synther_jax.errors import DamagedFileError


class Checkpointer:
    """Saves pytrees under `directory/<step>/` and restores the newest one that restores."""

    def __init__(self, directory: str, max_to_keep: int = 2):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, enable_async_checkpointing=False)
        self._manager = ocp.CheckpointManager(self.directory, options=options)
        self._damaged: Set[int] = set()  # steps found damaged by `restore_latest`

    def save(self, step: int, tree: Any) -> None:
        """Saves `tree` as `step`, replacing a damaged checkpoint of that step."""
        step = int(step)
        if step in self._damaged:
            self._manager.delete(step)
            self._damaged.discard(step)
        # As host arrays, which process 0 writes and any number of processes and devices restore.
        host_tree = jax.tree.map(sharding.to_host, tree)
        self._manager.save(step, args=ocp.args.StandardSave(host_tree), force=True)
        self._manager.wait_until_finished()

    def latest_step(self) -> Optional[int]:
        return self._manager.latest_step()

    def restore_latest(self, target: Any) -> Optional[Tuple[int, Any]]:
        """(step, tree) of the newest checkpoint that restores, or None when there is none.

        A checkpoint that does not restore is logged in one line and the one before it is tried; it
        stays on disk until a save of the same step replaces it. DamagedFileError, naming the
        folder to delete, when there are checkpoints and none restores.
        """
        abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
        steps = sorted(self._manager.all_steps(), reverse=True)
        for step in steps:
            try:
                return step, self._manager.restore(step, args=ocp.args.StandardRestore(abstract))
            except Exception as error:  # Orbax and TensorStore raise many kinds (ValueError, JSONDecodeError, ...)
                reason = " ".join(f"{type(error).__name__}: {error}".split())[:200]
                logging.warning("Checkpoint %s does not restore (%s); trying the one before it.",
                                os.path.join(self.directory, str(step)), reason)
                self._damaged.add(step)
        if steps:
            raise DamagedFileError(f"No checkpoint in {self.directory} restores (steps {', '.join(map(str, steps))}: "
                                   "damaged, or written by another version or config); delete that folder to start "
                                   "its stage over, or restore it from a copy.")
        return None

    def close(self) -> None:
        self._manager.close()
