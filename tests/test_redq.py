"""REDQ: 10 Q functions whose target takes the min over a random pair of target Qs."""
import jax
import jax.numpy as jnp
import numpy as np

from agents import redq

OBS_DIM, ACTION_DIM = 3, 2
CONSTANTS = np.array([5.0, -3.0, 7.0, 1.0, -8.0, 2.0, 4.0, -1.0, 6.0, 0.0], np.float32)


def constant_target_state():
    """Target Q_i(s, a) = CONSTANTS[i] everywhere: zero last-layer weights, bias CONSTANTS[i]."""
    state = redq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, hidden_dims=(4, 4))
    params = state.target_critic_params
    last = params["params"]["MLP_0"]["Linear_2"]
    last = {"kernel": jnp.zeros_like(last["kernel"]), "bias": jnp.asarray(CONSTANTS[:, None])}
    params = {"params": {"MLP_0": {**params["params"]["MLP_0"], "Linear_2": last}}}
    return state.replace(target_critic_params=params, alpha=jnp.float32(0.0))  # alpha 0: y = r + gamma Q


def test_redq_defaults():
    state = redq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, hidden_dims=(4, 4))
    assert (state.config.num_qs, state.config.num_min_qs, state.config.utd_ratio) == (10, 2, 20)
    kernel = state.critic.params["params"]["MLP_0"]["Linear_0"]["kernel"]
    assert kernel.shape == (10, OBS_DIM + ACTION_DIM, 4)
    assert not np.allclose(kernel[0], kernel[1])  # independently initialised members
    np.testing.assert_array_equal(state.critic.params["params"]["MLP_0"]["Linear_0"]["bias"], 0.0)  # REDQ's init


def test_target_uses_exactly_two_of_ten_qs():
    state = constant_target_state()
    rng = np.random.default_rng(0)
    batch = {"observations": rng.normal(size=(4, OBS_DIM)).astype(np.float32),
             "actions": rng.uniform(-1, 1, (4, ACTION_DIM)).astype(np.float32),
             "rewards": np.array([1.0, 0.0, -1.0, 2.0], np.float32),
             "next_observations": rng.normal(size=(4, OBS_DIM)).astype(np.float32),
             "terminals": np.array([0.0, 0.0, 1.0, 0.0], np.float32)}
    target = jax.jit(redq.sac.critic_target)
    subsets, minima = set(), set()
    for seed in range(60):
        targets, subset = target(state, batch, jax.random.PRNGKey(seed))
        subset = sorted(np.asarray(subset).tolist())
        assert len(set(subset)) == 2 and all(0 <= i < 10 for i in subset)
        expected_min = CONSTANTS[subset].min()
        expected = batch["rewards"] + 0.99 * (1 - batch["terminals"]) * expected_min
        np.testing.assert_allclose(targets, expected, rtol=1e-6, atol=1e-6)
        subsets.add(tuple(subset))
        minima.add(float(expected_min))
    assert len(subsets) > 20  # a fresh random pair per update
    assert len(minima) > 3 and max(minima) > CONSTANTS.min()  # not the min over all ten


def test_update_runs_twenty_critic_steps_and_one_policy_step():
    from synther_jax import replay

    state = redq.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, hidden_dims=(4, 4), batch_size=8)
    rng = np.random.default_rng(1)
    rows = {"observations": rng.normal(size=(32, OBS_DIM)), "actions": rng.uniform(-1, 1, (32, ACTION_DIM)),
            "rewards": rng.normal(size=32), "next_observations": rng.normal(size=(32, OBS_DIM)),
            "terminals": np.zeros(32)}
    buffer = replay.insert(replay.create_buffer(32, OBS_DIM, ACTION_DIM),
                           {k: jnp.asarray(v, jnp.float32) for k, v in rows.items()})
    state, metrics = redq.update(state, buffer, None, jax.random.PRNGKey(1))
    assert int(state.critic.step) == 20 and int(state.actor.step) == 1 and int(state.temperature.step) == 1
    assert int(state.step) == 20
    assert np.isfinite(float(metrics["critic_loss"]))


def test_init_seeds_stacks_independent_learners():
    states = redq.init_seeds(jax.random.split(jax.random.PRNGKey(0), 3), OBS_DIM, ACTION_DIM, hidden_dims=(4, 4))
    kernels = states.critic.params["params"]["MLP_0"]["Linear_0"]["kernel"]
    assert kernels.shape == (3, 10, OBS_DIM + ACTION_DIM, 4) and states.step.shape == (3,)
    assert not np.allclose(kernels[0], kernels[1])
