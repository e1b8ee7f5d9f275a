"""TD3+BC against a float64 NumPy transcription of its losses, plus seeds and behaviour cloning."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import td3_bc
from agents.training import normalization_stats, polyak

OBS_DIM, ACTION_DIM = 3, 2
critic_loss, actor_loss = jax.jit(td3_bc.critic_loss), jax.jit(td3_bc.actor_loss)


def np_mlp(layers, x):
    """Float64 forward pass of an `agents.networks.MLP` parameter dict (ReLU between layers)."""
    x = np.asarray(x, np.float64)
    for i in range(len(layers)):
        x = x @ np.asarray(layers[f"Linear_{i}"]["kernel"], np.float64) + np.asarray(layers[f"Linear_{i}"]["bias"],
                                                                                     np.float64)
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def np_q(critic_params, member, obs, actions):
    layers = jax.tree.map(lambda p: p[member], critic_params["params"]["MLP_0"])
    return np_mlp(layers, np.concatenate([obs, actions], -1))[:, 0]


def np_actor(actor_params, obs, max_action):
    return max_action * np.tanh(np_mlp(actor_params["params"]["MLP_0"], obs))


def assert_trees_close(stacked, single, index):
    """Leaf `index` of the seed-stacked tree equals the single tree up to float32 reassociation
    (vmapped matmuls sum in another order), measured against each leaf's scale."""
    for x, y in zip(jax.tree.leaves(stacked), jax.tree.leaves(single)):
        scale = max(1.0, float(np.abs(np.asarray(y)).max()))
        np.testing.assert_allclose(x[index], y, rtol=0, atol=1e-5 * scale)


def random_batch(rng, n):
    return {
        "observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32) * 2 + 1,
        "actions": rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
        "rewards": rng.normal(size=n).astype(np.float32),
        "next_observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32) * 2 + 1,
        "terminals": (rng.uniform(size=n) < 0.4).astype(np.float32),
    }


def perturbed_state(max_action=1.0):
    """A small learner whose online and target networks differ, with non-trivial state statistics."""
    rng = np.random.default_rng(0)
    mean, std = normalization_stats(rng.normal(size=(50, OBS_DIM)) * 3 + 2)
    state = td3_bc.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, mean, std, hidden_dims=[8, 8],
                        max_action=max_action)
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 100))
    shake = lambda tree: jax.tree.map(lambda p: p + 0.3 * jax.random.normal(next(keys), p.shape), tree)
    return state.replace(target_actor_params=shake(state.actor_params),
                         target_critic_params=shake(state.critic_params))


def test_normalization_stats_are_mean_and_population_std_plus_eps():
    x = np.array([[1.0, 5.0], [3.0, 5.0], [8.0, 5.0]])
    mean, std = normalization_stats(x)
    np.testing.assert_allclose(mean, [4.0, 5.0], rtol=1e-6)
    np.testing.assert_allclose(std, [np.sqrt(26 / 3) + 1e-3, 1e-3], rtol=1e-6)


@pytest.mark.parametrize("max_action", [1.0, 2.0])
def test_critic_loss_matches_numpy(max_action):
    state = perturbed_state(max_action)
    rng = np.random.default_rng(2)
    raw = random_batch(rng, 7)
    noise = (rng.normal(size=(7, ACTION_DIM)) * 3).astype(np.float32)  # Large, so the noise clip is active.
    batch = td3_bc.normalize_batch(state, jax.tree.map(jnp.asarray, raw))
    loss, _ = critic_loss(state.critic_params, state, batch, jnp.asarray(noise))

    mean, std = np.float64(state.obs_mean), np.float64(state.obs_std)
    obs, next_obs = (raw["observations"] - mean) / std, (raw["next_observations"] - mean) / std
    np.testing.assert_allclose(batch["observations"], obs, rtol=1e-5, atol=1e-6)
    smoothing = np.clip(0.2 * noise, -0.5, 0.5) * max_action
    next_actions = np.clip(np_actor(state.target_actor_params, next_obs, max_action) + smoothing,
                           -max_action, max_action)
    next_q = np.minimum(np_q(state.target_critic_params, 0, next_obs, next_actions),
                        np_q(state.target_critic_params, 1, next_obs, next_actions))
    target = raw["rewards"] + (1 - raw["terminals"]) * 0.99 * next_q
    expected = sum(np.mean((np_q(state.critic_params, i, obs, raw["actions"]) - target) ** 2) for i in range(2))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_actor_loss_and_lambda_match_numpy():
    state = perturbed_state()
    raw = random_batch(np.random.default_rng(3), 9)
    batch = td3_bc.normalize_batch(state, jax.tree.map(jnp.asarray, raw))
    loss, metrics = actor_loss(state.actor_params, state.critic_params, state, batch)

    obs = (raw["observations"] - np.float64(state.obs_mean)) / np.float64(state.obs_std)
    pi = np_actor(state.actor_params, obs, 1.0)
    q1 = np_q(state.critic_params, 0, obs, pi)
    lmbda = 2.5 / np.abs(q1).mean()
    np.testing.assert_allclose(metrics["lambda"], lmbda, rtol=1e-5)
    np.testing.assert_allclose(loss, -lmbda * q1.mean() + np.mean((pi - raw["actions"]) ** 2), rtol=1e-5)


