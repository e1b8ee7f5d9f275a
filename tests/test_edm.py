"""EDM formulas against hand-computed values, and the sampler against closed-form Gaussian data."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synther_jax.diffusion import edm


def test_preconditioning_hand_values():
    c_skip, c_out, c_in, c_noise = edm.preconditioning(jnp.array([0.5, 2.0]), 1.0)
    np.testing.assert_allclose(c_skip, [1 / 1.25, 1 / 5.0], rtol=1e-6)
    np.testing.assert_allclose(c_out, [0.5 / np.sqrt(1.25), 2 / np.sqrt(5.0)], rtol=1e-6)
    np.testing.assert_allclose(c_in, [1 / np.sqrt(1.25), 1 / np.sqrt(5.0)], rtol=1e-6)
    np.testing.assert_allclose(c_noise, [0.25 * np.log(0.5), 0.25 * np.log(2.0)], rtol=1e-6)
    # sigma_data other than 1 (EDM's 0.5): c_skip = sd^2 / (s^2 + sd^2).
    c_skip, c_out, _, _ = edm.preconditioning(jnp.array(0.5), 0.5)
    np.testing.assert_allclose([c_skip, c_out], [0.5, 0.25 / np.sqrt(0.5)], rtol=1e-6)


def test_loss_weight_cancels_c_out():
    sigma = jnp.array([0.01, 0.3, 5.0, 80.0])
    _, c_out, _, _ = edm.preconditioning(sigma, 1.0)
    np.testing.assert_allclose(edm.loss_weight(sigma, 1.0), (sigma**2 + 1) / sigma**2, rtol=1e-6)
    np.testing.assert_allclose(edm.loss_weight(sigma, 1.0) * c_out**2, 1.0, rtol=1e-5)


def test_training_loss_matches_float64_reference():
    """The loss equals the F-space MSE against (y - c_skip x) / c_out, computed in float64."""
    config = edm.EDMConfig()
    w = np.random.default_rng(0).normal(size=(4, 4))
    net = lambda x, c_noise: jnp.tanh(x @ w) + c_noise[:, None]
    y = jnp.asarray(np.random.default_rng(1).normal(size=(64, 4)), jnp.float32)
    key = jax.random.PRNGKey(3)
    loss = edm.training_loss(net, y, key, config)

    sigma_key, noise_key = jax.random.split(key)
    sigma = np.exp(-1.2 + 1.2 * np.asarray(jax.random.normal(sigma_key, (64,)), np.float64))
    x = np.asarray(y, np.float64) + sigma[:, None] * np.asarray(jax.random.normal(noise_key, (64, 4)), np.float64)
    total = sigma**2 + 1
    c_skip, c_out, c_in, c_noise = 1 / total, sigma / np.sqrt(total), 1 / np.sqrt(total), 0.25 * np.log(sigma)
    f = np.tanh((c_in[:, None] * x) @ w) + c_noise[:, None]
    target = (np.asarray(y, np.float64) - c_skip[:, None] * x) / c_out[:, None]
    np.testing.assert_allclose(loss, np.mean((f - target) ** 2), rtol=1e-4)


def test_sampling_table():
    config = edm.EDMConfig()
    table = edm.sampling_table(config)
    sigma, sigma_next, gamma = table.T
    assert table.shape == (128, 3) and table.dtype == np.float32
    i = np.arange(128)
    expected = (80 ** (1 / 7) + i / 127 * (0.002 ** (1 / 7) - 80 ** (1 / 7))) ** 7  # EDM eq. 5 in float64
    np.testing.assert_allclose(sigma, expected, rtol=1e-5)
    np.testing.assert_allclose([sigma[0], sigma[1], sigma[126], sigma[127]], [80, 76.62, 0.002425, 0.002], rtol=1e-3)
    assert sigma_next[-1] == 0.0 and np.all(sigma_next[:-1] == sigma[1:])
    assert np.all(np.diff(sigma) < 0)
    churned = (sigma >= 0.05) & (sigma <= 50)
    np.testing.assert_allclose(gamma[churned], np.sqrt(2) - 1, rtol=1e-6)  # S_churn / N = 0.625 is capped
    assert np.all(gamma[~churned] == 0)
    assert np.flatnonzero(churned).tolist() == list(range(11, 107))  # 96 churned steps
    # A milder churn is not capped: gamma = S_churn / N.
    mild = edm.sampling_table(edm.EDMConfig(num_sample_steps=32, S_churn=4.0))
    assert np.max(mild[:, 2]) == pytest.approx(4.0 / 32)


def _gaussian_net(scale):
    """The network whose denoiser is exact for data ~ N(0, scale^2 I): D(x; s) = scale^2 / (scale^2 + s^2) x."""

    def net(x_in, c_noise):
        sigma = jnp.exp(4.0 * c_noise)[:, None]
        c_skip, c_out, c_in, _ = edm.preconditioning(sigma, 1.0)
        x = x_in / c_in
        return (scale**2 / (scale**2 + sigma**2) * x - c_skip * x) / c_out

    return net


def _algorithm_2_reference(net, key, num, dim, config):
    """EDM Algorithm 2 step by step in Python, with the same noise draws as `edm.sample`."""
    table = edm.sampling_table(config)
    init_key, step_key = jax.random.split(key)
    keys = jax.random.split(step_key, config.num_sample_steps)
    D = lambda x, s: np.asarray(edm.denoise(net, jnp.asarray(x), jnp.float32(s), 1.0), np.float64)
    x = float(table[0, 0]) * np.asarray(jax.random.normal(init_key, (num, dim)), np.float64)
    evaluations = 0
    for (sigma, sigma_next, gamma), k in zip(table.astype(np.float64), keys):
        eps = config.S_noise * np.asarray(jax.random.normal(k, (num, dim)), np.float64)
        sigma_hat = sigma * (1 + gamma)
        x_hat = x + np.sqrt(sigma_hat**2 - sigma**2) * eps
        d = (x_hat - D(x_hat, sigma_hat)) / sigma_hat
        evaluations += 1
        x = x_hat + (sigma_next - sigma_hat) * d
        if sigma_next != 0:
            d_next = (x - D(x, sigma_next)) / sigma_next
            evaluations += 1
            x = x_hat + 0.5 * (sigma_next - sigma_hat) * (d + d_next)
    return x, evaluations


def test_sampler_equals_algorithm_2_transcription():
    config = edm.EDMConfig()
    net = _gaussian_net(0.7)
    key = jax.random.PRNGKey(4)
    x = edm.sample(net, key, 16, 3, config)
    reference, evaluations = _algorithm_2_reference(net, key, 16, 3, config)
    assert evaluations == 255
    np.testing.assert_allclose(x, reference, rtol=1e-3, atol=1e-4)


def test_sampler_recovers_known_gaussian():
    """With the exact denoiser of N(0, 0.7^2), samples have std 0.7 (stochastic sampler, churn on)."""
    x = jax.jit(lambda k: edm.sample(_gaussian_net(0.7), k, 20_000, 2, edm.EDMConfig()))(jax.random.PRNGKey(5))
    assert np.all(np.isfinite(x))
    np.testing.assert_allclose(np.std(x, axis=0), 0.7, rtol=0.03)
    np.testing.assert_allclose(np.mean(x, axis=0), 0.0, atol=0.03)


def _ode_endpoint(x_start, scale):
    """The probability-flow ODE's exact end for data ~ N(0, scale^2): (x / sqrt(scale^2 + sigma^2)) is
    constant along it, so x(0) = x(sigma_max) scale / sqrt(scale^2 + sigma_max^2)."""
    return np.asarray(x_start, np.float64) * scale / np.sqrt(scale**2 + 80.0**2)


@pytest.mark.parametrize("solver", edm.SOLVERS)
def test_deterministic_solvers_converge_to_the_exact_ode_solution_at_second_order(solver):
    """Without churn both solvers integrate the ODE; for Gaussian data its solution is closed-form,
    and a second-order method's error falls about 4x per doubling of the steps."""
    net, key = _gaussian_net(0.7), jax.random.PRNGKey(6)
    x_start = 80.0 * jax.random.normal(jax.random.split(key)[0] if solver == "heun" else key, (256, 3))
    errors = []
    for steps in (16, 32, 64):
        config = edm.EDMConfig(num_sample_steps=steps, S_churn=0.0, solver=solver)
        x = edm.sample(net, key, 256, 3, config)
        errors.append(np.max(np.abs(np.asarray(x, np.float64) - _ode_endpoint(x_start, 0.7))))
    assert errors[-1] < 0.01  # of samples up to about 2
    assert errors[0] / errors[1] > 3.0 and errors[1] / errors[2] > 3.0, errors


@pytest.mark.parametrize("solver, steps, evaluations", [("heun", 8, 15), ("dpmpp_2m", 8, 8), ("dpmpp_2m", 1, 1)])
def test_network_evaluations_are_counted_as_the_sampler_makes_them(solver, steps, evaluations):
    calls = []
    net = _gaussian_net(1.0)

    def counted(x, c_noise):
        jax.debug.callback(lambda: calls.append(1))
        return net(x, c_noise)

    config = edm.EDMConfig(num_sample_steps=steps, S_churn=0.0, solver=solver)
    jax.block_until_ready(edm.sample(counted, jax.random.PRNGKey(0), 4, 2, config))
    jax.effects_barrier()
    assert len(calls) == evaluations == edm.network_evaluations(config)


def test_sampler_determinism_and_shape():
    net, config = _gaussian_net(1.0), edm.EDMConfig(num_sample_steps=16)
    sample = jax.jit(lambda k: edm.sample(net, k, 8, 5, config))
    a, b, c = sample(jax.random.PRNGKey(0)), sample(jax.random.PRNGKey(0)), sample(jax.random.PRNGKey(1))
    assert a.shape == (8, 5) and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
