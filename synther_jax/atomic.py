"""Atomic file writes: write next to the target under a temporary name, rename when complete.

A rename within one folder is atomic, so readers see either the previous file or the finished new
one, never a half-written file, even if the writer is killed. In a multi-process job only process 0
writes: the others' writes go to a scratch folder and are dropped (`synther_jax.distributed`).
"""
import contextlib
import json
import os
import tempfile
from typing import Any, Iterator

from synther_jax import distributed


@contextlib.contextmanager
def atomic_path(path: str) -> Iterator[str]:
    """Yields a temporary path in `path`'s folder; moves it onto `path` only if the block completes,
    and removes it otherwise. On a multi-process job's other processes it is dropped either way."""
    if not distributed.is_main():
        with tempfile.TemporaryDirectory() as scratch:
            yield os.path.join(scratch, os.path.basename(path))
        return
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp",
                                         dir=os.path.dirname(path))
    os.close(handle)
    try:
        yield temporary
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(temporary, 0o666 & ~umask)  # mkstemp makes files private; give the usual permissions.
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_json(path: str, value: Any) -> None:
    """Writes `value` as JSON atomically: readers see the old file or the new one, never half of one."""
    with atomic_path(path) as temporary, open(temporary, "w") as f:
        json.dump(value, f, indent=2)


def save_figure(figure: Any, path: str, **options: Any) -> None:
    """Saves a Matplotlib figure atomically, in the format of `path`'s suffix; `options` go to `savefig`."""
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=os.path.splitext(path)[1][1:] or "png", **options)


def read_json(path: str, default: Any) -> Any:
    """The JSON value stored at `path`, or `default` when there is no file; DamagedFileError, naming
    the file, when it holds no JSON (files written here are whole, so something else damaged it)."""
    if not os.path.exists(path):
        return default
    try:
        with open(path) as f:
            return json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        from synther_jax.errors import DamagedFileError  # not at the top: synther_jax.data imports this module

        raise DamagedFileError(f"{path} is damaged ({error}); restore it from a copy, or move it aside so that the "
                               "rerun writes it anew from what it can rebuild.") from error
