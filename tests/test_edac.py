"""EDAC against a float64 NumPy transcription: the diversity term (with hand-derived action
gradients), the tanh-Gaussian log-density, the losses and the alpha -> actor -> critic order."""
import jax
import jax.numpy as jnp
import numpy as np

from agents import edac
from tests.test_td3_bc import (ACTION_DIM, OBS_DIM, assert_trees_close, linear_policy_bandit, np_mlp, np_q,
                               random_batch)

NUM_CRITICS = 3
# Jitted once here: compiling is quicker than running these gradient-of-gradient graphs op by op.
diversity_loss = jax.jit(edac.diversity_loss, static_argnums=1)
sample_actions = jax.jit(edac._sample_actions, static_argnums=1)
critic_loss, actor_loss, alpha_loss = jax.jit(edac.critic_loss), jax.jit(edac.actor_loss), jax.jit(edac.alpha_loss)


def np_action_gradient(critic_params, member, obs, actions):
    """d Q_member(s, a) / d a by backpropagation through the ReLU MLP, in float64."""
    layers = jax.tree.map(lambda p: np.asarray(p[member], np.float64), critic_params["params"]["MLP_0"])
    x, masks = np.concatenate([obs, actions], -1).astype(np.float64), []
    for i in range(len(layers) - 1):
        x = x @ layers[f"Linear_{i}"]["kernel"] + layers[f"Linear_{i}"]["bias"]
        masks.append(x > 0)
        x = np.maximum(x, 0)
    grad = np.broadcast_to(layers[f"Linear_{len(layers) - 1}"]["kernel"][:, 0], x.shape)
    for i in reversed(range(len(layers) - 1)):
        grad = (grad * masks[i]) @ layers[f"Linear_{i}"]["kernel"].T
    return grad[:, obs.shape[-1]:]


def np_diversity(critic_params, obs, actions):
    grads = np.stack([np_action_gradient(critic_params, i, obs, actions) for i in range(NUM_CRITICS)])
    grads = grads / (np.linalg.norm(grads, axis=-1, keepdims=True) + 1e-10)
    total = sum(np.sum(grads[i] * grads[j], -1) for i in range(NUM_CRITICS) for j in range(NUM_CRITICS) if i != j)
    return total.mean() / (NUM_CRITICS - 1)


def np_tanh_gaussian_log_prob(actor_params, obs, actions):
    """log density of a = tanh(u), u ~ N(mu(s), sigma(s)), at the given actions."""
    params = jax.tree.map(lambda p: np.asarray(p, np.float64), actor_params["params"])
    hidden = np.maximum(np_mlp(params["MLP_0"], obs), 0)  # The trunk ends in a ReLU.
    mu = hidden @ params["Linear_0"]["kernel"] + params["Linear_0"]["bias"]
    log_std = np.clip(hidden @ params["Linear_1"]["kernel"] + params["Linear_1"]["bias"], -5, 2)
    u = np.arctanh(np.asarray(actions, np.float64))
    gaussian = -0.5 * ((u - mu) / np.exp(log_std)) ** 2 - log_std - 0.5 * np.log(2 * np.pi)
    return (gaussian - np.log(1 - np.tanh(u) ** 2)).sum(-1)


def perturbed_state():
    state = edac.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, hidden_dims=(8, 8), num_critics=NUM_CRITICS,
                      eta=2.0)
    keys = iter(jax.random.split(jax.random.PRNGKey(1), 100))
    shake = lambda tree, scale: jax.tree.map(lambda p: p + scale * jax.random.normal(next(keys), p.shape), tree)
    # Larger actor heads than EDAC's 1e-3 initialisation, so log std and mean vary with the state.
    return state.replace(actor_params=shake(state.actor_params, 0.3),
                         critic_params=shake(state.critic_params, 0.3),
                         target_critic_params=shake(state.critic_params, 0.3),
                         log_alpha=jnp.asarray(-0.7))


def test_dataset_overrides():
    assert edac.dataset_overrides("hopper-medium-replay-v2") == {"num_critics": 50}
    assert edac.dataset_overrides("mujoco/hopper/expert-v0") == {"num_critics": 50}
    assert edac.dataset_overrides("walker2d-medium-expert-v2") == {"eta": 5.0}
    assert edac.dataset_overrides("halfcheetah-medium-expert-v2") == {"eta": 5.0}
    assert edac.dataset_overrides("walker2d-medium-v2") == {}


