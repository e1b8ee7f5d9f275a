"""D4RL's maze2d tasks on Gymnasium-Robotics PointMaze, and D4RL's waypoint controller.

D4RL's maze2d needs mujoco-py; Gymnasium-Robotics' PointMaze is its maintained successor (the same
layouts cell for cell, the same point mass: timestep 0.01, Euler, gear 100, velocity clipped to
+-5). `maze2d-umaze`, `maze2d-medium` and `maze2d-large` are registered with Gymnasium here as D4RL
defines them:
- the observation is the flat (x, y, vx, vy) state (float32), not PointMaze's goal dict;
- the goal is D4RL's fixed evaluation cell, `GOAL_CELLS`, at its centre (PointMaze's maps carry no
  goal cell, so we add it, as Minari's evaluation environments do);
- the reward is sparse: 1 when the ball's position is within `SUCCESS_RADIUS` (0.5, D4RL's; PointMaze
  uses 0.45) of the goal. We use D4RL's radius so that the rewards, the returns and the paper's
  numbers all mean "steps within 0.5 of the goal", and one function (`sparse_reward`) labels both the
  generated data and the evaluation environment;
- the task never terminates (`continuing_task=True`, `reset_target=False`): an episode is
  `MAX_EPISODE_STEPS` steps (300 / 600 / 800), the return is the number of steps spent at the goal.

Deviations from D4RL's environment, all PointMaze's: coordinates are centred on the maze (D4RL used
(row, column) grid indices; axes differ), the start is a random free cell other than the goal's
with U(+-0.25) position noise and zero velocity (D4RL: any cell, U(+-0.1), N(0, 0.1) velocity).
Returns therefore shift against D4RL's, which is why `synther_jax.scores` carries reference
scores measured on these environments (`python -m launch.collect --reference_scores --env=...`).

Gymnasium-Robotics is imported only when a maze is built.
"""
from typing import Dict, List, Optional, Tuple

import numpy as np

from synther_jax.errors import require

gym = require("gymnasium", "envs")

MAZE_NAMES = ("maze2d-umaze", "maze2d-medium", "maze2d-large")
# Gymnasium-Robotics' `maps.U_MAZE`, `MEDIUM_MAZE`, `LARGE_MAZE` (1: wall, 0: free), which match D4RL's.
LAYOUTS: Dict[str, List[List[int]]] = {
    "maze2d-umaze": [
        [1, 1, 1, 1, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 0, 1],
        [1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1],
    ],
    "maze2d-medium": [
        [1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 1, 1, 0, 0, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 1, 0, 0, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 0, 0, 1, 0, 1],
        [1, 0, 0, 0, 1, 0, 0, 1],
        [1, 1, 1, 1, 1, 1, 1, 1],
    ],
    "maze2d-large": [
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
        [1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 0, 1, 1, 0, 1, 0, 1, 0, 1, 0, 1],
        [1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1],
        [1, 0, 1, 1, 1, 1, 0, 1, 1, 1, 0, 1],
        [1, 0, 0, 1, 0, 1, 0, 0, 0, 0, 0, 1],
        [1, 1, 0, 1, 0, 1, 0, 1, 0, 1, 1, 1],
        [1, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 1],
        [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1],
    ],
}
# D4RL's evaluation goal cell (row, column): the G of its maze strings.
GOAL_CELLS = {"maze2d-umaze": (1, 1), "maze2d-medium": (6, 6), "maze2d-large": (7, 9)}
MAX_EPISODE_STEPS = {"maze2d-umaze": 300, "maze2d-medium": 600, "maze2d-large": 800}
SUCCESS_RADIUS = 0.5  # D4RL's sparse-reward radius (PointMaze: 0.45); see the module docstring.
_IDLE_POINT_MAZES: Dict[str, list] = {}  # closed environments' PointMaze instances, reused by `Maze2dEnv`


def check_maze(name: str) -> None:
    if name not in LAYOUTS:
        raise ValueError(f"Unknown maze {name!r}; choose one of {MAZE_NAMES}.")


