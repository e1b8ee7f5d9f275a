"""The runbook for one accelerator booking: every measurement, most important first, within a budget.

    python -m accelerator.runbook --budget_s=540 --results=OUT                  # on the accelerator
    python -m accelerator.runbook --smoke --budget_s=60 --results=OUT           # every step at CPU-seconds sizes
    python -m accelerator.runbook --budget_s=540 --results=OUT --only=offline   # a later command of the same booking

Steps, in priority order (`STEPS`), each a child process started from scratch (nothing survives
between bookings, so nothing resumes):
  device           device, versions, the measured matmul peak at default, float32, TF32 and bfloat16 precision;
  denoiser         `bench.diffusion --size=paper`: the paper denoiser's train steps/s and samples/s, and
                   their fraction of each measured peak;
  learners         `bench.agents --seeds=1,4,16,64`: TD3+BC, IQL and EDAC updates/s;
  online_updates   SAC's UTD-20 update rate (environment steps of learning per second) at 1 and 4 seeds;
  original         `bench.original`: the original SynthER PyTorch code's training step and sampler beside
                   ours (where its checkout, REDQ's and its packages are importable: PYTHONPATH);
  precision        `bench.precision`: a paper-width denoiser (10K steps) per matmul precision, its
                   fidelity against two float32 seeds and its train steps/s and samples/s;
  diffusion_train, samples, td3_bc   the paper's sizes end to end: 100K diffusion steps, 5M samples,
                   1M TD3+BC updates x 4 seeds;
  offline          the whole paper-size walker2d offline pipeline (`launch.offline`), evaluating every 250K updates;
  online_retrain   the online loop up to one step past its first retrain (4 seeds' diffusion models
                   retrained, 1M samples each), timed per stage.

Before a step starts, its cost is estimated (from the figures of the steps before it where it
depends on them, e.g. 100K / the measured train steps/s); a step that cannot fit in what is left of
`--budget_s` is not started and is listed as not reached, and later, cheaper steps still run. A
step whose estimate was too low is stopped at the budget. A step whose packages are missing (a
site install without Gymnasium or distrax, say) is skipped with the reason. After every step,
`<results>/runbook.json` and `runbook.md` are rewritten (device, versions, each step's status,
seconds and headline figures, the steps not reached, the tail of a failed step's log): a few KB,
small enough to come back from a machine whose outputs are capped. Children's logs and outputs stay
in `<results>/work/`. Exit status 0 unless a step failed (a step not reached is not a failure).
"""
import dataclasses
import datetime
import importlib.util
import os
import platform
import signal
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from absl import app, flags

from launch import boundary
from launch.cli import INPUT_ERRORS
from pipelines.workdir import command_line
from synther_jax import atomic

MARGIN_S = 3.0  # kept free at the end of the budget for writing the report
LOG_TAIL_LINES = 15

FLAGS = flags.FLAGS


@dataclasses.dataclass(frozen=True)
class Step:
    """One measurement: `command(work)` runs it, writing its record to `<work>/<name>.json`;
    `estimate(figures)` is its cost in seconds given the earlier steps' records (by step name);
    `headline(record, figures)` picks the figures the report shows."""

    name: str
    what: str
    needs: Tuple[str, ...]
    command: Callable[[str], List[str]]
    estimate: Callable[[Dict[str, dict]], float]
    headline: Callable[[dict, Dict[str, dict]], dict]


def _rate(figures: Dict[str, dict], step: str, key: str) -> Optional[float]:
    return figures.get(step, {}).get(key)


def _learner_rate(figures: Dict[str, dict], learner: str, num_seeds: int) -> Optional[float]:
    rows = figures.get("learners", {}).get("results", {}).get(learner, [])
    return next((row["updates_per_s"] for row in rows if row["num_seeds"] == num_seeds), None)


def _online_rate(figures: Dict[str, dict], num_seeds: int) -> Optional[float]:
    rows = figures.get("online_updates", {}).get("results", [])
    return next((row["env_steps_per_s"] for row in rows if row["num_seeds"] == num_seeds), None)


