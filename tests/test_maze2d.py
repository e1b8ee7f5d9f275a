"""maze2d on PointMaze: the environments, D4RL's controller, the generated data replayed in the
simulator, Minari's pointmaze layout, the reference-score command and the smoke pipeline."""
import json
import os
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

from configs.d4rl import get_config, validate
from synther_jax.data import load_dataset
from synther_jax.data.maze2d_datasets import generate_episodes
from synther_jax.envs import make_env, maze2d
from tests.test_offline import TINY_DIFFUSION_FLAGS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def minari_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    return tmp_path / "minari"


def run(*args, timeout=600):
    result = subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True,
                            timeout=timeout, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


@pytest.mark.parametrize("maze", maze2d.MAZE_NAMES)
def test_cell_centres_and_goal_match_pointmaze(maze):
    env = maze2d.Maze2dEnv(maze)
    pointmaze = env.point_maze.maze  # Gymnasium-Robotics' own grid <-> xy conversion is the reference.
    for cell in maze2d.free_cells(maze):
        np.testing.assert_allclose(maze2d.cell_to_xy(maze, cell), pointmaze.cell_rowcol_to_xy(np.array(cell)))
        np.testing.assert_allclose(maze2d.xy_to_grid(maze, pointmaze.cell_rowcol_to_xy(np.array(cell))), cell)
    assert [tuple(c) for c in pointmaze.unique_goal_locations] == [tuple(maze2d.goal_xy(maze))]
    assert maze2d.LAYOUTS[maze] == [[1 if v == 1 else 0 for v in row] for row in pointmaze.maze_map]


@pytest.mark.parametrize("maze", maze2d.MAZE_NAMES)
def test_evaluation_env_limits_goal_and_sparse_reward(maze):
    env = make_env(maze, seed=0)
    assert env.spec.max_episode_steps == maze2d.MAX_EPISODE_STEPS[maze]
    observation, _ = env.reset(seed=1)
    assert observation.shape == (4,) and observation.dtype == np.float32
    assert env.action_space.shape == (2,) and np.all(env.action_space.high == 1.0)
    rng, steps, truncated = np.random.default_rng(0), 0, False
    while not truncated:
        observation, reward, terminated, truncated, _ = env.step(rng.uniform(-1, 1, 2))
        steps += 1
        assert not terminated and reward in (0.0, 1.0)
    assert steps == maze2d.MAX_EPISODE_STEPS[maze]
    # Put the ball still at 0.45 and at 0.55 from D4RL's goal cell centre: reward 1, then 0 (radius 0.5).
    goal = maze2d.goal_xy(maze)
    inner = env.unwrapped
    for offset, expected in ((0.45, 1.0), (0.55, 0.0)):
        direction = np.array([1.0, 0.0]) if maze2d.LAYOUTS[maze][maze2d.GOAL_CELLS[maze][0]][
            maze2d.GOAL_CELLS[maze][1] + 1] == 0 else np.array([-1.0, 0.0])
        inner.set_state(np.concatenate([goal + offset * direction, [0.0, 0.0]]))
        _, reward, _, _, _ = inner.step(np.zeros(2))
        assert reward == expected, (offset, reward)


def test_a_reused_environment_replays_a_fresh_one():
    def episode(env):
        observations = [env.reset(seed=5)[0]]
        rng = np.random.default_rng(0)
        observations += [env.step(rng.uniform(-1, 1, 2))[0] for _ in range(50)]
        return np.stack(observations)

    fresh = gym.make("maze2d-umaze")
    expected = episode(fresh)
    fresh.step(np.ones(2))
    point_maze = fresh.unwrapped.point_maze
    fresh.close()  # its PointMaze goes back to the pool, mid-episode
    reused = gym.make("maze2d-umaze")
    assert reused.unwrapped.point_maze is point_maze
    np.testing.assert_array_equal(episode(reused), expected)


@pytest.mark.parametrize("maze", maze2d.MAZE_NAMES)
def test_controller_reaches_goals_from_random_starts(maze):
    env = maze2d.Maze2dEnv(maze)
    rng = np.random.default_rng(0)
    cells = maze2d.free_cells(maze)
    for trial in range(3):
        observation, _ = env.reset(seed=trial)
        goal_cell = cells[rng.integers(len(cells))]
        controller = maze2d.WaypointController(maze, rng)
        for _ in range(maze2d.MAX_EPISODE_STEPS["maze2d-large"]):
            action, reached = controller.action(observation, goal_cell)
            if reached:
                break
            observation, _, _, _, _ = env.step(action)
        assert reached, (maze, trial, goal_cell, observation)
        assert np.linalg.norm(observation[:2] - maze2d.cell_to_xy(maze, goal_cell)) < 0.1


