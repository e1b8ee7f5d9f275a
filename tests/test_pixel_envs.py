"""Rendered pixel datasets replay in the simulator: stored frames equal re-rendered ones."""
import os

os.environ.setdefault("MUJOCO_GL", "egl")

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from synther_jax.data.collection import uniform_random_policy  # noqa: E402
from synther_jax.data.pixel_datasets import FIRST, LAST, load_pixel_dataset, write_pixel_hdf5  # noqa: E402
from synther_jax.data.pixel_rendering import render_dataset, render_replay  # noqa: E402
from synther_jax.envs import make_env  # noqa: E402
from synther_jax.envs.pixel_env import PixelEnv  # noqa: E402

ENV = "walker-walk"


def test_rendered_dataset_replays_frame_for_frame(tmp_path):
    policy = uniform_random_policy(make_env(ENV).action_space, 0)
    data = render_dataset(ENV, policy, num_steps=15, seed=3, episode_steps=6)
    assert len(data) == 21 and data.frames.shape == (21, 3, 84, 84) and data.frames.dtype == np.uint8
    assert data.step_types.tolist() == [FIRST, 1, 1, 1, 1, 1, LAST] * 3
    assert np.all(data.actions[data.step_types == FIRST] == 0) and np.all(data.rewards[data.step_types == FIRST] == 0)
    assert data.frames.std() > 5  # a real picture, not a blank one
    write_pixel_hdf5(str(tmp_path / "random.hdf5"), data)
    stored = load_pixel_dataset(str(tmp_path / "random.hdf5"))

    # A fresh simulator reset the same way and driven by the stored actions renders the same frames.
    env = PixelEnv(ENV, 3, episode_steps=6)
    for t in range(len(stored)):
        if stored.step_types[t] == FIRST:
            _, frame = env.reset(3 if t == 0 else None)
            reward = 0.0
        else:
            _, frame, reward, last = env.step(stored.actions[t])
            assert last == (stored.step_types[t] == LAST)
        np.testing.assert_array_equal(frame, stored.frames[t])
        np.testing.assert_allclose(reward, stored.rewards[t], rtol=1e-6)


def test_replay_stream_renders_like_action_repeat_and_refuses_a_foreign_stream():
    env = make_env(ENV)
    rng = np.random.default_rng(0)
    paired = np.repeat(rng.uniform(-1, 1, (4, 6)).astype(np.float32), 2, axis=0)  # each action held 2 steps
    env.reset(seed=11)
    next_observations = np.stack([env.step(a)[0] for a in paired])
    replayed = render_replay(ENV, [(11, paired, next_observations)])

    direct = PixelEnv(ENV, None)
    _, first = direct.reset(11)
    frames = [first] + [direct.step(a)[1] for a in paired[::2]]
    np.testing.assert_array_equal(replayed.frames, np.stack(frames))
    np.testing.assert_array_equal(replayed.actions[1:], paired[::2])
    assert replayed.step_types.tolist() == [FIRST, 1, 1, 1, LAST]

    with pytest.raises(ValueError, match="diverged at simulator step 3"):
        tampered = next_observations.copy()
        tampered[3] += 0.5
        render_replay(ENV, [(11, paired, tampered)])


def test_pixel_medium_replay_re_simulates_the_sac_run(tmp_path):
    """The SAC run's replay stream (walker-walk, stopped at its first evaluation) re-simulates step
    for step from its reset seeds (render_replay raises otherwise) into whole V-D4RL episodes."""
    from configs import online
    from pipelines.behaviour import BehaviourPolicies
    from synther_jax.data import load_dataset

    config = online.get_config("walker2d-sac,smoke")
    config.update(env_name=ENV, start_steps=100, eval_every=200, eval_episodes=1)
    behaviour = BehaviourPolicies(config, str(tmp_path / "behaviour"), medium_return=-1e9)
    data = behaviour.rendered_medium_replay()
    replay = load_dataset(behaviour.replay_path, keep_timeouts=True)
    assert data.num_episodes == len(np.unique(replay.episode_ids))
    assert data.num_transitions == sum(np.sum(replay.episode_ids == i) // 2 for i in np.unique(replay.episode_ids))
    np.testing.assert_array_equal(data.actions[data.step_types != FIRST][:3], replay.actions[:6:2])
    np.testing.assert_allclose(data.rewards[1], replay.rewards[0] + replay.rewards[1], rtol=1e-5)
