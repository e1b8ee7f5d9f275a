"""experiments.sampler_steps: its smoke size end to end (with resume), and the rule that says which step
counts match the paper's 128 within the noise of its sampler seeds."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.sampler_steps import FIGURES, summarise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(steps, seed, value, samples_per_s):
    return {"steps": steps, "churn": True, "sampler_seed": seed, "samples_per_s": samples_per_s,
            **{figure: value for figure in FIGURES}}


def test_a_step_count_matches_128_only_within_the_seed_spread():
    # 128 steps: seeds at 1.00 and 1.10, so the noise is 0.10 around the mean 1.05.
    records = [_record(128, 0, 1.00, 10.0), _record(128, 1, 1.10, 10.0),
               _record(32, 0, 1.10, 40.0), _record(32, 1, 1.14, 40.0),  # mean 1.12: 0.07 off, inside
               _record(16, 0, 1.20, 80.0), _record(16, 1, 1.24, 80.0)]  # mean 1.22: 0.17 off, outside
    for record in records:
        record["churn"] = False
    churn_off = summarise(records, [16, 32, 128])["no_churn"]
    by_steps = {row["steps"]: row for row in churn_off["settings"]}
    assert not by_steps[16]["matches_128"] and by_steps[32]["matches_128"] and by_steps[128]["matches_128"]
    assert churn_off["fewest_matching_steps"] == 32 and churn_off["speedup_vs_128"] == 4.0
    np.testing.assert_allclose(by_steps[16]["off_by_noise"]["marginal_score"], 1.7)


@pytest.mark.slow
def test_smoke_run_writes_per_step_figures_and_resumes(tmp_path):
    out, workdir = tmp_path / "steps.json", tmp_path / "work"
    command = [sys.executable, "-m", "experiments.sampler_steps", "--smoke", "--steps=8,128", "--num_samples=400",
               "--physics_rows=200", f"--workdir={workdir}", f"--out={out}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert len(record["settings"]) == 2 * 2 * 2  # steps x churn x sampler seeds
    for setting in record["settings"]:
        assert all(np.isfinite(setting[figure]) for figure in FIGURES), setting
        assert 0.0 < setting["marginal_score"] <= 1.0 and setting["samples_per_s"] > 0
    for key in ("churn", "no_churn"):
        eight, paper = record["summary"][key]["settings"]
        assert paper["matches_128"] and eight["speedup_vs_128"] > 2.0  # 15 network calls a sample against 255
    assert os.path.exists(tmp_path / "steps.png")

    settings = sorted(os.listdir(workdir / "settings"))
    stamps = {name: os.path.getmtime(workdir / "settings" / name) for name in settings if name.endswith(".json")}
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {name: os.path.getmtime(workdir / "settings" / name) for name in stamps} == stamps  # read back, not redone
    assert json.loads(out.read_text())["settings"] == record["settings"]
