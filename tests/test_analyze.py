"""The report: `analyze` on data with known answers, the parameter count, and the command line."""
import dataclasses
import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from synther_jax.analysis import fidelity_report
from synther_jax.data import KEYS, Transitions, write_synthetic
from synther_jax.diffusion.denoiser import parameter_count

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def hopper():
    """1500 real Hopper-v5 transitions under small random actions."""
    env = gym.make("Hopper-v5")
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    rows = {key: [] for key in KEYS}
    for _ in range(1500):
        action = np.clip(0.3 * rng.normal(size=3), -1, 1)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(KEYS, (obs, action, reward, next_obs, float(terminated))):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return Transitions(**{key: np.array(value) for key, value in rows.items()}, metadata={"env_id": "Hopper-v5"})


def test_real_data_as_its_own_synthetic_data_is_perfect(hopper, tmp_path):
    result = fidelity_report.analyze(hopper, hopper, None, str(tmp_path), denoiser_params=1000, physics_rows=300,
                            progress=False)
    assert result["env_id"] == "Hopper-v5"  # taken from the data's metadata
    assert result["marginal_score"] == 1.0 and result["correlation_score"] == pytest.approx(1.0)
    assert result["real_terminals"] == result["synthetic_terminals"] == int(hopper.terminals.sum()) > 0
    # Real data ends an episode exactly at its first fall.
    consistency = result["terminal_consistency"]
    assert consistency["rule"] == "hopper" and consistency["real"] == consistency["synthetic"]
    assert consistency["real"] == {"falls": pytest.approx(hopper.terminals.mean()), "falls_flagged": 1.0,
                                   "flags_without_fall": 0.0, "fallen_states": 0.0}
    figures = fidelity_report.headline_figures(result)
    assert figures["real_falls_flagged"] == figures["synthetic_falls_flagged"] == 1.0
    assert figures["synthetic_flags_without_fall"] == figures["synthetic_fallen_states"] == 0.0
    synthetic = result["sources"]["synthetic"]
    assert synthetic["min_distance_mean"] == pytest.approx(0.0, abs=1e-5)
    assert synthetic["dynamics"]["dynamics_mse_mean"] < 1e-8
    assert result["real_dynamics"]["dynamics_mse_mean"] < 1e-8
    for baseline in ("additive", "multiplicative", "dynamics"):
        assert result["sources"][baseline]["dynamics"]["dynamics_mse_mean"] > 1e-4
        assert result["sources"][baseline]["min_distance_mean"] > 0.01
    assert result["sources"]["additive"]["marginal_score"] < 1.0
    compression = result["compression"]
    assert compression["floats_in_real_data"] == 1500 * (2 * 11 + 3 + 2)
    assert compression["compression_ratio"] == pytest.approx(1500 * 27 / 1000)
    assert json.load(open(tmp_path / "report.json"))["marginal_score"] == 1.0


def test_rows_mujoco_cannot_restore_are_left_out_of_the_dynamics_plot(hopper, tmp_path):
    """Hopper clips its observed velocities to +-10: a row with a velocity at the bound has no exact
    state. With every synthetic row so, the synthetic source has no point to draw."""
    observations = hopper.observations.copy()
    observations[:, 5] = 10.0  # the torso's x velocity
    at_bound = dataclasses.replace(hopper, observations=observations)
    result = fidelity_report.analyze(hopper, at_bound, None, str(tmp_path), baselines=(), physics_rows=100,
                                     progress=False)
    dynamics = result["sources"]["synthetic"]["dynamics"]
    assert dynamics["num_not_restorable"] == 100 and "dynamics_mse_mean" not in dynamics
    assert result["plots"] == ["marginals.png"]


def test_unsupported_environment_skips_physics(hopper, tmp_path):
    result = fidelity_report.analyze(hopper, hopper, "Ant-v5", str(tmp_path), baselines=("additive",), physics_rows=100,
                            progress=False)
    assert "dynamics" not in result["sources"]["synthetic"] and result["plots"] == ["marginals.png"]
    assert "terminal_consistency" not in result  # Ant has a rule in Gymnasium, but none here (no Ant task)
    assert fidelity_report.headline_figures(result)["synthetic_falls"] is None
    assert result["dimension_names"][0] == "obs[0]"
    with pytest.raises(ValueError, match="Unknown baselines"):
        fidelity_report.analyze(hopper, hopper, None, str(tmp_path), baselines=("cutout",))


def test_the_command_writes_every_file(hopper, tmp_path):
    np.savez(tmp_path / "real.npz", **hopper.as_dict())
    rng = np.random.default_rng(1)
    noisy = {key: value + (0.05 * rng.normal(size=value.shape) if key != "terminals" else 0)
             for key, value in hopper.as_dict().items()}
    # As launch.synthesize writes it: the metadata records the denoiser that made the samples.
    write_synthetic(str(tmp_path / "samples.npz"), Transitions(**noisy), source_dataset="real.npz", seed=0,
                    config={"diffusion": {"width": 64, "depth": 2, "dim_t": 16}, "terminals": "modelled"},
                    model_checkpoint=None)
    out = tmp_path / "report"
    command = [sys.executable, "-m", "launch.analyze", f"--dataset={tmp_path / 'real.npz'}",
               f"--samples={tmp_path / 'samples.npz'}", f"--out={out}", "--env_id=Hopper-v5",
               "--physics_rows=300", "--fidelity_rows=1000"]
    subprocess.run(command, cwd=REPO, check=True, capture_output=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    result = json.load(open(out / "report.json"))
    assert [key for key in result if "marginal" in key] and [key for key in result if "correlation" in key]
    assert 0.5 < result["marginal_score"] < 1.0
    assert result["compression"]["denoiser_params"] == parameter_count(27, 64, 2, 16)
    for name in ("marginals.png", "distance_vs_dynamics.png", "compression.png"):
        assert (out / name).stat().st_size > 10_000, name
        assert name in result["plots"]