def _cost(work: float, rate: Optional[float], overhead: float) -> float:
    """`work` units at `rate` per second plus `overhead` (start, compilation); unknown rate: infinite."""
    return overhead + work / rate if rate else float("inf")


def _pick(record: dict, *keys: str) -> dict:
    return {key: record[key] for key in keys if key in record}


def _denoiser_headline(record: dict, figures: Dict[str, dict]) -> dict:
    """bench.diffusion's figures, with the model FLOP/s as a fraction of every peak the device step measured."""
    shown = _pick(record, "param_count", "train_steps_per_s", "samples_per_s", "train_fraction_of_peak",
                  "sample_fraction_of_peak")
    for precision, peak in figures.get("device", {}).get("matmul_peak_flops_per_s", {}).items():
        for part in ("train", "sample"):
            if f"{part}_flops_per_s" in record:
                shown[f"{part} fraction of {precision} peak"] = record[f"{part}_flops_per_s"] / peak
    return shown


def _learners_headline(record: dict, figures: Dict[str, dict]) -> dict:
    return {f"{name} updates/s ({row['num_seeds']} seeds)": row["updates_per_s"]
            for name, rows in record.get("results", {}).items() for row in rows}


def _online_updates_headline(record: dict, figures: Dict[str, dict]) -> dict:
    return {f"UTD-20 environment steps/s ({row['num_seeds']} seeds)": row["env_steps_per_s"]
            for row in record.get("results", [])}


def _offline_headline(record: dict, figures: Dict[str, dict]) -> dict:
    score = record.get("final_normalized_score") or {}
    return {"stage_seconds": record.get("stage_seconds"), "score_mean": score.get("mean"),
            "score_std": score.get("std")}


def _online_retrain_headline(record: dict, figures: Dict[str, dict]) -> dict:
    stages = record.get("stage_seconds", {})
    return {**_pick(record, "num_seeds", "env_steps", "retrains", "seconds", "first_chunk_loss", "last_chunk_loss"),
            **{f"{k} seconds": stages[k] for k in ("agent_updates", "env_stepping", "synthesis/diffusion_training",
                                                  "synthesis/generation") if k in stages}}


def original_checkout() -> str:
    """The folder of the original SynthER checkout whose `synther` package is importable."""
    return os.path.dirname(list(importlib.util.find_spec("synther").submodule_search_locations)[0])


def _original_headline(record: dict, figures: Dict[str, dict]) -> dict:
    shown = {f"{name} {key}": record["figures"][name][key] for name in ("original", "synther_jax")
             for key in ("train_steps_per_s", "samples_per_s")}
    return {**shown, **{f"ours / original {key}": value for key, value in record["ratios"].items()}}


def _precision_headline(record: dict, figures: Dict[str, dict]) -> dict:
    shown = {f"{run['name']} {key}": run[key] for run in record["runs"]
             for key in ("marginal_score", "train_steps_per_s", "samples_per_s")}
    verdicts = {f"{precision} matches float32": row["matches_float32"]
                for precision, row in record["summary"]["precisions"].items()}
    return {**shown, **verdicts}


