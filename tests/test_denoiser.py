"""The denoiser's architecture against the original's exact parameter counts (paper Appendix B.1)."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synther_jax.diffusion.denoiser import RandomFourierFeatures, ResidualMLPDenoiser, parameter_count


def _variables(dim, **kwargs):
    return jax.eval_shape(lambda: ResidualMLPDenoiser(**kwargs).init(
        jax.random.PRNGKey(0), jnp.zeros((2, dim)), jnp.zeros((2,))))


def _count(tree):
    return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


@pytest.mark.parametrize("dim, kwargs, expected", [
    (42, dict(width=1024), 6_497_066),  # walker2d, the paper's base network
    (42, dict(width=2048), 25_552_682),  # the original code's default width
    (42, dict(width=1024, layer_norm=True), 6_511_402),
    (41, dict(width=1024, dim_t=256), 6_683_945),  # online DMC cheetah-run, no terminal column
])
def test_trainable_parameter_count_matches_the_original(dim, kwargs, expected):
    variables = _variables(dim, **kwargs)
    assert _count(variables["params"]) == expected == parameter_count(dim, **kwargs)
    # The 8 Fourier frequencies are fixed, outside the trainable parameters.
    assert _count(variables["constants"]) == 8


def test_fourier_features_and_output_shape():
    t = jnp.array([-1.0, 0.0, 0.5])
    features = RandomFourierFeatures()
    variables = features.init(jax.random.PRNGKey(1), t)
    w = np.asarray(variables["constants"]["frequencies"])
    f = 2 * np.pi * np.asarray(t)[:, None] * w[None]
    np.testing.assert_allclose(features.apply(variables, t), np.concatenate([np.asarray(t)[:, None], np.sin(f),
                                                                             np.cos(f)], 1), rtol=1e-5, atol=1e-6)
    model = ResidualMLPDenoiser(width=32, depth=2, dim_t=16)
    x = jnp.ones((3, 5))
    assert model.apply(model.init(jax.random.PRNGKey(1), x, t), x, t).shape == (3, 5)


def test_initialisation_matches_pytorch_linear_bounds():
    variables = ResidualMLPDenoiser(width=256, depth=1, dim_t=64).init(
        jax.random.PRNGKey(2), jnp.zeros((1, 10)), jnp.zeros((1,)))
    for layer in jax.tree.leaves(variables["params"], is_leaf=lambda x: isinstance(x, dict) and "kernel" in x):
        bound = 1 / np.sqrt(layer["kernel"].shape[0])
        for array in (layer["kernel"], layer["bias"]):
            assert np.abs(array).max() <= bound
            assert np.abs(array).max() > 0.9 * bound or array.size < 50


def _bfloat16(array) -> np.ndarray:
    """`array` rounded to bfloat16 (round to nearest even), as float64."""
    return np.asarray(jnp.asarray(array, jnp.float32).astype(jnp.bfloat16).astype(jnp.float32), np.float64)


def test_matmul_precisions_against_float64():
    from synther_jax.nn import matmul

    x = np.random.default_rng(0).normal(size=(64, 256)).astype(np.float32)
    w = np.random.default_rng(1).normal(size=(256, 32)).astype(np.float32)
    exact = x.astype(np.float64) @ w.astype(np.float64)
    scale = np.abs(x).astype(np.float64) @ np.abs(w).astype(np.float64)  # bounds every product's rounding
    # float32: true float32 products, within float32 accumulation error of the exact product.
    assert np.all(np.abs(np.asarray(matmul(x, w, "float32")) - exact) <= 256 * 2 ** -24 * scale)
    # bfloat16: the exact product of the bfloat16-rounded operands, accumulated in float32 ...
    rounded = _bfloat16(x) @ _bfloat16(w)
    bf16 = np.asarray(matmul(x, w, "bfloat16"))
    assert bf16.dtype == np.float32
    assert np.all(np.abs(bf16 - rounded) <= 256 * 2 ** -24 * scale)
    # ... which is not the float32 product: operand rounding (2^-9 relative) is far above float32's.
    assert np.abs(bf16 - exact).max() > 100 * np.abs(np.asarray(matmul(x, w, "float32")) - exact).max()
    # tf32: 10-bit operands on NVIDIA tensor cores, float32 on a CPU; within the TF32 bound on either.
    assert np.all(np.abs(np.asarray(matmul(x, w, "tf32")) - exact) <= (2 * 2 ** -11 + 256 * 2 ** -24) * scale)
    with pytest.raises(ValueError, match="matmul precision 'fp16'"):
        matmul(x, w, "fp16")


def test_a_bfloat16_denoiser_has_the_same_parameters_and_a_nearby_output():
    x, c_noise = jnp.asarray(np.random.default_rng(2).normal(size=(16, 10)), jnp.float32), jnp.linspace(-1, 1, 16)
    full, half = (ResidualMLPDenoiser(width=64, depth=2, dim_t=16, matmul_precision=p) for p in ("float32", "bfloat16"))
    variables = full.init(jax.random.PRNGKey(0), x, c_noise)
    assert jax.tree.structure(variables) == jax.tree.structure(half.init(jax.random.PRNGKey(0), x, c_noise))
    reference, low = np.asarray(full.apply(variables, x, c_noise)), np.asarray(half.apply(variables, x, c_noise))
    assert low.dtype == np.float32
    difference = np.abs(low - reference).max() / np.abs(reference).max()
    assert 1e-5 < difference < 5e-2  # bfloat16 operands: visibly rounded, not another network


def test_diffusion_config_refuses_an_unknown_matmul_precision():
    from synther_jax.diffusion import DiffusionConfig

    with pytest.raises(ValueError, match="matmul_precision must be one of"):
        DiffusionConfig(matmul_precision="float16")
