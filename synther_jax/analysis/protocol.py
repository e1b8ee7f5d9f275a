"""A run's score, and what runs must share before a comparison may put them side by side.

One evaluation's score is noisy: the policy still moves between evaluations and ten episodes are
few. A run's score is therefore each seed's mean over its last `LAST_EVALUATIONS` evaluations (as
TD3+BC's paper averages its final evaluations), each of at least `MIN_EPISODES` episodes (CORL's
locomotion count). This is not CORL's "last" figure, the single final evaluation over 4 seeds.
"""
from typing import Sequence

import numpy as np

LAST_EVALUATIONS = 3
MIN_EPISODES = 10
MIN_SEEDS = 2  # the fewest seeds an interval can be drawn from
PROTOCOL = "mean of the last {} evaluations"


def run_score(steps: Sequence[int], per_seed_by_step: Sequence[Sequence[float]], episodes_per_evaluation: int,
              metric: str) -> dict:
    """results.json's `score` block: each seed's mean over the last `LAST_EVALUATIONS` evaluations
    (all of them when the run made fewer; `protocol` and `evaluations_used` say how many).

    `per_seed_by_step[e][i]` is seed i's score (or return, as `metric` says) at evaluation `steps[e]`.
    """
    used = min(LAST_EVALUATIONS, len(steps))
    if used == 0:
        raise ValueError("A run's score needs at least one evaluation.")
    per_seed = np.mean(np.asarray(per_seed_by_step[-used:], np.float64), axis=0)
    return {"protocol": PROTOCOL.format(used), "metric": metric, "per_seed": per_seed.tolist(),
            "mean": float(per_seed.mean()), "std": float(per_seed.std()),
            "evaluations_used": [int(step) for step in steps[-used:]],
            "episodes_per_evaluation": int(episodes_per_evaluation)}