def cell_to_xy(name: str, cell) -> np.ndarray:
    """Centre of grid cell (row, column) in PointMaze's coordinates (maze centred at 0, cell size 1)."""
    rows, cols = len(LAYOUTS[name]), len(LAYOUTS[name][0])
    return np.array([cell[1] + 0.5 - cols / 2, rows / 2 - cell[0] - 0.5])


def xy_to_grid(name: str, xy: np.ndarray) -> np.ndarray:
    """PointMaze (x, y) as continuous (row, column): cell centres fall on integers, as in D4RL."""
    rows, cols = len(LAYOUTS[name]), len(LAYOUTS[name][0])
    return np.array([rows / 2 - xy[1] - 0.5, xy[0] + cols / 2 - 0.5])


def goal_xy(name: str) -> np.ndarray:
    """The fixed evaluation goal: the centre of D4RL's G cell."""
    return cell_to_xy(name, GOAL_CELLS[name])


def free_cells(name: str) -> List[Tuple[int, int]]:
    layout = LAYOUTS[name]
    return [(r, c) for r in range(len(layout)) for c in range(len(layout[0])) if layout[r][c] == 0]


def sparse_reward(name: str, xy: np.ndarray) -> np.ndarray:
    """1.0 where the position(s) `xy` (..., 2) lie within SUCCESS_RADIUS of the evaluation goal."""
    distance = np.linalg.norm(np.asarray(xy, np.float64) - goal_xy(name), axis=-1)
    return (distance <= SUCCESS_RADIUS).astype(np.float64)


class Maze2dEnv(gym.Env):
    """One maze2d task: PointMaze with the fixed goal, flat observations and D4RL's sparse reward.

    No time limit here (data generation runs one continuous trajectory); `gym.make(name)` and
    `synther_jax.envs.make_env(name)` add `MAX_EPISODE_STEPS`.
    """

    metadata = {"render_modes": []}

    def __init__(self, maze: str):
        check_maze(maze)
        PointMazeEnv = require("gymnasium_robotics.envs.maze.point_maze", "maze").PointMazeEnv

        layout = [list(row) for row in LAYOUTS[maze]]
        row, col = GOAL_CELLS[maze]
        layout[row][col] = "g"
        self.maze = maze
        self.goal = goal_xy(maze)
        idle = _IDLE_POINT_MAZES.setdefault(maze, [])
        self.point_maze = idle.pop() if idle else PointMazeEnv(maze_map=layout, reward_type="sparse",
                                                               continuing_task=True, reset_target=False)
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (4,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)

    def reset(self, *, seed: Optional[int] = None, options: Optional[dict] = None):
        super().reset(seed=seed)
        observation, info = self.point_maze.reset(seed=seed, options=options)
        return observation["observation"].astype(np.float32), info

    def step(self, action):
        observation, _, _, _, info = self.point_maze.step(np.asarray(action, np.float64))
        state = observation["observation"]
        return state.astype(np.float32), float(sparse_reward(self.maze, state[:2])), False, False, info

    def set_state(self, observation: np.ndarray) -> None:
        """Puts the ball at the state an observation (x, y, vx, vy) describes (it is the full state)."""
        observation = np.asarray(observation, np.float64)
        self.point_maze.point_env.set_state(observation[:2], observation[2:])

    def close(self):
        # Kept for the next Maze2dEnv of this maze: building one compiles its MuJoCo model (about 0.1-0.3 s),
        # which dominated evaluations that open hundreds of environments each time. `reset` restores
        # everything an episode depends on (goal, start, state, random generators when seeded).
        if self.point_maze is not None:
            _IDLE_POINT_MAZES[self.maze].append(self.point_maze)
            self.point_maze = None


def register() -> None:
    """Registers the three tasks with Gymnasium (idempotent; nothing is imported until `gym.make`)."""
    for name in MAZE_NAMES:
        if name not in gym.registry:
            gym.register(name, entry_point="synther_jax.envs.maze2d:Maze2dEnv", kwargs={"maze": name},
                         max_episode_steps=MAX_EPISODE_STEPS[name])


