"""Offline guidance: return-to-go against its closed form, the config switch, and guided samples
that carry more return-to-go than unguided ones from the same model at a like dynamics error."""
import json
import os
import subprocess
import sys

import jax
import numpy as np
import pytest

from configs import d4rl
from configs.checks import ConfigError
from launch import offline
from pipelines.synthesis import guidance_condition
from synther_jax.analysis.dynamics import dynamics_errors
from synther_jax.data import Transitions, load_dataset
from synther_jax.data.returns import episode_starts, returns_to_go
from synther_jax.diffusion import DiffusionConfig, generate, top_fraction_prompts, train_diffusion
from tests.test_offline import TINY_DIFFUSION_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _episodes(rng, lengths, terminal_last):
    """Chained episodes of a 2-D random walk; each ends terminal or cut (no successor row)."""
    observations, next_observations, rewards, terminals = [], [], [], []
    for length, terminal in zip(lengths, terminal_last):
        states = rng.normal(size=(length + 1, 2))
        observations.append(states[:-1])
        next_observations.append(states[1:])
        rewards.append(rng.uniform(0, 1, length))
        terminals.append(np.r_[np.zeros(length - 1), float(terminal)])
    stack = np.concatenate
    return Transitions(stack(observations), np.zeros((sum(lengths), 1)), stack(rewards), stack(next_observations),
                       stack(terminals))


def test_return_to_go_equals_its_closed_form_per_episode():
    rng = np.random.default_rng(0)
    lengths = [5, 1, 7, 3]
    data = _episodes(rng, lengths, terminal_last=[True, False, False, True])
    starts = np.cumsum([0] + lengths[:-1])
    np.testing.assert_array_equal(np.flatnonzero(episode_starts(data)), starts)
    expected = np.concatenate([
        [sum(0.9 ** k * r for k, r in enumerate(data.rewards[s + t:s + n].astype(np.float64))) for t in range(n)]
        for s, n in zip(starts, lengths)])
    np.testing.assert_allclose(returns_to_go(data, 0.9), expected, rtol=1e-12)
    np.testing.assert_allclose(returns_to_go(data, 0.0), data.rewards, rtol=1e-12)
    # Episode ids split episodes the observations alone would chain.
    chained = Transitions(np.zeros((4, 1)), np.zeros((4, 1)), np.ones(4), np.zeros((4, 1)), np.zeros(4),
                          episode_ids=np.array([0, 0, 1, 1]))
    np.testing.assert_allclose(returns_to_go(chained, 1.0), [2, 1, 2, 1])


def test_guidance_switch_validates_and_makes_the_denoiser_conditional():
    config = d4rl.get_config("walker2d")
    config.guidance.condition = "return"
    assert d4rl.validate(config).diffusion.conditioning == "add"
    for field, value, message in (("condition", "curiosity", "--config.guidance.condition='curiosity' is not a choice"),
                                  ("top_frac", 1.5, "--config.guidance.top_frac must lie in (0, 1]"),
                                  ("scale", -0.5, "--config.guidance.scale must be >= 0"),
                                  ("discount", 2.0, "--config.guidance.discount must lie in [0, 1]")):
        bad = d4rl.get_config("walker2d")
        bad.guidance.condition = "return"
        bad.guidance[field] = value
        with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            d4rl.validate(bad)
    real_only = d4rl.get_config("walker2d")
    real_only.guidance.condition, real_only.data = "reward", "real"
    with pytest.raises(ConfigError, match="which this run does not train"):
        d4rl.validate(real_only)
    unguided = d4rl.get_config("walker2d")
    unguided.diffusion.conditioning = "add"
    with pytest.raises(ConfigError, match="gives it no condition"):
        d4rl.validate(unguided)


def test_guided_samples_carry_more_return_to_go_at_a_like_dynamics_error(hopper_random_npz):
    """One conditional model on real Hopper data; prompted with the real top decile of
    return-to-go, guidance (w = 2) must raise the return-to-go of the samples' nearest real rows
    above the unguided sampler's (w = 0, same model and noise), while their dynamics error against
    MuJoCo stays within a factor 2."""
    config = d4rl.get_config("hopper-random,smoke")
    config.guidance.update(condition="return", top_frac=0.1)
    config.terminals = "modelled"  # the rows below carry the terminal column
    real = load_dataset(hopper_random_npz)
    condition = guidance_condition(config, real)
    model = train_diffusion(real.to_rows(True), DiffusionConfig(width=128, depth=2, dim_t=32, num_train_steps=3000,
                                                                steps_per_call=1000, num_sample_steps=32,
                                                                conditioning="add"),
                            jax.random.PRNGKey(0), (real.to_rows(True).shape[1] - 1,), progress=False,
                            condition=condition)
    key = jax.random.PRNGKey(1)
    prompts = np.asarray(top_fraction_prompts(jax.random.PRNGKey(2), condition, 2000, 0.1))
    samples = {w: Transitions.from_rows(generate(model, 2000, key, progress=False, condition=prompts, guidance=w),
                                        real.obs_dim, real.action_dim, True, 0.5) for w in (0.0, 2.0)}
    rtg = {w: offline.generated_condition(config, real, condition, s) for w, s in samples.items()}
    mse = {w: np.median(dynamics_errors("Hopper-v5", s, progress=False).dynamics_mse) for w, s in samples.items()}
    print(f"return-to-go: real {condition.mean():.2f}, w=0 {rtg[0.0].mean():.2f}, w=2 {rtg[2.0].mean():.2f}; "
          f"median dynamics MSE w=0 {mse[0.0]:.4f}, w=2 {mse[2.0]:.4f}")
    assert rtg[2.0].mean() > rtg[0.0].mean() + 0.25 * condition.std()
    assert mse[2.0] < 2 * mse[0.0]


def test_launch_offline_with_return_guidance_writes_its_condition_report(hopper_random_npz, tmp_path):
    workdir = tmp_path / "run"
    # The condition report is written with or without the fidelity report, which is left out here.
    arguments = ["--config=configs/d4rl.py:hopper-random,smoke", "--config.guidance.condition=return",
                 "--config.env_id=Hopper-v5", f"--config.dataset={hopper_random_npz}", "--config.num_seeds=1",
                 *TINY_DIFFUSION_FLAGS, "--config.num_samples=2000", "--config.analyze=False",
                 "--config.agent_steps=10", "--config.eval_every=10", "--config.eval_episodes=1",
                 f"--workdir={workdir}"]
    result = subprocess.run([sys.executable, "-m", "launch.offline", *arguments], cwd=ROOT, capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    results = json.loads((workdir / "results.json").read_text())
    guidance = results["guidance"]
    assert guidance["condition"] == "return" and guidance["scale"] == 2.0 and guidance["top_frac"] == 0.1
    report = guidance["per_denoiser"][0]
    real = load_dataset(hopper_random_npz)
    assert report["real"]["mean"] == pytest.approx(returns_to_go(real, 0.99).mean())
    assert sum(report["histogram"]["generated"]) == 2000
    assert os.path.getsize(workdir / "analysis" / "condition.png") > 0
    fit = json.loads((workdir / "diffusion" / "fit.json").read_text())
    assert fit["condition"]["shape"] == [len(real)] and fit["config"]["conditioning"] == "add"