def test_initialisation_follows_edac():
    state = edac.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, num_critics=NUM_CRITICS)
    critic = state.critic_params["params"]["MLP_0"]
    for i in range(3):
        np.testing.assert_array_equal(critic[f"Linear_{i}"]["bias"], np.float32(0.1))
        # CORL's VectorizedLinear bound is 1/sqrt(fan_out) = 1/16, also for the first layer.
        bound = np.abs(np.asarray(critic[f"Linear_{i}"]["kernel"])).max()
        assert 0.9 / 16 < bound <= 1 / 16
    assert np.abs(np.asarray(critic["Linear_3"]["kernel"])).max() <= 3e-3
    assert np.abs(np.asarray(critic["Linear_3"]["bias"])).max() <= 3e-3
    actor = state.actor_params["params"]
    np.testing.assert_array_equal(actor["MLP_0"]["Linear_2"]["bias"], np.float32(0.1))
    for head in ("Linear_0", "Linear_1"):
        assert np.abs(np.asarray(actor[head]["kernel"])).max() <= 1e-3
    # Independent members: the ensemble axis does not repeat one initialisation.
    assert not np.allclose(critic["Linear_0"]["kernel"][0], critic["Linear_0"]["kernel"][1])


def test_diversity_matches_hand_derived_gradients():
    state = perturbed_state()
    raw = random_batch(np.random.default_rng(2), 6)
    value = diversity_loss(state.critic_params, state.config, raw["observations"], raw["actions"])
    np.testing.assert_allclose(value, np_diversity(state.critic_params, raw["observations"], raw["actions"]),
                               rtol=1e-5, atol=1e-6)


def test_identical_critics_have_diversity_equal_to_their_number():
    # Every cosine is 1, so the sum over the N(N-1) ordered pairs divided by N-1 is N.
    state = perturbed_state()
    same = jax.tree.map(lambda p: jnp.broadcast_to(p[:1], p.shape), state.critic_params)
    raw = random_batch(np.random.default_rng(3), 6)
    value = diversity_loss(same, state.config, raw["observations"], raw["actions"])
    np.testing.assert_allclose(value, NUM_CRITICS, rtol=1e-5)


