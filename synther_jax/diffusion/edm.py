"""EDM (Karras et al. 2022) as SynthER configures it: preconditioning, training loss, sampler.

Everything here works in normalised data space and takes the network as a function
`net(x, c_noise) -> F` (a conditional one also takes `condition, keep`) so it is independent of
how parameters are stored.
"""
import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Network = Callable[[jax.Array, jax.Array], jax.Array]


@dataclasses.dataclass(frozen=True)
class EDMConfig:
    """EDM's constants (paper Appendix B.2), with SynthER's values as defaults."""

    sigma_data: float = 1.0
    P_mean: float = -1.2
    P_std: float = 1.2
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    num_sample_steps: int = 128
    S_churn: float = 80.0
    S_tmin: float = 0.05
    S_tmax: float = 50.0
    S_noise: float = 1.003
    solver: str = "heun"  # "heun": EDM Algorithm 2 (the paper's); "dpmpp_2m": DPM-Solver++(2M), deterministic


SOLVERS = ("heun", "dpmpp_2m")


def network_evaluations(config: EDMConfig) -> int:
    """Network evaluations per sample: 2N - 1 for Heun (its last step is Euler), N for DPM-Solver++(2M)."""
    n = config.num_sample_steps
    return 2 * n - 1 if config.solver == "heun" else n


def preconditioning(sigma: jax.Array, sigma_data: float):
    """EDM Table 1: (c_skip, c_out, c_in, c_noise) for noise level(s) sigma."""
    total = sigma**2 + sigma_data**2
    c_skip = sigma_data**2 / total
    c_out = sigma * sigma_data / jnp.sqrt(total)
    c_in = 1.0 / jnp.sqrt(total)
    c_noise = 0.25 * jnp.log(jnp.maximum(sigma, 1e-20))
    return c_skip, c_out, c_in, c_noise


def denoise(net: Network, x: jax.Array, sigma: jax.Array, sigma_data: float) -> jax.Array:
    """D(x; sigma) = c_skip x + c_out F(c_in x, c_noise), for x (B, d) and sigma (B,) or a scalar."""
    sigma = jnp.broadcast_to(sigma, x.shape[:1])
    c_skip, c_out, c_in, c_noise = preconditioning(sigma, sigma_data)
    return c_skip[:, None] * x + c_out[:, None] * net(c_in[:, None] * x, c_noise)


