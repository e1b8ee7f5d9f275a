"""The report's figures: per-dimension marginals (paper Figure 7), distance from the data against
dynamics error (Figure 5) and data compression (Table 5). Each function writes one PNG."""
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from synther_jax.atomic import save_figure
from synther_jax.errors import require

require("matplotlib", "analysis").use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402

REAL_COLOUR = "tab:orange"  # the paper's colours: real data orange, SynthER blue
SOURCE_COLOURS = {"synthetic": "tab:blue", "additive": "tab:orange", "multiplicative": "tab:green",
                  "dynamics": "tab:red"}
SOURCE_LABELS = {"synthetic": "SynthER", "additive": "additive noise N(0, 0.1)",
                 "multiplicative": "multiplicative noise U(0.8, 1.2)", "dynamics": "dynamics noise U(0.5, 1.5)"}


def _bins(real: np.ndarray, synthetic: np.ndarray, num_bins: int = 60) -> np.ndarray:
    """Shared bins over the central 99.8% of both samples, so rare outliers do not squash the plot."""
    both = np.concatenate([real, synthetic])
    low, high = np.quantile(both, [0.001, 0.999])
    if high <= low:
        low, high = low - 0.5, high + 0.5
    return np.linspace(low, high, num_bins + 1)


def plot_marginals(real: np.ndarray, synthetic: np.ndarray, names: Sequence[str], ks: Sequence[float],
                   path: str, title: str, columns: int = 6) -> None:
    """One histogram per dimension: synthetic (blue) against real (orange); dashed lines are the real
    mean +- one standard deviation; each panel's title gives the dimension's KS statistic."""
    num_dims = real.shape[1]
    rows = -(-num_dims // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.1 * rows), squeeze=False)
    for d, ax in enumerate(axes.flat):
        if d >= num_dims:
            ax.axis("off")
            continue
        bins = _bins(real[:, d], synthetic[:, d])
        for values, colour, label in ((synthetic[:, d], SOURCE_COLOURS["synthetic"], "synthetic"),
                                      (real[:, d], REAL_COLOUR, "real")):
            # One filled outline per histogram: the same picture as `ax.hist`, without a patch per bar.
            ax.stairs(np.histogram(values, bins=bins, density=True)[0], bins, fill=True, color=colour, alpha=0.55,
                      label=label)
        mean, std = real[:, d].mean(), real[:, d].std()
        for x in (mean - std, mean + std):
            ax.axvline(x, color="black", linestyle="--", linewidth=0.8)
        ax.set_title(f"{names[d]}  (KS {ks[d]:.3f})", fontsize=8)
        ax.tick_params(labelsize=6)
        ax.set_yticks([])
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(title, fontsize=11)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_distance_vs_dynamics(sources: Dict[str, Tuple[np.ndarray, np.ndarray]], path: str, title: str) -> None:
    """Scatter of each transition's minimum distance to the real data (x) against its dynamics MSE
    (y, log scale), one colour per source, with each source's histograms (fraction per bin) on the
    sides."""
    fig = plt.figure(figsize=(8, 8))
    grid = fig.add_gridspec(2, 2, width_ratios=(4, 1), height_ratios=(1, 4), wspace=0.05, hspace=0.05)
    ax = fig.add_subplot(grid[1, 0])
    top = fig.add_subplot(grid[0, 0], sharex=ax)
    side = fig.add_subplot(grid[1, 1], sharey=ax)
    floor = 1e-12  # exact transitions have an error of ~0; show them on the log axis
    all_distances = np.concatenate([d for d, _ in sources.values()])
    all_errors = np.maximum(np.concatenate([e for _, e in sources.values()]), floor)
    distance_bins = np.linspace(0, np.quantile(all_distances, 0.995), 50)
    error_bins = np.logspace(np.log10(all_errors.min()), np.log10(all_errors.max()) + 1e-9, 50)
    for order, (name, (distances, errors)) in enumerate(sources.items()):
        colour = SOURCE_COLOURS.get(name)
        errors = np.maximum(errors, floor)
        fraction = np.full(len(errors), 1.0 / max(len(errors), 1))
        label = (f"{SOURCE_LABELS.get(name, name)}: median distance {np.median(distances):.2f}, "
                 f"median MSE {np.median(errors):.2g}")
        # The first source (the synthetic data) is drawn on top of the baselines.
        ax.scatter(distances, errors, s=3, alpha=0.3, color=colour, label=label, rasterized=True,
                   zorder=len(sources) - order)
        top.hist(distances, bins=distance_bins, weights=fraction, color=colour, histtype="step", linewidth=1.5)
        side.hist(errors, bins=error_bins, weights=fraction, color=colour, histtype="step", linewidth=1.5,
                  orientation="horizontal")
    ax.set_yscale("log")
    ax.set_xlim(0, distance_bins[-1])
    ax.set_xlabel("minimum L2 distance to the real data (normalised space)")
    ax.set_ylabel("dynamics MSE against the simulator [next observation, reward]")
    legend = ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.6, -0.09), markerscale=4, ncol=1)
    for handle in legend.legend_handles:
        handle.set_alpha(1.0)
    top.tick_params(labelbottom=False, labelleft=False, left=False)
    side.tick_params(labelleft=False, labelbottom=False, bottom=False)
    top.set_title(title, fontsize=11)
    save_figure(fig, path, dpi=110, bbox_inches="tight")
    plt.close(fig)


