"""Relevance functions for guided generation: the ICM learns what it sees (its error falls on
repeated transitions and stays higher on novel ones), the critic-based scores equal their
formulas, and chunked labelling equals labelling all rows at once."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from agents import icm, relevance, sac
from synther_jax import replay

OBS_DIM, ACTION_DIM = 4, 2


def _rows(rng, n, shift=0.0):
    """Transitions of a fixed linear system s' = A s + B a, with observations around `shift`."""
    a_matrix = np.array([[0.9, 0.1, 0, 0], [0, 0.9, 0.1, 0], [0, 0, 0.9, 0.1], [0.1, 0, 0, 0.9]])
    b_matrix = np.array([[1.0, 0], [0, 1.0], [0.5, 0.5], [0, -1.0]])
    observations = (shift + rng.normal(size=(n, OBS_DIM))).astype(np.float32)
    actions = rng.uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32)
    return {"observations": observations, "actions": actions,
            "rewards": rng.normal(size=n).astype(np.float32),
            "next_observations": (observations @ a_matrix.T + actions @ b_matrix.T).astype(np.float32),
            "terminals": (rng.uniform(size=n) < 0.1).astype(np.float32)}


def test_icm_error_falls_on_repeated_transitions_and_stays_higher_on_novel_ones():
    rng = np.random.default_rng(0)
    seen, novel = _rows(rng, 256), _rows(rng, 256, shift=3.0)
    buffer = replay.insert(replay.create_buffer(256, OBS_DIM, ACTION_DIM), jax.tree.map(jnp.asarray, seen))
    state = icm.init(jax.random.PRNGKey(0), OBS_DIM, ACTION_DIM, hidden=64, batch_size=64)
    before = float(jnp.mean(icm.curiosity(state, seen)))
    for step in range(300):
        state, metrics = icm.update(state, buffer, jax.random.PRNGKey(step))
    after_seen, after_novel = float(jnp.mean(icm.curiosity(state, seen))), float(jnp.mean(icm.curiosity(state, novel)))
    assert after_seen < 0.5 * before
    assert after_novel > 2 * after_seen
    assert float(metrics["icm_inverse_loss"]) < 1 / 3  # better than predicting 0 for U(-1, 1) actions


def test_critic_relevances_equal_their_formulas_and_chunking_changes_nothing():
    rng = np.random.default_rng(1)
    rows = jax.tree.map(jnp.asarray, _rows(rng, 50))
    agent = sac.init(jax.random.PRNGKey(1), OBS_DIM, ACTION_DIM, hidden_dims=(16, 16))
    curiosity_model = icm.init(jax.random.PRNGKey(2), OBS_DIM, ACTION_DIM, hidden=16)

    mean_action = lambda s: jnp.tanh(agent.actor.apply_fn(agent.actor.params, s).distribution.loc)
    q = lambda params, s, a: agent.critic.apply_fn(params, s, a)  # (num_qs, B)
    expected_return = np.mean(q(agent.critic.params, rows["observations"], mean_action(rows["observations"])), 0)
    next_q = np.min(q(agent.target_critic_params, rows["next_observations"],
                      mean_action(rows["next_observations"])), 0)
    expected_td = np.abs(np.asarray(rows["rewards"]) + 0.99 * (1 - np.asarray(rows["terminals"])) * next_q
                         - np.mean(q(agent.critic.params, rows["observations"], rows["actions"]), 0))
    expected = {"return": expected_return, "td": expected_td, "reward": rows["rewards"],
                "curiosity": icm.curiosity(curiosity_model, rows)}
    for kind in relevance.RELEVANCES:
        whole = relevance.relevance(kind, agent, curiosity_model, rows)
        np.testing.assert_allclose(whole, expected[kind], rtol=1e-5, atol=1e-6)
        chunked = relevance.label(kind, agent, curiosity_model, rows, chunk_size=16)  # 50 rows: 4 chunks, padded
        np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)
    assert np.std(expected_td) > 0 and np.std(expected_return) > 0
    with pytest.raises(ValueError, match="relevance must be one of"):
        relevance.relevance("novelty", agent, curiosity_model, rows)
