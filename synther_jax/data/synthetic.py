"""Synthetic datasets on disk: `samples.npz`, written in chunks, atomically, with metadata beside it.

The file is exactly what the original writes (`np.savez_compressed` of observations, actions,
rewards, next_observations, terminals; rewards and terminals of shape (N,)): five arrays of equal
length, so CORL-style scripts read it with `np.load(path)[key]` and SynthER's loader may cut every
entry to `[:sample_limit]`. The metadata (source dataset, config, seed, model checkpoint,
environment) is a JSON file beside it, `samples.json` for `samples.npz`; files from before that
change carry it as a sixth `metadata` entry, which `read_synthetic` still reads.

5M transitions do not fit twice in memory, and a zip entry must be written in one go, so
`SyntheticWriter` appends each chunk to one raw file per key in a temporary folder beside the target,
then streams those files into the zip and renames it onto the target. Memory holds one chunk at a
time; disk briefly holds the data twice. If anything fails or the writer is interrupted, the
temporary files are removed and a previous file at the target stays untouched; a `resumable`
writer keeps them instead, in `.<name>.partial/` beside the target, and the next resumable writer
of the same path appends to the rows they hold (hours of sampling survive a crash).
"""
import json
import os
import shutil
import tempfile
import zipfile
from typing import Any, Dict, Mapping, Optional, Union

import numpy as np

from synther_jax.atomic import atomic_path, read_json, write_json
from synther_jax.data.env_check import env_dims
from synther_jax.data.transitions import KEYS, Transitions
from synther_jax.errors import DatasetNotFoundError, InvalidDatasetError
from synther_jax.progress import Progress

FORMAT = "synther_jax-synthetic-v1"
_COPY_BYTES = 1 << 20
_WRITTEN = "written.json"  # a resumable writer's record of the rows in its .partial folder


def metadata_path(path: str) -> str:
    """The JSON file that holds the metadata of the synthetic dataset at `path` (`x.npz` -> `x.json`)."""
    return os.path.splitext(path)[0] + ".json"


def _to_transitions(chunk: Union[Transitions, Mapping[str, np.ndarray]]) -> Transitions:
    """Validates a chunk (finite, consistent shapes) through the `Transitions` container."""
    if isinstance(chunk, Transitions):
        return chunk
    missing = [key for key in KEYS if key not in chunk]
    if missing:
        raise InvalidDatasetError(f"A synthetic chunk lacks {missing}; it needs the keys {list(KEYS)}.")
    return Transitions(*(chunk[key] for key in KEYS))