def test_losses_match_numpy():
    state = perturbed_state()
    raw = random_batch(np.random.default_rng(4), 16)  # the batch size of the update-order test: one compilation each
    batch = jax.tree.map(jnp.asarray, raw)
    key = jax.random.PRNGKey(5)
    alpha = np.exp(-0.7)

    # The sampled actions' log-probabilities are the tanh-Gaussian density.
    next_actions, next_log_probs = sample_actions(state.actor_params, state.config, batch["next_observations"], key)
    np.testing.assert_allclose(
        next_log_probs, np_tanh_gaussian_log_prob(state.actor_params, raw["next_observations"], next_actions),
        rtol=1e-4, atol=1e-4)

    loss, metrics = critic_loss(state.critic_params, state, batch, key)
    next_actions = np.asarray(next_actions, np.float64)
    next_q = np.min([np_q(state.target_critic_params, i, raw["next_observations"], next_actions)
                     for i in range(NUM_CRITICS)], axis=0) - alpha * np.asarray(next_log_probs, np.float64)
    target = raw["rewards"] + 0.99 * (1 - raw["terminals"]) * next_q
    td = sum(np.mean((np_q(state.critic_params, i, raw["observations"], raw["actions"]) - target) ** 2)
             for i in range(NUM_CRITICS))
    diversity = np_diversity(state.critic_params, raw["observations"], raw["actions"])
    np.testing.assert_allclose(metrics["diversity_loss"], diversity, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(loss, td + 2.0 * diversity, rtol=1e-5)

    actions, log_probs = sample_actions(state.actor_params, state.config, batch["observations"], key)
    loss, _ = actor_loss(state.actor_params, state, batch, key)
    q = np.stack([np_q(state.critic_params, i, raw["observations"], np.asarray(actions, np.float64))
                  for i in range(NUM_CRITICS)])
    np.testing.assert_allclose(loss, np.mean(alpha * np.asarray(log_probs, np.float64) - q.min(0)), rtol=1e-5)

    loss, _ = alpha_loss(state.log_alpha, state, batch, key)
    np.testing.assert_allclose(loss, np.mean(0.7 * (np.asarray(log_probs, np.float64) - ACTION_DIM)), rtol=1e-5)


def test_update_order_is_alpha_then_actor_then_critic():
    """The actor loss uses the alpha after its step, the critic loss the actor after its step."""
    state = perturbed_state()
    batch = jax.tree.map(jnp.asarray, random_batch(np.random.default_rng(6), 16))
    key = jax.random.PRNGKey(7)
    new, metrics = edac.update(state, batch, key)
    alpha_key, actor_key, critic_key = jax.random.split(key, 3)
    # Adam's first step moves log alpha by exactly the learning rate, against the gradient's sign.
    _, log_probs = sample_actions(state.actor_params, state.config, batch["observations"], alpha_key)
    gradient = -np.mean(np.asarray(log_probs, np.float64) - ACTION_DIM)
    np.testing.assert_allclose(new.log_alpha, -0.7 - 3e-4 * np.sign(gradient), rtol=1e-6)

    after_alpha = state.replace(log_alpha=new.log_alpha)
    expected_actor_loss, _ = actor_loss(state.actor_params, after_alpha, batch, actor_key)
    stale_actor_loss, _ = actor_loss(state.actor_params, state, batch, actor_key)
    np.testing.assert_allclose(metrics["actor_loss"], expected_actor_loss, rtol=1e-5)
    assert abs(float(stale_actor_loss - expected_actor_loss)) > 1e-5

    after_actor = after_alpha.replace(actor_params=new.actor_params)
    expected_critic_loss, _ = critic_loss(state.critic_params, after_actor, batch, critic_key)
    stale_critic_loss, _ = critic_loss(state.critic_params, after_alpha, batch, critic_key)
    np.testing.assert_allclose(metrics["critic_loss"], expected_critic_loss, rtol=1e-5)
    assert abs(float(stale_critic_loss - expected_critic_loss)) > 1e-6


def test_vmapped_seeds_equal_seeds_run_one_by_one():
    """Parameters and losses agree to float32 reassociation. The critics' Adam moments hold the raw
    critic gradients, whose diversity part differentiates g_i / |g_i| (g_i = grad_a Q_i) and so
    amplifies rounding by 1 / |g_i|: with the output layer at U(+-3e-3), |g_i| falls to ~1e-5 on
    some samples, and any other summation order (vmapping, another XLA version) moves the moments
    by ~1e-5 of their largest entry, as does nudging the initial critics by one ulp (measured after
    these 10 steps: vmapping 8e-6 on jax 0.10.2 and 1.6e-5 on 0.12, one-ulp nudges 4e-6 to 4e-5).
    Adam's normalised step absorbs this, so the parameters stay within 1e-7. The moments are held
    to 1e-3 of their largest entry; the other seed's differ by at least 9e-2."""
    dataset = jax.tree.map(jnp.asarray, random_batch(np.random.default_rng(8), 200))
    init_keys = jax.random.split(jax.random.PRNGKey(9), 2)
    train_keys = jax.random.split(jax.random.PRNGKey(10), 2)
    kwargs = dict(hidden_dims=(16, 16), num_critics=NUM_CRITICS)
    states = edac.init_seeds(init_keys, OBS_DIM, ACTION_DIM, **kwargs)
    states, metrics = edac.update_steps_seeds(states, dataset, train_keys, num_steps=10, batch_size=32)
    for i in range(2):
        single = edac.init(init_keys[i], OBS_DIM, ACTION_DIM, **kwargs)
        single, single_metrics = edac.update_steps(single, dataset, train_keys[i], num_steps=10, batch_size=32)
        assert_trees_close(states.replace(critic_opt_state=None), single.replace(critic_opt_state=None), i)
        for x, y in zip(jax.tree.leaves(states.critic_opt_state), jax.tree.leaves(single.critic_opt_state)):
            np.testing.assert_allclose(x[i], y, rtol=0, atol=1e-3 * np.abs(np.asarray(y)).max())
        np.testing.assert_allclose(metrics["critic_loss"][i], single_metrics["critic_loss"], rtol=2e-4)


def test_maximising_a_known_reward_recovers_the_policy():
    """On one-step episodes rewarded by -10 |a - pi*(s)|^2 with uniformly random behaviour actions,
    EDAC's deterministic action approaches pi*."""
    rng = np.random.default_rng(11)
    dataset, expert = linear_policy_bandit(rng, 2000, behaviour_noise=None, reward_scale=10.0)
    test_obs = rng.normal(size=(500, OBS_DIM)).astype(np.float32)
    state = edac.init(jax.random.PRNGKey(12), OBS_DIM, ACTION_DIM, hidden_dims=(64, 64), num_critics=NUM_CRITICS)
    error = lambda s: float(np.mean((np.asarray(edac.act(s, test_obs, None)) - expert(test_obs)) ** 2))
    before = error(state)
    state, _ = edac.update_steps(state, dataset, jax.random.PRNGKey(13), num_steps=1500, batch_size=128)
    after = error(state)
    assert after < 0.1 * before and after < 0.03, (before, after)
