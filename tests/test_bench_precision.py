"""bench.precision: the rule that judges a lower precision against the float32 seed difference,
and its smoke size end to end, resumed from the finished denoisers."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.precision import FIGURES, compare

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _record(precision, value, train_steps_per_s, samples_per_s):
    return {"matmul_precision": precision, "train_steps_per_s": train_steps_per_s, "samples_per_s": samples_per_s,
            **{figure: value for figure in FIGURES}}


def test_a_precision_matches_float32_only_within_the_float32_seed_difference():
    records = [_record("float32", 1.00, 100.0, 10.0), _record("float32", 1.10, 100.0, 10.0),  # noise 0.10
               _record("tf32", 1.08, 300.0, 30.0),  # 0.08 off: inside
               _record("bfloat16", 0.85, 400.0, 50.0)]  # 0.15 off: outside
    summary = compare(records)
    np.testing.assert_allclose(summary["float32_seed_difference"]["marginal_score"], 0.10)
    tf32, bf16 = summary["precisions"]["tf32"], summary["precisions"]["bfloat16"]
    assert tf32["matches_float32"] and not bf16["matches_float32"]
    assert tf32["outside_the_seed_difference"] == [] and bf16["outside_the_seed_difference"] == list(FIGURES)
    np.testing.assert_allclose(bf16["difference_from_float32"]["correlation_score"], -0.15)
    assert (tf32["train_speedup"], bf16["sample_speedup"]) == (3.0, 5.0)


@pytest.mark.slow
def test_smoke_run_measures_every_precision_and_resumes(tmp_path):
    out, workdir = tmp_path / "precision.json", tmp_path / "work"
    command = [sys.executable, "-m", "bench.precision", "--smoke", f"--workdir={workdir}", f"--out={out}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    record = json.loads(out.read_text())
    precisions = [run["matmul_precision"] for run in record["runs"]]
    assert precisions[:2] == ["float32", "float32"] and precisions[-1] == "bfloat16"
    assert ("tf32" in precisions) != record["tf32_computed_as_float32"]  # a CPU computes tf32 as float32
    for run in record["runs"]:
        assert 0.0 < run["marginal_score"] <= 1.0 and np.isfinite(run["dynamics_mse_median"]), run
        assert run["samples_per_s"] > 0 and run["train_steps_per_s"] > 0
    # bfloat16 is a different computation, not the float32 one relabelled.
    assert record["runs"][-1]["marginal_score"] != record["runs"][0]["marginal_score"] or \
        record["runs"][-1]["dynamics_mse_median"] != record["runs"][0]["dynamics_mse_median"]

    stamps = {name: os.path.getmtime(workdir / name) for name in os.listdir(workdir) if name.endswith(".json")}
    rerun = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert {name: os.path.getmtime(workdir / name) for name in stamps} == stamps  # read back, not redone
    assert json.loads(out.read_text())["runs"] == record["runs"]
