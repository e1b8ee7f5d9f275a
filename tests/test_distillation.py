"""Consistency distillation on a known 2-D mixture: one step lands where the teacher's ODE does and
the samples have the mixture's distribution; a resumed distillation equals an uninterrupted one;
bad settings are refused."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from synther_jax.diffusion import DiffusionConfig, DistillConfig, distill, edm, generate, train_diffusion
from synther_jax.diffusion.distillation import consistency_function, sampler_sigmas
from synther_jax.diffusion.model import denoiser_fn
from synther_jax.errors import WorkdirError

TEACHER = DiffusionConfig(width=128, depth=2, dim_t=16, num_train_steps=2_000, steps_per_call=1_000, S_churn=0.0)
STUDENT = DistillConfig(num_steps=1, num_train_steps=6_000, learning_rate=3e-4, steps_per_call=1_000)


def _mixture(num: int, seed: int) -> np.ndarray:
    """Two Gaussians at x = -2 and 2 (std 0.3), y ~ N(0, 0.5^2)."""
    rng = np.random.default_rng(seed)
    centres = np.where(rng.integers(0, 2, num) == 1, 2.0, -2.0)
    return np.stack([centres + 0.3 * rng.standard_normal(num), 0.5 * rng.standard_normal(num)], 1).astype(np.float32)


@pytest.fixture(scope="module")
def teacher_and_student():
    rows = _mixture(20_000, 0)
    teacher = train_diffusion(rows, TEACHER, jax.random.PRNGKey(0), progress=False)
    return rows, teacher, distill(teacher, rows, STUDENT, jax.random.PRNGKey(1), progress=False)


def test_one_step_lands_near_the_teachers_ode_solution_from_the_same_noise(teacher_and_student):
    _, teacher, student = teacher_and_student
    key = jax.random.PRNGKey(2)
    ode = edm.sample(denoiser_fn(TEACHER, teacher.params, teacher.constants), key, 2_000, 2,
                     dataclasses.replace(TEACHER, num_sample_steps=128))
    noise = TEACHER.sigma_max * jax.random.normal(jax.random.split(key)[0], (2_000, 2))  # the sampler's first draw
    one_step = consistency_function(denoiser_fn(TEACHER, student.params, student.constants), noise,
                                    jnp.float32(TEACHER.sigma_max), TEACHER)
    distance = lambda x: np.median(np.linalg.norm(np.asarray(teacher.normalizer.unnormalize(x) -
                                                             teacher.normalizer.unnormalize(ode)), axis=1))
    assert distance(one_step) < 0.15, distance(one_step)  # the modes are 4 apart, 0.3 wide
    # The teacher's own single evaluation is near the posterior mean, between the modes: far from the ODE.
    assert distance(edm.denoise(denoiser_fn(TEACHER, teacher.params, teacher.constants), noise,
                                jnp.float32(TEACHER.sigma_max), 1.0)) > 1.0


@pytest.mark.parametrize("num_steps", [1, 2, 4])
def test_distilled_samples_have_the_mixtures_distribution(teacher_and_student, num_steps):
    rows, _, student = teacher_and_student
    x = generate(student.replace(distilled=dataclasses.replace(STUDENT, num_steps=num_steps)), 5_000,
                 jax.random.PRNGKey(3), progress=False)
    held_out = _mixture(5_000, 1)
    assert stats.ks_2samp(x[:, 0], held_out[:, 0]).statistic < 0.12
    assert stats.ks_2samp(x[:, 1], held_out[:, 1]).statistic < 0.06
    assert np.mean(np.abs(x[:, 0]) < 1.0) < 0.06  # almost nothing between the modes (the data: 0.0001 %)
    assert 0.45 < np.mean(x[:, 0] > 0) < 0.55


def test_sampler_levels():
    levels = lambda num_steps: sampler_sigmas(DistillConfig(num_steps=num_steps), TEACHER)
    np.testing.assert_allclose(levels(1), [80.0], rtol=1e-6)
    np.testing.assert_allclose(levels(2), [80.0, np.sqrt(1.0 * 0.12)], rtol=1e-6)
    four = levels(4)
    np.testing.assert_allclose(four[[0, 1, 3]], [80.0, 1.0, 0.12], rtol=1e-6)
    assert four[2] == pytest.approx(np.sqrt(0.12), rel=1e-6)  # evenly spaced in log(sigma)


def test_a_resumed_distillation_equals_an_uninterrupted_one(teacher_and_student, tmp_path):
    rows, teacher, _ = teacher_and_student
    short = dataclasses.replace(STUDENT, num_train_steps=40, steps_per_call=10, checkpoint_every=20)
    whole = distill(teacher, rows, short, jax.random.PRNGKey(4), workdir=str(tmp_path / "whole"), progress=False)
    distill(teacher, rows, dataclasses.replace(short, num_train_steps=20), jax.random.PRNGKey(4),
            workdir=str(tmp_path / "cut"), progress=False)  # stopped after its checkpoint at step 20
    resumed = distill(teacher, rows, short, jax.random.PRNGKey(4), workdir=str(tmp_path / "cut"), progress=False)
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(a, b)
    with pytest.raises(WorkdirError, match=r"differing: config \(learning_rate\)"):  # not this run's checkpoints
        distill(teacher, rows, dataclasses.replace(short, learning_rate=1e-3), jax.random.PRNGKey(4),
                workdir=str(tmp_path / "cut"), progress=False)


@pytest.mark.parametrize("field, value, message", [("num_steps", 3, "num_steps must be one of (1, 2, 4)"),
                                                   ("grid_points", 1, "grid_points must be at least 2"),
                                                   ("ema_decay", 1.0, "ema_decay must lie in [0, 1)"),
                                                   ("restart_low", 2.0, "restart_high (1.0) must be at least "
                                                                        "restart_low (2.0)")])
def test_bad_settings_are_refused(field, value, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
        DistillConfig(**{field: value})


def test_a_conditional_teacher_is_refused(teacher_and_student):
    rows, teacher, _ = teacher_and_student
    guided = teacher.replace(config=dataclasses.replace(TEACHER, conditioning="add"))
    with pytest.raises(ValueError, match="conditional"):
        distill(guided, rows, STUDENT, jax.random.PRNGKey(0), progress=False)


def test_a_distilled_model_is_not_distilled_again(teacher_and_student):
    rows, _, student = teacher_and_student
    with pytest.raises(ValueError, match="distilled already; distil the 128-step teacher"):
        distill(student, rows, STUDENT, jax.random.PRNGKey(0), progress=False)


def test_seeds_with_rows_of_their_own_distil_as_each_would_alone():
    """Online SynthER's stack: each seed's teacher trained on its own rows is distilled on them."""
    rows = np.stack([_mixture(2_000, 5), 2.0 * _mixture(2_000, 6)])
    tiny = DiffusionConfig(width=32, depth=1, dim_t=8, num_train_steps=50, steps_per_call=50)
    teachers = train_diffusion(rows, tiny, jnp.stack([jax.random.PRNGKey(0), jax.random.PRNGKey(1)]), progress=False)
    settings = dataclasses.replace(STUDENT, num_train_steps=20, steps_per_call=10)
    keys = jnp.stack([jax.random.PRNGKey(2), jax.random.PRNGKey(3)])
    together = distill(teachers, rows, settings, keys, progress=False)
    for i in range(2):
        alone = distill(jax.tree.map(lambda x: x[i], teachers), rows[i], settings, keys[i], progress=False)
        for a, b in zip(jax.tree.leaves(together.params), jax.tree.leaves(alone.params)):
            np.testing.assert_allclose(a[i], b, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="give each seed its own rows: pass one key per seed"):
        distill(jax.tree.map(lambda x: x[0], teachers), rows, settings, keys[0], progress=False)
