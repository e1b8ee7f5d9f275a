"""Flattening rules (paper Section 3.1) against hand-built episodes and a transcription of
D4RL's `qlearning_dataset` loop."""
import numpy as np
import pytest

from synther_jax.data import Episode, Transitions, episodes_to_transitions, flat_to_transitions, transitions_to_episodes
from synther_jax.errors import InvalidDatasetError


def qlearning_dataset_reference(observations, actions, rewards, terminals, timeouts):
    """D4RL's `qlearning_dataset(terminate_on_end=False)`, written as the loop it is."""
    rows = {"observations": [], "actions": [], "rewards": [], "next_observations": [], "terminals": []}
    for i in range(len(observations) - 1):
        if timeouts[i]:
            continue
        rows["observations"].append(observations[i])
        rows["actions"].append(actions[i])
        rows["rewards"].append(rewards[i])
        rows["next_observations"].append(observations[i + 1])
        rows["terminals"].append(float(terminals[i]))
    return {key: np.array(value, np.float32) for key, value in rows.items()}


def two_episodes():
    """Episode A ends by termination after 3 steps; episode B by a time limit after 2 steps."""
    a = np.arange(4 * 2, dtype=np.float32).reshape(4, 2)  # a0..a3
    b = 100 + np.arange(3 * 2, dtype=np.float32).reshape(3, 2)  # b0..b2
    episode_a = Episode(a, np.array([[0.1], [0.2], [0.3]], np.float32), np.array([1.0, 2.0, 3.0]),
                        np.array([False, False, True]), np.array([False, False, False]))
    episode_b = Episode(b, np.array([[0.4], [0.5]], np.float32), np.array([4.0, 5.0]),
                        np.array([False, False]), np.array([False, True]))
    return episode_a, episode_b


def test_episodes_drop_timeouts_and_keep_terminals():
    a, b = two_episodes()
    data = episodes_to_transitions([a, b])
    # (a0,a1), (a1,a2), (a2,a3) terminal, (b0,b1); the time-limit step (b1,b2) is dropped.
    np.testing.assert_array_equal(data.observations, np.stack([a.observations[0], a.observations[1],
                                                               a.observations[2], b.observations[0]]))
    np.testing.assert_array_equal(data.next_observations, np.stack([a.observations[1], a.observations[2],
                                                                    a.observations[3], b.observations[1]]))
    np.testing.assert_array_equal(data.actions[:, 0], np.float32([0.1, 0.2, 0.3, 0.4]))
    np.testing.assert_array_equal(data.rewards, [1, 2, 3, 4])
    np.testing.assert_array_equal(data.terminals, [0, 0, 1, 0])
    np.testing.assert_array_equal(data.timeouts, [0, 0, 0, 0])
    np.testing.assert_array_equal(data.episode_ids, [0, 0, 0, 1])


def test_keep_timeouts_keeps_the_time_limit_step_as_non_terminal():
    a, b = two_episodes()
    data = episodes_to_transitions([a, b], keep_timeouts=True)
    assert len(data) == 5
    np.testing.assert_array_equal(data.observations[-1], b.observations[1])
    np.testing.assert_array_equal(data.next_observations[-1], b.observations[2])
    np.testing.assert_array_equal(data.terminals, [0, 0, 1, 0, 0])
    np.testing.assert_array_equal(data.timeouts, [0, 0, 0, 0, 1])


def test_flat_layout_with_stored_successors_matches_episodes():
    a, b = two_episodes()
    steps = episodes_to_transitions([a, b], keep_timeouts=True)
    for keep in (False, True):
        flat = flat_to_transitions(steps.observations, steps.actions, steps.rewards, steps.terminals,
                                   steps.timeouts, steps.next_observations, keep_timeouts=keep)
        expected = episodes_to_transitions([a, b], keep_timeouts=keep)
        for key in ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts",
                    "episode_ids"):
            np.testing.assert_array_equal(getattr(flat, key), getattr(expected, key), err_msg=key)


def test_flat_layout_without_successors_is_qlearning_dataset():
    rng = np.random.default_rng(0)
    n = 400
    observations, actions, rewards = rng.normal(size=(n, 3)), rng.normal(size=(n, 2)), rng.normal(size=n)
    terminals, timeouts = rng.random(n) < 0.05, rng.random(n) < 0.05
    timeouts &= ~terminals  # D4RL never marks one step both ways.
    ours = flat_to_transitions(observations, actions, rewards, terminals, timeouts)
    reference = qlearning_dataset_reference(observations, actions, rewards, terminals, timeouts)
    for key, value in reference.items():
        np.testing.assert_array_equal(getattr(ours, key), value, err_msg=key)


def test_keep_timeouts_without_successors_is_refused():
    a, b = two_episodes()
    steps = episodes_to_transitions([b, a], keep_timeouts=True)  # The timeout is not the last row.
    with pytest.raises(InvalidDatasetError, match="next_observations"):
        flat_to_transitions(steps.observations, steps.actions, steps.rewards, steps.terminals, steps.timeouts,
                            keep_timeouts=True)


def test_replay_buffer_regroups_into_the_same_episodes():
    a, b = two_episodes()
    unfinished = Episode(a.observations[:3], a.actions[:2], a.rewards[:2], np.zeros(2, bool), np.zeros(2, bool))
    steps = episodes_to_transitions([a, b, unfinished], keep_timeouts=True)
    episodes = transitions_to_episodes(steps)
    assert len(episodes) == 3
    for got, want in zip(episodes, [a, b, unfinished]):
        np.testing.assert_array_equal(got.observations, want.observations)
        np.testing.assert_array_equal(got.actions, want.actions)
        np.testing.assert_array_equal(got.rewards, want.rewards)
        np.testing.assert_array_equal(got.terminations, want.terminations)
    # The episode still running when collection stopped is marked truncated, as Minari does.
    np.testing.assert_array_equal(episodes[2].truncations, [False, True])


def test_regrouping_refuses_shuffled_transitions():
    a, b = two_episodes()
    steps = episodes_to_transitions([a, b], keep_timeouts=True)
    order = np.array([1, 0, 2, 3, 4])
    shuffled = Transitions(*(getattr(steps, k)[order] for k in ("observations", "actions", "rewards",
                                                                 "next_observations", "terminals")),
                           timeouts=steps.timeouts[order], episode_ids=steps.episode_ids[order])
    with pytest.raises(InvalidDatasetError, match="collection order"):
        transitions_to_episodes(shuffled)


def test_episode_with_inconsistent_lengths_is_refused():
    a, _ = two_episodes()
    broken = a._replace(observations=a.observations[:3])
    with pytest.raises(InvalidDatasetError, match="T\\+1 observations"):
        episodes_to_transitions([broken])


def test_a_step_both_terminal_and_time_limited_counts_as_terminal():
    a, _ = two_episodes()
    both = a._replace(truncations=np.array([False, False, True]))  # Fell on the time limit's last step.
    for keep_timeouts in (False, True):
        data = episodes_to_transitions([both], keep_timeouts=keep_timeouts)
        np.testing.assert_array_equal(data.terminals, [0, 0, 1])
        np.testing.assert_array_equal(data.timeouts, [0, 0, 0])