def plot_compression(num_transitions: int, row_dim: int, denoiser_params: int, path: str, title: str,
                     num_synthetic: Optional[int] = None) -> None:
    """Floats needed to store N transitions (N x row_dim) against the denoiser's fixed parameter count."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    largest = max(num_transitions, num_synthetic or 0, denoiser_params // row_dim)
    sizes = np.logspace(3, np.log10(largest * 4), 100)
    ax.plot(sizes, sizes * row_dim, color="tab:gray", label=f"dataset: N x {row_dim} float32s")
    ax.axhline(denoiser_params, color="tab:blue", label=f"denoiser: {denoiser_params / 1e6:.2f}M parameters")
    real_floats = num_transitions * row_dim
    ax.scatter([num_transitions], [real_floats], color=REAL_COLOUR, s=90, zorder=3,
               label=f"real data: {num_transitions:,} transitions = {real_floats / 1e6:.2f}M floats "
                     f"({real_floats / denoiser_params:.2f}x the denoiser)")
    if num_synthetic:
        synthetic_floats = num_synthetic * row_dim
        ax.scatter([num_synthetic], [synthetic_floats], color=SOURCE_COLOURS["synthetic"], marker="s", s=30, zorder=4,
                   label=f"synthetic data: {num_synthetic:,} transitions = {synthetic_floats / 1e6:.2f}M floats "
                         f"({synthetic_floats / denoiser_params:.2f}x)")
    break_even = denoiser_params / row_dim
    ax.axvline(break_even, color="tab:blue", linestyle=":", linewidth=0.8)
    ax.annotate(f" break-even: {break_even:,.0f} transitions", xy=(break_even, 0.03),
                xycoords=("data", "axes fraction"), color="tab:blue", fontsize=7)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("number of transitions N")
    ax.set_ylabel("number of float32 values")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="major", alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def plot_relevance(reports: Sequence[dict], steps: Sequence[int], path: str, title: str, what: str) -> None:
    """Left: the newest report's histogram of the condition, real (orange) against generated
    (blue); right, with more than one report: each report's real mean, real top-fraction mean
    and generated mean against `steps` (a step of None is left out of the title). `reports` are
    `analysis.relevance_report.relevance_report`s."""
    trend = len(reports) > 1
    fig, axes = plt.subplots(1, 2 if trend else 1, figsize=(10 if trend else 5.5, 3.8), squeeze=False)
    hist, newest = axes[0, 0], reports[-1]
    edges = np.asarray(newest["histogram"]["edges"])
    for name, colour in (("generated", SOURCE_COLOURS["synthetic"]), ("real", REAL_COLOUR)):
        counts = np.asarray(newest["histogram"][name], np.float64)
        hist.stairs(counts / max(counts.sum(), 1), edges, fill=True, alpha=0.5, color=colour,
                    label=f"{name}: mean {newest[name]['mean']:.3g}")
    hist.axvline(newest["top_cut"], color="black", linestyle="--", linewidth=0.8, label="real top-fraction cut")
    hist.set(xlabel=what, ylabel="fraction of rows", title=title if steps[-1] is None else f"{title} (step {steps[-1]})")
    hist.legend(fontsize=7)
    if trend:
        curves = axes[0, 1]
        for label, values, colour in (
                ("real mean", [r["real"]["mean"] for r in reports], REAL_COLOUR),
                ("real top-fraction mean", [r["real_top_mean"] for r in reports], "tab:red"),
                ("generated mean", [r["generated"]["mean"] for r in reports], SOURCE_COLOURS["synthetic"])):
            curves.plot(steps, values, marker="o", markersize=3, color=colour, label=label)
        curves.set(xlabel="environment steps", ylabel=what, title="at each retrain")
        curves.legend(fontsize=7)
        curves.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)
