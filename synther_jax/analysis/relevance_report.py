"""Did guidance move the data? The condition of real against generated transitions.

A guided generator is prompted with the real rows' top `top_frac` of a condition (PGR's relevance,
a return-to-go); its samples should carry more of it than the real data. `relevance_report`
summarises one comparison: each side's mean and quantiles, the real top fraction's mean (what the
prompts were drawn from), the fraction of generated rows above the real top-fraction cut (about
`top_frac` for an unguided generator that matches the data, more when guidance works), and a
histogram of both on shared bins, so the figure can be drawn again from the JSON alone.
"""
from typing import Dict, Sequence

import numpy as np

NUM_BINS = 40


def summary(values: np.ndarray) -> Dict[str, float]:
    values = np.asarray(values, np.float64)
    q10, median, q90 = np.quantile(values, [0.1, 0.5, 0.9])
    return {"mean": float(values.mean()), "std": float(values.std()), "q10": float(q10), "median": float(median),
            "q90": float(q90)}


def histogram_edges(samples: Sequence[np.ndarray], num_bins: int = NUM_BINS) -> np.ndarray:
    """Shared bins over the central 99% of all samples, so a few outliers do not squash the plot."""
    both = np.concatenate([np.asarray(s, np.float64).reshape(-1) for s in samples])
    low, high = np.quantile(both, [0.005, 0.995])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, num_bins + 1)


def relevance_report(real: np.ndarray, generated: np.ndarray, top_frac: float,
                     edges: np.ndarray = None) -> Dict[str, object]:
    """The comparison of one real and one generated sample of a condition (see the module
    docstring); `edges` (default: `histogram_edges` of both) fixes the histogram's bins."""
    real, generated = np.asarray(real, np.float64).reshape(-1), np.asarray(generated, np.float64).reshape(-1)
    top = np.sort(real)[::-1][:max(1, int(np.ceil(top_frac * len(real))))]
    edges = histogram_edges([real, generated]) if edges is None else np.asarray(edges)
    # Values beyond the edges count in the outer bins.
    clip = lambda x: np.clip(x, edges[0], edges[-1])
    return {"real": summary(real), "generated": summary(generated), "real_top_mean": float(top.mean()),
            "top_cut": float(top[-1]), "generated_above_top_cut": float(np.mean(generated >= top[-1])),
            "shift": float(generated.mean() - real.mean()),
            "histogram": {"edges": edges.tolist(), "real": np.histogram(clip(real), edges)[0].tolist(),
                          "generated": np.histogram(clip(generated), edges)[0].tolist()}}
