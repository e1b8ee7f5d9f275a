"""Chunked nearest-neighbour distances against a float64 brute-force NumPy computation."""
import numpy as np
import pytest

from synther_jax.analysis import novelty


def test_nearest_neighbours_match_brute_force_across_chunk_edges():
    rng = np.random.default_rng(0)
    references, queries = rng.normal(size=(1037, 9)), rng.normal(size=(301, 9))
    distances, indices = novelty.nearest_neighbours(queries, references, query_chunk=64, block_size=100,
                                                    progress=False)
    all_distances = np.linalg.norm(queries[:, None, :] - references[None, :, :], axis=2)
    np.testing.assert_array_equal(indices, all_distances.argmin(axis=1))
    np.testing.assert_allclose(distances, all_distances.min(axis=1), rtol=1e-6)


def test_copies_of_real_rows_are_at_distance_zero():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(500, 42)) * 50 + 100  # large norms: the squared expansion alone would be off
    distances = novelty.min_distances(real, real[::7], progress=False)
    np.testing.assert_allclose(distances, 0.0, atol=1e-5)


def test_distances_are_measured_in_the_real_data_normalised_space():
    rng = np.random.default_rng(2)
    real = rng.normal(size=(400, 3))
    queries = real[:50] + np.array([0.0, 0.0, 0.01])  # a tiny step along one axis
    scaled = np.array([1.0, 1000.0, 0.001])
    # Rescaling a column of both the real data and the queries changes nothing...
    np.testing.assert_allclose(novelty.min_distances(real * scaled, queries * scaled, progress=False),
                               novelty.min_distances(real, queries, progress=False), rtol=1e-4)
    # ...and a step of one real standard deviation is a distance of about one (the nearest row may be closer).
    step = np.zeros(3)
    step[1] = real[:, 1].std()
    far = novelty.min_distances(real, real[:50] + step, progress=False)
    assert np.all(far <= 1.0 + 1e-6) and np.median(far) > 0.3


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="Expected"):
        novelty.nearest_neighbours(np.zeros((3, 2)), np.zeros((3, 4)), progress=False)
