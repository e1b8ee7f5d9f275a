"""The paper-scale runbook: every measurement a GPU machine should make, in time-limited slices.

    python -m bench.runbook --root=runs/runbook            # one slice of at most 9 minutes; rerun while it exits 75
    python -m bench.runbook --root=runs/runbook-smoke --smoke   # every step at a CPU-minutes size

The steps, in order, each a command run in a child process (its output under `--root`, its log in
`<root>/logs/<step>.log`):
  diffusion       `bench.diffusion --size=paper`: train steps/s and samples/s of the paper's denoiser;
  agents          `bench.agents`: TD3+BC, IQL and EDAC updates/s with 1, 4 and 16 seeds;
  sampler_steps   `bench.sampler_steps`: fidelity and samples/s at 8-128 sampler steps (50K samples each);
  offline         `launch.offline --config=configs/d4rl.py:walker2d`: the paper-size walker2d pipeline on the
                  bundled data (100K diffusion steps, 5M samples, 4 TD3+BC seeds x 1M updates), seconds per stage;
  online          `launch.online --config=configs/online.py:walker2d-synther` for 10K environment steps with
                  4 seeds: one retrain cycle of every seed's diffusion model (100K steps, 1M samples each).
The maze and pixel pipelines join this list, one `Step` each, once they exist.

Slicing: a slice runs the unfinished steps in order until `--slice_seconds` are spent, then stops
the running step and exits 75 (run again); the next slice starts that step again, and since every
step resumes from its own work directory (checkpoints, finished stages and settings are kept) it
goes on where the last one stopped. A slice killed from outside (e.g. by a time limit) leaves the
same state: only a step's successful end marks it done, in `<root>/runbook_state.json` (the
runbook's children share its process group, so a limit that kills the group stops them too). A step
must be able to make progress in one slice: launch.offline's generation stage (5M samples) is not
resumable inside itself and needs about 6 minutes at 14K samples/s. A step that fails exits 1
and names its log. When every step is done, the exit status is 0.

After every slice, `--results` gets `runbook_<platform>[_smoke].json` (per step: done, slices,
seconds of the slices that ended, headline figures read from the step's own output) and the same
as a Markdown table (`.md`).
"""
import dataclasses
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional

import jax
from absl import app, flags

from bench.common import environment
from synther_jax import atomic

AGAIN = 75  # exit status: the slice ended with steps left; run the same command again
STATE_FILE = "runbook_state.json"

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line; defined only when run as a program, so tests can import the module's functions."""
    flags.DEFINE_string("root", None, "Work directory of the whole runbook; the same one for every slice.")
    flags.DEFINE_float("slice_seconds", 540.0, "Wall seconds this slice may use (9 minutes: under a 10-minute limit).")
    flags.DEFINE_bool("smoke", False, "Every step at a size that runs in CPU-minutes (checks the runbook itself).")
    flags.DEFINE_string("results", "bench/results", "Folder for the summary JSON and Markdown table.")
    flags.DEFINE_list("only", None, "Run only these steps (default: all), e.g. --only=offline,online.")
    flags.mark_flag_as_required("root")


@dataclasses.dataclass(frozen=True)
class Step:
    """One resumable command; `figures(root)` picks its headline figures from what it wrote."""

    name: str
    command: List[str]
    figures: Callable[[str], Dict[str, object]]


def _read(root: str, *parts: str) -> dict:
    return atomic.read_json(os.path.join(root, *parts), {})


def diffusion_figures(root: str) -> dict:
    record = _read(root, "diffusion.json")
    return {k: record.get(k) for k in ("param_count", "train_steps_per_s", "samples_per_s", "train_fraction_of_peak",
                                       "sample_fraction_of_peak")}


def agents_figures(root: str) -> dict:
    record = _read(root, "agents.json")
    return {f"{name} updates/s ({row['num_seeds']} seeds)": row.get("updates_per_s")
            for name, rows in record.get("results", {}).items() for row in rows}


def sampler_steps_figures(root: str) -> dict:
    summary = _read(root, "sampler_steps.json").get("summary", {})
    return {f"{key}: fewest steps matching 128": (part["fewest_matching_steps"], part["speedup_vs_128"])
            for key, part in summary.items()}


def offline_figures(root: str) -> dict:
    results = _read(root, "offline", "results.json")
    score = results.get("final_normalized_score", {})
    return {"stage_seconds": results.get("stage_seconds"), "score_mean": score.get("mean"),
            "score_std": score.get("std")}


def online_figures(root: str) -> dict:
    timings, results = _read(root, "online", "timings.json"), _read(root, "online", "results.json")
    return {"seconds": timings.get("seconds"), "env_steps": timings.get("env_steps"),
            "final_mean_return": results.get("final_mean_return")}


