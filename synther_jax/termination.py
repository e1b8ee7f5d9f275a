"""When a locomotion task ends: Gymnasium's health rules read from observations, and synthetic terminals.

Hopper and Walker2d (v4 and v5) end an episode when the state after a step is unhealthy. Read from
the observation (which drops the x position, so the height is obs[0] and the torso angle obs[1]):
- walker2d: healthy while 0.8 < obs[0] < 2.0 and -1 < obs[1] < 1; exact.
- hopper: healthy while obs[0] > 0.7, -0.2 < obs[1] < 0.2 and every entry of obs[1:] lies in
  (-100, 100). Gymnasium checks that range on qpos[2:] and the unclipped qvel, but the observation
  clips qvel to +-10, so a velocity above 100 (which the env would end on) never shows here: read
  from observations the rule misses those rare ends and is otherwise exact.
Every comparison is strict, as Gymnasium's. HalfCheetah and the maze2d tasks never terminate, so
they have no rule. The constants are Gymnasium's defaults (its envs' `_healthy_*` attributes, which
a test holds them to); this module does not import Gymnasium, which the core install lacks.

How synthetic transitions get their terminal flags (`TERMINALS`):
- "modelled": the denoiser generates a terminal column, thresholded (the paper's way);
- "env_rule": the denoiser does not model the column; each synthetic next state is labelled by the
  task's rule (`label_terminals`), so a generated fall always ends its episode (our addition);
- "none": no terminal column; every synthetic terminal is 0 (the paper's online DMC setting).
"""
import dataclasses
import math
import re
from typing import Callable, Dict, Optional, Tuple, Union

import numpy as np

from synther_jax.data.transitions import Transitions

TERMINALS = ("modelled", "env_rule", "none")
Rule = Callable[[np.ndarray], np.ndarray]  # next observations (N, o) -> terminal (N,) bool
CONSISTENCY_FIGURES = ("falls", "falls_flagged", "flags_without_fall", "fallen_states")  # terminal_consistency's


@dataclasses.dataclass(frozen=True)
class HealthRule:
    """Gymnasium's health rule of one task, on observations that exclude the x position: a state is
    terminal when any bound below is broken (strict bounds; None checks nothing)."""

    name: str
    obs_dim: int
    healthy_z_range: Tuple[float, float]  # the torso height, obs[0]
    healthy_angle_range: Tuple[float, float]  # the torso angle, obs[1]
    healthy_state_range: Optional[Tuple[float, float]] = None  # every entry of obs[1:] (hopper)

    def __call__(self, observations: np.ndarray) -> np.ndarray:
        """Whether each observation (N, o) breaks the rule: (N,) bool."""
        observations = np.asarray(observations)
        if observations.ndim != 2 or observations.shape[1] != self.obs_dim:
            raise ValueError(f"The {self.name} rule reads ({self.obs_dim},)-dimensional observations, got shape "
                             f"{observations.shape}; use the rule of the task the data comes from.")
        z, angle = observations[:, 0], observations[:, 1]
        healthy = ((self.healthy_z_range[0] < z) & (z < self.healthy_z_range[1])
                   & (self.healthy_angle_range[0] < angle) & (angle < self.healthy_angle_range[1]))
        if self.healthy_state_range is not None:
            low, high = self.healthy_state_range
            healthy &= np.all((low < observations[:, 1:]) & (observations[:, 1:] < high), axis=1)
        return ~healthy


RULES: Dict[str, HealthRule] = {
    "hopper": HealthRule("hopper", 11, (0.7, math.inf), (-0.2, 0.2), (-100.0, 100.0)),
    "walker2d": HealthRule("walker2d", 17, (0.8, 2.0), (-1.0, 1.0)),
}


