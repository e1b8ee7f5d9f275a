"""Sweeps: job grids, the Table 1 summary against the paper's own average row, and the launchers.

The launchers run a stand-in for launch.offline (a few lines written into the test's folder) that
records the flags it got and writes a results.json derived from them, so the test checks that
every job got its own flags and work directory and that the table is built from what they wrote.
The XManager launcher runs when `SYNTHER_XM_PYTHON` names an interpreter with requirements-xm.txt.
"""
import csv
import json
import os
import subprocess
import sys
import textwrap

import pytest

from configs import sweeps
from launch import sweep

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The paper's Table 1, TD3+BC on the original data: (mean, std) per locomotion dataset, and the
# "locomotion average" row it prints: 59.0 ± 4.9.
PAPER_TD3_BC_ORIGINAL = {
    "halfcheetah-random": (11.3, 0.8), "halfcheetah-medium-replay": (44.8, 0.7),
    "halfcheetah-medium": (48.1, 0.2), "halfcheetah-medium-expert": (90.8, 7.0),
    "walker2d-random": (0.6, 0.3), "walker2d-medium-replay": (85.6, 4.6), "walker2d-medium": (82.7, 5.5),
    "walker2d-medium-expert": (110.0, 0.4), "hopper-random": (8.6, 0.3), "hopper-medium-replay": (64.4, 24.8),
    "hopper-medium": (60.4, 4.0), "hopper-medium-expert": (101.1, 10.5),
}


def _write_result(folder, name, algorithm, data, per_seed):
    os.makedirs(folder, exist_ok=True)
    result = {"name": name, "dataset": f"{name}-v2", "env_id": "Hopper-v4", "algorithm": algorithm, "data": data,
              "num_seeds": len(per_seed), "final_normalized_score": {"per_seed": per_seed},
              "final_return": {"per_seed": per_seed}, "stage_seconds": {}}
    with open(os.path.join(folder, "results.json"), "w") as f:
        json.dump(result, f)


def test_grid_is_the_product_and_table1_has_the_papers_runs():
    jobs = sweeps.grid(("hopper-random", "walker2d-medium"), ("td3_bc", "iql"), seeds=(0, 1), data=("real",),
                       smoke=True, num_samples=1000)
    assert len(jobs) == 8 and len({job.name for job in jobs}) == 8
    flags = jobs[0].flags()
    assert flags == {"config": "configs/d4rl.py:hopper-random,smoke", "config.algorithm": "td3_bc",
                     "config.data": "real", "config.num_samples": "1000", "config.seed": "0"}
    # 12 datasets x (TD3+BC, IQL) + 9 non-random datasets x EDAC, original and SynthER data, 4 seeds.
    assert len(sweeps.get_sweep("table1")) == (12 * 2 + 9) * 2 * 4
    assert len(sweeps.get_sweep("smoke")) == 4
    with pytest.raises(ValueError, match="Unknown algorithms"):
        sweeps.grid(("hopper-random",), ("cql",))
    with pytest.raises(ValueError, match="Unknown sweep"):
        sweeps.get_sweep("nope")


def test_summary_reproduces_the_papers_average_row(tmp_path):
    for name, (mean, std) in PAPER_TD3_BC_ORIGINAL.items():
        # Two seeds at mean -+ std have exactly this mean and (ddof 0) standard deviation.
        _write_result(tmp_path / f"{name}-td3_bc", name, "td3_bc", "real", [mean - std, mean + std])
    # One cell gathered from jobs with one seed each, and one column present for one dataset only.
    _write_result(tmp_path / "hopper-random-iql-synthetic-seed0", "hopper-random", "iql", "synthetic", [10.0])
    _write_result(tmp_path / "hopper-random-iql-synthetic-seed1", "hopper-random", "iql", "synthetic", [20.0])
    expected = sweeps.grid(("hopper-random", "hopper-medium"), ("iql",), seeds=(0, 1))

    csv_path, md_path = sweep.write_summary(str(tmp_path), expected)
    with open(md_path) as f:
        table = f.read()
    lines = table.splitlines()
    assert "| Dataset | TD3+BC (Original) | IQL (SynthER) |" in lines
    assert "| hopper-medium-replay | 64.4 ± 24.8 | - |" in lines
    assert "| hopper-random | 8.6 ± 0.3 | 15.0 ± 5.0 |" in lines
    assert "| average | 59.0 ± 4.9 | 15.0 ± 5.0 |" in lines  # the paper's "locomotion average"
    assert "Missing (2 jobs without results.json): hopper-medium-iql-synthetic-seed0, " \
           "hopper-medium-iql-synthetic-seed1" in table

    with open(csv_path) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 13
    iql = next(row for row in rows if row["algorithm"] == "iql")
    assert (iql["num_jobs"], iql["num_seeds"], float(iql["mean"]), float(iql["std"])) == ("2", "2", 15.0, 5.0)
    walker = next(row for row in rows if row["dataset"] == "walker2d-medium")
    assert float(walker["mean"]) == pytest.approx(82.7) and float(walker["std"]) == pytest.approx(5.5)


