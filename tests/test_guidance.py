"""Guided SynthER's diffusion side: the conditional denoiser, classifier-free guidance in the Heun
sampler (against closed-form Gaussians and a trained toy model), condition dropout, the condition's
min-max normaliser and top-fraction prompts."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synther_jax.diffusion import (ConditionNormalizer, DiffusionConfig, edm, generate, load_diffusion,
                                   top_fraction_prompts, train_diffusion)
from synther_jax.diffusion.denoiser import ResidualMLPDenoiser, init_variables, parameter_count
from synther_jax.diffusion.model import denoiser_fn, with_seed_axis
from synther_jax.diffusion.sampling import sample_rows
from synther_jax.diffusion.training import condition_keep

SCALE = 0.7  # the toy Gaussians' standard deviation


def _conditional_gaussian_net(mean_per_condition):
    """The exact network of data ~ N(keep * m c, SCALE^2 I): D(x; s) = a x + (1 - a) keep m c with
    a = SCALE^2 / (SCALE^2 + s^2)."""

    def net(x_in, c_noise, condition, keep):
        sigma = jnp.exp(4.0 * c_noise)[:, None]
        c_skip, c_out, c_in, _ = edm.preconditioning(sigma, 1.0)
        x = x_in / c_in
        a = SCALE**2 / (SCALE**2 + sigma**2)
        mean = (keep * condition)[:, None] * mean_per_condition
        return (a * x + (1 - a) * mean - c_skip * x) / c_out

    return net


def test_full_guidance_samples_the_closed_form_guided_gaussian():
    """With exact denoisers of N(0, s^2) (unconditional) and N(m, s^2) (conditional), D_u + w (D_c - D_u)
    is the exact denoiser of N(w m, s^2), so the full-CFG sampler must return that distribution."""
    net = _conditional_gaussian_net(jnp.array([1.0, -0.5]))
    config = edm.EDMConfig()
    sample = jax.jit(lambda w: edm.guided_sample(net, jax.random.PRNGKey(0), jnp.ones(20_000), w, 2, config))
    for w in (0.0, 1.0, 2.5):
        x = sample(w)
        np.testing.assert_allclose(np.mean(x, 0), [w, -0.5 * w], atol=0.03)
        np.testing.assert_allclose(np.std(x, 0), SCALE, rtol=0.03)
    assert sample._cache_size() == 1  # one compilation for every scale


def test_guidance_limits_equal_the_unconditional_and_conditional_samplers():
    net = _conditional_gaussian_net(jnp.array([1.0, -0.5, 2.0]))
    config = edm.EDMConfig(num_sample_steps=16)
    key, condition = jax.random.PRNGKey(1), jnp.linspace(-1, 1, 64)
    with_keep = lambda keep: (lambda x, c_noise: net(x, c_noise, condition, jnp.full(64, keep)))
    unconditional = edm.sample(with_keep(0.0), key, 64, 3, config)
    conditional = edm.sample(with_keep(1.0), key, 64, 3, config)
    for corrector in edm.CORRECTORS:
        guided = lambda w: edm.guided_sample(net, key, condition, w, 3, config, corrector)
        np.testing.assert_allclose(guided(0.0), unconditional, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(guided(1.0), conditional, rtol=1e-5, atol=1e-5)
    full, pgr = (edm.guided_sample(net, key, condition, 2.0, 3, config, corrector) for corrector in edm.CORRECTORS)
    assert np.max(np.abs(full - pgr)) > 1e-2  # PGR's corrector ignores w: the modes part for w = 2
    with pytest.raises(ValueError, match="corrector"):
        edm.guided_sample(net, key, condition, 2.0, 3, config, "heun")


def test_unconditional_network_is_todays_and_conditional_ones_add_what_they_say():
    dim, kwargs = 41, dict(width=1024, dim_t=256)
    base = parameter_count(dim, **kwargs)
    assert base == 6_683_945  # SynthER's online DMC denoiser, as test_denoiser
    condition_mlp = (1 * 512 + 512) + (512 * 256 + 256)
    assert parameter_count(dim, **kwargs, conditioning="add") == base + condition_mlp
    # PGR's trunk: [x -> W, (c_emb, t_emb) -> W] concatenated, 6 blocks and the head at width 2W.
    concat = parameter_count(dim, **kwargs, conditioning="concat")
    assert 25.9e6 < concat < 26.3e6
    model = ResidualMLPDenoiser(width=32, depth=1, dim_t=8, conditioning="add")
    variables = init_variables(model, jax.random.PRNGKey(0), 5)
    x, t = jnp.ones((4, 5)), jnp.zeros(4)
    dropped = model.apply(variables, x, t, jnp.array([-1.0, 0.0, 0.5, 1.0]), jnp.zeros(4))
    np.testing.assert_allclose(dropped, model.apply(variables, x, t, jnp.zeros(4), jnp.zeros(4)), rtol=1e-6)
    assert not np.allclose(dropped, model.apply(variables, x, t, jnp.array([-1.0, 0.0, 0.5, 1.0]), jnp.ones(4)))
    with pytest.raises(ValueError, match="keep mask"):
        model.apply(variables, x, t)


def test_condition_dropout_fires_at_its_rate_and_a_dropout_of_one_never_trains_the_condition():
    keep = condition_keep(jax.random.PRNGKey(0), 100_000, 0.25)
    assert float(jnp.mean(keep)) == pytest.approx(0.75, abs=0.01)
    assert float(jnp.mean(condition_keep(jax.random.PRNGKey(0), 1000, 0.0))) == 1.0
    rows = np.random.default_rng(0).normal(size=(200, 3)).astype(np.float32)
    config = DiffusionConfig(width=16, depth=1, dim_t=8, num_train_steps=20, steps_per_call=20, conditioning="add",
                             condition_dropout=1.0)
    key = jax.random.PRNGKey(3)
    model = train_diffusion(rows, config, key, condition=rows[:, 0], progress=False)
    initial = init_variables(config.denoiser(), jax.random.split(key)[0], 3)["params"]
    # The condition MLP's two layers are the 3rd and 4th created (after the time MLP's two).
    for name in ("Linear_2", "Linear_3"):
        jax.tree.map(np.testing.assert_array_equal, model.params[name], initial[name])
    assert not np.allclose(model.params["Linear_0"]["kernel"], initial["Linear_0"]["kernel"])


def test_min_max_normaliser_fits_the_filled_rows_only():
    labels = np.zeros(10, np.float32)
    labels[:4] = [2.0, 3.0, 5.0, 4.0]  # a buffer of 10 rows, 4 of them filled; the padding is 0
    normalizer = ConditionNormalizer.fit(labels, valid=np.arange(10) < 4)
    assert (float(normalizer.low), float(normalizer.high)) == (2.0, 5.0)
    np.testing.assert_allclose(normalizer.normalize(jnp.array([2.0, 3.5, 5.0])), [-1, 0, 1], atol=1e-5)
    np.testing.assert_allclose(normalizer.unnormalize(normalizer.normalize(jnp.array([2.5, 7.0]))), [2.5, 7.0],
                               rtol=1e-5)
    assert float(ConditionNormalizer.fit(labels).low) == 0.0  # PGR's fit over the padding
    with pytest.raises(ValueError, match="finite values"):
        ConditionNormalizer.fit(labels, valid=np.zeros(10, bool))


def test_top_fraction_prompts_pick_the_highest_rows():
    labels = jnp.array([5.0, 1.0, 9.0, 7.0, 3.0, 8.0, 0.0, 100.0])
    valid = jnp.array([True] * 7 + [False])  # the last row is not filled: never a prompt
    prompts = top_fraction_prompts(jax.random.PRNGKey(0), labels, 2_000, 0.3, valid)
    assert set(np.unique(prompts)) == {9.0, 8.0, 7.0}  # ceil(0.3 * 7) = 3 rows
    counts = np.array([np.sum(prompts == v) for v in (9.0, 8.0, 7.0)])
    assert np.all(np.abs(counts / 2_000 - 1 / 3) < 0.05)  # uniform over them
    ties = top_fraction_prompts(jax.random.PRNGKey(1), jnp.array([1.0, 2.0, 2.0, 2.0]), 100, 0.25)
    assert set(np.unique(ties)) == {2.0}
    with pytest.raises(ValueError, match="top_frac"):
        top_fraction_prompts(jax.random.PRNGKey(0), labels, 10, 0.0)


# --- a trained model on a toy distribution -------------------------------------------------------

CENTRES = np.array([[-3.0, 0.0], [-1.0, 2.0], [1.0, -2.0], [3.0, 0.0]])
TOY = DiffusionConfig(width=64, depth=2, dim_t=16, num_train_steps=1_000, steps_per_call=1_000, batch_size=256,
                      learning_rate=1e-3, num_sample_steps=32, sample_chunk_size=1_000, conditioning="add")


@pytest.fixture(scope="module")
def toy():
    """Four Gaussians (std 0.5) in 2-D; a row's relevance is its first coordinate plus N(0, 1.5^2)
    label noise, so p(c | x) is not a point mass and guidance has something to sharpen: the ideal
    guided distribution p(x) N(c; x_0, 1.5^2)^w pulls x_0 towards the high targets as w grows."""
    rng = np.random.default_rng(0)
    rows = (CENTRES[rng.integers(0, 4, 4_000)] + 0.5 * rng.normal(size=(4_000, 2))).astype(np.float32)
    relevance = rows[:, 0] + 1.5 * rng.normal(size=4_000).astype(np.float32)
    model = train_diffusion(rows, TOY, jax.random.PRNGKey(0), condition=relevance, progress=False)
    return rows, relevance, model


def test_guidance_raises_mean_relevance_monotonically_inside_the_support(toy):
    rows, relevance, model = toy
    targets = np.asarray(top_fraction_prompts(jax.random.PRNGKey(1), relevance, 1_000, 0.1))
    assert np.all(targets >= np.quantile(relevance, 0.89))
    means = []
    for w in (0.0, 1.0, 2.0, 4.0):
        x = generate(model, 1_000, jax.random.PRNGKey(2), condition=targets, guidance=w, progress=False)
        means.append(float(np.mean(x[:, 0])))
        nearest_centre = np.min(np.linalg.norm(x[:, None] - CENTRES[None], axis=-1), axis=1)
        assert np.mean(nearest_centre < 2.0) > 0.95, w  # within 4 std of a component: the support
    assert abs(means[0] - np.mean(rows[:, 0])) < 0.3  # w = 0: the data's own mean
    assert np.all(np.diff(means) > 0.05), means
    assert means[-1] < float(np.max(targets))  # pulled towards the targets, not past them


def test_trained_model_limits_one_compilation_and_save_load(toy, tmp_path):
    rows, relevance, model = toy
    targets = jnp.full(200, float(np.quantile(relevance, 0.95)))
    key = jax.random.PRNGKey(4)
    unconditional = generate(model, 200, key, progress=False)
    np.testing.assert_allclose(generate(model, 200, key, condition=targets, guidance=0.0, progress=False),
                               unconditional, rtol=1e-4, atol=1e-4)
    net = denoiser_fn(model.config, model.params, model.constants)
    normalized = model.condition_normalizer.normalize(targets)
    conditional = model.normalizer.unnormalize(edm.sample(lambda x, c: net(x, c, normalized, jnp.ones(200)),
                                                          jax.random.fold_in(key, 0), 200, 2, model.config))
    np.testing.assert_allclose(generate(model, 200, key, condition=targets, guidance=1.0, progress=False),
                               conditional, rtol=1e-4, atol=1e-4)
    before = sample_rows._cache_size()
    for w in (0.5, 2.0, 3.0):
        sample_rows(with_seed_axis(model), key[None], 200, condition=targets[None], guidance=w)
    assert sample_rows._cache_size() == before + 1
    with pytest.raises(ValueError, match="one finite target per sample"):
        generate(model, 200, key, condition=targets[:10], progress=False)


def test_conditional_training_checkpoints_resume_and_seeds(tmp_path):
    rng = np.random.default_rng(1)
    rows = rng.normal(size=(300, 3)).astype(np.float32)
    condition = rows[:, 0] ** 2
    config = DiffusionConfig(width=16, depth=1, dim_t=8, num_train_steps=40, steps_per_call=20, checkpoint_every=20,
                             num_sample_steps=4, sample_chunk_size=50, conditioning="concat")
    model = train_diffusion(rows, config, jax.random.PRNGKey(0), condition=condition, workdir=str(tmp_path),
                            progress=False)
    loaded = load_diffusion(str(tmp_path))
    assert (float(loaded.condition_normalizer.low), float(loaded.condition_normalizer.high)) == (
        pytest.approx(condition.min()), pytest.approx(condition.max()))
    targets = np.full(70, 2.0, np.float32)
    key = jax.random.PRNGKey(5)
    np.testing.assert_array_equal(generate(loaded, 70, key, condition=targets, guidance=2.0, progress=False),
                                  generate(model, 70, key, condition=targets, guidance=2.0, progress=False))
    seeds = train_diffusion(np.stack([rows, rows[::-1]]), config, jax.random.split(jax.random.PRNGKey(0)),
                            condition=np.stack([condition, condition[::-1]]), progress=False)
    both = generate(seeds, 70, jax.random.split(key), condition=np.stack([targets, targets]), guidance=2.0,
                    progress=False)
    assert both.shape == (2, 70, 3) and np.all(np.isfinite(both))
    with pytest.raises(ValueError, match="needs a condition"):
        train_diffusion(rows, config, jax.random.PRNGKey(0), progress=False)
    with pytest.raises(ValueError, match="unconditional"):
        train_diffusion(rows, DiffusionConfig(width=16, depth=1, dim_t=8, num_train_steps=1), jax.random.PRNGKey(0),
                        condition=condition, progress=False)
