"""The device replay buffer: FIFO wraparound, size, valid-only sampling, real/synthetic mixing."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from synther_jax import replay
from synther_jax.data.transitions import Transitions


def rows(start, n, obs_dim=3, action_dim=2):
    """n transitions whose every entry encodes its index start..start+n-1, so rows are recognisable."""
    ids = np.arange(start, start + n, dtype=np.float32)
    return {
        "observations": np.repeat(ids[:, None], obs_dim, 1),
        "actions": np.repeat(ids[:, None], action_dim, 1),
        "rewards": ids,
        "next_observations": np.repeat(ids[:, None] + 0.5, obs_dim, 1),
        "terminals": (ids % 2 == 0).astype(np.float32),
        "timeouts": (ids % 3 == 0).astype(np.float32),
        "episode_ids": (ids // 4).astype(np.int32),
    }


def test_insert_wraps_around_and_keeps_the_newest_rows():
    buffer = replay.create_buffer(5, 3, 2)
    buffer = replay.insert(buffer, rows(0, 3))
    assert int(buffer.size) == 3 and int(buffer.pointer) == 3
    buffer = replay.insert(buffer, rows(3, 4))  # rows 3..6 into slots 3, 4, 0, 1
    assert int(buffer.size) == 5 and int(buffer.pointer) == 2
    np.testing.assert_array_equal(buffer.rewards, [5, 6, 2, 3, 4])
    np.testing.assert_array_equal(buffer.episode_ids, [1, 1, 0, 0, 1])
    data = replay.to_transitions(buffer)  # oldest first
    np.testing.assert_array_equal(data.rewards, [2, 3, 4, 5, 6])
    np.testing.assert_array_equal(data.timeouts, [0, 1, 0, 0, 1])
    np.testing.assert_array_equal(data.terminals, [1, 0, 1, 0, 1])
    np.testing.assert_array_equal(data.next_observations[:, 0], [2.5, 3.5, 4.5, 5.5, 6.5])


def test_insert_one_row_at_a_time_under_jit_and_vmap():
    """Two seeds' buffers as a leading axis, one transition per seed per step."""
    buffers = jax.vmap(lambda _: replay.create_buffer(4, 3, 2))(jnp.arange(2))
    step = jax.jit(jax.vmap(replay.insert))
    for t in range(6):
        seed_rows = {k: np.stack([v, v + 100 if v.dtype != np.int32 else v]) for k, v in rows(t, 1).items()}
        buffers = step(buffers, seed_rows)
    np.testing.assert_array_equal(buffers.size, [4, 4])
    np.testing.assert_array_equal(buffers.rewards, [[4, 5, 2, 3], [104, 105, 102, 103]])


def test_too_many_rows_are_rejected():
    with pytest.raises(ValueError, match="capacity"):
        replay.insert(replay.create_buffer(2, 3, 2), rows(0, 3))


def test_sampling_draws_only_valid_rows():
    buffer = replay.insert(replay.create_buffer(100, 3, 2), rows(0, 7))
    batch = jax.jit(replay.sample, static_argnums=2)(buffer, jax.random.PRNGKey(0), 5000)
    drawn = np.asarray(batch["rewards"])
    assert set(drawn.tolist()) == set(range(7))  # all 7 valid rows, never an empty slot
    np.testing.assert_array_equal(batch["observations"][:, 0], drawn)
    np.testing.assert_array_equal(batch["next_observations"][:, 0], drawn + 0.5)
    np.testing.assert_array_equal(batch["terminals"], drawn % 2 == 0)
    assert set(batch) == {"observations", "actions", "rewards", "next_observations", "terminals"}


@pytest.mark.parametrize("ratio, num_synthetic", [(0.5, 128), (0.25, 64), (0.0, 0), (1.0, 256)])
def test_mixed_batches_have_the_requested_ratio(ratio, num_synthetic):
    real = replay.insert(replay.create_buffer(50, 3, 2), rows(0, 50))  # rewards 0..49
    synthetic = replay.insert(replay.create_buffer(500, 3, 2), rows(1000, 500))  # rewards >= 1000
    sample = jax.jit(replay.sample_mixed, static_argnums=(3, 4))
    batch = sample(real, synthetic, jax.random.PRNGKey(1), 256, ratio)
    is_synthetic = np.asarray(batch["rewards"]) >= 1000
    assert is_synthetic.sum() == num_synthetic
    assert not is_synthetic[:256 - num_synthetic].any()  # real rows first, as the original concatenates
    assert batch["observations"].shape == (256, 3)


def test_mixed_batch_is_all_real_until_the_synthetic_buffer_holds_its_share():
    real = replay.insert(replay.create_buffer(50, 3, 2), rows(0, 50))
    sample = jax.jit(replay.sample_mixed, static_argnums=(3, 4))
    empty = replay.create_buffer(500, 3, 2)
    for synthetic in (empty, replay.insert(empty, rows(1000, 127))):
        batch = sample(real, synthetic, jax.random.PRNGKey(2), 256, 0.5)
        assert np.all(np.asarray(batch["rewards"]) < 50)
    assert np.all(np.asarray(replay.sample_mixed(real, None, jax.random.PRNGKey(2), 256, 0.5)["rewards"]) < 50)


def test_insert_transitions_keeps_the_newest_capacity_rows():
    data = rows(0, 8)
    transitions = Transitions(**{k: data[k] for k in ("observations", "actions", "rewards", "next_observations",
                                                     "terminals")})
    buffer = replay.insert_transitions(replay.create_buffer(5, 3, 2), transitions)
    np.testing.assert_array_equal(replay.to_transitions(buffer).rewards, [3, 4, 5, 6, 7])
    np.testing.assert_array_equal(buffer.episode_ids, -1)