# --- D4RL's waypoint controller (d4rl/pointmaze/waypoint_controller.py, q_iteration.py) ----------

# Grid moves (row, column): stay, up, down, left, right; argmax ties go to the first.
MOVES = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]])


def plan_waypoints(name: str, start_cell, target_cell, rng: np.random.Generator, jitter: float = 0.2,
                   iterations: int = 50, discount: float = 0.99) -> List[np.ndarray]:
    """D4RL's planner: Q-iteration on the grid (reward 1 for entering the target cell, 50 iterations,
    discount 0.99), then a greedy rollout from the start cell. Every waypoint but the target is a cell
    centre shifted by -U(0, 1) * 0.2 per grid axis, so the ball does not hug the walls' corners.
    Waypoints are (row, column) grid coordinates."""
    cells = free_cells(name)
    index = {cell: i for i, cell in enumerate(cells)}
    successor = np.array([[index.get((r + dr, c + dc), i) for dr, dc in MOVES] for i, (r, c) in enumerate(cells)])
    reward = (successor == index[tuple(target_cell)]).astype(np.float64)
    values = np.zeros(len(cells))
    for _ in range(iterations):
        q_values = reward + discount * values[successor]
        values = q_values.max(1)
    state, target, waypoints = index[tuple(start_cell)], index[tuple(target_cell)], []
    for _ in range(200):
        state = successor[state, np.argmax(q_values[state])]
        waypoint = np.array(cells[state], np.float64)
        if state != target:
            waypoint = waypoint - rng.uniform(size=2) * jitter
        waypoints.append(waypoint)
        if state == target:
            break
    return waypoints


class WaypointController:
    """D4RL's PD controller over planned waypoints: action = 10 (waypoint - position) - 1 velocity,
    clipped to [-1, 1]; a waypoint counts as reached within 0.1 while moving less than 0.1 per step.

    `action(observation, target_cell)` replans whenever the target cell changes and returns the
    action and whether the target is reached (the ball within 0.1 of its centre, nearly still).
    """

    def __init__(self, name: str, rng: np.random.Generator, p_gain: float = 10.0, d_gain: float = -1.0,
                 solve_threshold: float = 0.1, velocity_threshold: float = 0.1):
        check_maze(name)
        self.name, self.rng = name, rng
        self.p_gain, self.d_gain = p_gain, d_gain
        self.solve_threshold, self.velocity_threshold = solve_threshold, velocity_threshold
        self.target_cell = None
        self.waypoints: List[np.ndarray] = []
        self.waypoint_index = 0
        self.previous_location = np.zeros(2)

    def action(self, observation: np.ndarray, target_cell) -> Tuple[np.ndarray, bool]:
        location = xy_to_grid(self.name, observation[:2])
        velocity = np.array([-observation[3], observation[2]], np.float64)  # (d row, d column) per second
        if self.target_cell != tuple(target_cell):
            self.target_cell = tuple(target_cell)
            start = tuple(int(v) for v in np.round(location))
            self.waypoints = plan_waypoints(self.name, start, target_cell, self.rng)
            self.waypoint_index = 0
            self.previous_location = start
        target = np.array(target_cell, np.float64)
        moved = np.linalg.norm(self.previous_location - location)
        solved = np.linalg.norm(location - target) < self.solve_threshold and moved < self.velocity_threshold
        waypoint = target if solved else self.waypoints[self.waypoint_index]
        grid_action = self.p_gain * (waypoint - location) + self.d_gain * velocity
        if (not solved and np.linalg.norm(location - waypoint) < self.solve_threshold
                and moved < self.velocity_threshold and self.waypoint_index < len(self.waypoints) - 1):
            self.waypoint_index += 1
        self.previous_location = location
        # (row, column) back to (x, y): x follows the column, y runs against the row.
        return np.clip(np.array([grid_action[1], -grid_action[0]]), -1.0, 1.0), bool(solved)


register()
