"""REDQ (Chen et al. 2021): the ensemble SAC learner of `agents.sac` with 10 Qs, a random pair of
target Qs in every target, and 20 critic updates per environment step (the original's redq.gin).

Everything else (networks, losses, quirks, `update`, `act`) is `agents.sac`'s.
"""
from functools import partial

from agents import sac
from agents.sac import SACState, act, update  # noqa: F401  (REDQ's update and act are SAC's)

REDQ_DEFAULTS = dict(num_qs=10, num_min_qs=2, utd_ratio=20)
init = partial(sac.init, **REDQ_DEFAULTS)
init.__doc__ = "A fresh REDQ learner: `agents.sac.init` with num_qs=10, num_min_qs=2, utd_ratio=20 by default."
init_seeds = partial(sac.init_seeds, **REDQ_DEFAULTS)
init_seeds.__doc__ = "REDQ learners stacked along a leading seed axis (`agents.sac.init_seeds` with REDQ's defaults)."
