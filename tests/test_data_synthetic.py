"""Synthetic datasets: chunked atomic writes, the original's five keys, bad input leaves nothing."""
import json
import os
import tracemalloc

import numpy as np
import pytest

from synther_jax.data import KEYS, SyntheticWriter, Transitions, load_dataset, read_synthetic
from synther_jax.data import synthetic as synthetic_module
from synther_jax.data import write_synthetic
from synther_jax.errors import InvalidDatasetError, UnknownEnvironmentError

METADATA = {"source_dataset": "bundled/walker2d-medium-replay", "config": {"num_samples": 5_000_000, "lr": 3e-4},
            "seed": 7, "model_checkpoint": "runs/walker2d/checkpoints/100000"}


def make_chunk(rng, n, obs_dim=17, action_dim=6):
    return Transitions(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, action_dim)), rng.normal(size=n),
                       rng.normal(size=(n, obs_dim)), (rng.random(n) < 0.1).astype(np.float32))


def folder_listing(path):
    return sorted(os.listdir(os.path.dirname(path)))


def test_chunks_round_trip_with_metadata_and_the_original_keys(tmp_path):
    rng = np.random.default_rng(0)
    chunks = [make_chunk(rng, n) for n in (100, 1, 57)]
    path = str(tmp_path / "samples.npz")
    with SyntheticWriter(path, env_id="Walker2d-v5", **METADATA) as writer:
        for chunk in chunks:
            writer.write(chunk)
    assert folder_listing(path) == ["samples.json", "samples.npz"]  # No temporary files left.
    loaded = load_dataset(path)
    for key in KEYS:
        np.testing.assert_array_equal(getattr(loaded, key), np.concatenate([getattr(c, key) for c in chunks]))
    assert loaded.metadata["env_id"] == "Walker2d-v5"
    assert loaded.metadata["seed"] == 7 and loaded.metadata["config"] == METADATA["config"]
    assert loaded.metadata["model_checkpoint"] == METADATA["model_checkpoint"]
    assert loaded.metadata["num_transitions"] == 158
    # What a CORL-style script sees: exactly the five keys, rewards and terminals of shape (N,).
    with np.load(path) as archive:
        assert sorted(archive.files) == sorted(KEYS)
        assert archive["rewards"].shape == (158,) and archive["observations"].dtype == np.float32
    with open(synthetic_module.metadata_path(path)) as file:
        assert json.load(file)["source_dataset"] == METADATA["source_dataset"]


def test_every_entry_slices_like_the_original_loader_with_a_sample_limit(tmp_path):
    """SynthER's CORL loader with `sample_limit` cuts every entry of the file to `[:limit]`, then
    reshapes rewards and terminals to (N, 1); each prefix must be a consistent smaller dataset."""
    chunk = make_chunk(np.random.default_rng(3), 1500)
    path = str(tmp_path / "samples.npz")
    write_synthetic(path, chunk, **METADATA)
    with np.load(path) as archive:
        limited = {key: archive[key][:1000] for key in archive.files}
    limited["rewards"], limited["terminals"] = limited["rewards"].reshape(-1, 1), limited["terminals"].reshape(-1, 1)
    assert sorted(limited) == sorted(KEYS)
    for key in KEYS:
        np.testing.assert_array_equal(limited[key].reshape(1000, -1), getattr(chunk, key)[:1000].reshape(1000, -1))


def test_reads_files_with_the_embedded_metadata_entry_of_earlier_versions(tmp_path):
    chunk = make_chunk(np.random.default_rng(4), 10)
    path = str(tmp_path / "old.npz")
    np.savez_compressed(path, **chunk.as_dict(), metadata=np.array(json.dumps({"env_id": "Walker2d-v5", "seed": 3})))
    loaded = read_synthetic(path)
    assert loaded.metadata["seed"] == 3 and loaded.metadata["env_id"] == "Walker2d-v5"


def test_reads_the_original_savez_compressed_file(tmp_path):
    rng = np.random.default_rng(1)
    chunk = make_chunk(rng, 20)
    path = str(tmp_path / "5m_samples.npz")
    arrays = chunk.as_dict()
    np.savez_compressed(path, **{**arrays, "rewards": arrays["rewards"][:, None]})  # CORL's (N, 1) shape.
    loaded = load_dataset(path, env_id="Walker2d-v5")
    np.testing.assert_array_equal(loaded.rewards, chunk.rewards)
    assert loaded.metadata["env_id"] == "Walker2d-v5"


def test_streaming_keeps_about_one_chunk_in_memory(tmp_path):
    rng = np.random.default_rng(2)
    chunk_rows, num_chunks = 8_000, 16  # 16 chunks of 1.3 MB.
    template = make_chunk(rng, chunk_rows)
    chunk_bytes = sum(getattr(template, key).nbytes for key in KEYS)
    path = str(tmp_path / "samples.npz")
    tracemalloc.start()
    with SyntheticWriter(path, **METADATA) as writer:
        for index in range(num_chunks):
            writer.write(Transitions(*(getattr(template, key) + index for key in KEYS[:-1]), template.terminals))
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert peak < 6 * chunk_bytes < num_chunks * chunk_bytes / 2
    loaded = read_synthetic(path)
    assert len(loaded) == chunk_rows * num_chunks
    np.testing.assert_array_equal(loaded.observations[-chunk_rows:], template.observations + (num_chunks - 1))


