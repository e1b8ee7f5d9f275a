"""The online loop: smoke run with a real diffusion retrain, rollout state untouched by generation,
exact resume after a crash, early stopping, several seeds in one process."""
import dataclasses
import json
import os

import jax
import numpy as np
import pytest

from configs.online import get_config
from pipelines import online_loop, online_synthesis
from synther_jax.diffusion import DiffusionConfig, DistillConfig, distill, generate, train_diffusion
from tests.test_offline import truncate_newest_checkpoint


def tiny_config(variant="synther", env="hopper", **overrides):
    config = get_config(f"{env}-{variant},smoke")
    config.total_steps, config.start_steps, config.replay_capacity = 300, 100, 1_000
    config.eval_every, config.eval_episodes, config.log_every, config.checkpoint_every = 150, 1, 50, 150
    config.agent.update(hidden_dims=(16, 16), batch_size=16, utd_ratio=2)
    config.synther.update(retrain_every=200, num_samples=500, capacity=500)
    config.synther.diffusion.update(width=32, depth=1, dim_t=8, num_train_steps=50, steps_per_call=50,
                                    num_sample_steps=4, sample_chunk_size=500)
    config.update(overrides)
    return config


def noisy_copy(real_rows, keys):
    """A stand-in generator: each seed's real rows plus noise, deterministic in the seed's key."""
    index = np.arange(500) % real_rows.shape[1]
    noise = np.stack([np.asarray(jax.random.normal(key, (500, real_rows.shape[2])), np.float32) for key in keys])
    return real_rows[:, index] + 0.01 * noise


def test_smoke_loop_with_one_diffusion_retrain_writes_every_output(tmp_path):
    config = tiny_config(total_steps=250, eval_every=125, checkpoint_every=250)
    synthesizer = online_synthesis.make_synthesizer(config)
    synthesizer.progress = False
    result = online_loop.train(config, str(tmp_path), synthesize=synthesizer)
    assert result.env_steps == 250 and [e["env_step"] for e in result.evaluations] == [125, 250]
    for name in ("config.json", "metrics.jsonl", "evaluations.json", "results.json", "timings.json",
                 "learning_curve.png"):
        assert os.path.getsize(tmp_path / name) > 0, name
    assert os.listdir(tmp_path / "checkpoints")
    timings = json.loads((tmp_path / "timings.json").read_text())["seconds"]
    assert timings["synthesis/diffusion_training"] > 0 and timings["synthesis/generation"] > 0
    assert all(timings[k] > 0 for k in ("env_stepping", "agent_updates", "evaluation"))
    data = result.real_data[0]
    assert len(data) == 250 and data.timeouts is not None
    assert np.all(np.diff(data.episode_ids) >= 0)  # collection order
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert {"agent", "eval"} <= {r["stage"] for r in records}
    evals = [r for r in records if r["stage"] == "eval"]
    assert [r["return/seed0"] for r in evals] == [e["returns"][0] for e in result.evaluations]


def test_generation_never_touches_the_rollout(tmp_path):
    """The original's issue #9: storing generated rows overwrote the live observation. Here the
    generator returns absurd rows; the real data must still chain obs[t + 1] == next_obs[t]."""
    config = tiny_config(total_steps=260, eval_every=260, checkpoint_every=260)
    garbage = lambda rows, keys: np.full((rows.shape[0], 500, rows.shape[2]), 1e3, np.float32)
    result = online_loop.train(config, str(tmp_path), synthesize=garbage)
    data = result.real_data[0]
    ended = (data.terminals + data.timeouts) > 0
    continuing = ~ended[:-1]
    np.testing.assert_array_equal(data.observations[1:][continuing], data.next_observations[:-1][continuing])
    assert np.all(np.abs(data.observations) < 1e3)
    synthetic = newest_checkpoint(tmp_path)["synthetic"]  # seed axis first
    assert int(synthetic["size"][0]) == 500 and np.all(synthetic["rewards"][0] == 1e3)
    assert np.all(synthetic["terminals"][0] == 1e3)  # raw, unthresholded terminals (the original's online code)