def loss_weight(sigma: jax.Array, sigma_data: float) -> jax.Array:
    """lambda(sigma) = (sigma^2 + sigma_data^2) / (sigma sigma_data)^2."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def training_loss(net: Network, y: jax.Array, key: jax.Array, config: EDMConfig) -> jax.Array:
    """The EDM loss on a clean normalised batch y (B, d): log-normal sigma, weighted per-sample MSE."""
    sigma_key, noise_key = jax.random.split(key)
    sigma = jnp.exp(config.P_mean + config.P_std * jax.random.normal(sigma_key, y.shape[:1]))
    x = y + sigma[:, None] * jax.random.normal(noise_key, y.shape)
    per_sample = jnp.mean((denoise(net, x, sigma, config.sigma_data) - y) ** 2, axis=-1)
    return jnp.mean(loss_weight(sigma, config.sigma_data) * per_sample)


def karras_sigmas(n: int, config: EDMConfig) -> np.ndarray:
    """EDM eq. 5: n noise levels from sigma_max down to sigma_min, float32."""
    i = np.arange(n, dtype=np.float32)
    inv_rho = np.float32(1.0 / config.rho)
    hi, lo = np.float32(config.sigma_max) ** inv_rho, np.float32(config.sigma_min) ** inv_rho
    return (hi + i / np.float32(max(n - 1, 1)) * (lo - hi)) ** np.float32(config.rho)


def sampling_table(config: EDMConfig) -> np.ndarray:
    """The (sigma_i, sigma_{i+1}, gamma_i) rows of the stochastic sampler, shape (N, 3), float32.

    sigma_i follows EDM eq. 5 for i = 0..N-1 with sigma_N = 0 appended; gamma_i =
    min(S_churn / N, sqrt(2) - 1) where S_tmin <= sigma_i <= S_tmax, else 0.
    """
    n = config.num_sample_steps
    sigmas = np.append(karras_sigmas(n, config), np.float32(0.0)).astype(np.float32)
    churn = (sigmas[:-1] >= config.S_tmin) & (sigmas[:-1] <= config.S_tmax)
    gammas = np.where(churn, min(config.S_churn / n, np.sqrt(2.0) - 1.0), 0.0).astype(np.float32)
    return np.stack([sigmas[:-1], sigmas[1:], gammas], axis=1)


def sample(net: Network, key: jax.Array, num: int, dim: int, config: EDMConfig) -> jax.Array:
    """`num` normalised samples of `dim` dims by `config.solver`: EDM Algorithm 2 (stochastic Heun)
    or DPM-Solver++(2M).

    Heun: one `lax.scan` runs the N-1 Heun steps over the precomputed table; the last step (to
    sigma = 0) is Euler only, so a sample costs 2N - 1 network evaluations (255 for N = 128). A
    fresh noise draw is made every step, as in the original, even where gamma = 0. Extra arguments
    of a conditional `net` are bound by the caller (e.g. `keep = 0` for its unconditional model).
    """
    D = lambda x, sigma: denoise(net, x, sigma, config.sigma_data)
    if config.solver == "dpmpp_2m":
        return _dpmpp_2m(D, key, num, dim, config)
    return _heun(D, D, key, num, dim, config)


def guided_sample(net: Network, key: jax.Array, condition: jax.Array, guidance: jax.Array, dim: int,
                  config: EDMConfig, corrector: str = "full") -> jax.Array:
    """Classifier-free guidance inside the same sampler: one normalised sample per `condition` entry.

    `net(x, c_noise, condition, keep)` is a conditional network (keep = 0: unconditional). Each
    evaluation is one batched call on [x, x] with keep = [1, 0], mixed as D = D_u + w (D_c - D_u);
    `guidance` w may be traced, so one compilation serves every scale, and the noise draws are
    those of `sample`. The Heun corrector is `"full"` (the same mixture again, 4 network rows per
    sample and step) or `"conditional"` (PGR's code: D_c alone, or D_u where w = 0, 3 rows).
    w = 0 gives the unconditional sampler, w = 1 the conditional one, in both modes. No clamp:
    PGR clamps D to [-1, 1] for its min-max data normaliser; our rows are standardised.
    """
    num = condition.shape[0]
    both_conditions = jnp.concatenate([condition, condition])
    both_keeps = jnp.concatenate([jnp.ones(num), jnp.zeros(num)])

    def guided(x, sigma):
        both = denoise(lambda *a: net(*a, both_conditions, both_keeps), jnp.concatenate([x, x]), sigma,
                       config.sigma_data)
        conditional, unconditional = both[:num], both[num:]
        return unconditional + guidance * (conditional - unconditional)

    def conditional_only(x, sigma):
        keep = jnp.broadcast_to(guidance != 0, (num,)).astype(x.dtype)
        return denoise(lambda *a: net(*a, condition, keep), x, sigma, config.sigma_data)

    if corrector not in CORRECTORS:
        raise ValueError(f"corrector must be one of {CORRECTORS}, got {corrector!r}.")
    if config.solver == "dpmpp_2m":  # one evaluation per step: no corrector
        return _dpmpp_2m(guided, key, num, dim, config)
    return _heun(guided, guided if corrector == "full" else conditional_only, key, num, dim, config)


CORRECTORS = ("full", "conditional")


def _heun(predict: Callable, correct: Callable, key: jax.Array, num: int, dim: int, config: EDMConfig) -> jax.Array:
    """The stochastic Heun sampler with denoisers `predict(x, sigma)` for the Euler step and
    `correct(x, sigma)` for the second-order correction."""
    table = jnp.asarray(sampling_table(config))
    init_key, step_key = jax.random.split(key)
    step_keys = jax.random.split(step_key, config.num_sample_steps)

    def churn(x, sigma, gamma, key):
        # sqrt(sigma_hat^2 - sigma^2) written so it is exactly 0 when gamma = 0 (no float32 NaN).
        sigma_hat = sigma * (1.0 + gamma)
        eps = config.S_noise * jax.random.normal(key, x.shape)
        x_hat = x + sigma * jnp.sqrt(gamma * (gamma + 2.0)) * eps
        return x_hat, sigma_hat

    def heun_step(x, row_and_key):
        (sigma, sigma_next, gamma), key = row_and_key
        x_hat, sigma_hat = churn(x, sigma, gamma, key)
        d = (x_hat - predict(x_hat, sigma_hat)) / sigma_hat
        x_euler = x_hat + (sigma_next - sigma_hat) * d
        d_next = (x_euler - correct(x_euler, sigma_next)) / sigma_next
        return x_hat + 0.5 * (sigma_next - sigma_hat) * (d + d_next), None

    x = table[0, 0] * jax.random.normal(init_key, (num, dim))
    x, _ = jax.lax.scan(heun_step, x, ((table[:-1, 0], table[:-1, 1], table[:-1, 2]), step_keys[:-1]))
    sigma, sigma_next, gamma = table[-1]
    x_hat, sigma_hat = churn(x, sigma, gamma, step_keys[-1])
    return x_hat + (sigma_next - sigma_hat) * (x_hat - predict(x_hat, sigma_hat)) / sigma_hat


def _dpmpp_2m(D: Callable, key: jax.Array, num: int, dim: int, config: EDMConfig) -> jax.Array:
    """DPM-Solver++(2M) (Lu et al. 2022, Algorithm 2) on the same sigma grid, one network evaluation
    per step and no noise after the first draw.

    With x = y + sigma n (EDM's alpha = 1) and lambda = -log sigma, step i moves from sigma_i to
    sigma_{i+1} along the exact solution of the linear part: x <- (sigma_{i+1} / sigma_i) x +
    (1 - sigma_{i+1} / sigma_i) D', where D' is the denoised estimate, extrapolated from the last
    two with r = h_{i-1} / h_i as D' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1}. The first step has no
    previous estimate, and the last (to sigma = 0, where h is infinite) returns the denoised estimate
    itself (first order).
    """
    table = jnp.asarray(sampling_table(config))
    sigmas, sigmas_next = table[:, 0], table[:, 1]
    # h_{i-1} / h_i for the interior steps; step 0 has no previous estimate (r unused there).
    log_sigmas = jnp.log(sigmas)
    h = log_sigmas[:-1] - log_sigmas[1:]  # h_i for i = 0..N-2 (the last, to sigma = 0, is infinite)
    ratios = jnp.concatenate([jnp.ones(1), h[:-1] / h[1:]])[:config.num_sample_steps - 1]  # r_i, i = 0..N-2

    def step(carry, inputs):
        x, previous = carry
        sigma, sigma_next, r, first = inputs
        denoised = D(x, sigma)
        extrapolated = jnp.where(first, denoised, (1 + 0.5 / r) * denoised - (0.5 / r) * previous)
        x = (sigma_next / sigma) * x + (1.0 - sigma_next / sigma) * extrapolated
        return (x, denoised), None

    x = sigmas[0] * jax.random.normal(key, (num, dim))
    first = jnp.arange(config.num_sample_steps - 1) == 0
    (x, _), _ = jax.lax.scan(step, (x, jnp.zeros_like(x)), (sigmas[:-1], sigmas_next[:-1], ratios, first))
    return D(x, sigmas[-1])
