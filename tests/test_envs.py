"""make_env: Gymnasium v5 and DMC tasks load, step, flatten, rescale and time out as documented."""
import os
import subprocess
import sys

import numpy as np
import pytest

from synther_jax.envs import MAX_EPISODE_STEPS, make_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_gym_v5_task_steps_with_flat_float32_observations():
    env = make_env("Hopper-v5", seed=0)
    obs, _ = env.reset(seed=0)
    assert obs.shape == (11,) and obs.dtype == np.float32
    assert env.action_space.shape == (3,)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)
    obs2, reward, terminated, truncated, _ = env.step(np.zeros(3, np.float32))
    assert obs2.shape == (11,) and obs2.dtype == np.float32 and np.isfinite(reward)
    assert not np.array_equal(obs, obs2)


def test_same_seed_gives_same_episode():
    first = make_env("Walker2d-v5")
    second = make_env("Walker2d-v5")
    actions = np.random.default_rng(0).uniform(-1, 1, (20, 6)).astype(np.float32)
    obs = []
    for env in (first, second):
        trajectory = [env.reset(seed=3)[0]] + [env.step(a)[0] for a in actions]
        obs.append(np.stack(trajectory))
    np.testing.assert_array_equal(obs[0], obs[1])


def test_dmc_observations_are_the_concatenated_suite_observations():
    """The flat vector equals dm_control's own observation dict, concatenated in key order."""
    from dm_control import suite

    env = make_env("cheetah-run")
    reference = suite.load("cheetah", "run", task_kwargs={"random": 7})
    obs, _ = env.reset(seed=7)  # reseeds the task's random state, as a fresh suite.load(random=7)
    timestep = reference.reset()
    flat = lambda ts: np.concatenate([np.ravel(v) for v in ts.observation.values()]).astype(np.float32)
    np.testing.assert_allclose(obs, flat(timestep), rtol=1e-6)
    rng = np.random.default_rng(0)
    for _ in range(5):
        action = rng.uniform(-1, 1, 6).astype(np.float32)
        obs, reward, terminated, truncated, _ = env.step(action)
        timestep = reference.step(action)  # cheetah's native bounds are already [-1, 1].
        np.testing.assert_allclose(obs, flat(timestep), rtol=1e-5, atol=1e-6)
        assert reward == pytest.approx(timestep.reward)
        assert not terminated and not truncated


def test_dmc_actions_are_rescaled_to_unit_box():
    env = make_env("reacher-hard", seed=0)
    np.testing.assert_array_equal(env.action_space.low, -1.0)
    np.testing.assert_array_equal(env.action_space.high, 1.0)
    assert env.observation_space.shape == (6,)


def test_dmc_episode_is_truncated_not_terminated_at_1000_steps():
    env = make_env("reacher-hard", seed=0)
    env.reset(seed=0)
    for step in range(1, MAX_EPISODE_STEPS + 1):
        _, _, terminated, truncated, _ = env.step(np.zeros(2, np.float32))
        assert not terminated
        if truncated:
            break
    assert step == MAX_EPISODE_STEPS


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(ValueError, match="cheetah-run.*|.*Hopper-v5"):
        make_env("Hopper-v99")
    with pytest.raises(ValueError) as error:
        make_env("cheeta-run")
    assert "quadruped-walk" in str(error.value) and "Walker2d-v5" in str(error.value)


@pytest.mark.parametrize("launcher_logging", [True, False])
def test_a_launcher_hides_mujocos_notice_for_dm_controls_cheetah(launcher_logging):
    """dm_control logs MuJoCo's deprecation of its cheetah's `settotalmass` at every build, which a
    user cannot act on; a launcher's logging (boundary.show_progress_logs) drops it."""
    program = ("from absl import app\nfrom launch import boundary\nfrom synther_jax.envs import make_env\n"
               f"def main(_):\n    {'boundary.show_progress_logs()' if launcher_logging else 'pass'}\n"
               "    make_env('cheetah-run', seed=0)\napp.run(main)\n")
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("settotalmass" in result.stderr) != launcher_logging, result.stderr[-2000:]
