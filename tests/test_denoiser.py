"""The denoiser's architecture against the original's exact parameter counts (spec section 1.3)."""
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
