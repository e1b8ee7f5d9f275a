"""End to end on a known distribution: a small denoiser learns a Gaussian mixture with a binary
terminal column, and an untrained one does not.

Thresholds: with n = m = 4000 samples per side, the two-sample KS statistic of two samples from the
same distribution exceeds 1.95 * sqrt(2 / 4000) = 0.044 with probability 0.001. We allow 0.06 per
marginal (sampling noise plus a small model error). The terminal frequency's sampling standard
deviation is about sqrt(2 * 0.14 * 0.86 / 4000) = 0.008; we allow 0.03 (under 4 sigma).
"""
import jax
import numpy as np
import pytest
from scipy import stats

from synther_jax.diffusion import Diffusion, DiffusionConfig, generate, train_diffusion
from synther_jax.diffusion.normalizer import Normalizer
from synther_jax.diffusion.model import init_state

N, DIM = 4000, 6
KS_LIMIT, TERMINAL_LIMIT = 0.06, 0.03
CONFIG = DiffusionConfig(width=256, depth=2, dim_t=32, num_train_steps=4000, steps_per_call=1000, batch_size=256,
                         learning_rate=1e-3, num_sample_steps=32, sample_chunk_size=N)


def _mixture(seed=0):
    rng = np.random.default_rng(seed)
    means, scales = rng.normal(0, 3, size=(3, DIM)), rng.uniform(0.3, 1.0, size=(3, DIM))
    component = rng.choice(3, size=N, p=[0.5, 0.3, 0.2])
    x = means[component] + scales[component] * rng.normal(size=(N, DIM))
    terminal = rng.random(N) < np.array([0.05, 0.3, 0.1])[component]
    return np.concatenate([x, terminal[:, None]], axis=1).astype(np.float32)


def _marginal_ks(real, synthetic):
    return np.array([stats.ks_2samp(real[:, i], synthetic[:, i]).statistic for i in range(DIM)])


@pytest.mark.slow
def test_trained_model_matches_marginals_and_terminal_rate():
    rows = _mixture()
    model = train_diffusion(rows, CONFIG, jax.random.PRNGKey(0), skip_norm_dims=(DIM,), progress=False)
    samples = generate(model, N, jax.random.PRNGKey(1), progress=False)
    assert np.all(_marginal_ks(rows, samples) < KS_LIMIT), _marginal_ks(rows, samples)
    assert abs((samples[:, DIM] > 0.5).mean() - rows[:, DIM].mean()) < TERMINAL_LIMIT


def test_untrained_model_fails_the_same_check():
    rows = _mixture()
    state = init_state(CONFIG, jax.random.PRNGKey(0), DIM + 1)
    untrained = Diffusion(CONFIG, DIM + 1, state.params, state.constants, Normalizer.fit(rows, (DIM,)))
    samples = generate(untrained, N, jax.random.PRNGKey(1), progress=False)
    assert np.any(_marginal_ks(rows, samples) > KS_LIMIT)
