"""SAC learner: losses against a float64 NumPy transcription, the original's quirks, scan == loop."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import sac
from synther_jax import replay

OBS_DIM, ACTION_DIM, HIDDEN = 3, 2, (4, 5)


# --- float64 NumPy reference -------------------------------------------------------------------

def mlp(layers, x):
    """ReLU MLP over [(kernel, bias), ...] in float64; the last layer is linear."""
    for i, (kernel, bias) in enumerate(layers):
        x = x @ kernel + bias
        if i < len(layers) - 1:
            x = np.maximum(x, 0.0)
    return x


def linear_layers(tree, member=None):
    names = sorted(tree, key=lambda n: int(n.split("_")[1]))
    pick = (lambda a: np.asarray(a, np.float64)) if member is None else (lambda a: np.asarray(a[member], np.float64))
    return [(pick(tree[n]["kernel"]), pick(tree[n]["bias"])) for n in names]


def q_values(critic_params, obs, actions):
    tree = critic_params["params"]["MLP_0"]
    num = tree["Linear_0"]["kernel"].shape[0]
    x = np.concatenate([obs, actions], axis=1)
    return np.stack([mlp(linear_layers(tree, i), x)[:, 0] for i in range(num)])


def policy_sample(actor_params, obs, noise):
    tree = actor_params["params"]
    hidden = mlp(linear_layers(tree["MLP_0"]), obs)
    hidden = np.maximum(hidden, 0.0)  # the trunk's last layer is activated
    mean_layer, log_std_layer = linear_layers({k: v for k, v in tree.items() if k != "MLP_0"})
    mean = hidden @ mean_layer[0] + mean_layer[1]
    log_std = np.clip(hidden @ log_std_layer[0] + log_std_layer[1], -20.0, 2.0)
    pre_tanh = mean + np.exp(log_std) * noise
    actions = np.tanh(pre_tanh)
    normal = -0.5 * noise ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    return actions, np.sum(normal - np.log(1 - actions ** 2 + 1e-6), axis=1)


# --- fixtures ----------------------------------------------------------------------------------

def randomise(tree, key, scale=0.5):
    """Random weights and biases, so zero-initialised biases cannot hide a mistake."""
    leaves, treedef = jax.tree.flatten(tree)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(treedef, [scale * jax.random.normal(k, x.shape) for k, x in zip(keys, leaves)])


def make_state(key=0, **kwargs):
    state = sac.init(jax.random.PRNGKey(key), OBS_DIM, ACTION_DIM, hidden_dims=HIDDEN, **kwargs)
    k1, k2, k3 = jax.random.split(jax.random.PRNGKey(key + 100), 3)
    return state.replace(actor=state.actor.replace(params=randomise(state.actor.params, k1)),
                         critic=state.critic.replace(params=randomise(state.critic.params, k2)),
                         target_critic_params=randomise(state.critic.params, k3))


def make_batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return {"observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
            "actions": rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32),
            "rewards": rng.normal(size=n).astype(np.float32),
            "next_observations": rng.normal(size=(n, OBS_DIM)).astype(np.float32),
            "terminals": np.array([0, 1, 0, 0, 1, 0][:n], np.float32)}


def as64(tree):
    return jax.tree.map(lambda x: np.asarray(x, np.float64), tree)


# --- losses ------------------------------------------------------------------------------------

def test_critic_target_and_loss_match_numpy():
    state = make_state().replace(alpha=jnp.float32(0.3))
    batch, key = make_batch(), jax.random.PRNGKey(7)
    targets, subset = sac.critic_target(state, batch, key)
    loss, _ = sac.critic_loss(state.critic.params, state, batch, targets)

    action_key, _ = jax.random.split(key)  # critic_target draws the next actions' noise from this key
    noise = np.asarray(jax.random.normal(action_key, (6, ACTION_DIM)), np.float64)
    b = as64(batch)
    next_actions, next_log_probs = policy_sample(as64(state.actor.params), b["next_observations"], noise)
    next_q = q_values(as64(state.target_critic_params), b["next_observations"], next_actions).min(axis=0)
    expected_targets = b["rewards"] + 0.99 * (1 - b["terminals"]) * (next_q - 0.3 * next_log_probs)
    qs = q_values(as64(state.critic.params), b["observations"], b["actions"])
    expected_loss = np.sum(np.mean((qs - expected_targets) ** 2, axis=1))

    assert sorted(np.asarray(subset).tolist()) == [0, 1]
    np.testing.assert_allclose(targets, expected_targets, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss, expected_loss, rtol=1e-5)
    # Terminal rows do not bootstrap.
    np.testing.assert_allclose(np.asarray(targets)[[1, 4]], b["rewards"][[1, 4]], rtol=1e-6)


@pytest.mark.parametrize("reduction", ["mean", "min"])
def test_actor_and_temperature_losses_match_numpy(reduction):
    state = make_state(policy_q_reduction=reduction).replace(alpha=jnp.float32(0.2))
    batch, key = make_batch(), jax.random.PRNGKey(3)
    loss, log_probs = sac.actor_loss(state.actor.params, state, state.critic.params, batch, key)
    log_alpha = {"log_alpha": jnp.float32(0.4)}
    alpha_loss = sac.temperature_loss(log_alpha, log_probs, state.config.target_entropy)

    noise = np.asarray(jax.random.normal(key, (6, ACTION_DIM)), np.float64)
    b = as64(batch)
    actions, expected_log_probs = policy_sample(as64(state.actor.params), b["observations"], noise)
    qs = q_values(as64(state.critic.params), b["observations"], actions)
    q = qs.mean(axis=0) if reduction == "mean" else qs.min(axis=0)
    np.testing.assert_allclose(log_probs, expected_log_probs, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(loss, np.mean(0.2 * expected_log_probs - q), rtol=1e-5, atol=1e-6)
    assert state.config.target_entropy == -ACTION_DIM
    np.testing.assert_allclose(alpha_loss, -np.mean(0.4 * (expected_log_probs - ACTION_DIM)), rtol=1e-5)


def test_deterministic_action_is_tanh_of_the_mean():
    state = make_state()
    obs = make_batch()["observations"]
    actions = sac.act(state, obs, jax.random.PRNGKey(0), deterministic=True)
    expected, _ = policy_sample(as64(state.actor.params), as64(obs), np.zeros((6, ACTION_DIM)))
    np.testing.assert_allclose(actions, expected, rtol=1e-5, atol=1e-6)
    sampled = sac.act(state, obs, jax.random.PRNGKey(0))
    assert sampled.shape == (6, ACTION_DIM) and np.all(np.abs(sampled) < 1) and not np.allclose(sampled, actions)


# --- the original's quirks ---------------------------------------------------------------------

def updated_actor(state, critic_params, batch, key):
    """The actor after one Adam step on the actor loss at the given critic parameters."""
    _, actor_key = jax.random.split(key)
    grads = jax.grad(lambda p: sac.actor_loss(p, state, critic_params, batch, actor_key)[0])(state.actor.params)
    return state.actor.apply_gradients(grads=grads).params


@pytest.mark.parametrize("uses_updated_critic", [False, True])
def test_policy_step_sees_the_critic_from_before_or_after_the_critic_step(uses_updated_critic):
    # A large learning rate so the critic step visibly changes the actor's gradient.
    state = make_state(policy_uses_updated_critic=uses_updated_critic, learning_rate=0.05)
    for seed in (1, 2):  # past Adam's first step, whose size is lr whatever the gradient
        state, _ = sac.update_step(state, make_batch(seed=seed), jax.random.PRNGKey(seed), jnp.bool_(True))
    batch, key = make_batch(), jax.random.PRNGKey(5)
    new_state, _ = sac.update_step(state, batch, key, jnp.bool_(True))
    before = updated_actor(state, state.critic.params, batch, key)
    after = updated_actor(state, new_state.critic.params, batch, key)
    expected, other = (after, before) if uses_updated_critic else (before, after)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), new_state.actor.params, expected)
    differs = jax.tree.leaves(jax.tree.map(lambda a, b: not np.allclose(a, b, rtol=1e-4, atol=1e-4),
                                           new_state.actor.params, other))
    assert any(differs)


def test_alpha_is_0_2_until_the_first_temperature_update_then_exp_log_alpha():
    state = make_state()
    assert float(state.alpha) == pytest.approx(0.2)
    skipped, _ = sac.update_step(state, make_batch(), jax.random.PRNGKey(0), jnp.bool_(False))
    assert float(skipped.alpha) == pytest.approx(0.2)
    jax.tree.map(np.testing.assert_array_equal, skipped.actor.params, state.actor.params)
    updated, _ = sac.update_step(state, make_batch(), jax.random.PRNGKey(0), jnp.bool_(True))
    log_alpha = float(updated.temperature.params["log_alpha"])
    assert abs(log_alpha) == pytest.approx(3e-4, rel=1e-3)  # Adam's first step has size lr
    assert float(updated.alpha) == pytest.approx(np.exp(log_alpha))
    assert float(make_state(initial_alpha=None).alpha) == 1.0


def test_targets_track_the_critic_by_polyak_averaging():
    state = make_state()
    new_state, _ = sac.update_step(state, make_batch(), jax.random.PRNGKey(0), jnp.bool_(False))
    expected = jax.tree.map(lambda t, o: 0.995 * t + 0.005 * o, state.target_critic_params, new_state.critic.params)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6), new_state.target_critic_params, expected)


# --- UTD scan ----------------------------------------------------------------------------------

def filled_buffer(n, seed):
    buffer = replay.create_buffer(n, OBS_DIM, ACTION_DIM)
    batch = make_batch(n=6, seed=seed)
    rows = {k: np.concatenate([v] * (n // 6)) for k, v in batch.items()}
    rows["rewards"] = rows["rewards"] + np.arange(n, dtype=np.float32) / n
    return replay.insert(buffer, rows)


@pytest.mark.parametrize("delay", [20, 5])
def test_scan_of_20_updates_equals_20_single_updates(delay):
    state = make_state(utd_ratio=20, policy_update_delay=delay, batch_size=8)
    real, synthetic = filled_buffer(36, 1), filled_buffer(30, 2)
    key = jax.random.PRNGKey(11)

    looped = jax.tree.map(jnp.copy, state)
    step = jax.jit(sac.update_step)
    policy_updates = 0
    for i, step_key in enumerate(jax.random.split(key, 20)):
        batch_key, update_key = jax.random.split(step_key)
        batch = replay.sample_mixed(real, synthetic, batch_key, 8, 0.5)
        update_policy = (i + 1) % delay == 0 or i == 19
        policy_updates += update_policy
        looped, _ = step(looped, batch, update_key, jnp.bool_(update_policy))

    scanned, metrics = sac.update(state, real, synthetic, key, synthetic_ratio=0.5)
    assert policy_updates == 20 // delay
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6), scanned, looped)
    assert int(scanned.actor.step) == policy_updates and int(scanned.critic.step) == int(scanned.step) == 20
    assert np.isfinite(float(metrics["critic_loss"])) and float(metrics["entropy"]) != 0.0