def rule_for_env(env: Optional[str]) -> Optional[HealthRule]:
    """The rule of an environment or dataset named by a Gymnasium id, D4RL task or Minari id
    ('Hopper-v5', 'walker2d-medium-v2', 'mujoco/hopper/medium-v0'); None for a task that never
    terminates or is unknown."""
    words = set(re.split(r"[^a-z0-9]+", (env or "").lower()))
    return next((rule for name, rule in RULES.items() if name in words), None)


def resolve_rule(rule: Union[str, Rule]) -> Rule:
    """A rule given by name (a key of `RULES`) or as a function next_observations -> bool array."""
    if isinstance(rule, str):
        if rule not in RULES:
            raise ValueError(f"No termination rule named {rule!r}: use one of {sorted(RULES)} or pass a function "
                             "next_observations -> bool array.")
        return RULES[rule]
    if not callable(rule):
        raise TypeError(f"A termination rule is a name in {sorted(RULES)} or a function next_observations -> "
                        f"bool array, got {type(rule).__name__}.")
    return rule


def check_terminals(terminals: str) -> str:
    """`terminals` itself, if it is one of `TERMINALS`."""
    if terminals not in TERMINALS:
        raise ValueError(f"terminals={terminals!r}: use one of {', '.join(repr(t) for t in TERMINALS)}.")
    return terminals


def recorded_terminals(record: dict) -> str:
    """How a saved config, model or samples file made its terminals: its `terminals`, or, if written
    before that field, its boolean `modelled_terminals` (true, or absent: "modelled"; false: "none")."""
    if "terminals" in record:
        return record["terminals"]
    return "modelled" if record.get("modelled_terminals", True) else "none"


def has_terminal_column(terminals: str) -> bool:
    """Whether the denoiser's rows carry a terminal column: only when terminals are modelled."""
    return check_terminals(terminals) == "modelled"


def label_terminals(data: Transitions, rule: Union[str, Rule]) -> Transitions:
    """`data` with each terminal set by the rule on its next observation (1.0 where it breaks it):
    how terminals="env_rule" labels samples, and how existing samples are relabelled."""
    terminal = np.asarray(resolve_rule(rule)(data.next_observations), bool)
    if terminal.shape != (len(data),):
        raise ValueError(f"The termination rule returned shape {terminal.shape} for {len(data)} next observations; "
                         "it must return one bool per row.")
    return dataclasses.replace(data, terminals=terminal.astype(np.float32))


def synthetic_transitions(rows: np.ndarray, obs_dim: int, action_dim: int, terminals: str,
                          terminal_threshold: Optional[float] = 0.5, rule: Optional[Rule] = None) -> Transitions:
    """Generated rows as transitions, their terminals made the `terminals` way: the thresholded
    column ("modelled"), the `rule` on each next observation ("env_rule") or 0 ("none")."""
    data = Transitions.from_rows(rows, obs_dim, action_dim, has_terminal_column(terminals), terminal_threshold)
    if terminals != "env_rule":
        return data
    if rule is None:
        raise ValueError("terminals='env_rule' labels terminals with a termination rule; pass one.")
    return label_terminals(data, rule)


def terminal_consistency(data: Transitions, rule: Rule) -> Dict[str, Optional[float]]:
    """How the terminal flags (> 0.5) agree with the rule, as fractions of the rows:
    - `falls`: next states that break the rule;
    - `falls_flagged`: of those, the flagged ones (1 in real data; None without falls);
    - `flags_without_fall`: of the other rows, the flagged ones (0 in real data; None if all fall);
    - `fallen_states`: rows whose current state already breaks the rule (0 in real data: an
      episode ends at its first fall)."""
    fall = np.asarray(rule(data.next_observations), bool)
    flagged = data.terminals > 0.5
    num_falls = int(fall.sum())
    return {"falls": num_falls / len(data),
            "falls_flagged": float(flagged[fall].mean()) if num_falls else None,
            "flags_without_fall": float(flagged[~fall].mean()) if num_falls < len(data) else None,
            "fallen_states": float(np.mean(rule(data.observations)))}
