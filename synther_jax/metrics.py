"""Metrics to disk and to the trackers people use: `metrics.jsonl`, TensorBoard, optionally W&B.

Every record has a `step` and a `stage` (e.g. "diffusion", "agent", "eval") so one file holds a
whole run and can be read back with `read_metrics`. Appending makes a resumed run continue the
same file; records a crashed run wrote past its last checkpoint are repeated, and `read_metrics`
keeps the newest record per (stage, step).

One record is one set of scalars: a name per scalar, and each seed's own value where the record
has them. metrics.jsonl and W&B hold them as `name` and `name/seed<i>`, W&B as `<stage>/...`.
TensorBoard gets one run per seed, `tensorboard/seed<i>/`, and `tensorboard/mean/`, with the same
tag `<stage>/<name>` in each, so its UI overlays and filters the seeds as runs: a seed's run holds
its own values, `mean/` the record's scalars and, for a name given only per seed, the mean over
the seeds. TensorBoard's event files and the W&B run start with the first record, so a rerun with
nothing left to do leaves no new file. Each event file carries the run's config as hparams (a
session start, without an experiment summary: TensorBoard's HParams dashboard then takes every
scalar as a metric). W&B is imported only when asked for; a resumed run continues the
same W&B run (its id is kept in `wandb_run_id` in the work directory), with one x axis per stage
(`<stage>/step`), since stages count their steps separately.
"""
import importlib.util
import json
import os
import secrets
import statistics
from typing import Any, Dict, List, Mapping, Optional, Sequence

from synther_jax.atomic import atomic_path
from synther_jax.errors import MissingExtraError, require

SummaryWriter = require("tensorboardX", "launch").SummaryWriter
hparams = require("tensorboardX.summary", "launch").hparams

WANDB_RUN_ID_FILE = "wandb_run_id"
WANDB_MODES = ("online", "offline", "disabled")


def check_wandb_installed() -> None:
    """Raises MissingExtraError, saying how to install it, where the optional `wandb` package is missing."""
    if importlib.util.find_spec("wandb") is None:
        raise MissingExtraError("W&B logging needs the wandb package: pip install 'synther_jax[wandb]' (or pip "
                                "install wandb), or leave --config.wandb.project unset.")


class MetricsWriter:
    """Writes records to `workdir/metrics.jsonl`, `workdir/tensorboard/<run>/` and, given `wandb` (keyword
    arguments of `wandb.init`: project, and optionally entity, group, name, mode, tags), to W&B.
    `config` (a JSON-like nested dict) becomes TensorBoard's hparams and the W&B run's config."""

    def __init__(self, workdir: str, tensorboard: bool = True, config: Optional[Mapping[str, Any]] = None,
                 wandb: Optional[Mapping[str, Any]] = None):
        os.makedirs(workdir, exist_ok=True)
        self.workdir = workdir
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._file = open(self.path, "a")
        self._config = dict(config or {})
        self._use_tensorboard = tensorboard
        self._tensorboard: Dict[str, SummaryWriter] = {}  # by run: "mean", "seed<i>"
        self._wandb_settings = dict(wandb) if wandb else None
        if self._wandb_settings is not None:
            check_wandb_installed()
        self._wandb_run = None
        self._wandb_stages = set()

    def write(self, stage: str, step: int, metrics: Mapping[str, float],
              per_seed: Optional[Mapping[str, Optional[Sequence[float]]]] = None) -> None:
        """One record: `metrics` are scalars; `per_seed` gives each seed's value of a name (a
        None entry is left out)."""
        scalars = record_scalars(metrics, per_seed)
        self._file.write(json.dumps({"stage": stage, "step": int(step), **scalars}) + "\n")
        self._file.flush()
        if self._use_tensorboard:
            for run, run_scalars in tensorboard_runs(metrics, per_seed).items():
                writer = self._tensorboard_writer(run)
                for name, value in run_scalars.items():
                    writer.add_scalar(f"{stage}/{name}", value, int(step))
        if self._wandb_settings is not None:
            self._log_wandb(stage, int(step), scalars)

    def close(self) -> None:
        self._file.close()
        for writer in self._tensorboard.values():
            writer.close()
        if self._wandb_run is not None:
            self._wandb_run.finish()

    def _tensorboard_writer(self, run: str) -> SummaryWriter:
        if run not in self._tensorboard:
            writer = SummaryWriter(os.path.join(self.workdir, "tensorboard", run))
            _, session_start, _ = hparams(flat_hparams(self._config), {})
            writer.file_writer.add_summary(session_start)
            self._tensorboard[run] = writer
        return self._tensorboard[run]

    def _log_wandb(self, stage: str, step: int, scalars: Dict[str, float]) -> None:
        if self._wandb_run is None:
            import wandb  # the optional extra: imported only when a run asks for W&B

            self._wandb_run = wandb.init(**self._wandb_settings, dir=self.workdir, config=self._config,
                                         id=self._wandb_run_id(), resume="allow")
        if stage not in self._wandb_stages:
            self._wandb_run.define_metric(f"{stage}/step")
            self._wandb_run.define_metric(f"{stage}/*", step_metric=f"{stage}/step")
            self._wandb_stages.add(stage)
        self._wandb_run.log({f"{stage}/step": step, **{f"{stage}/{name}": v for name, v in scalars.items()}})

    def _wandb_run_id(self) -> str:
        path = os.path.join(self.workdir, WANDB_RUN_ID_FILE)
        if os.path.exists(path):
            with open(path) as f:
                return f.read().strip()
        run_id = secrets.token_hex(6)  # W&B run ids: lower-case letters and digits
        with atomic_path(path) as temporary, open(temporary, "w") as f:
            f.write(run_id + "\n")
        return run_id