def steps(smoke: bool) -> List[Step]:
    """The steps in priority order; `smoke` shrinks every one to CPU-seconds (estimates for a CPU)."""
    python = [sys.executable, "-m"]
    size = ["--smoke"] if smoke else []
    own = lambda name: (lambda work: python + ["accelerator.steps", f"--step={name}", *size,
                                                f"--out={os.path.join(work, name + '.json')}"])
    if smoke:
        denoiser = ["--size=small", "--train_steps=5", "--num_samples=64", "--repeats=1"]
        original = ["--train_steps=1", "--num_samples=8", "--repeats=1"]  # the paper size even here
        precision = ["--smoke"]
        learners = ["--learners=td3_bc", "--seeds=1,4", "--num_steps=5", "--repeats=1", "--dataset_size=10000"]
        offline = ["--config=configs/d4rl.py:walker2d,smoke", "--config.diffusion.num_train_steps=200",
                   "--config.diffusion.steps_per_call=100", "--config.num_samples=2000",
                   "--config.diffusion.sample_chunk_size=1000", "--config.agent_steps=200",
                   "--config.eval_every=200", "--config.eval_episodes=1"]
        fixed = {"device": 15, "denoiser": 30, "learners": 45, "online_updates": 60, "original": 120, "precision": 90,
                 "diffusion_train": 25, "samples": 20, "td3_bc": 45, "offline": 150, "online_retrain": 120}
        estimates = {name: (lambda figures, s=seconds: s) for name, seconds in fixed.items()}
    else:
        denoiser, learners = ["--size=paper"], ["--seeds=1,4,16,64"]
        original = ["--train_steps=100", "--num_samples=10000", "--repeats=3"]
        precision = ["--denoiser=1024x6:10000", "--num_samples=20000", "--physics_rows=2000"]
        offline = ["--config=configs/d4rl.py:walker2d", "--config.eval_every=250000"]
        train = lambda f: _cost(100_000, _rate(f, "denoiser", "train_steps_per_s"), 60)
        sample = lambda f: _cost(5_000_000, _rate(f, "denoiser", "samples_per_s"), 60)
        agent = lambda f: _cost(1_000_000, _learner_rate(f, "td3_bc", 4), 60)
        # Online: 10K environment steps (5K of them learning at UTD 20), then 4 models trained together for
        # 100K steps at batch 256 each (about the work of the measured batch of 1024) and 1M samples each.
        online = lambda f: (_cost(5_000, _online_rate(f, 4), 120) + _cost(100_000, _rate(f, "denoiser",
                            "train_steps_per_s"), 0) + _cost(4_000_000, _rate(f, "denoiser", "samples_per_s"), 0))
        estimates = {"device": lambda f: 40, "denoiser": lambda f: 60, "learners": lambda f: 200,
                     "online_updates": lambda f: 60, "original": lambda f: 120, "precision": lambda f: 240,
                     "diffusion_train": train,
                     "samples": sample, "td3_bc": agent,
                     "offline": lambda f: train(f) + sample(f) + agent(f) + 180, "online_retrain": online}
    out = lambda name: (lambda work: f"--out={os.path.join(work, name + '.json')}")
    env = ("gymnasium", "mujoco", "ml_collections", "distrax")
    table = [
        ("device", "device, versions, matmul peak per precision", (), own("device"),
         lambda r, f: _pick(r, "devices", "matmul_peak_flops_per_s", "unsupported_precisions", "memory_stats")),
        ("denoiser", "paper denoiser: train steps/s, samples/s, fraction of peak", (),
         lambda work: python + ["bench.diffusion", *denoiser, out("denoiser")(work)], _denoiser_headline),
        ("learners", "TD3+BC, IQL, EDAC updates/s at 1, 4, 16, 64 seeds", ("distrax",),
         lambda work: python + ["bench.agents", *learners, out("learners")(work)], _learners_headline),
        ("online_updates", "SAC UTD-20 update rate at 1 and 4 seeds", ("distrax",), own("online_updates"),
         _online_updates_headline),
        ("original", "the original PyTorch code beside ours: train steps/s, samples/s",
         ("torch", "einops", "gin", "accelerate", "ema_pytorch", "torchdiffeq", "wandb", "gym", "redq", "synther"),
         lambda work: python + ["bench.original", f"--original={original_checkout()}", *original,
                                out("original")(work)], _original_headline),
        ("precision", "fidelity and speed per matmul precision", (*env, "scipy", "matplotlib"),
         lambda work: python + ["bench.precision", *precision, f"--workdir={os.path.join(work, 'precision')}",
                                out("precision")(work)], _precision_headline),
        ("diffusion_train", "100K diffusion steps, paper denoiser, bundled walker2d", (), own("diffusion_train"),
         lambda r, f: _pick(r, "seconds", "train_steps_per_s", "first_chunk_loss", "last_chunk_loss")),
        ("samples", "5M samples, paper denoiser", (), own("samples"),
         lambda r, f: _pick(r, "seconds", "samples_per_s")),
        ("td3_bc", "1M TD3+BC updates x 4 seeds", ("distrax",), own("td3_bc"),
         lambda r, f: _pick(r, "seconds", "updates_per_s")),
        ("offline", "the paper-size walker2d offline pipeline", (*env, "scipy", "matplotlib"),
         lambda work: python + ["launch.offline", *offline, f"--workdir={os.path.join(work, 'offline')}"],
         _offline_headline),
        ("online_retrain", "online walker2d SynthER, 4 seeds, one retrain cycle", env, own("online_retrain"),
         _online_retrain_headline),
    ]
    return [Step(name, what, needs, command, estimates[name], headline)
            for name, what, needs, command, headline in table]


