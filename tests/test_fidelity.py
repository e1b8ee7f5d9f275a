"""Marginal and correlation scores against transcriptions of their definitions and closed-form
population values."""
import numpy as np
import pytest
import scipy.stats

from synther_jax.analysis import fidelity


def _normal_cdf(x):
    return 0.5 * (1.0 + scipy.special.erf(x / np.sqrt(2.0)))


def _ks_by_definition(a, b):
    """sup_x |F_a(x) - F_b(x)|, the empirical CDFs evaluated at every sample value."""
    values = np.concatenate([a, b])
    cdf = lambda sample: np.searchsorted(np.sort(sample), values, side="right") / len(sample)
    return np.max(np.abs(cdf(a) - cdf(b)))


def _average_ranks(column):
    """Ranks 1..n, tied values sharing the mean of the ranks they span."""
    ranks = np.empty(len(column))
    for value in np.unique(column):
        where = column == value
        below = np.sum(column < value)
        ranks[where] = below + (1 + where.sum()) / 2.0
    return ranks


def test_ks_statistics_match_the_definition_on_continuous_and_tied_columns():
    rng = np.random.default_rng(0)
    real = np.column_stack([rng.normal(size=700), rng.integers(0, 2, 700), rng.integers(0, 5, 700) * 0.5])
    synthetic = np.column_stack([rng.standard_t(3, size=500), rng.integers(0, 2, 500) * (rng.random(500) < 0.7),
                                 rng.integers(0, 4, 500) * 0.5])
    expected = [_ks_by_definition(real[:, d], synthetic[:, d]) for d in range(3)]
    np.testing.assert_allclose(fidelity.ks_statistics(real, synthetic), expected, rtol=0, atol=1e-12)


def test_identical_samples_score_one():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 5)) @ rng.normal(size=(5, 5))
    assert fidelity.marginal_score(x, x) == 1.0
    assert fidelity.correlation_score(x, x) == 1.0
    assert fidelity.correlation_score(x, x, "pearson") == pytest.approx(1.0, abs=1e-12)


def test_shifted_gaussian_marginal_score_is_one_minus_population_ks():
    # For N(0, 1) against N(mu, 1) the CDFs differ most at mu / 2: KS = 2 Phi(mu / 2) - 1.
    rng = np.random.default_rng(2)
    n, mus = 40_000, np.array([0.0, 0.25, 0.5, 1.0])
    real = rng.normal(size=(n, len(mus)))
    synthetic = rng.normal(size=(n, len(mus))) + mus
    expected_ks = 2.0 * _normal_cdf(mus / 2.0) - 1.0
    tolerance = 2.5 / np.sqrt(n / 2.0)  # a few standard errors of the empirical KS statistic
    np.testing.assert_allclose(fidelity.ks_statistics(real, synthetic), expected_ks, atol=tolerance)
    assert fidelity.marginal_score(real, synthetic) == pytest.approx(1.0 - expected_ks.mean(), abs=tolerance)


@pytest.mark.parametrize("rho", [0.3, 0.9])
def test_decorrelated_samples_score_what_the_formula_predicts(rho):
    # Real: bivariate normal with correlation rho; synthetic: the same marginals, independent.
    # Population Spearman correlation of a bivariate normal is (6 / pi) arcsin(rho / 2).
    rng = np.random.default_rng(3)
    n = 20_000
    z = rng.normal(size=(n, 2))
    real = np.column_stack([z[:, 0], rho * z[:, 0] + np.sqrt(1 - rho ** 2) * z[:, 1]])
    synthetic = rng.normal(size=(n, 2))
    spearman = 6.0 / np.pi * np.arcsin(rho / 2.0)
    assert fidelity.correlation_score(real, synthetic) == pytest.approx(1.0 - spearman / 2.0, abs=0.01)
    assert fidelity.correlation_score(real, synthetic, "pearson") == pytest.approx(1.0 - rho / 2.0, abs=0.01)
    # A perfect anti-correlation against a perfect correlation is the worst case: score 0.
    line = np.linspace(0, 1, 100)
    worst = fidelity.correlation_score(np.column_stack([line, line]), np.column_stack([line, -line]))
    assert worst == pytest.approx(0.0, abs=1e-12)


def test_correlation_matrix_is_pearson_on_average_ranks_with_ties():
    rng = np.random.default_rng(4)
    x = np.column_stack([rng.integers(0, 4, 300), rng.normal(size=300), rng.integers(0, 2, 300)]).astype(float)
    ranks = np.column_stack([_average_ranks(column) for column in x.T])
    np.testing.assert_allclose(fidelity.correlation_matrix(x), np.corrcoef(ranks, rowvar=False), atol=1e-12)
    np.testing.assert_allclose(fidelity.correlation_matrix(x[:, :2]), np.corrcoef(ranks[:, :2], rowvar=False),
                               atol=1e-12)
    np.testing.assert_allclose(fidelity.correlation_matrix(x, "pearson"), np.corrcoef(x, rowvar=False), atol=1e-12)


def test_pairs_with_a_constant_column_are_left_out():
    rng = np.random.default_rng(5)
    real = np.column_stack([rng.normal(size=(500, 3)), np.zeros(500)])  # e.g. terminals that never fire
    synthetic = np.column_stack([rng.normal(size=(500, 3)), np.zeros(500)])
    report = fidelity.fidelity(real, synthetic)
    assert report["correlation_pairs_total"] == 6
    assert report["correlation_pairs_used"] == 3
    expected = np.mean(fidelity.correlation_similarities(real[:, :3], synthetic[:, :3]))
    assert report["correlation_score"] == pytest.approx(expected)


def test_fidelity_compares_equal_numbers_of_rows():
    rng = np.random.default_rng(6)
    real, synthetic = rng.normal(size=(3000, 2)), rng.normal(size=(1000, 2))
    assert fidelity.fidelity(real, synthetic)["rows_per_side"] == 1000
    assert fidelity.fidelity(real, synthetic, max_rows=400)["rows_per_side"] == 400
    with pytest.raises(ValueError, match="same D"):
        fidelity.marginal_score(real, rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="Unknown correlation"):
        fidelity.correlation_score(real, real, "kendall")
