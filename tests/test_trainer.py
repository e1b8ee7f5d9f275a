"""Diffusion training: EMA schedule, LR schedule, resume equality, warm start, generation contract,
a stack of keys (one model per seed as one vmapped program) against one key per seed."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synther_jax.diffusion import DiffusionConfig, generate, iterate_samples, load_diffusion, train_diffusion
from synther_jax.diffusion.model import make_optimizer
from synther_jax.diffusion.training import ema_decay, update_ema
from synther_jax.errors import WorkdirError

TINY = DiffusionConfig(width=32, depth=2, dim_t=16, num_train_steps=60, steps_per_call=20, checkpoint_every=20,
                       num_sample_steps=8, sample_chunk_size=64)


def _ema_pytorch_reference(num_updates, beta=0.995, every=10, after=100, power=2 / 3):
    """ema-pytorch 0.1.2's update() on a scalar 'model' whose value after optimiser step s is s."""
    ema, counter, initted = 0.0, 0, False
    for value in range(num_updates):
        step = counter
        counter += 1
        if step % every != 0:
            continue
        if step <= after:
            ema = float(value)
            continue
        if not initted:
            ema, initted = float(value), True
        epoch = max(counter - after - 1, 0)
        decay = 0.0 if epoch <= 0 else min(max(1 - (1 + epoch) ** -power, 0.0), beta)
        ema = ema - (1 - decay) * (ema - value)
    return ema


def test_ema_matches_ema_pytorch_semantics():
    config = DiffusionConfig()
    ema = jnp.float32(0.0)
    for k in range(3500):
        ema = update_ema(ema, jnp.float32(k), jnp.int32(k), config)
    np.testing.assert_allclose(ema, _ema_pytorch_reference(3500), rtol=1e-5)
    copy, decay = ema_decay(jnp.int32(120), config)
    assert not copy and float(decay) == pytest.approx(1 - 21 ** (-2 / 3), rel=1e-6)
    assert bool(ema_decay(jnp.int32(110), config)[0])  # the first update past 100 copies
    assert float(ema_decay(jnp.int32(5000), config)[1]) == pytest.approx(0.995)


def test_learning_rate_is_cosine_without_warmup():
    config = DiffusionConfig(num_train_steps=1000)
    params = {"w": jnp.zeros(())}
    optimizer = make_optimizer(config)
    state = optimizer.init(params)
    lrs = []
    for _ in range(3):  # Adam's first step moves a parameter by exactly lr (sign of the gradient).
        updates, state = optimizer.update({"w": jnp.float32(1e-3)}, state, params)
        lrs.append(-float(updates["w"]))
    expected = [3e-4 * (1 + np.cos(np.pi * t / 1000)) / 2 for t in range(3)]
    np.testing.assert_allclose(lrs[0], expected[0], rtol=1e-4)
    assert lrs[1] < lrs[0] * 1.01  # decays from the first step on


def _rows(n=300, seed=0):
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, 5)).astype(np.float32)
    rows[:, -1] = rng.random(n) < 0.2
    return rows


def test_resume_after_interruption_equals_uninterrupted_run(tmp_path):
    rows, key = _rows(), jax.random.PRNGKey(0)
    straight = train_diffusion(rows, TINY, key, skip_norm_dims=(4,), workdir=str(tmp_path / "a"), progress=False)

    def crash_after_first_checkpoint(step, metrics):
        if step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_diffusion(rows, TINY, key, skip_norm_dims=(4,), workdir=str(tmp_path / "b"),
                        log_fn=crash_after_first_checkpoint, progress=False)
    steps_seen = []
    resumed = train_diffusion(rows, TINY, key, skip_norm_dims=(4,), workdir=str(tmp_path / "b"),
                              log_fn=lambda step, m: steps_seen.append(step), progress=False)
    assert steps_seen == [40, 60]  # it really resumed at step 20
    jax.tree.map(np.testing.assert_array_equal, straight.params, resumed.params)
    loaded = load_diffusion(str(tmp_path / "b"))
    jax.tree.map(np.testing.assert_array_equal, loaded.params, resumed.params)
    np.testing.assert_array_equal(loaded.normalizer.std, resumed.normalizer.std)


