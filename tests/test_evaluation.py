"""The seed-batched evaluator against plain one-environment rollouts in the real MuJoCo simulator."""
import gymnasium as gym
import jax
import numpy as np
import pytest

from agents import td3_bc
from synther_jax.envs.evaluation import evaluate

ENV_ID = "Hopper-v5"
NUM_SEEDS, NUM_EPISODES, SEED = 2, 3, 17


def untrained_agents():
    """Two small TD3+BC agents with different networks and a non-trivial state normalisation."""
    rng = np.random.default_rng(0)
    return td3_bc.init_seeds(jax.random.split(jax.random.PRNGKey(1), NUM_SEEDS), 11, 3, hidden_dims=(16, 16),
                             obs_mean=rng.normal(size=11), obs_std=rng.uniform(0.5, 2.0, 11))


def plain_rollout(state, env_seed, max_episode_steps=None):
    """One episode in its own environment, one policy call per step, as a newcomer would write it."""
    env = gym.make(ENV_ID, max_episode_steps=max_episode_steps)
    obs, _ = env.reset(seed=env_seed)
    total, length, done = 0.0, 0, False
    while not done:
        action = np.asarray(td3_bc.act(state, obs[None].astype(np.float32), None))[0]
        obs, reward, terminated, truncated, _ = env.step(action)
        total, length, done = total + reward, length + 1, terminated or truncated
    env.close()
    return total, length


def test_returns_equal_plain_rollouts_of_each_seed():
    states = untrained_agents()
    result = evaluate(td3_bc.act, states, ENV_ID, num_episodes=NUM_EPISODES, seed=SEED)
    assert result.returns.shape == (NUM_SEEDS, NUM_EPISODES)
    for s in range(NUM_SEEDS):
        state = jax.tree.map(lambda x: x[s], states)
        for e in range(NUM_EPISODES):
            expected_return, expected_length = plain_rollout(state, SEED + s * NUM_EPISODES + e)
            assert result.lengths[s, e] == expected_length
            np.testing.assert_allclose(result.returns[s, e], expected_return, rtol=1e-4)
    # Episodes of different lengths ran side by side, so finished ones were masked while others ran.
    assert len(np.unique(result.lengths)) > 1
    np.testing.assert_allclose(result.seed_returns, result.returns.mean(1))


def test_normalised_scores_and_summary_over_seeds():
    states = untrained_agents()
    result = evaluate(td3_bc.act, states, ENV_ID, num_episodes=NUM_EPISODES, seed=SEED)
    # D4RL's hopper references: random -20.272305, expert 3234.3.
    expected = 100 * (result.returns + 20.272305) / (3234.3 + 20.272305)
    np.testing.assert_allclose(result.scores, expected, rtol=1e-9)
    summary = result.summary()
    per_seed = expected.mean(1)
    np.testing.assert_allclose([summary["score_mean"], summary["score_std"]], [per_seed.mean(), per_seed.std()])
    assert evaluate(td3_bc.act, states, ENV_ID, num_episodes=1, seed=SEED, score_fn=None).scores is None


def test_states_without_a_seed_axis_are_refused():
    state = td3_bc.init(jax.random.PRNGKey(0), 11, 3, hidden_dims=(16, 16))
    with pytest.raises(ValueError, match="leading seed axis"):
        evaluate(td3_bc.act, state, ENV_ID, num_episodes=1)


def test_custom_environment_factory_with_time_limit():
    states = untrained_agents()
    make = lambda env_id, n: gym.make_vec(env_id, num_envs=n, vectorization_mode="sync", max_episode_steps=5)
    result = evaluate(td3_bc.act, states, ENV_ID, num_episodes=2, seed=SEED, make_vec_env=make, score_fn=None)
    state = jax.tree.map(lambda x: x[1], states)
    expected_return, expected_length = plain_rollout(state, SEED + 2 + 1, max_episode_steps=5)
    assert np.all(result.lengths <= 5) and result.lengths[1, 1] == expected_length
    np.testing.assert_allclose(result.returns[1, 1], expected_return, rtol=1e-4)
