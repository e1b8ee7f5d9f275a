"""bench.runbook: slices that stop at their time limit, or are killed, are picked up by the next;
and its smoke size runs a real pipeline step across two slices."""
import json
import os
import signal
import subprocess
import sys
import time

from bench.runbook import AGAIN, STATE_FILE, Step, run_slice

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# A resumable stand-in step: one unit of work per 0.2 s, its progress kept in a file; done at `units`.
COUNTER = """
import os, sys, time
path, units = sys.argv[1], int(sys.argv[2])
done = int(open(path).read()) if os.path.exists(path) else 0
while done < units:
    time.sleep(0.2)
    done += 1
    open(path + ".tmp", "w").write(str(done)); os.replace(path + ".tmp", path)
"""


def counter_step(tmp_path, name, units):
    path = tmp_path / f"{name}.count"
    step = Step(name, [sys.executable, "-c", COUNTER, str(path), str(units)], lambda root: {})
    return step, lambda: int(path.read_text()) if path.exists() else 0


def test_a_slice_stopped_at_its_limit_is_resumed_by_the_next(tmp_path):
    quick, quick_count = counter_step(tmp_path, "quick", 2)
    slow, slow_count = counter_step(tmp_path, "slow", 20)  # about 4 s of work, in slices of 2.5 s
    root = str(tmp_path / "root")
    os.makedirs(root)
    statuses = []
    while not statuses or statuses[-1] == AGAIN:
        statuses.append(run_slice([quick, slow], root, slice_seconds=2.5))
        assert len(statuses) < 10
    assert statuses[0] == AGAIN and statuses[-1] == 0 and len(statuses) >= 2
    assert quick_count() == 2 and slow_count() == 20  # each unit of work done once, never restarted from 0
    state = json.loads((tmp_path / "root" / STATE_FILE).read_text())
    assert state["quick"] == {"done": True, "slices": 1, "seconds": state["quick"]["seconds"]}
    assert state["slow"]["done"] and state["slow"]["slices"] == len(statuses)
    assert run_slice([quick, slow], root, slice_seconds=2.5) == 0  # nothing left: returns at once
    assert slow_count() == 20


def test_a_slice_killed_from_outside_is_resumed_and_a_failure_stops(tmp_path):
    slow, slow_count = counter_step(tmp_path, "slow", 10)
    root = str(tmp_path / "root")
    os.makedirs(root)
    script = (f"import sys; sys.path.insert(0, {ROOT!r}); from bench.runbook import Step, run_slice; "
              f"run_slice([Step('slow', {slow.command!r}, None)], {root!r}, 600)")
    killed = subprocess.Popen([sys.executable, "-c", script], cwd=ROOT, start_new_session=True)
    while slow_count() < 3:
        time.sleep(0.1)
    os.killpg(killed.pid, signal.SIGKILL)  # the whole slice, runbook and step, as a time limit would
    killed.wait()
    assert 3 <= slow_count() < 10 and not os.path.exists(os.path.join(root, STATE_FILE))
    assert run_slice([slow], root, slice_seconds=60) == 0 and slow_count() == 10

    failing = Step("failing", [sys.executable, "-c", "raise SystemExit(3)"], lambda root: {})
    after, after_count = counter_step(tmp_path, "after", 1)
    assert run_slice([slow, failing, after], root, slice_seconds=60) == 1 and after_count() == 0
    state = json.loads((tmp_path / "root" / STATE_FILE).read_text())
    assert state["slow"]["done"] and not state["failing"]["done"] and "after" not in state


def test_smoke_runbook_resumes_a_real_pipeline_step_across_slices(tmp_path):
    root, results = tmp_path / "root", tmp_path / "results"
    command = [sys.executable, "-m", "bench.runbook", "--smoke", "--only=offline", f"--root={root}",
               f"--results={results}"]
    first = subprocess.run(command + ["--slice_seconds=12"], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert first.returncode == AGAIN, first.stdout[-2000:] + first.stderr[-2000:]
    second = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    record = json.loads((results / "runbook_cpu_smoke.json").read_text())
    (step,) = record["steps"]
    assert step["name"] == "offline" and step["done"] and step["slices"] == 2
    assert set(step["figures"]["stage_seconds"]) >= {"diffusion", "generate", "agent", "evaluate"}
    assert "| offline | yes | 2 |" in (results / "runbook_cpu_smoke.md").read_text()
    assert "stopped at the end of the slice" in (root / "logs" / "offline.log").read_text()
