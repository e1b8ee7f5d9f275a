"""IQL against hand-computed values and a float64 NumPy transcription of one update step."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import iql
from agents.training import normalization_stats
from tests.test_td3_bc import (ACTION_DIM, OBS_DIM, assert_trees_close, linear_policy_bandit, np_mlp, np_q,
                               random_batch)


def test_expectile_loss_by_hand():
    # Weights 0.3 for negative differences and 0.7 otherwise: (0.3*4 + 0.3*1 + 0.7*0.25 + 0.7*9) / 4.
    diff = jnp.array([-2.0, -1.0, 0.5, 3.0])
    np.testing.assert_allclose(iql.expectile_loss(diff, 0.7), 7.975 / 4, rtol=1e-6)


def test_reward_scale_splits_episodes_at_terminals_and_time_limits():
    # Episodes: [1, 1, 1] (cut at 3 steps, return 3), [2, 2] (terminal, 4), [5] (terminal, 5); the
    # trailing unfinished [0] is ignored. Scale = 1000 / (5 - 3).
    rewards = [1, 1, 1, 2, 2, 5, 0]
    terminals = [0, 0, 0, 0, 1, 1, 0]
    assert iql.locomotion_reward_scale(rewards, terminals, max_episode_steps=3) == pytest.approx(500.0)


def test_dataset_overrides():
    assert iql.dataset_overrides("hopper-medium-v2") == {"tau": 0.001, "deterministic_actor": True}
    assert iql.dataset_overrides("mujoco/hopper/medium-v0") == {"tau": 0.001, "deterministic_actor": True}
    assert iql.dataset_overrides("hopper-medium-expert-v2") == {"expectile": 0.5, "beta": 6.0}
    assert iql.dataset_overrides("walker2d-medium-v2") == {}
    assert "hopper-medium" in iql.REWARD_NORMALIZED_DATASETS


def perturbed_state(deterministic_actor):
    rng = np.random.default_rng(0)
    mean, std = normalization_stats(rng.normal(size=(50, OBS_DIM)) * 3 + 2)
    state = iql.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, mean, std, reward_scale=3.0, hidden_dims=(8, 8),
                     deterministic_actor=deterministic_actor, beta=30.0)
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 100))
    target = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(next(keys), p.shape), state.critic_params)
    actor = state.actor_params
    if not deterministic_actor:  # One log std below the clip at -5, one inside the range.
        actor = {"params": {**actor["params"], "log_std": jnp.array([-7.0, 0.4])}}
    return state.replace(target_critic_params=target, actor_params=actor)


@pytest.mark.parametrize("deterministic_actor", [False, True])
def test_one_update_matches_numpy(deterministic_actor):
    """The losses reported by `update` are those of the pre-update networks, in IQL's order: the
    Q target uses V(s') from before the V step and the actor weights use the V step's advantage."""
    state = perturbed_state(deterministic_actor)
    raw = random_batch(np.random.default_rng(2), 11)
    _, metrics = iql.update(state, jax.tree.map(jnp.asarray, raw), jax.random.PRNGKey(0))

    mean, std = np.float64(state.obs_mean), np.float64(state.obs_std)
    obs, next_obs = (raw["observations"] - mean) / std, (raw["next_observations"] - mean) / std
    rewards = 3.0 * raw["rewards"]
    v = lambda x: np_mlp(state.value_params["params"]["MLP_0"], x)[:, 0]
    target_q = np.minimum(np_q(state.target_critic_params, 0, obs, raw["actions"]),
                          np_q(state.target_critic_params, 1, obs, raw["actions"]))
    advantage = target_q - v(obs)
    value_loss = np.mean(np.where(advantage < 0, 0.3, 0.7) * advantage ** 2)
    target = rewards + (1 - raw["terminals"]) * 0.99 * v(next_obs)
    critic_loss = np.mean([np.mean((np_q(state.critic_params, i, obs, raw["actions"]) - target) ** 2)
                           for i in range(2)])
    weights = np.minimum(np.exp(30.0 * advantage), 100.0)
    assert weights.max() == 100.0 and weights.min() < 100.0  # The cap is exercised, but not everywhere.
    policy_mean = np_mlp(state.actor_params["params"]["MLP_0"], obs)
    if deterministic_actor:
        bc_losses = ((np.tanh(policy_mean) - raw["actions"]) ** 2).sum(-1)
    else:
        log_std = np.clip(np.float64(state.actor_params["params"]["log_std"]), -5, 2)
        z = (raw["actions"] - policy_mean) / np.exp(log_std)
        bc_losses = (0.5 * z ** 2 + log_std + 0.5 * np.log(2 * np.pi)).sum(-1)
    np.testing.assert_allclose(metrics["value_loss"], value_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["critic_loss"], critic_loss, rtol=1e-5)
    np.testing.assert_allclose(metrics["actor_loss"], np.mean(weights * bc_losses), rtol=1e-4)


def test_actor_learning_rate_follows_a_cosine_to_zero():
    """With max_steps = 2 the cosine gives learning rates lr, lr/2, 0: the third step leaves the actor."""
    state = iql.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, hidden_dims=(8,), max_steps=2)
    batch = jax.tree.map(jnp.asarray, random_batch(np.random.default_rng(3), 16))
    actors = [state.actor_params]
    for i in range(3):
        state, _ = iql.update(state, batch, jax.random.PRNGKey(i))
        actors.append(state.actor_params)
    step = lambda a, b: np.abs(np.asarray(a["params"]["log_std"] - b["params"]["log_std"]))
    # Adam's first step moves each parameter by the learning rate itself.
    np.testing.assert_allclose(step(actors[1], actors[0]), 3e-4, rtol=1e-3)
    assert np.all(step(actors[2], actors[1]) > 0)
    np.testing.assert_array_equal(step(actors[3], actors[2]), 0.0)


def test_vmapped_seeds_equal_seeds_run_one_by_one():
    dataset = jax.tree.map(jnp.asarray, random_batch(np.random.default_rng(6), 200))
    init_keys = jax.random.split(jax.random.PRNGKey(7), 2)
    train_keys = jax.random.split(jax.random.PRNGKey(8), 2)
    kwargs = dict(obs_mean=np.ones(OBS_DIM), obs_std=2 * np.ones(OBS_DIM), hidden_dims=(16, 16))
    states = iql.init_seeds(init_keys, OBS_DIM, ACTION_DIM, **kwargs)
    states, metrics = iql.update_steps_seeds(states, dataset, train_keys, num_steps=10, batch_size=32)
    for i in range(2):
        single = iql.init(init_keys[i], OBS_DIM, ACTION_DIM, **kwargs)
        single, single_metrics = iql.update_steps(single, dataset, train_keys[i], num_steps=10, batch_size=32)
        assert_trees_close(states, single, i)
        np.testing.assert_allclose(metrics["actor_loss"][i], single_metrics["actor_loss"], rtol=2e-4)


@pytest.mark.parametrize("deterministic_actor", [False, True])
def test_clones_a_linear_policy(deterministic_actor):
    rng = np.random.default_rng(9)
    dataset, expert = linear_policy_bandit(rng, 2000)
    test_obs = rng.normal(size=(500, OBS_DIM)).astype(np.float32)
    mean, std = normalization_stats(dataset["observations"])
    state = iql.init(jax.random.PRNGKey(10), OBS_DIM, ACTION_DIM, mean, std, hidden_dims=(64, 64),
                     deterministic_actor=deterministic_actor)
    error = lambda s: float(np.mean((np.asarray(iql.act(s, test_obs, None)) - expert(test_obs)) ** 2))
    before = error(state)
    state, _ = iql.update_steps(state, dataset, jax.random.PRNGKey(11), num_steps=2000, batch_size=128)
    after = error(state)
    assert after < 0.1 * before and after < 0.01, (before, after)


def test_data_statistics_follow_corl():
    rng = np.random.default_rng(3)
    observations, rewards = rng.normal(size=(40, OBS_DIM)), rng.normal(size=40)
    terminals = np.zeros(40)
    terminals[[9, 24]] = 1.0
    hopper = iql.data_statistics(observations, rewards, terminals, "hopper-medium-v2", 500)
    walker = iql.data_statistics(observations, rewards, terminals, "walker2d-medium-v2", 500)
    np.testing.assert_allclose(hopper["obs_mean"], observations.mean(0), rtol=1e-5)
    np.testing.assert_allclose(hopper["obs_std"], observations.std(0) + 1e-3, rtol=1e-5)
    assert hopper["max_steps"] == walker["max_steps"] == 500
    assert hopper["reward_scale"] == pytest.approx(iql.locomotion_reward_scale(rewards, terminals))
    assert "reward_scale" not in walker
