"""Termination rules: their constants are Gymnasium's, their verdict on real steps is `terminated`,
they label synthetic terminals, and the fidelity report's terminal-consistency figures are exact."""
import warnings

import gymnasium as gym
import numpy as np
import pytest

from synther_jax.data import Transitions
from synther_jax.termination import (RULES, label_terminals, resolve_rule, rule_for_env, synthetic_transitions,
                                     terminal_consistency)


def unwrapped(env_id: str):
    with warnings.catch_warnings():  # the v4 environments are deprecated in favour of v5
        warnings.simplefilter("ignore", DeprecationWarning)
        return gym.make(env_id).unwrapped


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Hopper-v4", "Walker2d-v5", "Walker2d-v4"])
def test_constants_are_the_environments_own(env_id):
    env, rule = unwrapped(env_id), rule_for_env(env_id)
    assert env._terminate_when_unhealthy and env._exclude_current_positions_from_observation
    assert rule.obs_dim == env.observation_space.shape[0]
    assert rule.healthy_z_range == env._healthy_z_range
    assert rule.healthy_angle_range == env._healthy_angle_range
    assert rule.healthy_state_range == getattr(env, "_healthy_state_range", None)
    obs, _ = env.reset(seed=0)
    np.testing.assert_allclose(obs[:2], env.data.qpos[1:3])  # height and angle are obs[0] and obs[1]


@pytest.mark.parametrize("env_id", ["Hopper-v5", "Walker2d-v5"])
def test_the_rule_on_real_steps_is_terminated(env_id):
    env, rule = gym.make(env_id), rule_for_env(env_id)
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    next_observations, terminated = [], []
    for _ in range(300):
        obs, _, done, truncated, _ = env.step(rng.uniform(-1, 1, env.action_space.shape))
        next_observations.append(obs)
        terminated.append(done)
        if done or truncated:
            obs, _ = env.reset()
    np.testing.assert_array_equal(rule(np.array(next_observations)), terminated)
    assert sum(terminated) >= 3  # random actions fall over: both sides of the rule are seen


HOPPER_HEALTHY = np.array([1.25, 0.0, 0.1, -0.1, 0.2, 1.0, -2.0, 3.0, 0.5, -0.5, 9.0], np.float32)
WALKER_HEALTHY = np.array([1.25, 0.0, *np.linspace(-0.5, 0.5, 15)], np.float32)
# (index, value, terminal): each bound of each rule just inside and on or beyond it (every bound is strict).
HOPPER_CASES = [(0, 0.7, True), (0, 0.7001, False), (0, 0.5, True), (0, 50.0, False), (1, 0.2, True),
                (1, 0.1999, False), (1, -0.2, True), (1, -0.1999, False), (7, 100.0, True), (7, 99.9, False),
                (3, -100.0, True), (3, -99.9, False)]
WALKER_CASES = [(0, 0.8, True), (0, 0.8001, False), (0, 2.0, True), (0, 1.9999, False), (1, 1.0, True),
                (1, 0.9999, False), (1, -1.0, True), (1, -0.9999, False), (10, 1000.0, False)]


def cases(healthy, changes):
    next_observations = np.tile(healthy, (len(changes), 1))
    for row, (index, value, _) in enumerate(changes):
        next_observations[row, index] = value
    return next_observations, np.array([terminal for *_, terminal in changes])


def batch(observations, next_observations, terminals) -> Transitions:
    n = len(next_observations)
    return Transitions(observations, np.zeros((n, 2)), np.zeros(n), next_observations, terminals)


@pytest.mark.parametrize("name, healthy, changes", [("hopper", HOPPER_HEALTHY, HOPPER_CASES),
                                                    ("walker2d", WALKER_HEALTHY, WALKER_CASES)])
