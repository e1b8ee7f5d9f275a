"""What every entry point does with its work directory."""
import json
import os

import ml_collections


def prepare_workdir(workdir: str, config: ml_collections.ConfigDict) -> None:
    """Creates `workdir` and records the config in `config.json`.

    A rerun in the same folder resumes, which is only meaningful with the same config: a folder
    holding another config's run is refused rather than silently mixed.
    """
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "config.json")
    text = config.to_json_best_effort(indent=2, sort_keys=True)
    if os.path.exists(path):
        with open(path) as f:
            previous = f.read()
        if json.loads(previous) != json.loads(text):
            raise ValueError(f"{workdir} holds a run made with another config (see {path}); use a new --workdir, "
                             "or delete the folder to start over.")
        return
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)