STAND_IN = '''
"""Stands in for launch.offline: records its flags and writes a results.json made from them."""
import json, os, sys
flags = dict(arg[2:].split("=", 1) for arg in sys.argv[1:])
os.makedirs(flags["workdir"], exist_ok=True)
with open(os.path.join(flags["workdir"], "flags.json"), "a") as f:
    f.write(json.dumps(flags) + "\\n")
if os.environ.get("FAIL_JOB") == os.path.basename(flags["workdir"]):
    sys.exit("simulated failure")
name = flags["config"].split(":")[1].split(",")[0]
score = 10.0 * (flags["config.data"] == "synthetic") + {"td3_bc": 1.0, "iql": 2.0}[flags["config.algorithm"]]
result = {"name": name, "dataset": name + "-v2", "algorithm": flags["config.algorithm"], "data": flags["config.data"],
          "num_seeds": 1, "final_normalized_score": {"per_seed": [score], "mean": score, "std": 0.0}}
with open(os.path.join(flags["workdir"], "results.json"), "w") as f:
    json.dump(result, f)
'''


def _launch(root, stand_in_dir, *extra, python=sys.executable, env=None):
    command = [python, "-m", "launch.sweep", "--sweep=smoke", f"--root={root}", "--module=stand_in_offline",
               f"--python={sys.executable}", *extra]
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{stand_in_dir}", **(env or {})}
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)


def _check_smoke_sweep_outputs(root):
    for job in sweeps.get_sweep("smoke"):
        with open(os.path.join(root, job.name, "flags.json")) as f:
            received = [json.loads(line) for line in f]
        assert received == [{**job.flags(), "workdir": os.path.join(root, job.name)}]  # ran once, with its flags
    with open(os.path.join(root, "summary.md")) as f:
        lines = f.read().splitlines()
    assert "| Dataset | TD3+BC (Original) | TD3+BC (SynthER) | IQL (Original) | IQL (SynthER) |" in lines
    assert "| walker2d | 1.0 ± 0.0 | 11.0 ± 0.0 | 2.0 ± 0.0 | 12.0 ± 0.0 |" in lines


@pytest.fixture
def stand_in(tmp_path):
    folder = tmp_path / "stand_in"
    folder.mkdir()
    (folder / "stand_in_offline.py").write_text(textwrap.dedent(STAND_IN))
    return str(folder)


def test_local_launcher_runs_every_job_once_and_reports_failures(tmp_path, stand_in):
    root = str(tmp_path / "sweep")
    failed_job = "walker2d-iql-synthetic-seed0"
    failing = _launch(root, stand_in, "--max_parallel=2", env={"FAIL_JOB": failed_job})
    assert failing.returncode == 1  # the summary of the others is written, and the failure reported in one line
    assert failing.stderr.splitlines() == [f"launch.sweep: 1 of 4 jobs failed (each one's error is at the end of its "
                                           f"log.txt): {os.path.join(root, failed_job, 'log.txt')}; rerun the same "
                                           "command to retry them."]
    assert "simulated failure" in open(os.path.join(root, failed_job, "log.txt")).read()
    assert "Missing (1 jobs" in open(os.path.join(root, "summary.md")).read()

    os.remove(os.path.join(root, failed_job, "flags.json"))
    rerun = _launch(root, stand_in)  # only the failed job runs again
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "4 jobs, 3 already finished" in rerun.stdout
    _check_smoke_sweep_outputs(root)


@pytest.mark.skipif(not os.environ.get("SYNTHER_XM_PYTHON"),
                    reason="set SYNTHER_XM_PYTHON to a Python with requirements-xm.txt to test the XManager launcher")