def newest_checkpoint(workdir):
    """The newest checkpoint as plain nested dicts of arrays."""
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(os.path.abspath(os.path.join(workdir, "checkpoints")))
    return manager.restore(manager.latest_step())


def resume_config(checkpoint_every):
    config = tiny_config(total_steps=300, checkpoint_every=checkpoint_every, eval_every=100)
    config.synther.retrain_every = 100  # retrains at 100 and 200
    return config


@pytest.fixture(scope="module")
def uninterrupted_run(tmp_path_factory):
    """The resume tests' run without interruption (how often it checkpoints changes nothing else),
    and the number of real rows each of its retrains was given."""
    retrain_rows = []

    def recording(real_rows, keys):
        retrain_rows.append(real_rows.shape[1])
        return noisy_copy(real_rows, keys)

    result = online_loop.train(resume_config(150), str(tmp_path_factory.mktemp("uninterrupted")), synthesize=recording)
    return result, retrain_rows


@pytest.fixture(scope="module")
def uninterrupted(uninterrupted_run):
    """The uninterrupted run's result."""
    return uninterrupted_run[0]


def crash_at(step):
    def on_eval(env_step, mean_return, states):
        if env_step == step:
            raise KeyboardInterrupt("killed")
        return False
    return on_eval


def assert_same_run(resumed, uninterrupted):
    assert resumed.env_steps == 300
    for a, b in zip(jax.tree.leaves(resumed.agent_state), jax.tree.leaves(uninterrupted.agent_state)):
        np.testing.assert_array_equal(a, b)
    for a, b in zip(resumed.real_data, uninterrupted.real_data):
        for key in ("observations", "actions", "rewards", "terminals", "timeouts", "episode_ids"):
            np.testing.assert_array_equal(getattr(a, key), getattr(b, key))
    assert resumed.evaluations == uninterrupted.evaluations


def test_resume_after_a_crash_ends_identical_to_an_uninterrupted_run(tmp_path, uninterrupted):
    config = resume_config(150)  # retrains on both sides of the checkpoint at 150
    with pytest.raises(KeyboardInterrupt):
        online_loop.train(config, str(tmp_path / "b"), synthesize=noisy_copy, on_eval=crash_at(200))
    assert_same_run(online_loop.train(config, str(tmp_path / "b"), synthesize=noisy_copy), uninterrupted)


def test_a_damaged_newest_checkpoint_is_skipped_for_the_one_before(tmp_path, uninterrupted, caplog):
    config = resume_config(100)
    with pytest.raises(KeyboardInterrupt):  # killed at 300, after the checkpoints at 100 and 200
        online_loop.train(config, str(tmp_path / "b"), synthesize=noisy_copy, on_eval=crash_at(300))
    assert truncate_newest_checkpoint(tmp_path / "b" / "checkpoints") == 200
    with caplog.at_level("INFO"):
        resumed = online_loop.train(config, str(tmp_path / "b"), synthesize=noisy_copy)
    assert_same_run(resumed, uninterrupted)
    messages = [record.getMessage() for record in caplog.records]
    assert any("checkpoints/200 does not restore" in message for message in messages), messages
    assert any("at environment step 100" in message for message in messages), messages


def test_retrains_every_period_but_not_at_the_last_step(uninterrupted_run):
    """Samples made at the last step would never be trained on, so that retrain is skipped (300
    steps, a retrain every 100)."""
    assert uninterrupted_run[1] == [100, 200]


def test_on_eval_stops_training(tmp_path):
    config = tiny_config("sac", total_steps=1_000, checkpoint_every=1_000)
    seen = []
    result = online_loop.train(config, str(tmp_path), on_eval=lambda step, ret, states: seen.append(step) or True)
    assert seen == [150] and result.env_steps == 150 and len(result.real_data[0]) == 150


