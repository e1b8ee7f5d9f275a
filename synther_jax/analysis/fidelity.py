"""Statistical fidelity of synthetic data, as the paper measures it (Table 2, after Patki et al. 2016).

- Marginal score: the mean over dimensions of 1 - KS, where KS is the two-sample Kolmogorov-Smirnov
  statistic (the largest gap between the two empirical CDFs of that dimension). 1 means identical
  marginals; for N(0, 1) against N(mu, 1) the population value is 1 - (2 Phi(mu / 2) - 1).
- Correlation score: the mean over dimension pairs (i < j) of 1 - |rho_real(i, j) - rho_synth(i, j)| / 2,
  with Spearman (rank) correlations by default and Pearson as an option.

Both sides are compared on the same number of rows (`paired_subsample`), as in the paper (100K each).
Both statistics are scipy's (`ks_2samp`, `spearmanr`), over all dimensions at once.
"""
import warnings
from typing import Dict, Tuple

import numpy as np

from synther_jax.errors import require

stats = require("scipy.stats", "analysis")

CORRELATION_METHODS = ("spearman", "pearson")


def _check_pair(real: np.ndarray, synthetic: np.ndarray) -> None:
    if real.ndim != 2 or synthetic.ndim != 2 or real.shape[1] != synthetic.shape[1]:
        raise ValueError(f"Expected two (N, D) arrays with the same D, got {real.shape} and {synthetic.shape}.")
    if len(real) < 2 or len(synthetic) < 2:
        raise ValueError("Each side needs at least two rows to compare distributions.")


def paired_subsample(real: np.ndarray, synthetic: np.ndarray, max_rows: int,
                     seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Random rows, without replacement, so both sides have min(len(real), len(synthetic), max_rows)."""
    n = min(len(real), len(synthetic), max_rows)
    rng = np.random.default_rng(seed)
    return (real[rng.choice(len(real), n, replace=False)],
            synthetic[rng.choice(len(synthetic), n, replace=False)])


def ks_statistics(real: np.ndarray, synthetic: np.ndarray) -> np.ndarray:
    """Two-sample KS statistic of every column, shape (D,), by `scipy.stats.ks_2samp` (exact with
    ties, so binary and other discrete columns too). Only the statistic is used, so its p-value is
    asked for by the cheap asymptotic method."""
    _check_pair(real, synthetic)
    return stats.ks_2samp(real, synthetic, axis=0, method="asymp").statistic


def marginal_score(real: np.ndarray, synthetic: np.ndarray) -> float:
    """Mean over dimensions of 1 - KS statistic (1 = identical marginals)."""
    return float(np.mean(1.0 - ks_statistics(real, synthetic)))


def correlation_matrix(x: np.ndarray, method: str = "spearman") -> np.ndarray:
    """(D, D) Spearman (`scipy.stats.spearmanr`: Pearson on ranks, ties sharing their average rank)
    or Pearson correlations of the columns; NaN where a column is constant."""
    if method not in CORRELATION_METHODS:
        raise ValueError(f"Unknown correlation method {method!r}: choose one of {CORRELATION_METHODS}.")
    x = np.asarray(x, np.float64)
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", stats.ConstantInputWarning)  # constant columns give NaN
        rho = stats.spearmanr(x).statistic if method == "spearman" else np.corrcoef(x, rowvar=False)
    if np.ndim(rho) == 0:  # spearmanr answers two columns with one number
        rho = np.array([[1.0, rho], [rho, 1.0]])
    return rho


def correlation_similarities(real: np.ndarray, synthetic: np.ndarray, method: str = "spearman") -> np.ndarray:
    """1 - |rho_real - rho_synth| / 2 for every pair i < j, as a flat array (NaN where undefined)."""
    _check_pair(real, synthetic)
    upper = np.triu_indices(real.shape[1], k=1)
    rho_real = correlation_matrix(real, method)[upper]
    rho_synth = correlation_matrix(synthetic, method)[upper]
    return 1.0 - np.abs(rho_real - rho_synth) / 2.0


def correlation_score(real: np.ndarray, synthetic: np.ndarray, method: str = "spearman") -> float:
    """Mean correlation similarity over dimension pairs.

    A correlation involving a column that is constant on either side (e.g. terminals that are all 0)
    is undefined; such pairs are left out of the mean, and NaN is returned if no pair is left.
    """
    return _mean_of_defined(correlation_similarities(real, synthetic, method))


def _mean_of_defined(values: np.ndarray) -> float:
    defined = np.isfinite(values)
    return float(np.mean(values[defined])) if np.any(defined) else float("nan")


def fidelity(real: np.ndarray, synthetic: np.ndarray, seed: int = 0, max_rows: int = 100_000,
             method: str = "spearman") -> Dict[str, object]:
    """Marginal and correlation scores on equal-sized random subsets, plus the per-dimension KS."""
    real, synthetic = paired_subsample(np.asarray(real), np.asarray(synthetic), max_rows, seed)
    ks = ks_statistics(real, synthetic)
    similarities = correlation_similarities(real, synthetic, method)
    return {
        "marginal_score": float(np.mean(1.0 - ks)),
        "correlation_score": _mean_of_defined(similarities),
        "correlation_method": method,
        "correlation_pairs_used": int(np.sum(np.isfinite(similarities))),
        "correlation_pairs_total": int(len(similarities)),
        "rows_per_side": int(len(real)),
        "ks_per_dimension": ks.tolist(),
    }
