"""Learning curves: mean and standard deviation over seeds against training progress."""
from typing import Dict, Sequence, Tuple

import numpy as np

from synther_jax.atomic import save_figure
from synther_jax.errors import require

require("matplotlib", "analysis").use("Agg")  # files only, no display needed
import matplotlib.pyplot as plt  # noqa: E402


def plot_learning_curves(curves: Dict[str, Tuple[Sequence[float], Sequence]], path: str, xlabel: str, ylabel: str,
                         title: str) -> None:
    """Saves a PNG with one curve per label: `curves[label] = (steps, per_seed)`, per_seed of shape
    (evaluations, seeds), drawn as the mean line and a +-1 std band."""
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, (steps, per_seed) in curves.items():
        steps, per_seed = np.asarray(steps), np.asarray(per_seed, np.float64).reshape(len(steps), -1)
        mean, std = per_seed.mean(1), per_seed.std(1)
        line, = ax.plot(steps, mean, marker="o", markersize=3, label=label)
        ax.fill_between(steps, mean - std, mean + std, color=line.get_color(), alpha=0.25)
    num_seeds = {np.asarray(per_seed).reshape(len(steps), -1).shape[1] for steps, per_seed in curves.values()}
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title} ({'/'.join(map(str, sorted(num_seeds)))} seeds, mean ± std)")
    if len(curves) > 1:
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    save_figure(fig, path, dpi=120)
    plt.close(fig)


def plot_learning_curve(steps, per_seed, path: str, xlabel: str, ylabel: str, title: str) -> None:
    """One curve: `plot_learning_curves` with a single unlabelled entry."""
    plot_learning_curves({None: (steps, per_seed)}, path, xlabel, ylabel, title)