def test_seeds_are_a_vmapped_axis_with_their_own_environments(tmp_path):
    config = tiny_config("sac", num_seeds=2, total_steps=200, eval_every=200)
    result = online_loop.train(config, str(tmp_path))
    first, second = result.real_data
    assert len(first) == len(second) == 200
    assert not np.array_equal(first.observations, second.observations)
    assert jax.tree.leaves(result.agent_state)[0].shape[0] == 2
    assert len(result.evaluations[-1]["returns"]) == 2


def test_synthesis_is_required_when_enabled(tmp_path):
    with pytest.raises(ValueError, match="synthesize"):
        online_loop.train(tiny_config(), str(tmp_path))


def test_raw_columns_follow_the_original_online_configs():
    """Gym rows keep the terminal raw; DMC rows have no terminal and keep the reward raw."""
    gym_config, dmc_config = get_config("walker2d-synther").synther, get_config("cheetah-run-synther").synther
    assert gym_config.terminals == "modelled" and gym_config.normalise_reward
    assert dmc_config.terminals == "none" and not dmc_config.normalise_reward
    assert online_synthesis.skip_norm_dims(17, 6, True, True) == (2 * 17 + 6 + 1,)  # last column of 42
    assert online_synthesis.skip_norm_dims(17, 6, False, False) == (17 + 6,)  # the reward column
    assert gym_config.diffusion.width == 1024 and gym_config.diffusion.depth == 6 and gym_config.diffusion.dim_t == 256


TINY_DIFFUSION = dataclasses.asdict(DiffusionConfig(width=16, depth=1, dim_t=8, num_train_steps=20, steps_per_call=10,
                                                   num_sample_steps=4))


def test_warm_start_continues_each_seeds_previous_model():
    rows = np.random.default_rng(0).normal(size=(2, 64, 5)).astype(np.float32)
    synthesizer = online_synthesis.DiffusionSynthesizer(TINY_DIFFUSION, 8, (), warm_start=True, progress=False)
    frequencies = lambda: np.asarray(synthesizer._previous.constants["RandomFourierFeatures_0"]["frequencies"])
    synthesizer(rows, jax.random.split(jax.random.PRNGKey(0), 2))  # first refill: fresh models
    first = frequencies()
    assert not np.array_equal(first[0], first[1])  # each seed its own model
    synthesizer(rows, jax.random.split(jax.random.PRNGKey(1), 2))  # second: each starts from its own previous
    np.testing.assert_array_equal(frequencies(), first)