def test_generated_data_replays_in_the_simulator_with_goal_relabelled_rewards():
    maze = "maze2d-umaze"
    episodes = generate_episodes(maze, 3000, seed=0, progress=False)
    assert sum(len(e.rewards) for e in episodes) == 3000 and len(episodes) > 5
    env = maze2d.Maze2dEnv(maze)
    env.reset(seed=0)
    goal = maze2d.goal_xy(maze)
    for episode in episodes:
        assert episode.truncations[-1] and not episode.truncations[:-1].any() and not episode.terminations.any()
        distance = np.linalg.norm(episode.observations[1:, :2].astype(np.float64) - goal, axis=1)
        np.testing.assert_array_equal(episode.rewards, distance <= 0.5)
        for t in range(0, len(episode.rewards), 7):
            env.set_state(episode.observations[t])
            next_observation, reward, _, _, _ = env.step(episode.actions[t])
            np.testing.assert_allclose(next_observation, episode.observations[t + 1], atol=1e-4)
            assert reward == episode.rewards[t]
    # Consecutive episodes continue one trajectory (no reset at a goal switch).
    for before, after in zip(episodes, episodes[1:]):
        np.testing.assert_array_equal(before.observations[-1], after.observations[0])
    # The controller chased other goals too: some episodes end (goal reached) far from the evaluation goal.
    ends = np.array([np.linalg.norm(e.observations[-1, :2] - goal) for e in episodes])
    assert (ends > 1.0).any() and (ends < 0.5).any()
    rewards = np.concatenate([e.rewards for e in episodes])
    assert 0 < rewards.mean() < 1


def test_collect_command_writes_a_maze_dataset(minari_store):
    run("launch.collect", "--env=maze2d-medium", "--num_steps=2000", "--dataset_id=synther/maze2d/test-v0")
    data = load_dataset("synther/maze2d/test-v0")
    raw = load_dataset("synther/maze2d/test-v0", keep_timeouts=True)
    num_episodes = len(np.unique(raw.episode_ids))
    assert len(raw) == 2000 and len(data) == 2000 - num_episodes  # each goal switch is a dropped timeout
    assert data.obs_dim == 4 and data.action_dim == 2 and data.metadata["env_id"] == "maze2d-medium"
    assert not data.terminals.any() and set(np.unique(data.rewards)) <= {0.0, 1.0}
    distance = np.linalg.norm(data.next_observations[:, :2] - maze2d.goal_xy("maze2d-medium"), axis=1)
    np.testing.assert_array_equal(data.rewards, distance <= 0.5)


def test_minari_pointmaze_layout_is_read_as_maze2d(minari_store):
    """A small dataset in Minari's D4RL/pointmaze layout, made as its generation script does: PointMaze
    with a moving goal (reset_target=True), the env's own 0.45 sparse reward against that goal, dict
    observations, an episode cut (truncation) at each success."""
    import minari
    from gymnasium_robotics.envs.maze.maps import U_MAZE
    from gymnasium_robotics.envs.maze.point_maze import PointMazeEnv
    from minari.data_collector import EpisodeBuffer

    env = PointMazeEnv(maze_map=U_MAZE, continuing_task=True, reset_target=True)
    observation, _ = env.reset(seed=0)
    controller = maze2d.WaypointController("maze2d-umaze", np.random.default_rng(0))
    buffers, steps = [], {"observations": [observation], "actions": [], "rewards": [], "successes": []}
    for step in range(1500):
        goal_cell = tuple(int(v) for v in env.maze.cell_xy_to_rowcol(observation["desired_goal"]))
        action = controller.action(observation["observation"], goal_cell)[0].astype(np.float32)
        observation, reward, _, _, info = env.step(action)
        for key, value in (("observations", observation), ("actions", action), ("rewards", reward),
                           ("successes", info["success"])):
            steps[key].append(value)
        if info["success"] or step == 1499:
            buffers.append(EpisodeBuffer(
                id=len(buffers), observations={k: np.stack([o[k] for o in steps["observations"]])
                                               for k in ("observation", "achieved_goal", "desired_goal")},
                actions=np.stack(steps["actions"]), rewards=np.asarray(steps["rewards"]),
                terminations=np.zeros(len(steps["actions"]), bool),
                truncations=np.arange(len(steps["actions"])) == len(steps["actions"]) - 1))
            steps = {"observations": [observation], "actions": [], "rewards": [], "successes": []}
    assert len(buffers) >= 3
    minari.create_dataset_from_buffers("D4RL/pointmaze/umaze-v2", buffers, observation_space=env.observation_space,
                                       action_space=env.action_space, algorithm_name="test", author="test",
                                       description="Minari layout", ref_min_score=0.0, ref_max_score=1.0)

    data = load_dataset("D4RL/pointmaze/umaze-v2", keep_timeouts=True)
    states = np.concatenate([b.observations["observation"][:-1] for b in buffers])
    next_states = np.concatenate([b.observations["observation"][1:] for b in buffers])
    np.testing.assert_allclose(data.observations, states, rtol=1e-6)
    np.testing.assert_allclose(data.next_observations, next_states, rtol=1e-6)
    goal = env.maze.cell_rowcol_to_xy(np.array([1, 1]))  # D4RL's umaze goal cell, by PointMaze's conversion
    np.testing.assert_array_equal(data.rewards, np.linalg.norm(next_states[:, :2] - goal, axis=1) <= 0.5)
    minari_rewards = np.concatenate([b.rewards for b in buffers])
    assert (minari_rewards != data.rewards).any()  # the moving goal's rewards were replaced
    assert data.metadata["env_id"] == "maze2d-umaze" and data.metadata["ref_min_score"] is None
    assert len(load_dataset("D4RL/pointmaze/umaze-v2")) == len(data) - len(buffers)