def test_act_normalises_raw_observations():
    state = perturbed_state()
    obs = np.random.default_rng(4).normal(size=(5, OBS_DIM)).astype(np.float32) * 3 + 2
    expected = np_actor(state.actor_params, (obs - np.float64(state.obs_mean)) / np.float64(state.obs_std), 1.0)
    np.testing.assert_allclose(td3_bc.act(state, obs, jax.random.PRNGKey(0)), expected, rtol=1e-5, atol=1e-6)


def test_actor_and_targets_move_only_every_second_step():
    state = perturbed_state()
    batch = jax.tree.map(jnp.asarray, random_batch(np.random.default_rng(5), 16))
    first, _ = td3_bc.update(state, batch, jax.random.PRNGKey(0))
    same = lambda a, b: all(np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    assert not same(first.critic_params, state.critic_params)
    assert same(first.actor_params, state.actor_params)
    assert same(first.target_critic_params, state.target_critic_params)
    # Adam's first step moves every parameter with a non-zero gradient by the learning rate; the
    # critics' output biases have gradient 2 mean(Q_i - y), so they move against its sign.
    bias_step = np.asarray(first.critic_params["params"]["MLP_0"]["Linear_2"]["bias"]
                           - state.critic_params["params"]["MLP_0"]["Linear_2"]["bias"])
    np.testing.assert_allclose(np.abs(bias_step), 3e-4, rtol=1e-3)

    second, _ = td3_bc.update(first, batch, jax.random.PRNGKey(1))
    assert not same(second.actor_params, first.actor_params)
    for target, old, online in [(second.target_actor_params, first.target_actor_params, second.actor_params),
                                (second.target_critic_params, first.target_critic_params, second.critic_params)]:
        expected = polyak(old, online, 0.005)
        for x, y in zip(jax.tree.leaves(target), jax.tree.leaves(expected)):
            np.testing.assert_allclose(x, y, rtol=1e-6, atol=1e-7)
    assert int(second.step) == 2


def test_vmapped_seeds_equal_seeds_run_one_by_one():
    dataset = jax.tree.map(jnp.asarray, random_batch(np.random.default_rng(6), 200))
    init_keys = jax.random.split(jax.random.PRNGKey(7), 2)
    train_keys = jax.random.split(jax.random.PRNGKey(8), 2)
    kwargs = dict(obs_mean=np.ones(OBS_DIM), obs_std=2 * np.ones(OBS_DIM), hidden_dims=(16, 16))
    states = td3_bc.init_seeds(init_keys, OBS_DIM, ACTION_DIM, **kwargs)
    states, metrics = td3_bc.update_steps_seeds(states, dataset, train_keys, num_steps=10, batch_size=32)
    for i in range(2):
        single = td3_bc.init(init_keys[i], OBS_DIM, ACTION_DIM, **kwargs)
        single, single_metrics = td3_bc.update_steps(single, dataset, train_keys[i], num_steps=10, batch_size=32)
        assert_trees_close(states, single, i)
        np.testing.assert_allclose(metrics["critic_loss"][i], single_metrics["critic_loss"], rtol=2e-4)


def linear_policy_bandit(rng, n, behaviour_noise=0.2, reward_scale=1.0):
    """One-step episodes rewarded by -reward_scale |a - pi*(s)|^2 for a known policy pi*(s) = tanh(s W).

    The behaviour actions are pi*(s) plus Gaussian noise, or uniform on [-1, 1] when
    `behaviour_noise` is None, so both cloning and maximising Q recover pi*.
    """
    weights = np.array([[0.8, -0.5], [0.3, 0.9], [-0.6, 0.2]])
    expert = lambda obs: np.tanh(obs @ weights)
    obs = rng.normal(size=(n, OBS_DIM))
    if behaviour_noise is None:
        actions = rng.uniform(-1, 1, (n, ACTION_DIM))
    else:
        actions = np.clip(expert(obs) + behaviour_noise * rng.normal(size=(n, ACTION_DIM)), -0.99, 0.99)
    batch = {"observations": obs, "actions": actions,
             "rewards": -reward_scale * ((actions - expert(obs)) ** 2).sum(-1),
             "next_observations": rng.normal(size=(n, OBS_DIM)), "terminals": np.ones(n)}
    return jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), batch), expert


def test_clones_a_linear_policy():
    rng = np.random.default_rng(9)
    dataset, expert = linear_policy_bandit(rng, 2000)
    test_obs = rng.normal(size=(500, OBS_DIM)).astype(np.float32)
    mean, std = normalization_stats(dataset["observations"])
    state = td3_bc.init(jax.random.PRNGKey(10), OBS_DIM, ACTION_DIM, mean, std, hidden_dims=(64, 64))
    error = lambda s: float(np.mean((np.asarray(td3_bc.act(s, test_obs, None)) - expert(test_obs)) ** 2))
    before = error(state)
    state, _ = td3_bc.update_steps(state, dataset, jax.random.PRNGKey(11), num_steps=2000, batch_size=128)
    after = error(state)
    assert after < 0.1 * before and after < 0.01, (before, after)
