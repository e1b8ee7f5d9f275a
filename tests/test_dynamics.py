"""Physical validity against the real MuJoCo simulator: real transitions replay with ~0 error,
perturbed ones do not, and clipped velocities are flagged."""
import gymnasium as gym
import numpy as np
import pytest

from synther_jax.analysis import dynamics
from synther_jax.data.transitions import Transitions


def _rollout(env_id: str, num_steps: int, action_scale: float, seed: int = 0) -> Transitions:
    """Transitions from the simulator itself, under small random actions, with resets."""
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    rows = {key: [] for key in ("observations", "actions", "rewards", "next_observations", "terminals")}
    for _ in range(num_steps):
        action = np.clip(action_scale * rng.normal(size=env.action_space.shape), -1, 1)
        next_obs, reward, terminated, truncated, _ = env.step(action)
        for key, value in zip(rows, (obs, action, reward, next_obs, float(terminated))):
            rows[key].append(value)
        obs = env.reset()[0] if terminated or truncated else next_obs
    return Transitions(**{key: np.array(value) for key, value in rows.items()})


@pytest.fixture(scope="module")
def walker():
    return _rollout("Walker2d-v5", 600, action_scale=0.3)


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5", "HalfCheetah-v5", "Hopper-v4"])
def test_real_transitions_replay_with_no_error(env_id):
    data = _rollout(env_id, 400, action_scale=0.3)
    errors = dynamics.dynamics_errors(env_id, data, progress=False)
    keep = errors.restorable
    assert keep.mean() > 0.5
    assert errors.dynamics_mse[keep].max() < 1e-8  # float32 storage of the state is the only loss
    assert errors.reward_squared_error[keep].max() < 1e-8
    assert errors.terminal_agrees[keep].all()
    if env_id.startswith("Hopper"):
        assert data.terminals.sum() > 0  # the check covered terminal transitions too


def test_perturbed_transitions_have_the_error_of_the_perturbation(walker):
    o = walker.obs_dim
    shift = np.zeros(o, np.float32)
    shift[3] = 0.5
    wrong_next = Transitions(walker.observations, walker.actions, walker.rewards + 2.0,
                             walker.next_observations + shift, walker.terminals)
    errors = dynamics.dynamics_errors("Walker2d-v5", wrong_next, progress=False)
    keep = errors.restorable
    np.testing.assert_allclose(errors.reward_squared_error[keep], 4.0, rtol=1e-5)
    np.testing.assert_allclose(errors.next_observation_mse[keep], 0.25 / o, rtol=1e-4)
    np.testing.assert_allclose(errors.dynamics_mse[keep], (0.25 + 4.0) / (o + 1), rtol=1e-4)
    # A wrong starting state is caught by the simulator too.
    wrong_state = Transitions(walker.observations + 0.1, walker.actions, walker.rewards,
                              walker.next_observations, walker.terminals)
    errors = dynamics.dynamics_errors("Walker2d-v5", wrong_state, progress=False)
    assert np.median(errors.dynamics_mse[errors.restorable]) > 1e-3


def test_clipped_velocities_are_flagged_and_left_out(walker):
    num_positions = walker.obs_dim // 2  # Walker2d: 8 positions (x left out), 9 velocities
    velocities = walker.observations[:, num_positions:]
    expected = np.all(np.abs(velocities) < 10.0, axis=1)
    np.testing.assert_array_equal(dynamics.restorable("Walker2d-v5", walker.observations), expected)
    clipped = walker.observations.copy()
    clipped[:5, num_positions + 2] = 10.0  # what the environment reports for any velocity >= 10
    flagged = dynamics.restorable("Walker2d-v5", clipped)
    assert not flagged[:5].any()
    # HalfCheetah observes its velocities unclipped, so every observation is restorable.
    assert dynamics.restorable("HalfCheetah-v5", clipped).all()
    data = Transitions(clipped, walker.actions, walker.rewards, walker.next_observations, walker.terminals)
    summary = dynamics.dynamics_errors("Walker2d-v5", data, progress=False).summary()
    assert summary["num_not_restorable"] == int(np.sum(~flagged))
    assert summary["dynamics_mse_mean"] < 1e-8
    # Real observations sit at the bound at most; a velocity beyond it is impossible.
    assert summary["num_impossible"] == 0
    beyond = walker.next_observations.copy()
    beyond[7, num_positions] = -10.5
    data = Transitions(walker.observations, walker.actions, walker.rewards, beyond, walker.terminals)
    np.testing.assert_array_equal(np.flatnonzero(dynamics.impossible("Walker2d-v5", data)), [7])
    assert not dynamics.impossible("HalfCheetah-v5", data).any()


def test_the_unobserved_x_position_does_not_change_the_step():
    env = gym.make("Walker2d-v5").unwrapped
    env.reset(seed=0)
    qpos, qvel = env.init_qpos + 0.02, env.init_qvel + 0.3
    action = np.full(env.action_space.shape, 0.4)
    results = []
    for x in (0.0, 37.5):
        env.set_state(np.concatenate([[x], qpos[1:]]), qvel)
        obs, reward, terminated, _, _ = env.step(action)
        results.append((obs, reward, terminated))
    np.testing.assert_allclose(results[0][0], results[1][0], atol=1e-9)
    assert results[0][1] == pytest.approx(results[1][1], abs=1e-9)
    assert results[0][2] == results[1][2]


def test_names_and_bad_input():
    names = dynamics.observation_names("Hopper-v5")
    assert names[:2] == ["rootz pos", "rooty pos"] and names[5] == "rootx vel" and len(names) == 11
    assert dynamics.supports("Walker2d-v4") and not dynamics.supports("Ant-v5") and not dynamics.supports(None)
    with pytest.raises(ValueError, match="implemented for"):
        dynamics.observation_names("Ant-v5")
    with pytest.raises(ValueError, match="right environment"):
        dynamics.simulate("Hopper-v5", np.zeros((2, 17)), np.zeros((2, 6)), progress=False)