def step_record(step: Step, work: str) -> dict:
    """What the step wrote: its own JSON (the offline pipeline's results.json)."""
    path = os.path.join(work, "offline", "results.json") if step.name == "offline" else os.path.join(
        work, f"{step.name}.json")
    return atomic.read_json(path, {})


def missing_packages(step: Step) -> List[str]:
    return [module for module in step.needs if importlib.util.find_spec(module) is None]


def run_child(command: Sequence[str], log_path: str, seconds: float) -> Optional[int]:
    """Runs `command` for at most `seconds` in its own process group; its exit status, or None if
    it was stopped at the limit (the whole group: a child's own children go too)."""
    with open(log_path, "w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        try:
            return process.wait(timeout=max(seconds, 0.0))
        except subprocess.TimeoutExpired:
            for sig, grace in ((signal.SIGTERM, 5.0), (signal.SIGKILL, None)):
                try:
                    os.killpg(process.pid, sig)
                except ProcessLookupError:
                    break
                try:
                    process.wait(timeout=grace)
                    break
                except subprocess.TimeoutExpired:
                    continue
            process.wait()
            return None


def log_tail(path: str) -> List[str]:
    """The last lines of a log, progress-bar redraws split off, each cut to 300 characters."""
    try:
        with open(path, errors="replace") as file:
            text = file.read()[-20_000:]
    except OSError:
        return []
    lines = [line.strip() for line in text.replace("\r", "\n").splitlines() if line.strip()]
    return [line[:300] for line in lines[-LOG_TAIL_LINES:]]


def run(step_list: Sequence[Step], results: str, budget_s: float, smoke: bool,
        clock: Callable[[], float] = time.monotonic) -> dict:
    """Runs the steps within `budget_s` seconds from now, rewriting the report after each; the record."""
    start = clock()
    deadline = start + budget_s - MARGIN_S
    work = os.path.join(results, "work")
    os.makedirs(os.path.join(work, "logs"), exist_ok=True)
    record = {"budget_s": budget_s, "smoke": smoke, "command": command_line(),
              "started": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "host": {"python": platform.python_version(), "cpu_count": os.cpu_count()},
              "steps": [{"name": step.name, "what": step.what, "status": "pending"} for step in step_list]}
    figures: Dict[str, dict] = {}
    write_report(results, record, clock() - start)
    for step, entry in zip(step_list, record["steps"]):
        left = deadline - clock()
        missing = missing_packages(step)
        estimate = step.estimate(figures)
        entry["estimate_s"] = estimate if estimate != float("inf") else None
        if missing:
            entry.update(status="skipped", reason=f"not installed: {', '.join(missing)}")
        elif estimate > left:
            entry.update(status="not reached", reason=(
                f"estimated {estimate:.0f} s, {max(left, 0):.0f} s left" if estimate != float("inf") else
                "its cost depends on figures of an earlier step that did not run"))
        else:
            print(f"[runbook] {step.name}: {step.what} (estimated {estimate:.0f} s, {left:.0f} s left)", flush=True)
            log_path = os.path.join(work, "logs", f"{step.name}.log")
            began = clock()
            status = run_child(step.command(work), log_path, left)
            entry["seconds"] = clock() - began
            figures[step.name] = step_record(step, work)
            if status == 0:
                entry.update(status="done", figures=step.headline(figures[step.name], figures))
            else:
                entry.update(status="stopped at the budget" if status is None else f"failed (exit {status})",
                             log_tail=log_tail(log_path))
        if entry["status"] != "done":
            print(f"[runbook] {step.name}: {entry['status']}{': ' + entry['reason'] if 'reason' in entry else ''}",
                  flush=True)
        if step.name == "device" and figures.get("device"):
            device = figures["device"]
            record.update(device=device.get("device"), device_count=device.get("device_count"),
                          versions=device.get("packages"))
        write_report(results, record, clock() - start)
    return record


def write_report(results: str, record: dict, elapsed_s: float) -> None:
    record["elapsed_s"] = elapsed_s
    record["not_run"] = [s["name"] for s in record["steps"] if s["status"] not in ("done", "pending")]
    atomic.write_json(os.path.join(results, "runbook.json"), record)
    with atomic.atomic_path(os.path.join(results, "runbook.md")) as temporary, open(temporary, "w") as file:
        file.write(markdown(record))


def markdown(record: dict) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in (record.get("versions") or {}).items())
    lines = [f"# Runbook on {record.get('device', 'an unknown device')} ({record['started']})", "",
             f"Budget {record['budget_s']:.0f} s{', smoke sizes' if record['smoke'] else ''}; "
             f"{record['elapsed_s']:.0f} s used. Versions: {versions or 'unknown'}.", "",
             "| step | status | seconds (estimated) | figures |", "|---|---|---|---|"]
    for step in record["steps"]:
        estimate = step.get("estimate_s")
        seconds = (f"{step['seconds']:.0f}" if "seconds" in step else "-") + (
            f" ({estimate:.0f})" if estimate is not None else "")
        figures = "; ".join(f"{k}: {_short(v)}" for k, v in step.get("figures", {}).items() if v is not None)
        status = step["status"] + (f": {step['reason']}" if "reason" in step else "")
        lines.append(f"| {step['name']} | {status} | {seconds} | {figures} |")
    for step in record["steps"]:
        if step.get("log_tail"):
            lines += ["", f"Last lines of {step['name']}'s log:", "", "```", *step["log_tail"], "```"]
    return "\n".join(lines) + "\n"


