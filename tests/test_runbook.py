"""accelerator.runbook: within its budget it runs what fits, stops what overruns, skips what lacks its
packages and reports every step; its smoke command ends in time; its online step really retrains."""
import json
import os
import subprocess
import sys
import time

import pytest

from accelerator import steps as runbook_steps
from accelerator.runbook import MARGIN_S, Step, run, steps

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def stand_in(name, seconds, estimate, needs=(), status=0):
    """A step that sleeps `seconds`, writes its record and exits with `status`."""
    code = (f"import json, os, sys, time; print('working on {name}', flush=True); time.sleep({seconds}); "
            f"json.dump({{'value': {seconds}}}, open(os.path.join(sys.argv[1], '{name}.json'), 'w')); "
            f"sys.exit({status})")
    return Step(name, f"stand-in {name}", tuple(needs), lambda work: [sys.executable, "-c", code, work],
                lambda figures: estimate, lambda record, figures: {"value": record["value"],
                                                                  "earlier": sorted(figures)})


def test_the_budget_is_kept_and_every_step_is_reported(tmp_path):
    step_list = [stand_in("quick", 0.1, 1), stand_in("too_big", 0.1, 1_000), stand_in("missing", 0.1, 1, ["no_such_pkg"]),
                 stand_in("failing", 0.1, 1, status=3), stand_in("overrun", 60, 1), stand_in("after", 0.1, 1)]
    budget = MARGIN_S + 4.0
    start = time.monotonic()
    record = run(step_list, str(tmp_path), budget, smoke=True)
    assert time.monotonic() - start < budget + 1.0  # the overrunning step was stopped, the report written in time
    status = {step["name"]: step["status"] for step in record["steps"]}
    assert status == {"quick": "done", "too_big": "not reached", "missing": "skipped", "failing": "failed (exit 3)",
                      "overrun": "stopped at the budget", "after": "not reached"}
    steps = {step["name"]: step for step in record["steps"]}
    assert steps["quick"]["figures"] == {"value": 0.1, "earlier": ["quick"]}
    assert steps["too_big"]["reason"].startswith("estimated 1000 s")
    assert steps["missing"]["reason"] == "not installed: no_such_pkg"
    assert steps["failing"]["log_tail"] == ["working on failing"]
    assert steps["overrun"]["log_tail"] == ["working on overrun"]
    assert record["not_run"] == ["too_big", "missing", "failing", "overrun", "after"]
    assert json.loads((tmp_path / "runbook.json").read_text()) == record
    table = (tmp_path / "runbook.md").read_text()
    assert "| quick | done |" in table and "| after | not reached: estimated 1 s, 0 s left |" in table


@pytest.mark.slow
def test_the_smoke_runbook_ends_within_its_budget(tmp_path):
    budget = 40
    start = time.monotonic()
    finished = subprocess.run([sys.executable, "-m", "accelerator.runbook", "--smoke", f"--budget_s={budget}",
                               f"--results={tmp_path}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stdout[-2000:] + finished.stderr[-2000:]
    assert time.monotonic() - start < budget + 20  # process start and the last report
    record = json.loads((tmp_path / "runbook.json").read_text())
    status = {step["name"]: step["status"] for step in record["steps"]}
    assert status["device"] == "done" and record["device"] == "cpu:cpu" and "jax" in record["versions"]
    assert "pending" not in status.values() and record["not_run"]  # 40 s cannot hold every step on a CPU
    assert set(record["not_run"]) == {name for name, s in status.items() if s != "done"}
    assert "| device | done |" in (tmp_path / "runbook.md").read_text()


def test_the_online_step_really_retrains():
    record = runbook_steps.online_retrain(smoke=True)
    assert record["retrains"] == 1 and record["env_steps"] == record["retrain_every"] + 1
    stages = record["stage_seconds"]
    assert stages["synthesis/diffusion_training"] > 0 and stages["synthesis/generation"] > 0
    assert record["last_chunk_loss"] < record["first_chunk_loss"]  # the denoiser's weights were trained


def test_the_original_step_runs_the_checkout_whose_synther_package_is_importable(tmp_path, monkeypatch):
    (tmp_path / "synther" / "diffusion").mkdir(parents=True)  # a checkout's layout: `synther` has no __init__
    monkeypatch.syspath_prepend(str(tmp_path))
    step = next(step for step in steps(smoke=True) if step.name == "original")
    assert "synther" in step.needs and "torch" in step.needs
    command = step.command(str(tmp_path / "work"))
    assert command[2] == "bench.original" and f"--original={tmp_path}" in command
