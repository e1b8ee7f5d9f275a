"""What every run does with its work directory: check it, claim it (one run per folder, one config
per folder), time its stages, record the command that made it, and open its metrics writer.

ml_collections and the metrics writer (TensorBoard) are imported where they are used, so a
benchmark that needs only `check_workdir` starts without them."""
from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Dict, Iterator, Optional

from configs.checks import ConfigError
from synther_jax import distributed
from synther_jax.atomic import read_json, write_json
from synther_jax.errors import WorkdirError
from synther_jax.termination import recorded_terminals

if TYPE_CHECKING:
    import ml_collections

    from synther_jax.metrics import MetricsWriter

# Config sections that say where a run is reported, not what it computes: a rerun may change them.
TRACKING_SECTIONS = ("wandb",)
# Fields added to the configs since 0.1.0 (offline at the top, online in `synther`), each with the
# test of a value that leaves a run as it was before the field existed.
_DISTILLATION_OFF = lambda section: isinstance(section, dict) and section.get("num_steps") == 0
ADDED_FIELDS = {"clip_actions": lambda value: value is False, "distill": _DISTILLATION_OFF,
                "synther.distill": _DISTILLATION_OFF}


class WorkdirBusyError(WorkdirError):
    """Another live process is running in the work directory."""


def check_workdir(workdir: str, flag: str = "--workdir") -> None:
    """Fails with WorkdirError, before anything is written, if `workdir` (given as `flag`) cannot
    become an output folder: an empty name, a file, a path under a file, or a folder this user may
    not write."""
    if not workdir:
        raise WorkdirError(f"{flag} is empty; name the folder for the outputs, e.g. {flag}=runs/NAME.")
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise WorkdirError(f"{flag}={workdir} is a file, not a folder; give a folder (it is created if missing).")
    existing = path
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise WorkdirError(f"{flag}={workdir} lies under {existing}, which is a file; give a path under a folder.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise WorkdirError(f"{flag}={workdir}: you may not write in {existing}; choose a folder you may write to.")


@contextmanager
def claim_workdir(workdir: str, config: ml_collections.ConfigDict) -> Iterator[None]:
    """Owns `workdir` for the block: creates it, locks it, and records the config in `config.json`.

    One run per folder: the lock is an exclusive `flock` on `workdir/.lock`, held while the block
    runs. A second run on a live folder raises WorkdirBusyError at once, naming the process in
    the lock file. The kernel drops the lock when its process dies, however it dies, so the folder
    of a killed run is free again and a rerun takes it over and resumes.

    A rerun resumes, which is only meaningful with the same config: a folder holding another
    config's run is refused rather than silently mixed (the tracking sections aside, so a rerun
    may start or stop logging to W&B).

    In a multi-process job every process must pass the same folder and config; process 0 claims
    the folder for the job, and its refusal is raised on every process (`synther_jax.distributed`).
    """
    check_workdir(workdir)
    current = json.loads(config.to_json_best_effort())
    distributed.check_same_everywhere(json.dumps([workdir, current], sort_keys=True), "config or --workdir")
    with ExitStack() as claimed:
        def claim():  # the lock stays held until the block ends
            claimed.enter_context(_locked(workdir))
            _record_config(workdir, config, current)

        distributed.run_on_main(claim, (WorkdirBusyError, ConfigError))
        yield


@contextmanager
def _locked(workdir: str) -> Iterator[None]:
    """Holds the exclusive lock on `workdir/.lock` (WorkdirBusyError if another process holds it)."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, ".lock"), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise WorkdirBusyError(f"{workdir} is in use by another run ({lock.read().strip() or 'unknown process'}); "
                                   "wait for it to finish or stop it, or use another --workdir.") from None
        lock.truncate(0)
        lock.write(f"pid {os.getpid()} on {socket.gethostname()}, started {time.strftime('%Y-%m-%d %H:%M:%S')}: "
                   f"{' '.join(sys.argv)}\n")
        lock.flush()
        yield


def _record_config(workdir: str, config: ml_collections.ConfigDict, current: dict) -> None:
    """Writes `workdir/config.json`, or raises ConfigError if it records another config."""
    path = os.path.join(workdir, "config.json")
    recorded = read_json(path, None)
    if recorded is None:
        write_json(path, current)
    elif _computed(recorded) != _computed(current):
        raise ConfigError(f"{workdir} holds a run made with another config ({config_differences(recorded, current)}; "
                          f"see {path}); use a new --workdir, or delete the folder to start over.")


def renamed_fields(config: dict) -> dict:
    """A recorded config as the current code names its fields: `modelled_terminals` (true or false)
    became `terminals` ("modelled" or "none"), at the top (offline) or in `synther` (online)."""
    def renamed(section: dict) -> dict:
        if "modelled_terminals" not in section:
            return section
        kept = {key: value for key, value in section.items() if key != "modelled_terminals"}
        return {**kept, "terminals": recorded_terminals(section)}

    config = renamed(config)
    if isinstance(config.get("synther"), dict):
        config = {**config, "synther": renamed(config["synther"])}
    return config


def _computed(config: dict) -> dict:
    """The fields that decide what a run computes: tracking aside, and a field added since at a
    value that changes nothing counts as absent, so that folders made before it was added still resume."""
    def unchanged(path: str, value) -> bool:
        return path in ADDED_FIELDS and ADDED_FIELDS[path](value)

    computed = {}
    for key, value in renamed_fields(config).items():
        if key in TRACKING_SECTIONS or unchanged(key, value):
            continue
        if isinstance(value, dict):
            value = {field: inner for field, inner in value.items() if not unchanged(f"{key}.{field}", inner)}
        computed[key] = value
    return computed


def config_differences(recorded: dict, current: dict, limit: int = 3) -> str:
    """The fields where two configs differ, as `--config` paths with both values (at most `limit`):
    a field the recorded one lacks was added to the code since that run started."""
    def flat(tree: dict, prefix: str = "") -> dict:
        items = {}
        for key, value in tree.items():
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[prefix + key] = value
        return items

    old, new = flat(_computed(recorded)), flat(_computed(current))
    missing = object()
    changed = [key for key in sorted(old.keys() | new.keys()) if old.get(key, missing) != new.get(key, missing)]
    shown = [f"{key}: {old[key]!r} then, {new[key]!r} now" if key in old and key in new else
             f"{key}: not in that run's config" if key in new else f"{key}: no longer a field"
             for key in changed[:limit]]
    more = f" and {len(changed) - limit} more" if len(changed) > limit else ""
    return "; ".join(shown) + more


def command_line() -> str:
    """The command that started this process, as a shell takes it (`python -m launch.offline ...`
    for a module run): what a results file records so that it can be made again."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    program = ["python", "-m", spec.name] if spec is not None and spec.name else ["python", sys.argv[0]]
    return shlex.join(program + sys.argv[1:])


def metrics_writer(config: ml_collections.ConfigDict, workdir: str) -> MetricsWriter:
    """The run's metrics writer: metrics.jsonl and TensorBoard with the config as hparams, and W&B
    where `--config.wandb.project` is set; on a multi-process job's other processes, one that
    writes nothing."""
    from synther_jax.metrics import DiscardedMetrics, MetricsWriter

    if not distributed.is_main():
        return DiscardedMetrics()
    wandb = config.wandb
    settings = None if wandb.project is None else {k: v for k, v in wandb.to_dict().items() if v is not None}
    return MetricsWriter(workdir, config=json.loads(config.to_json_best_effort()), wandb=settings)


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
            self.add(stage, time.perf_counter() - start)

    def add(self, stage: str, seconds: float) -> None:
        """Adds `seconds` to the stage's sum (and saves the sums when the timer has a path)."""
        self.seconds[stage] = self.seconds.get(stage, 0.0) + seconds
        if self.path:
            write_json(self.path, self.seconds)
