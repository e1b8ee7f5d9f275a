"""Learning curves: mean and standard deviation over seeds against training progress."""
import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def plot_learning_curve(steps, per_seed, path: str, xlabel: str, ylabel: str, title: str) -> None:
    """Saves a PNG of `per_seed` (evaluations, seeds) against `steps`: the mean line and a +-1 std band."""
    steps, per_seed = np.asarray(steps), np.asarray(per_seed, np.float64).reshape(len(steps), -1)
    mean, std = per_seed.mean(1), per_seed.std(1)
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    ax.plot(steps, mean, marker="o", markersize=3)
    ax.fill_between(steps, mean - std, mean + std, alpha=0.25)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=f"{title} ({per_seed.shape[1]} seeds, mean ± std)")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