def test_reference_score_command_measures_random_and_controller_returns():
    scores = json.loads(run("launch.collect", "--env=maze2d-umaze", "--reference_scores",
                            "--reference_episodes=3").strip().splitlines()[-1])
    assert scores["episodes"] == 3 and 0.0 <= scores["min"] < scores["max"] <= 300.0
    # The random policy's figure, by an independent rollout with the same seeds and action draws.
    env, returns = gym.make("maze2d-umaze"), []
    for seed in range(3):
        rng, total = np.random.default_rng(seed), 0.0
        env.reset(seed=seed)
        for _ in range(300):
            total += env.step(rng.uniform(-1.0, 1.0, 2).astype(np.float32))[1]
        returns.append(total)
    assert scores["min"] == pytest.approx(np.mean(returns))


def _validated(name: str, algorithm: str):
    """The config as a launcher runs it: validated, CORL's per-dataset values filled in."""
    config = get_config(name)
    config.algorithm = algorithm
    return validate(config)


def test_maze_configs_carry_corl_settings():
    config = _validated("maze2d-medium", "edac")
    assert config.env_id == "maze2d-medium" and config.dataset == "synther/maze2d/medium-v0"
    assert config.edac.eta == 0.1 and config.edac.num_critics == 10 and config.eval_episodes == 100
    iql = _validated("maze2d-medium", "iql").iql
    assert iql.beta == 3.0 and iql.expectile == 0.7 and not iql.deterministic_actor
    assert get_config("maze2d-umaze,smoke").dataset == "synther/maze2d/umaze-50000-v0"
    assert _validated("hopper-medium", "edac").edac.eta != 0.1
    with pytest.raises(ValueError, match="maze2d-umaze"):
        get_config("maze2d-huge")


def test_smoke_pipeline_makes_its_maze_data(minari_store, tmp_path):
    workdir = tmp_path / "run"
    run("launch.offline", "--config=configs/d4rl.py:maze2d-umaze,smoke", *TINY_DIFFUSION_FLAGS,
        "--config.num_samples=2000", "--config.analyze=False", "--config.agent_steps=20", "--config.eval_every=10",
        "--config.eval_episodes=2", f"--workdir={workdir}", timeout=900)
    assert (minari_store / "synther" / "maze2d" / "umaze-50000-v0" / "data").is_dir()
    results = json.loads((workdir / "results.json").read_text())
    assert results["env_id"] == "maze2d-umaze" and results["score_table"].startswith("synther_jax maze2d table")
    score = results["final_normalized_score"]
    assert len(score["per_seed"]) == 2 and np.isclose(score["mean"], np.mean(score["per_seed"]))
    returns = np.array(results["final_return"]["per_seed"])
    np.testing.assert_allclose(score["per_seed"], 100 * (returns - 10.12) / (209.54 - 10.12))


def test_physical_validity_of_maze_transitions():
    from synther_jax.analysis import dynamics
    from synther_jax.data import Transitions
    from synther_jax.data.flatten import episodes_to_transitions

    assert dynamics.supports("maze2d-umaze")
    real = episodes_to_transitions(generate_episodes("maze2d-umaze", 600, seed=2, progress=False))
    summary = dynamics.dynamics_errors("maze2d-umaze", real, progress=False).summary()
    assert summary["num_not_restorable"] == 0 and summary["dynamics_mse_mean"] < 1e-10
    assert summary["reward_squared_error_mean"] == 0.0
    shifted = Transitions(**{**real.as_dict(), "next_observations": real.next_observations + 0.1})
    errors = dynamics.dynamics_errors("maze2d-umaze", shifted, progress=False)
    np.testing.assert_allclose(errors.next_observation_mse, 0.01, rtol=1e-4)