def steps(root: str, smoke: bool) -> List[Step]:
    """The runbook's steps, writing under `root`; `smoke` shrinks each to CPU-minutes."""
    python = [sys.executable, "-m"]
    out = lambda name: f"--out={os.path.join(root, name)}"
    if smoke:
        diffusion = ["--size=small", "--train_steps=5", "--num_samples=64", "--repeats=1"]
        agents = ["--learners=td3_bc", "--seeds=1,4", "--num_steps=5", "--repeats=1", "--dataset_size=10000"]
        sampler = ["--smoke", "--steps=8,128", "--num_samples=400", "--physics_rows=200"]
        offline = ["--config=configs/d4rl.py:walker2d,smoke", "--config.diffusion.num_train_steps=200",
                   "--config.diffusion.steps_per_call=100", "--config.num_samples=2000",
                   "--config.diffusion.sample_chunk_size=1000", "--config.agent_steps=200",
                   "--config.eval_every=100", "--config.eval_episodes=1"]
        online = ["--config=configs/online.py:walker2d-synther,smoke", "--config.num_seeds=2",
                  "--config.total_steps=400", "--config.start_steps=200", "--config.synther.retrain_every=400",
                  "--config.eval_every=400", "--config.eval_episodes=1", "--config.checkpoint_every=200",
                  "--config.synther.diffusion.num_train_steps=200", "--config.synther.diffusion.steps_per_call=100",
                  "--config.agent.utd_ratio=2"]
    else:
        diffusion, agents, sampler = ["--size=paper"], [], []
        offline = ["--config=configs/d4rl.py:walker2d"]
        # One retrain at 10K steps; a checkpoint at 5K so a cut-off retrain restarts there, not at 0.
        online = ["--config=configs/online.py:walker2d-synther", "--config.num_seeds=4",
                  "--config.total_steps=10000", "--config.checkpoint_every=5000"]
    return [
        Step("diffusion", python + ["bench.diffusion", *diffusion, out("diffusion.json")], diffusion_figures),
        Step("agents", python + ["bench.agents", *agents, out("agents.json")], agents_figures),
        Step("sampler_steps", python + ["bench.sampler_steps", *sampler, f"--workdir={os.path.join(root, 'sampler')}",
                                        out("sampler_steps.json")], sampler_steps_figures),
        Step("offline", python + ["launch.offline", *offline, f"--workdir={os.path.join(root, 'offline')}"],
             offline_figures),
        Step("online", python + ["launch.online", *online, f"--workdir={os.path.join(root, 'online')}"],
             online_figures),
    ]


def run_step(step: Step, root: str, seconds: float) -> Optional[int]:
    """Runs `step` for at most `seconds`; its exit status, or None if it was stopped at the limit."""
    os.makedirs(os.path.join(root, "logs"), exist_ok=True)
    with open(os.path.join(root, "logs", f"{step.name}.log"), "a") as log:
        log.write(f"\n=== slice starting at {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(step.command)}\n")
        log.flush()
        process = subprocess.Popen(step.command, stdout=log, stderr=subprocess.STDOUT)
        try:
            return process.wait(timeout=seconds)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            log.write("=== stopped at the end of the slice; the next slice resumes it\n")
            return None


def run_slice(step_list: List[Step], root: str, slice_seconds: float) -> int:
    """One slice: the unfinished steps in order until the time is spent. 0 when all are done,
    `AGAIN` when steps are left, 1 when a step failed."""
    deadline = time.monotonic() + slice_seconds
    path = os.path.join(root, STATE_FILE)
    state = atomic.read_json(path, {})
    for step in step_list:
        record = state.setdefault(step.name, {"done": False, "slices": 0, "seconds": 0.0})
        if record["done"]:
            continue
        left = deadline - time.monotonic()
        if left <= 1.0:
            return AGAIN
        print(f"[runbook] {step.name}: slice {record['slices'] + 1}, up to {left:.0f} s", flush=True)
        start = time.monotonic()
        status = run_step(step, root, left)
        record["slices"] += 1
        record["seconds"] += time.monotonic() - start
        record["done"] = status == 0
        atomic.write_json(path, state)
        if status is None:
            return AGAIN
        if status != 0:
            print(f"[runbook] {step.name} failed (exit {status}); see {os.path.join(root, 'logs', step.name + '.log')}",
                  flush=True)
            return 1
    return 0


def summary(step_list: List[Step], root: str) -> dict:
    state = atomic.read_json(os.path.join(root, STATE_FILE), {})
    return {**environment(), "steps": [
        {"name": step.name, "command": " ".join(step.command[1:]), **state.get(step.name, {"done": False}),
         "figures": step.figures(root)} for step in step_list]}


def markdown(record: dict) -> str:
    lines = [f"Runbook on {record['device']} ({record['date']}).", "",
             "| step | done | slices | seconds | figures |", "|---|---|---|---|---|"]
    for step in record["steps"]:
        figures = "; ".join(f"{k}: {_short(v)}" for k, v in step["figures"].items() if v is not None)
        lines.append(f"| {step['name']} | {'yes' if step['done'] else 'no'} | {step.get('slices', 0)} | "
                     f"{step.get('seconds', 0.0):.0f} | {figures} |")
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
    root = os.path.abspath(FLAGS.root)
    os.makedirs(root, exist_ok=True)
    step_list = steps(root, FLAGS.smoke)
    if FLAGS.only:
        unknown = set(FLAGS.only) - {step.name for step in step_list}
        if unknown:
            raise ValueError(f"Unknown steps {sorted(unknown)} in --only; the steps are "
                             f"{[step.name for step in step_list]}.")
        step_list = [step for step in step_list if step.name in FLAGS.only]
    status = run_slice(step_list, root, FLAGS.slice_seconds)
    record = summary(step_list, root)
    name = f"runbook_{jax.devices()[0].platform}{'_smoke' if FLAGS.smoke else ''}"
    os.makedirs(FLAGS.results, exist_ok=True)
    atomic.write_json(os.path.join(FLAGS.results, f"{name}.json"), record)
    with atomic.atomic_path(os.path.join(FLAGS.results, f"{name}.md")) as temporary, open(temporary, "w") as f:
        f.write(markdown(record))
    print(f"[runbook] {'all steps done' if status == 0 else 'run again to go on' if status == AGAIN else 'failed'}; "
          f"summary in {os.path.join(FLAGS.results, name)}.json and .md", flush=True)
    sys.exit(status)


if __name__ == "__main__":
    define_flags()
    app.run(main)
