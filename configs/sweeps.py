"""Sweeps for `launch.sweep`: named lists of `launch.offline` jobs, each a config plus overrides.

    python -m launch.sweep --sweep=smoke --root=runs/sweep-smoke
    python -m launch.sweep --sweep=table1 --root=runs/table1 --launcher=xmanager

A job is `python -m launch.offline --config=configs/d4rl.py:<dataset>[,smoke] --config.<k>=<v>...`
in its own work directory `<root>/<job name>`. `grid` builds the product of datasets x algorithms x
data x seeds; a sweep is a list of jobs, so grids can be added together or filtered in Python.

This file imports nothing but the standard library, so the launcher can run in a small separate
environment (see requirements-xm.txt).
"""
import dataclasses
import itertools
from typing import Any, Dict, List, Sequence, Tuple

CONFIG_FILE = "configs/d4rl.py"
ALGORITHMS = ("td3_bc", "iql", "edac")
# The 12 MuJoCo locomotion datasets of the paper's Table 1 (as names of configs/d4rl.py).
LOCOMOTION = tuple(f"{env}-{level}" for env in ("halfcheetah", "walker2d", "hopper")
                   for level in ("random", "medium-replay", "medium", "medium-expert"))
PAPER_SEEDS = (0, 1, 2, 3)


@dataclasses.dataclass(frozen=True)
class Job:
    """One run of launch.offline: `config` is `<file>:<argument>`, `overrides` are config fields."""

    name: str  # also the name of its work directory under the sweep's root
    config: str
    overrides: Tuple[Tuple[str, Any], ...] = ()

    def flags(self) -> Dict[str, str]:
        """The job's command-line flags (without --workdir), as strings: `{"config": ..., "config.seed": "0"}`."""
        return {"config": self.config, **{f"config.{key}": str(value) for key, value in self.overrides}}


def grid(datasets: Sequence[str], algorithms: Sequence[str], seeds: Sequence[int] = (0,),
         data: Sequence[str] = ("synthetic",), smoke: bool = False, **overrides) -> List[Job]:
    """Every combination of dataset, algorithm, data source and seed, with `overrides` for all."""
    unknown = set(algorithms) - set(ALGORITHMS)
    if unknown:
        raise ValueError(f"Unknown algorithms {sorted(unknown)}; choose from {ALGORITHMS}.")
    jobs = []
    for dataset, algorithm, source, seed in itertools.product(datasets, algorithms, data, seeds):
        name = f"{dataset}-{algorithm}-{source}-seed{seed}"
        config = f"{CONFIG_FILE}:{dataset}{',smoke' if smoke else ''}"
        fields = {"algorithm": algorithm, "data": source, "seed": seed, **overrides}
        jobs.append(Job(name, config, tuple(sorted(fields.items()))))
    return jobs


def table1() -> List[Job]:
    """The paper's Table 1: original and SynthER data for TD3+BC, IQL and EDAC, 4 seeds each.

    Each seed is its own job with its own diffusion model, as in the original code (one process
    per seed). EDAC has no entries on the random datasets in the paper, so none here.
    """
    random = [d for d in LOCOMOTION if d.endswith("-random")]
    others = [d for d in LOCOMOTION if d not in random]
    common = dict(seeds=PAPER_SEEDS, data=("real", "synthetic"), num_seeds=1)
    return grid(LOCOMOTION, ("td3_bc", "iql"), **common) + grid(others, ("edac",), **common)


def smoke() -> List[Job]:
    """2 algorithms x real and synthetic data on the bundled walker2d dataset, smoke configs shrunk
    further: checks the machinery in CPU-minutes on a fresh clone, with no download."""
    return grid(("walker2d",), ("td3_bc", "iql"), data=("real", "synthetic"), smoke=True, num_samples=5_000,
                agent_steps=1_000, eval_every=500, **{"diffusion.num_train_steps": 1_000})


SWEEPS = {"table1": table1, "smoke": smoke}


def get_sweep(name: str) -> List[Job]:
    if name not in SWEEPS:
        raise ValueError(f"Unknown sweep {name!r}; defined in configs/sweeps.py: {sorted(SWEEPS)}.")
    jobs = SWEEPS[name]()
    names = [job.name for job in jobs]
    if len(set(names)) != len(names):
        raise ValueError(f"Sweep {name!r} has jobs with the same name (they would share a work directory).")
    return jobs
