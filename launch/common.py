"""What every entry point does with its work directory."""
import json
import os
import time
from contextlib import contextmanager
from typing import Dict, Optional

import ml_collections
from absl import flags
from ml_collections import config_flags

from synther_jax.atomic import read_json, write_json


def define_flags(example: str) -> None:
    """The two flags of every pipeline entry point. Called under `if __name__ == "__main__"`, so
    entry points can import each other's stages without defining flags twice."""
    config_flags.DEFINE_config_file("config", None, f"A config file and its argument, e.g. {example}.")
    flags.DEFINE_string("workdir", None, "Where every stage's output goes; rerun the same command to resume.")
    flags.mark_flags_as_required(["config", "workdir"])


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Creates `workdir` and records the config in `config.json`.

    A rerun in the same folder resumes, which is only meaningful with the same config: a folder
    holding another config's run is refused rather than silently mixed.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    recorded, current = read_json(path, None), json.loads(config.to_json_best_effort())
    if recorded is None:
        write_json(path, current)
    elif recorded != current:
        raise ValueError(f"{workdir} holds a run made with another config (see {path}); use a new --workdir, "
                         "or delete the folder to start over.")


class StageTimer:
    """Wall-clock seconds per named stage, summed over `with timer("stage"):` blocks.

    A resumed run passes the sums it saved (`seconds`), or a JSON `path` that the sums are read
    from and written back to after every block, so its timings add up across interruptions.
    """

    def __init__(self, seconds: Optional[Dict[str, float]] = None, path: Optional[str] = None):
        self.path = path
        self.seconds: Dict[str, float] = {**(read_json(path, {}) if path else {}), **(seconds or {})}

    @contextmanager
    def __call__(self, stage: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start
            if self.path:
                write_json(self.path, self.seconds)
