"""experiments.sampler_steps: its smoke size end to end (with resume), and the rule that says which step
counts match their reference's 128 steps within the noise of its sampler seeds."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from experiments.sampler_steps import FIGURES, measures, summarise

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(steps, seed, value, samples_per_s, sampler="no_churn"):
    return {"steps": steps, "sampler": sampler, "sampler_seed": seed, "samples_per_s": samples_per_s,
            "network_evaluations": steps, **{figure: value for figure in FIGURES}}


def test_a_step_count_matches_128_only_within_the_seed_spread():
    # 128 steps: seeds at 1.00 and 1.10, so the noise is 0.10 around the mean 1.05.
    records = [_record(128, 0, 1.00, 10.0), _record(128, 1, 1.10, 10.0),
               _record(32, 0, 1.10, 40.0), _record(32, 1, 1.14, 40.0),  # mean 1.12: 0.07 off, inside
               _record(16, 0, 1.20, 80.0), _record(16, 1, 1.24, 80.0)]  # mean 1.22: 0.17 off, outside
    churn_off = summarise(records, [16, 32, 128])["no_churn"]
    by_steps = {row["steps"]: row for row in churn_off["settings"]}
    assert not by_steps[16]["matches_128"] and by_steps[32]["matches_128"] and by_steps[128]["matches_128"]
    assert churn_off["fewest_matching_steps"] == 32 and churn_off["speedup_vs_128"] == 4.0
    np.testing.assert_allclose(by_steps[16]["off_by_noise"]["marginal_score"], 1.7)


def test_dpm_solver_is_judged_against_deterministic_heun_at_128_steps():
    # Its own 128 steps agree exactly across seeds (spread 0) but sit 0.02 from Heun's mean 1.05.
    records = [_record(128, 0, 1.00, 10.0), _record(128, 1, 1.10, 10.0),
               *(_record(steps, seed, value, 10.0 * 128 / steps, "dpmpp_2m") for seed in (0, 1)
                 for steps, value in ((128, 1.07), (8, 1.09), (4, 1.30)))]
    dpm = summarise(records, [4, 8, 128])["dpmpp_2m"]
    assert dpm["reference"] == "no_churn at 128 steps"
    assert [row["matches_128"] for row in dpm["settings"]] == [False, True, True]
    assert dpm["fewest_matching_steps"] == 8 and dpm["speedup_vs_128"] == 16.0


def test_the_distilled_sampler_is_judged_against_deterministic_heun_at_its_own_step_counts():
    assert [steps for steps in (1, 2, 4, 8, 128) if measures("distilled", steps)] == [1, 2, 4]
    assert [steps for steps in (1, 2, 4, 8, 128) if measures("no_churn", steps)] == [4, 8, 128]
    records = [_record(128, 0, 1.00, 10.0), _record(128, 1, 1.10, 10.0),
               *(_record(steps, seed, value, 1000.0 / steps, "distilled") for seed in (0, 1)
                 for steps, value in ((1, 1.30), (2, 1.08), (4, 1.02)))]
    distilled = summarise(records, [1, 2, 4, 128])["distilled"]
    assert distilled["reference"] == "no_churn at 128 steps"
    assert [row["matches_128"] for row in distilled["settings"]] == [False, True, True]
    assert distilled["fewest_matching_steps"] == 2 and distilled["speedup_vs_128"] == 50.0


@pytest.mark.slow
def test_smoke_run_writes_per_step_figures_and_resumes(tmp_path):
    out, workdir = tmp_path / "steps.json", tmp_path / "work"
    command = [sys.executable, "-m", "experiments.sampler_steps", "--smoke", "--steps=8,128", "--num_samples=400",
               "--physics_rows=200", "--samplers=no_churn,dpmpp_2m", f"--workdir={workdir}", f"--out={out}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    assert len(record["settings"]) == 2 * 2 * 2  # steps x samplers x sampler seeds
    for setting in record["settings"]:
        assert all(np.isfinite(setting[figure]) for figure in FIGURES), setting
        assert 0.0 < setting["marginal_score"] <= 1.0 and setting["samples_per_s"] > 0
    heun, dpm = (record["summary"][key]["settings"] for key in ("no_churn", "dpmpp_2m"))
    assert heun[1]["matches_128"] and heun[0]["speedup_vs_128"] > 2.0  # 15 network calls a sample against 255
    assert [row["network_evaluations"] for row in dpm] == [8, 128] and dpm[0]["speedup_vs_128"] > 2.0
    assert os.path.exists(tmp_path / "steps.png")

    settings = sorted(os.listdir(workdir / "settings"))
    stamps = {name: os.path.getmtime(workdir / "settings" / name) for name in settings if name.endswith(".json")}
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {name: os.path.getmtime(workdir / "settings" / name) for name in stamps} == stamps  # read back, not redone
    assert json.loads(out.read_text())["settings"] == record["settings"]
