"""The explicit augmentation baselines have the statistics Appendix D.1 documents."""
import numpy as np
import pytest

from synther_jax.augment import AUGMENTATIONS, additive_noise, augment, dynamics_noise, multiplicative_noise
from synther_jax.data.transitions import Transitions


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    n, o, a = 20_000, 7, 3
    observations = rng.normal(size=(n, o)) * 3 + 1
    return Transitions(observations, rng.uniform(-1, 1, (n, a)), rng.normal(size=n),
                       observations + rng.normal(size=(n, o)), (rng.random(n) < 0.1).astype(np.float32),
                       timeouts=np.zeros(n), episode_ids=np.arange(n), metadata={"env_id": "Hopper-v5"})


def _unchanged_rest(data, augmented):
    np.testing.assert_array_equal(augmented.actions, data.actions)
    np.testing.assert_array_equal(augmented.rewards, data.rewards)
    np.testing.assert_array_equal(augmented.terminals, data.terminals)
    assert augmented.metadata == data.metadata


def test_additive_noise_adds_one_gaussian_vector_of_std_point_one(data):
    augmented = additive_noise(data, seed=1)
    _unchanged_rest(data, augmented)
    eps = augmented.observations.astype(np.float64) - data.observations
    np.testing.assert_allclose(augmented.next_observations - data.next_observations, eps, atol=1e-5)
    assert abs(eps.mean()) < 0.002
    assert eps.std() == pytest.approx(0.1, rel=0.01)
    # Independent across dimensions (a full random vector, not one number per transition).
    assert abs(np.corrcoef(eps[:, 0], eps[:, 1])[0, 1]) < 0.03


def test_multiplicative_noise_scales_s_and_next_s_by_one_uniform_number(data):
    augmented = multiplicative_noise(data, seed=2)
    _unchanged_rest(data, augmented)
    ratio = augmented.observations / data.observations
    eps = ratio[:, :1]
    np.testing.assert_allclose(ratio, np.broadcast_to(eps, ratio.shape), rtol=1e-5)
    np.testing.assert_allclose(augmented.next_observations / data.next_observations,
                               np.broadcast_to(eps, ratio.shape), rtol=1e-4)
    assert eps.min() >= 0.8 and eps.max() <= 1.2
    assert eps.mean() == pytest.approx(1.0, abs=0.003)
    assert eps.var() == pytest.approx(0.4 ** 2 / 12, rel=0.03)  # variance of U(0.8, 1.2)


def test_dynamics_noise_scales_the_state_change(data):
    augmented = dynamics_noise(data, seed=3)
    _unchanged_rest(data, augmented)
    np.testing.assert_array_equal(augmented.observations, data.observations)
    ratio = (augmented.next_observations - data.observations) / (data.next_observations - data.observations)
    keep = np.abs(data.next_observations - data.observations) > 0.05  # avoid dividing float32 rounding
    eps = np.nanmedian(np.where(keep, ratio, np.nan), axis=1, keepdims=True)
    np.testing.assert_allclose(np.where(keep, ratio, eps), np.broadcast_to(eps, ratio.shape), rtol=1e-3)
    assert eps.min() >= 0.5 and eps.max() <= 1.5
    assert eps.mean() == pytest.approx(1.0, abs=0.01)
    assert eps.var() == pytest.approx(1.0 / 12, rel=0.05)  # variance of U(0.5, 1.5)


@pytest.mark.parametrize("kind", sorted(AUGMENTATIONS))
def test_upsampling_draws_real_rows_and_is_seeded(data, kind):
    augmented = augment(data, kind, seed=4, num_samples=50_000)
    assert len(augmented) == 50_000
    # Episode ids travel with their rows, so they say which real transition each row came from.
    source = augmented.episode_ids.astype(int)
    np.testing.assert_array_equal(augmented.actions, data.actions[source])
    assert len(np.unique(source)) > 0.9 * len(data)
    again = augment(data, kind, seed=4, num_samples=50_000)
    np.testing.assert_array_equal(again.next_observations, augmented.next_observations)
    other = augment(data, kind, seed=5, num_samples=50_000)
    assert not np.array_equal(other.next_observations, augmented.next_observations)


def test_bad_arguments_are_refused(data):
    with pytest.raises(ValueError, match="Unknown augmentation"):
        augment(data, "cutout", seed=0)
    with pytest.raises(ValueError, match="positive"):
        augment(data, "additive", seed=0, num_samples=0)