def test_env_rule_labels_each_side_of_every_threshold(name, healthy, changes):
    next_observations, expected = cases(healthy, changes)
    n = len(next_observations)
    data = batch(np.tile(healthy, (n, 1)), next_observations, 1.0 - expected)  # every flag wrong before
    np.testing.assert_array_equal(label_terminals(data, name).terminals, expected)
    np.testing.assert_array_equal(label_terminals(data, RULES[name]).next_observations, next_observations)
    rows = data.to_rows(terminal_column=False)  # as the denoiser generates them under env_rule
    labelled = synthetic_transitions(rows, data.obs_dim, data.action_dim, "env_rule", rule=RULES[name])
    np.testing.assert_array_equal(labelled.terminals, expected)
    modelled = synthetic_transitions(data.to_rows(), data.obs_dim, data.action_dim, "modelled", 0.5)
    np.testing.assert_array_equal(modelled.terminals, 1.0 - expected)  # the generated column, thresholded
    assert not synthetic_transitions(rows, data.obs_dim, data.action_dim, "none").terminals.any()


def test_rules_by_function_and_the_wrong_ones_are_refused():
    data = batch(np.zeros((3, 2)), np.array([[0.0, 1.0], [0.0, -1.0], [0.0, 2.0]]), np.zeros(3))
    np.testing.assert_array_equal(label_terminals(data, lambda next_obs: next_obs[:, 1] > 0).terminals, [1, 0, 1])
    with pytest.raises(ValueError, match=r"reads \(11,\)-dimensional observations, got shape \(3, 2\)"):
        label_terminals(data, "hopper")
    with pytest.raises(ValueError, match="one bool per row"):
        label_terminals(data, lambda next_obs: next_obs > 0)
    with pytest.raises(ValueError, match=r"No termination rule named 'ant': use one of \['hopper', 'walker2d'\]"):
        resolve_rule("ant")
    with pytest.raises(ValueError, match="pass one"):
        synthetic_transitions(data.to_rows(False), 2, 2, "env_rule")
    with pytest.raises(ValueError, match="terminals='terminal': use one of 'modelled', 'env_rule', 'none'"):
        synthetic_transitions(data.to_rows(), 2, 2, "terminal")


def test_rules_are_found_by_any_name_of_their_task():
    for env in ("Hopper-v5", "hopper-medium-v2", "mujoco/hopper/medium-v0"):
        assert rule_for_env(env) is RULES["hopper"]
    assert rule_for_env("bundled/walker2d-medium-replay") is RULES["walker2d"]
    for env in ("HalfCheetah-v5", "halfcheetah-medium-v2", "maze2d-umaze", "cheetah-run", "Ant-v5", None):
        assert rule_for_env(env) is None


def test_consistency_figures_of_a_known_batch():
    n = 10
    observations, next_observations = np.tile(WALKER_HEALTHY, (n, 1)), np.tile(WALKER_HEALTHY, (n, 1))
    next_observations[:4, 0] = 0.5  # rows 0-3 fall
    observations[9, 1] = 1.5  # row 9 starts fallen
    terminals = np.zeros(n)
    terminals[[0, 1, 2, 5, 6]] = [1.0, 0.9, 0.7, 1.0, 0.6]  # 3 of 4 falls flagged, 2 of 6 others (> 0.5 flags)
    terminals[3] = 0.5  # not above the threshold: unflagged
    figures = terminal_consistency(batch(observations, next_observations, terminals), RULES["walker2d"])
    assert figures == {"falls": 0.4, "falls_flagged": 0.75, "flags_without_fall": pytest.approx(2 / 6),
                       "fallen_states": 0.1}
    healthy = batch(observations[4:], next_observations[4:], terminals[4:])
    assert terminal_consistency(healthy, RULES["walker2d"])["falls_flagged"] is None  # no falls to flag
    fallen = batch(observations[:4], next_observations[:4], terminals[:4])
    assert terminal_consistency(fallen, RULES["walker2d"])["flags_without_fall"] is None


def test_the_library_rules_need_no_gymnasium():
    from tests.test_import_graph import run_without

    result = run_without(("gymnasium", "mujoco"), """
        import numpy as np
        from synther_jax.termination import RULES
        assert RULES["walker2d"](np.array([[0.5] + [0.0] * 16])).tolist() == [True]
    """)
    assert result.returncode == 0, result.stderr