def test_xmanager_local_executor_runs_the_sweep(tmp_path, stand_in):
    root = str(tmp_path / "sweep")
    result = _launch(root, stand_in, "--launcher=xmanager", python=os.environ["SYNTHER_XM_PYTHON"])
    assert result.returncode == 0, result.stderr[-3000:]
    assert "XManager experiment" in result.stdout
    assert os.path.exists(os.path.join(root, "xmanager.sqlite3"))
    _check_smoke_sweep_outputs(root)


def test_slurm_launcher_runs_the_array_through_submitits_local_executor(tmp_path, stand_in):
    """The Slurm path up to submitit, whose local executor stands in for sbatch: failures reported in
    one line, a rerun retries only them, and the table is the local launcher's."""
    root = str(tmp_path / "sweep")
    failed_job = "walker2d-iql-synthetic-seed0"
    slurm = ["--launcher=slurm", "--slurm_executor=local", "--slurm_time_min=5", "--max_parallel=2"]
    failing = _launch(root, stand_in, *slurm, env={"FAIL_JOB": failed_job})
    assert failing.returncode == 1
    assert failing.stderr.splitlines() == [f"launch.sweep: 1 of 4 jobs failed ({failed_job}; their logs are under "
                                           f"{os.path.join(root, 'slurm')}); rerun the same command to retry them."]
    assert any("simulated failure" in open(os.path.join(root, "slurm", name)).read()
               for name in os.listdir(os.path.join(root, "slurm")) if name.endswith("_log.err"))
    os.remove(os.path.join(root, failed_job, "flags.json"))
    rerun = _launch(root, stand_in, *slurm)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert "4 jobs, 3 already finished" in rerun.stdout and "submitted 1 jobs as array" in rerun.stdout
    _check_smoke_sweep_outputs(root)


def test_slurm_settings_reach_sbatch(tmp_path, monkeypatch):
    """The array's sbatch file, as submitit writes it for the flags (an sbatch on the PATH that only
    keeps the file it is given stands in for Slurm's)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text('#!/bin/sh\ncp "$1" "$SBATCH_COPY"\necho "Submitted batch job 4242"\n')
    (bin_dir / "srun").write_text("#!/bin/sh\n")
    for tool in ("sbatch", "srun"):
        os.chmod(bin_dir / tool, 0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("SBATCH_COPY", str(tmp_path / "array.sh"))
    settings = sweep.slurm_settings(time_min=240, partition="gpu", nodes=2, gpus_per_node=1, cpus_per_task=8,
                                    max_parallel=3, executor="slurm")
    jobs = sweeps.get_sweep("smoke")
    submitted = sweep.submit_slurm(jobs, str(tmp_path / "sweep"), sys.executable, "launch.offline", settings, "slurm")
    assert [task.job_id for task in submitted] == [f"4242_{i}" for i in range(len(jobs))]
    lines = (tmp_path / "array.sh").read_text().splitlines()
    for line in ("#SBATCH --array=0-3%3", "#SBATCH --partition=gpu", "#SBATCH --time=240", "#SBATCH --nodes=2",
                 "#SBATCH --ntasks-per-node=1", "#SBATCH --gpus-per-node=1", "#SBATCH --cpus-per-task=8"):
        assert line in lines
    assert any(line.startswith("srun ") for line in lines)  # each node's process started by srun


@pytest.mark.parametrize("settings, message", [
    (dict(time_min=None, partition="gpu"), "--launcher=slurm needs --slurm_time_min"),
    (dict(time_min=60, partition=None), "--launcher=slurm needs --slurm_partition"),
    (dict(time_min=60, partition=None, nodes=2, executor="local"), "--slurm_nodes=2 needs Slurm")])
def test_incomplete_slurm_settings_are_refused_in_one_line(settings, message):
    arguments = {**dict(nodes=1, gpus_per_node=0, cpus_per_task=None, max_parallel=1, executor="slurm"), **settings}
    with pytest.raises(sweep.app.UsageError, match=message):
        sweep.slurm_settings(**arguments)


def test_the_slurm_launcher_without_slurm_says_where_to_run_it(tmp_path, stand_in):
    result = _launch(str(tmp_path / "sweep"), stand_in, "--launcher=slurm", "--slurm_time_min=5",
                     "--slurm_partition=gpu", env={"PATH": os.path.dirname(sys.executable)})
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1].startswith("launch.sweep: No Slurm here (sbatch is not on the PATH)")
