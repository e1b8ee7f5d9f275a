"""Metrics to disk: one JSON line per record (`metrics.jsonl`) and TensorBoard event files.

Every record has a `step` and a `stage` (e.g. "diffusion", "agent", "eval") so one file holds a
whole run and can be read back with `read_metrics`. Appending makes a resumed run continue the
same file; records a crashed run wrote past its last checkpoint are repeated, and `read_metrics`
keeps the newest record per (stage, step).
"""
import json
import os
from typing import Dict, List, Optional

from tensorboardX import SummaryWriter


class MetricsWriter:
    def __init__(self, workdir: str, tensorboard: bool = True):
        os.makedirs(workdir, exist_ok=True)
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._file = open(self.path, "a")
        self._tensorboard = SummaryWriter(os.path.join(workdir, "tensorboard")) if tensorboard else None

    def write(self, stage: str, step: int, metrics: Dict[str, float]) -> None:
        record = {"stage": stage, "step": int(step), **{k: float(v) for k, v in metrics.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()
        if self._tensorboard is not None:
            for name, value in metrics.items():
                self._tensorboard.add_scalar(f"{stage}/{name}", float(value), int(step))

    def close(self) -> None:
        self._file.close()
        if self._tensorboard is not None:
            self._tensorboard.close()


def read_metrics(path: str, stage: Optional[str] = None) -> List[dict]:
    """The records of a metrics.jsonl file, newest per (stage, step), in step order."""
    records = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                records[(record["stage"], record["step"])] = record
    return sorted((r for r in records.values() if stage is None or r["stage"] == stage), key=lambda r: r["step"])