def test_generation_contract():
    model = train_diffusion(_rows(), TINY, jax.random.PRNGKey(1), skip_norm_dims=(4,), progress=False)
    a = generate(model, 150, jax.random.PRNGKey(2), chunk_size=64, progress=False)  # 3 chunks, the last cut
    b = generate(model, 150, jax.random.PRNGKey(2), chunk_size=64, progress=False)
    c = generate(model, 150, jax.random.PRNGKey(3), chunk_size=64, progress=False)
    assert a.shape == (150, 5) and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)
    assert len(np.unique(a[:, 0])) == 150  # chunks use different keys
    for start in (64, 100, 150):  # a resumed writer's start, on a chunk's edge, inside one, at the end
        rest = list(iterate_samples(model, 150, jax.random.PRNGKey(2), chunk_size=64, progress=False, start=start))
        np.testing.assert_array_equal(np.concatenate(rest or [np.empty((0, 5), np.float32)]), a[start:])


def test_warm_start_continues_from_the_given_model():
    rows = _rows()
    first = train_diffusion(rows, TINY, jax.random.PRNGKey(1), skip_norm_dims=(4,), progress=False)
    frozen = dataclasses.replace(TINY, learning_rate=1e-12, num_train_steps=20)
    warm = train_diffusion(rows, frozen, jax.random.PRNGKey(2), skip_norm_dims=(4,), progress=False, warm_start=first)
    cold = train_diffusion(rows, frozen, jax.random.PRNGKey(2), skip_norm_dims=(4,), progress=False)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), warm.params, first.params)
    jax.tree.map(np.testing.assert_array_equal, warm.constants, first.constants)
    assert not np.allclose(cold.constants["RandomFourierFeatures_0"]["frequencies"],
                           first.constants["RandomFourierFeatures_0"]["frequencies"])
    with pytest.raises(ValueError, match="architecture"):
        train_diffusion(rows, dataclasses.replace(frozen, width=16), jax.random.PRNGKey(2), progress=False,
                        warm_start=first)