def test_seeds_models_as_one_program_give_the_one_by_one_rows():
    """The seeds' models as one vmapped program (the launcher's) against each seed's model alone,
    trained and sampled with one key as the synthesizer splits it; the tolerance is float32
    rounding (see tests/test_trainer.py), far below the gap between two seeds' rows."""
    rows = np.random.default_rng(0).normal(size=(2, 64, 5)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    together = online_synthesis.DiffusionSynthesizer(TINY_DIFFUSION, 8, (), progress=False)(rows, keys)
    config = DiffusionConfig(**TINY_DIFFUSION)
    one_by_one = []
    for seed_rows, key in zip(rows, keys):
        train_key, sample_key = jax.random.split(key)
        model = train_diffusion(seed_rows, config, train_key, progress=False)
        one_by_one.append(generate(model, 8, sample_key, progress=False))
    one_by_one = np.stack(one_by_one)
    assert together.shape == (2, 8, 5)
    np.testing.assert_allclose(together, one_by_one, atol=1e-4)
    assert np.max(np.abs(together[0] - one_by_one[1])) > 0.1


def test_a_distilled_synthesizer_samples_each_seeds_distilled_model():
    """With synther.distill, each seed's freshly trained model is distilled on its own rows and
    draws its samples; a warm start continues the teacher, not the distilled sampler."""
    rows = np.random.default_rng(0).normal(size=(2, 64, 5)).astype(np.float32)
    keys = jax.random.split(jax.random.PRNGKey(3), 2)
    settings = {**dataclasses.asdict(DistillConfig(num_train_steps=10, steps_per_call=10)), "num_steps": 2}
    synthesizer = online_synthesis.DiffusionSynthesizer(TINY_DIFFUSION, 8, (), warm_start=True, progress=False,
                                                        distill=settings)
    together = synthesizer(rows, keys)
    assert synthesizer._previous.distilled is None and synthesizer.seconds["distillation"] > 0
    config = DiffusionConfig(**TINY_DIFFUSION)
    for i, (seed_rows, key) in enumerate(zip(rows, keys)):
        train_key, sample_key = jax.random.split(key)
        teacher = train_diffusion(seed_rows, config, train_key, progress=False)
        student = distill(teacher, seed_rows, DistillConfig(**settings), jax.random.fold_in(key, 3), progress=False)
        np.testing.assert_allclose(together[i], generate(student, 8, sample_key, progress=False), atol=1e-4)


# --- guided (PGR) --------------------------------------------------------------------------------

def pgr_config(condition="curiosity", **overrides):
    config = tiny_config("pgr", **overrides)
    config.guidance.condition = condition
    config.guidance.icm.update(hidden=16, batch_size=16)
    return config


def test_pgr_smoke_loop_reports_the_relevance_of_real_against_generated_rows(tmp_path):
    config = pgr_config(total_steps=250, eval_every=250, checkpoint_every=250)
    synthesizer = online_synthesis.make_synthesizer(config)
    synthesizer.progress = False
    assert synthesizer.config.conditional and synthesizer.guidance_scale == 2.0 and synthesizer.top_frac == 0.25
    online_loop.train(config, str(tmp_path), synthesize=synthesizer)
    section = json.loads((tmp_path / "results.json").read_text())["relevance"]
    assert section["condition"] == "curiosity" and [r["env_step"] for r in section["retrains"]] == [200]
    report = section["retrains"][0]["per_seed"][0]
    assert report["real"]["mean"] > 0 and report["generated"]["mean"] > 0
    assert sum(report["histogram"]["real"]) == 200 and sum(report["histogram"]["generated"]) == 500
    assert report["real_top_mean"] >= report["real"]["q90"] >= report["real"]["median"]
    assert os.path.getsize(tmp_path / "relevance_seed0.png") > 0
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert any("icm_forward_loss" in r for r in records if r["stage"] == "agent")
    assert [r["step"] for r in records if r["stage"] == "relevance"] == [200]


@pytest.mark.parametrize("condition", ["curiosity", "reward"])
def test_relevance_labelling_and_guided_generation_never_touch_the_rollout(tmp_path, condition):
    """The rollout's observations chain through the real buffer although the generator returns
    absurd rows, and each real row reaches the generator with its own label (checked with the
    reward as relevance, whose labels are known, on two vmapped seeds)."""
    num_seeds = 2 if condition == "reward" else 1
    config = pgr_config(condition, total_steps=260, eval_every=260, checkpoint_every=260, num_seeds=num_seeds)
    seen = {}

    def garbage(rows, keys, condition):
        seen.update(rows=rows, condition=condition)
        return np.full((rows.shape[0], 500, rows.shape[2]), 1e3, np.float32)

    result = online_loop.train(config, str(tmp_path), synthesize=garbage)
    assert seen["condition"].shape == (num_seeds, 200) and np.all(np.isfinite(seen["condition"]))
    for i, data in enumerate(result.real_data):
        ended = (data.terminals + data.timeouts) > 0
        continuing = ~ended[:-1]
        np.testing.assert_array_equal(data.observations[1:][continuing], data.next_observations[:-1][continuing])
        assert np.all(np.abs(data.observations) < 1e3)
        np.testing.assert_array_equal(seen["rows"][i], data.subset(slice(0, 200)).to_rows(True))
        if condition == "reward":
            np.testing.assert_array_equal(seen["condition"][i], data.rewards[:200])
        report = result.relevance[0]["per_seed"][i]
        assert report["generated_above_top_cut"] == 1.0 and report["generated"]["mean"] > report["real"]["mean"]
        assert os.path.getsize(tmp_path / f"relevance_seed{i}.png") > 0


def guided_noisy_copy(real_rows, keys, condition):
    assert condition.shape == real_rows.shape[:2]
    return noisy_copy(real_rows, keys)


def test_pgr_resume_after_a_crash_ends_identical_to_an_uninterrupted_run(tmp_path):
    """The ICM and the relevance records resume exactly too (retrains at 100 and 200, checkpoint at 150)."""
    config = pgr_config(total_steps=300, checkpoint_every=150, eval_every=100)
    config.synther.retrain_every = 100
    uninterrupted = online_loop.train(config, str(tmp_path / "a"), synthesize=guided_noisy_copy)
    with pytest.raises(KeyboardInterrupt):
        online_loop.train(config, str(tmp_path / "b"), synthesize=guided_noisy_copy, on_eval=crash_at(200))
    resumed = online_loop.train(config, str(tmp_path / "b"), synthesize=guided_noisy_copy)
    assert_same_run(resumed, uninterrupted)
    for a, b in zip(jax.tree.leaves(resumed.curiosity_models), jax.tree.leaves(uninterrupted.curiosity_models)):
        np.testing.assert_array_equal(a, b)
    assert [r["env_step"] for r in resumed.relevance] == [100, 200]
    assert resumed.relevance == uninterrupted.relevance
    assert json.loads((tmp_path / "b" / "relevance.json").read_text()) == uninterrupted.relevance


def test_guided_synthesizer_prompts_from_the_top_fraction_and_w_zero_is_unconditional():
    """With w = 0 the guided sampler is the conditional model's unconditional half, whatever the
    prompts; the top fraction reaches the sampler (other prompts, other rows, at w = 2)."""
    rng = np.random.default_rng(0)
    rows = rng.normal(size=(1, 64, 5)).astype(np.float32)
    condition = rows[:, :, 0].copy()
    keys = jax.random.split(jax.random.PRNGKey(3), 1)
    diffusion = dict(TINY_DIFFUSION, conditioning="add")
    make = lambda w, top: online_synthesis.DiffusionSynthesizer(diffusion, 8, (), progress=False, guidance_scale=w,
                                                            top_frac=top)
    np.testing.assert_allclose(make(0.0, 0.1)(rows, keys, condition), make(0.0, 1.0)(rows, keys, condition),
                               atol=1e-6)
    assert np.max(np.abs(make(2.0, 0.1)(rows, keys, condition) - make(2.0, 1.0)(rows, keys, condition))) > 1e-3


def test_env_rule_labels_each_synthetic_next_state_by_the_rule():
    """Under terminals=env_rule the generator sees rows without a terminal column, and each synthetic
    terminal is the task's rule on its next state, whatever the real flags were."""
    from synther_jax import replay
    from synther_jax.data import Transitions
    from synther_jax.termination import RULES

    rng = np.random.default_rng(0)
    n, obs_dim, action_dim = 40, 11, 3
    next_observations = np.concatenate([rng.uniform(0.5, 1.0, (n, 1)), rng.normal(0, 0.1, (n, obs_dim - 1))], 1)
    data = Transitions(rng.normal(size=(n, obs_dim)), rng.uniform(-1, 1, (n, action_dim)), rng.normal(size=n),
                       next_observations, np.zeros(n))
    real = online_loop.stack_seeds([replay.insert_transitions(replay.create_buffer(100, obs_dim, action_dim), data)])
    synthetic = online_loop.stack_seeds([replay.create_buffer(n, obs_dim, action_dim)])
    seen = []

    def copy(rows, keys):
        seen.append(rows.shape)
        return rows

    refilled, _ = online_loop._refill_synthetic(copy, real, synthetic, jax.random.PRNGKey(0), obs_dim, action_dim,
                                                "env_rule", None, RULES["hopper"])
    assert seen == [(1, n, 2 * obs_dim + action_dim + 1)]
    generated = replay.to_transitions(online_loop.seed_slice(refilled, 0))
    np.testing.assert_array_equal(generated.terminals, RULES["hopper"](next_observations))
    assert 0 < generated.terminals.sum() < n