class SyntheticWriter:
    """Streams chunks of synthetic transitions to `path` (an `.npz`).

    Use as a context manager: the file appears when the block ends normally and not at all if it
    raises. `env_id`, when given, is checked against the chunks' dimensions (see `check_fits_env`).

        with SyntheticWriter(path, source_dataset=..., config=..., seed=..., model_checkpoint=...,
                             env_id="Walker2d-v5") as writer:
            for chunk in chunks:
                writer.write(chunk)
    """

    def __init__(self, path: str, *, source_dataset: str, config: Mapping[str, Any], seed: int,
                 model_checkpoint: Optional[str], env_id: Optional[str] = None, resumable: bool = False):
        if not path.endswith(".npz"):
            raise ValueError(f"Synthetic datasets are .npz files; got {path!r}.")
        self.path = os.path.abspath(path)
        config = config.to_dict() if hasattr(config, "to_dict") else dict(config)  # ConfigDict or mapping.
        self.metadata: Dict[str, Any] = json.loads(json.dumps({
            "format": FORMAT, "source_dataset": source_dataset, "config": config, "seed": int(seed),
            "model_checkpoint": model_checkpoint, "env_id": env_id}, default=str))
        self.env_dims = None
        if env_id is not None:
            self.env_dims = env_dims(env_id)  # Raises UnknownEnvironmentError before anything is written.
        self.resumable = resumable
        self.num_transitions = 0
        self._dims: Optional[Dict[str, tuple]] = None
        self._folder: Optional[str] = None
        self._files: Dict[str, Any] = {}

    def __enter__(self) -> "SyntheticWriter":
        """Opens the stream folder; a resumable writer reopens its `.partial` folder, and
        `num_transitions` then counts the rows already in it."""
        directory = os.path.dirname(self.path)
        os.makedirs(directory, exist_ok=True)
        if not self.resumable:
            self._folder = tempfile.mkdtemp(prefix=f".{os.path.basename(self.path)}.", dir=directory)
            self._files = {key: open(os.path.join(self._folder, key), "wb") for key in KEYS}
            return self
        self._folder = os.path.join(directory, f".{os.path.basename(self.path)}.partial")
        os.makedirs(self._folder, exist_ok=True)
        written = read_json(os.path.join(self._folder, _WRITTEN), {"rows": 0, "dims": None})
        self.num_transitions = written["rows"]
        self._dims = None if written["dims"] is None else {key: tuple(d) for key, d in written["dims"].items()}
        self._files = {key: open(os.path.join(self._folder, key), "ab") for key in KEYS}
        self.truncate(self.num_transitions)  # drops what a crash left after the last recorded chunk
        return self

    def truncate(self, num_transitions: int) -> None:
        """Keeps only the first `num_transitions` rows (for a resumed writer to line up with others
        that had written fewer)."""
        if num_transitions > self.num_transitions:
            raise ValueError(f"Cannot keep {num_transitions} rows of {self.path}: it holds {self.num_transitions}.")
        for key, handle in self._files.items():
            handle.truncate(num_transitions * 4 * int(np.prod(self._dims[key])) if num_transitions else 0)
        self.num_transitions = num_transitions
        self._record()

    def _record(self) -> None:
        """A resumable writer's count of whole rows on disk, written after each chunk."""
        if self.resumable:
            for handle in self._files.values():
                handle.flush()
            write_json(os.path.join(self._folder, _WRITTEN), {
                "rows": self.num_transitions,
                "dims": None if self._dims is None else {key: list(d) for key, d in self._dims.items()}})

    def write(self, chunk: Union[Transitions, Mapping[str, np.ndarray]]) -> None:
        """Appends a chunk (a `Transitions` or a dict with the five keys); raises InvalidDatasetError,
        or ValueError from `Transitions`, on NaN/inf, mismatched lengths or dims."""
        if self._folder is None:
            raise RuntimeError("Use SyntheticWriter as a context manager: `with SyntheticWriter(...) as writer:`.")
        chunk = _to_transitions(chunk)
        dims = {key: getattr(chunk, key).shape[1:] for key in KEYS}
        if self._dims is None:
            if self.env_dims is not None and (chunk.obs_dim, chunk.action_dim) != self.env_dims:
                raise InvalidDatasetError(
                    f"Synthetic transitions have obs_dim={chunk.obs_dim}, action_dim={chunk.action_dim} but "
                    f"{self.metadata['env_id']} has {self.env_dims}; was the model trained on another dataset?")
            self._dims = dims
        elif dims != self._dims:
            raise InvalidDatasetError(f"Chunk shapes {dims} differ from the first chunk's {self._dims}.")
        for key in KEYS:
            getattr(chunk, key).astype("<f4", copy=False).tofile(self._files[key])
        self.num_transitions += len(chunk)
        self._record()

    def __exit__(self, error_type, error, traceback) -> None:
        try:
            for handle in self._files.values():
                handle.close()
            if error_type is None:
                self._finish()
        finally:
            if error_type is None or not self.resumable:
                shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def _finish(self) -> None:
        if self.num_transitions == 0:
            raise InvalidDatasetError("No synthetic transitions were written; nothing was saved.")
        # Both files are written under temporary names and renamed into place at the end, the .npz
        # first: a crash never leaves a half-written file.
        with atomic_path(metadata_path(self.path)) as metadata_file, atomic_path(self.path) as temporary:
            with open(metadata_file, "w") as handle:
                json.dump(dict(self.metadata, num_transitions=self.num_transitions), handle, indent=2, sort_keys=True)
            with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED, allowZip64=True) as archive:
                total = sum(os.path.getsize(os.path.join(self._folder, key)) for key in KEYS)
                with Progress(total, f"writing {os.path.basename(self.path)}", unit="B", unit_scale=True) as bar:
                    for key in KEYS:
                        shape = (self.num_transitions,) + self._dims[key]
                        with archive.open(f"{key}.npy", "w", force_zip64=True) as entry, \
                                open(os.path.join(self._folder, key), "rb") as source:
                            np.lib.format.write_array_header_1_0(
                                entry, {"descr": "<f4", "fortran_order": False, "shape": shape})
                            while block := source.read(_COPY_BYTES):
                                entry.write(block)
                                bar.update(len(block))


def write_synthetic(path: str, transitions: Transitions, **metadata) -> None:
    """Writes `transitions` in one chunk; `metadata` as for `SyntheticWriter`."""
    with SyntheticWriter(path, **metadata) as writer:
        writer.write(transitions)


_READ_ERRORS = (OSError, ValueError, EOFError, zipfile.BadZipFile)  # what NumPy raises on a damaged .npz


def _corrupt(path: str, error: Exception) -> InvalidDatasetError:
    reason = "it is not a NumPy .npz archive" if "pickle" in str(error) else f"it is truncated or corrupt ({error})"
    return InvalidDatasetError(f"Cannot read {path}: {reason}; replace it with a whole synthetic dataset, or delete "
                               "it and generate it again.")


def read_synthetic_metadata(path: str) -> Dict[str, Any]:
    """The metadata of the synthetic dataset at `path` without reading its arrays: its JSON file,
    else the `metadata` entry of files from earlier versions, else {} (the original's files)."""
    metadata = read_json(metadata_path(path), None)
    if metadata is not None:
        return metadata
    try:
        with np.load(path, allow_pickle=False) as archive:
            return json.loads(str(archive["metadata"])) if "metadata" in archive.files else {}
    except _READ_ERRORS as error:
        raise _corrupt(path, error) from error


def read_synthetic(path: str) -> Transitions:
    """Reads a synthetic `.npz` (ours, or the original's without metadata). Rewards and terminals of
    shape (N, 1), as CORL reshapes them, are accepted too."""
    if not os.path.exists(path):
        raise DatasetNotFoundError(f"No synthetic dataset at {path}.")
    try:
        with np.load(path, allow_pickle=False) as archive:
            missing = [key for key in KEYS if key not in archive.files]
            if missing:
                raise InvalidDatasetError(f"{path} lacks {missing}; a synthetic dataset needs {list(KEYS)}.")
            arrays = {key: archive[key] for key in KEYS}
    except _READ_ERRORS as error:
        if isinstance(error, InvalidDatasetError):
            raise
        raise _corrupt(path, error) from error
    metadata = read_synthetic_metadata(path)
    for key in ("rewards", "terminals"):
        if arrays[key].ndim == 2 and arrays[key].shape[1] == 1:
            arrays[key] = arrays[key][:, 0]
    metadata.setdefault("env_id", None)
    metadata.update(source=os.path.abspath(path), format="synthetic-npz")
    return Transitions(*(arrays[key] for key in KEYS), metadata=metadata)