def _short(value) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_short(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    return str(value)


def main(argv):
    del argv
    step_list = steps(FLAGS.smoke)
    if FLAGS.only:
        names = [step.name for step in step_list]
        unknown = set(FLAGS.only) - set(names)
        if unknown:
            raise app.UsageError(f"Unknown steps {sorted(unknown)} in --only; the steps are {names}.")
        # The device step always runs first: every other figure is read against it.
        step_list = [step for step in step_list if step.name in FLAGS.only or step.name == "device"]
    if FLAGS.budget_s <= MARGIN_S:
        raise app.UsageError(f"--budget_s must exceed {MARGIN_S:.0f} s, got {FLAGS.budget_s}.")
    results = os.path.abspath(FLAGS.results)
    record = run(step_list, results, FLAGS.budget_s, FLAGS.smoke)
    done = [s["name"] for s in record["steps"] if s["status"] == "done"]
    print(f"[runbook] done: {', '.join(done) or 'none'}; not run: {', '.join(record['not_run']) or 'none'}; "
          f"report in {os.path.join(results, 'runbook.md')} and .json", flush=True)
    sys.exit(1 if any(s["status"].startswith("failed") for s in record["steps"]) else 0)


if __name__ == "__main__":
    flags.DEFINE_float("budget_s", None, "Wall seconds the whole runbook may use; it stops cleanly before.")
    flags.DEFINE_string("results", None, "Folder for runbook.json, runbook.md and the steps' work.")
    flags.DEFINE_bool("smoke", False, "Every step at a size that runs in CPU-seconds (checks the runbook itself).")
    flags.DEFINE_list("only", None, "Run only these steps (and the device step), e.g. --only=offline,online_retrain.")
    flags.mark_flags_as_required(["budget_s", "results"])
    boundary.run(main, INPUT_ERRORS, resumes=False)