def test_rejects_non_finite_rows():
    rows = _rows()
    rows[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        train_diffusion(rows, TINY, jax.random.PRNGKey(0), progress=False)


def test_one_key_is_the_one_seed_case_of_a_stack():
    """One key, raw or typed, trains one model without a seed axis and samples (N, d) rows: seed 0
    of a stack holding just that key, bit for bit (the same vmapped program)."""
    rows, short = _rows(), dataclasses.replace(TINY, num_train_steps=20)
    model = train_diffusion(rows, short, jax.random.PRNGKey(4), skip_norm_dims=(4,), progress=False)
    stack = train_diffusion(rows, short, jax.random.PRNGKey(4)[None], skip_norm_dims=(4,), progress=False)
    typed = train_diffusion(rows, short, jax.random.key(4), skip_norm_dims=(4,), progress=False)
    assert model.normalizer.std.shape == (5,) and stack.normalizer.std.shape == (1, 5)
    jax.tree.map(lambda one, stacked: np.testing.assert_array_equal(one, stacked[0]), model, stack)
    jax.tree.map(np.testing.assert_array_equal, typed, model)
    samples = generate(model, 70, jax.random.PRNGKey(5), chunk_size=64, progress=False)
    assert samples.shape == (70, 5)
    np.testing.assert_array_equal(samples, generate(stack, 70, jax.random.PRNGKey(5)[None], chunk_size=64,
                                                    progress=False)[0])
    with pytest.raises(ValueError, match="finite \\(N, d\\) array"):
        train_diffusion(np.stack([rows, rows]), short, jax.random.PRNGKey(4), progress=False)
    with pytest.raises(ValueError, match="3 keys"):
        train_diffusion(np.stack([rows, rows]), short, jax.random.split(jax.random.PRNGKey(4), 3), progress=False)


def test_seeds_trained_and_sampled_as_one_program_equal_one_by_one():
    """train_diffusion / generate with a stack of keys against each seed's key alone.

    A vmapped (batched) matmul may sum in another order than the plain one, so the two agree up
    to float32 rounding, not bitwise: parameters of unit scale within 1e-5 (about 100 float32
    ulps after 60 Adam steps; measured about 3e-8) and samples within 1e-4 (the sampler's 15
    network calls amplify; measured about 1e-6). Both bounds are far below the gap between two
    seeds' results (parameters about 0.7 apart, samples several units), which the last checks show.
    """
    rows = np.stack([_rows(seed=0), _rows(seed=1)])
    keys = jax.random.split(jax.random.PRNGKey(7), 2)
    models = train_diffusion(rows, TINY, keys, skip_norm_dims=(4,), progress=False)
    samples = generate(models, 150, keys, chunk_size=64, progress=False)  # 3 chunks, the last cut
    assert samples.shape == (2, 150, 5)
    for seed in range(2):
        model = train_diffusion(rows[seed], TINY, keys[seed], skip_norm_dims=(4,), progress=False)
        np.testing.assert_array_equal(models.normalizer.std[seed], model.normalizer.std)
        jax.tree.map(lambda together, alone: np.testing.assert_allclose(together[seed], alone, atol=1e-5),
                     models.params, model.params)
        alone = generate(model, 150, keys[seed], chunk_size=64, progress=False)
        np.testing.assert_allclose(samples[seed], alone, atol=1e-4)
        other = 1 - seed
        gap = jax.tree.map(lambda together, alone: np.max(np.abs(together[other] - alone)), models.params, model.params)
        assert max(jax.tree.leaves(gap)) > 1e-2 and np.max(np.abs(samples[other] - alone)) > 1e-1


def test_seeds_sharing_rows_equal_one_by_one_and_resume_exactly(tmp_path):
    """Offline SynthER's one denoiser per agent seed: every seed fits the same (N, d) rows with its
    own key, checkpointed as one program. Seed s equals `train_diffusion(rows, keys[s])` to float32
    rounding (bounds as in the test above), a run killed after its first checkpoint resumes to
    exactly the uninterrupted run, and `load_diffusion` reads the seeds' models back."""
    rows = _rows(seed=3)
    keys = jnp.stack([jax.random.PRNGKey(5), jax.random.PRNGKey(6)])
    straight = train_diffusion(rows, TINY, keys, skip_norm_dims=(4,), workdir=str(tmp_path / "a"), progress=False)

    def crash_after_first_checkpoint(step, metrics):
        if step == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_diffusion(rows, TINY, keys, skip_norm_dims=(4,), workdir=str(tmp_path / "b"),
                        log_fn=crash_after_first_checkpoint, progress=False)
    steps_seen = []
    resumed = train_diffusion(rows, TINY, keys, skip_norm_dims=(4,), workdir=str(tmp_path / "b"),
                              log_fn=lambda step, m: steps_seen.append(step), progress=False)
    assert steps_seen == [40, 60]
    jax.tree.map(np.testing.assert_array_equal, straight.params, resumed.params)
    loaded = load_diffusion(str(tmp_path / "b"))
    jax.tree.map(np.testing.assert_array_equal, loaded.params, resumed.params)
    assert loaded.normalizer.std.shape == (2, 5)

    samples = generate(loaded, 100, keys, chunk_size=64, progress=False)
    for seed in range(2):
        model = train_diffusion(rows, TINY, keys[seed], skip_norm_dims=(4,), progress=False)
        np.testing.assert_array_equal(straight.normalizer.mean[seed], model.normalizer.mean)
        jax.tree.map(lambda together, alone: np.testing.assert_allclose(together[seed], alone, atol=1e-5),
                     straight.params, model.params)
        alone = generate(model, 100, keys[seed], chunk_size=64, progress=False)
        np.testing.assert_allclose(samples[seed], alone, atol=1e-4)
    assert np.max(np.abs(samples[0] - samples[1])) > 1e-1  # the seeds' models differ


def test_seeds_refuse_a_workdir_of_other_keys(tmp_path):
    rows, keys = _rows(), jax.random.split(jax.random.PRNGKey(0), 2)
    short = dataclasses.replace(TINY, num_train_steps=20)
    train_diffusion(rows, short, keys, workdir=str(tmp_path), progress=False)
    with pytest.raises(WorkdirError, match="key"):
        train_diffusion(rows, short, jax.random.split(jax.random.PRNGKey(1), 2), workdir=str(tmp_path),
                        progress=False)
