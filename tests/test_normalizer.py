"""The 'standard' normaliser: unbiased std + 1e-5, raw skip dims, guarded constant dims."""
import numpy as np
import pytest

from synther_jax.diffusion.normalizer import Normalizer


def test_statistics_and_round_trip():
    rows = np.random.default_rng(0).normal(3.0, 2.0, size=(500, 4)).astype(np.float32)
    rows[:, 3] = rows[:, 3] > 3.0  # a terminal-like column
    norm = Normalizer.fit(rows, skip_dims=(3,))
    np.testing.assert_allclose(norm.mean[:3], rows[:, :3].astype(np.float64).mean(0), rtol=1e-5)
    np.testing.assert_allclose(norm.std[:3], rows[:, :3].astype(np.float64).std(0, ddof=1) + 1e-5, rtol=1e-5)
    assert float(norm.mean[3]) == 0.0 and float(norm.std[3]) == 1.0
    normalized = np.asarray(norm.normalize(rows))
    np.testing.assert_allclose(normalized[:, :3].mean(0), 0.0, atol=1e-5)
    np.testing.assert_allclose(normalized[:, :3].std(0, ddof=1), 1.0, rtol=1e-4)
    np.testing.assert_array_equal(normalized[:, 3], rows[:, 3])
    np.testing.assert_allclose(norm.unnormalize(normalized), rows, rtol=1e-5, atol=1e-5)


def test_constant_dimension_warns_and_stays_finite():
    rows = np.random.default_rng(1).normal(size=(100, 3)).astype(np.float32)
    rows[:, 1] = 7.0
    with pytest.warns(UserWarning, match="constant"):
        norm = Normalizer.fit(rows)
    assert float(norm.std[1]) == 1.0
    # A model error of 0.1 in normalised space stays an error of 0.1, not 1e4.
    assert abs(float(norm.unnormalize(np.array([0.0, 0.1, 0.0]))[1]) - 7.1) < 1e-5


def test_rejects_too_few_rows():
    with pytest.raises(ValueError, match="rows"):
        Normalizer.fit(np.zeros((1, 3)))