class DiscardedMetrics(MetricsWriter):
    """A MetricsWriter that writes nothing: what the processes besides process 0 of a multi-process
    job write to (`synther_jax.distributed`)."""

    def __init__(self):  # no folder, no files
        pass

    def write(self, stage: str, step: int, metrics: Mapping[str, float],
              per_seed: Optional[Mapping[str, Optional[Sequence[float]]]] = None) -> None:
        del stage, step, metrics, per_seed

    def close(self) -> None:
        pass


def record_scalars(metrics: Mapping[str, float],
                   per_seed: Optional[Mapping[str, Optional[Sequence[float]]]] = None) -> Dict[str, float]:
    """The scalars of one record by name: `metrics` as they are, then `name/seed<i>` per seed."""
    scalars = {name: float(value) for name, value in metrics.items()}
    for name, values in (per_seed or {}).items():
        if values is not None:
            scalars.update({f"{name}/seed{i}": float(v) for i, v in enumerate(values)})
    return scalars


def tensorboard_runs(metrics: Mapping[str, float],
                     per_seed: Optional[Mapping[str, Optional[Sequence[float]]]] = None) -> Dict[str, Dict[str, float]]:
    """The scalars of one record by TensorBoard run: `mean` holds `metrics` and, for a name that
    only `per_seed` gives, the mean over the seeds; `seed<i>` holds seed i's values."""
    runs = {"mean": {name: float(value) for name, value in metrics.items()}}
    for name, values in (per_seed or {}).items():
        if values is None:
            continue
        values = [float(v) for v in values]
        runs["mean"].setdefault(name, statistics.fmean(values))
        for i, value in enumerate(values):
            runs.setdefault(f"seed{i}", {})[name] = value
    return {run: scalars for run, scalars in runs.items() if scalars}


def flat_hparams(config: Mapping[str, Any], prefix: str = "") -> Dict[str, Any]:
    """A nested config as TensorBoard hparams: dotted names (`diffusion.width`), strings, numbers
    and booleans as they are, lists as their JSON text, unset (None) values left out."""
    flat = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flat_hparams(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(value)
        elif value is not None:
            flat[name] = value
    return flat


def read_metrics(path: str, stage: Optional[str] = None) -> List[dict]:
    """The records of a metrics.jsonl file, newest per (stage, step), in step order."""
    records = {}
    with open(path) as f:
        for line in f:
            if line.strip():
                record = json.loads(line)
                records[(record["stage"], record["step"])] = record
    return sorted((r for r in records.values() if stage is None or r["stage"] == stage), key=lambda r: r["step"])