def write_previous(path):
    """Writes a small dataset at `path`; returns the bytes of it and of its metadata file."""
    write_synthetic(path, make_chunk(np.random.default_rng(3), 10), **METADATA)
    return [open(name, "rb").read() for name in (path, synthetic_module.metadata_path(path))]


def assert_untouched(path, previous):
    assert [open(name, "rb").read() for name in (path, synthetic_module.metadata_path(path))] == previous
    assert folder_listing(path) == sorted([os.path.basename(path), os.path.basename(path)[:-4] + ".json"])


def test_interrupted_write_leaves_the_previous_file_intact(tmp_path):
    path = str(tmp_path / "samples.npz")
    previous = write_previous(path)
    with pytest.raises(KeyboardInterrupt):
        with SyntheticWriter(path, **METADATA) as writer:
            writer.write(make_chunk(np.random.default_rng(4), 50))
            raise KeyboardInterrupt  # Stopped midway through sampling.
    assert_untouched(path, previous)


def test_a_resumable_writer_continues_after_an_interruption(tmp_path):
    """The rows recorded before the stop stay; bytes a crash left past them are dropped."""
    rng = np.random.default_rng(6)
    a, b, c = (make_chunk(rng, n) for n in (40, 30, 25))
    path = str(tmp_path / "samples.npz")
    with pytest.raises(KeyboardInterrupt):
        with SyntheticWriter(path, resumable=True, **METADATA) as writer:
            writer.write(a)
            writer.write(b)
            raise KeyboardInterrupt
    assert folder_listing(path) == [".samples.npz.partial"]
    with open(tmp_path / ".samples.npz.partial" / "observations", "ab") as damaged:
        damaged.write(b"\0" * 7)  # a crash in the middle of the next chunk

    with SyntheticWriter(path, resumable=True, **METADATA) as writer:
        assert writer.num_transitions == 70
        with pytest.raises(ValueError, match="holds 70"):
            writer.truncate(71)
        writer.truncate(40)  # as if another file of the run had kept only the first chunk
        writer.write(b)
        writer.write(c)
    assert folder_listing(path) == ["samples.json", "samples.npz"]
    loaded = load_dataset(path)
    for key in KEYS:
        np.testing.assert_array_equal(getattr(loaded, key), np.concatenate([getattr(x, key) for x in (a, b, c)]))
    assert loaded.metadata["num_transitions"] == 95


def test_failure_while_assembling_the_file_leaves_the_previous_file_intact(tmp_path, monkeypatch):
    path = str(tmp_path / "samples.npz")
    previous = write_previous(path)
    real_header = np.lib.format.write_array_header_1_0
    calls = []

    def header_then_fail(entry, header):
        calls.append(1)
        if len(calls) == 3:  # Two keys are in the archive already: the disk fills up on the third.
            raise OSError("No space left on device")
        real_header(entry, header)

    monkeypatch.setattr(synthetic_module.np.lib.format, "write_array_header_1_0", header_then_fail)
    with pytest.raises(OSError, match="No space"):
        with SyntheticWriter(path, **METADATA) as writer:
            writer.write(make_chunk(np.random.default_rng(5), 50))
    assert_untouched(path, previous)


@pytest.mark.parametrize("corrupt", ["nan", "inf", "lengths", "dims", "missing_key"])
def test_bad_chunks_are_refused_and_nothing_is_written(tmp_path, corrupt):
    rng = np.random.default_rng(6)
    chunk = make_chunk(rng, 30).as_dict()
    if corrupt == "nan":
        chunk["rewards"][3] = np.nan
    elif corrupt == "inf":
        chunk["next_observations"][2, 1] = np.inf
    elif corrupt == "lengths":
        chunk["actions"] = chunk["actions"][:-1]
    elif corrupt == "dims":
        chunk = make_chunk(rng, 30, obs_dim=11, action_dim=3).as_dict()  # Hopper data for Walker2d.
    else:
        del chunk["terminals"]
    path = str(tmp_path / "samples.npz")
    with pytest.raises(ValueError):  # InvalidDatasetError is a ValueError, as are Transitions' checks.
        with SyntheticWriter(path, env_id="Walker2d-v5", **METADATA) as writer:
            writer.write(make_chunk(rng, 5)) if corrupt == "dims" else None
            writer.write(chunk)
    assert os.listdir(tmp_path) == []


def test_empty_and_unknown_env_are_refused(tmp_path):
    path = str(tmp_path / "samples.npz")
    with pytest.raises(InvalidDatasetError, match="No synthetic transitions"):
        with SyntheticWriter(path, **METADATA):
            pass
    with pytest.raises(UnknownEnvironmentError, match="Unknown environment"):
        SyntheticWriter(path, env_id="Walker3d-v5", **METADATA)
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncate", "garbage", "missing_key"])
def test_damaged_files_raise_invalid_dataset(tmp_path, damage):
    path = str(tmp_path / "samples.npz")
    write_synthetic(path, make_chunk(np.random.default_rng(7), 200), **METADATA)
    if damage == "truncate":
        with open(path, "r+b") as file:
            file.truncate(os.path.getsize(path) // 2)
    elif damage == "garbage":
        with open(path, "wb") as file:
            file.write(b"not a zip file at all")
    else:
        np.savez(path, observations=np.zeros((3, 17), np.float32))
    with pytest.raises(InvalidDatasetError):
        load_dataset(path)
