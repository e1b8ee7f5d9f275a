"""Launch a sweep of `launch.offline` jobs and tabulate their results like the paper's Table 1.

    python -m launch.sweep --sweep=smoke --root=runs/sweep-smoke               # plain local processes
    .venv-xm/bin/python -m launch.sweep --sweep=smoke --root=runs/sweep-smoke \\
        --launcher=xmanager --python="$(command -v python)"                   # XManager, local executor
    python -m launch.sweep --sweep=table1 --root=runs/table1 --launcher=slurm \\
        --slurm_partition=gpu --slurm_time_min=240 --slurm_gpus_per_node=1        # a Slurm job array
    python -m launch.sweep --sweep=table1 --root=runs/table1 --summarize_only  # just the table

Sweeps are defined in `configs/sweeps.py`. Job `j` runs
`<python> -m launch.offline --config=<j.config> --workdir=<root>/<j.name> --config.<k>=<v>...`;
jobs that already wrote `results.json` are skipped, and a rerun of an unfinished job resumes it.
At the end, `<root>/summary.csv` (one row per dataset, algorithm and data source) and
`<root>/summary.md` (datasets x algorithms, mean +- std over seeds, and the average row) are
written from every `results.json` under the root.

Launchers:
- `local`: subprocesses on this machine, `--max_parallel` at a time, each logging to `<workdir>/log.txt`;
- `slurm`: one Slurm job array through submitit (the `slurm` extra), a task per job, each on
  `--slurm_nodes` nodes (one process per node, a multi-process job); `--slurm_partition` and
  `--slurm_time_min` are required, and `--slurm_executor=local` runs the same array on this machine.
  It waits for the array; its logs are under `<root>/slurm/`;
- `xmanager`: one XManager experiment with a work unit per job. `--xm_executor=local` runs them
  as local processes (no Docker: an `xm.Binary` of `--python`), `--xm_executor=vertex` as Vertex AI
  jobs built from this repository (`--root` must then be a bucket path). XManager is an optional
  extra with its own environment (requirements-xm.txt); `--python` is then the interpreter that
  has synther_jax's requirements. Its experiment database is `<root>/xmanager.sqlite3` unless
  `--xm_db_yaml_config_path` names another.

This module imports only the standard library, absl, configs/sweeps.py and launch/boundary.py (and
submitit for Slurm), so it also runs in XManager's environment.
"""
import csv
import glob
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

from absl import app, flags

from configs.sweeps import ALGORITHMS, SWEEPS, Job, get_sweep
from launch import boundary

try:  # The optional extra; importing it also defines its flags (--xm_db_yaml_config_path, ...).
    from xmanager import xm, xm_local
except ImportError:
    xm = xm_local = None

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS_FILE = "results.json"
ALGORITHM_NAMES = {"td3_bc": "TD3+BC", "iql": "IQL", "edac": "EDAC"}
DATA_ORDER = ("real", "synthetic", "mixed")
DATA_NAMES = {"real": "Original", "synthetic": "SynthER", "mixed": "Mixed"}  # the paper's column names


def job_flags(job: Job, root: str) -> Dict[str, str]:
    """Every flag of the job's command line, the same for all launchers."""
    return {**job.flags(), "workdir": os.path.join(root, job.name)}


def command_line(python: str, module: str, flags_: Dict[str, str]) -> List[str]:
    return [python, "-m", module, *(f"--{key}={value}" for key, value in flags_.items())]


def pending(jobs: Sequence[Job], root: str) -> List[Job]:
    """The jobs whose work directory has no results.json yet."""
    return [job for job in jobs if not os.path.exists(os.path.join(root, job.name, RESULTS_FILE))]


def run_local(jobs: Sequence[Job], root: str, python: str, module: str, max_parallel: int) -> List[str]:
    """Runs the jobs as subprocesses, at most `max_parallel` at once; returns the names of failed jobs."""
    waiting, running, failed = list(jobs), [], []
    while waiting or running:
        while waiting and len(running) < max_parallel:
            job = waiting.pop(0)
            flags_ = job_flags(job, root)
            os.makedirs(flags_["workdir"], exist_ok=True)
            log = open(os.path.join(flags_["workdir"], "log.txt"), "a")
            process = subprocess.Popen(command_line(python, module, flags_), cwd=REPO, stdout=log,
                                       stderr=subprocess.STDOUT)
            print(f"started {job.name} (log: {log.name})", flush=True)
            running.append((job, process, log))
        time.sleep(1.0)
        for entry in list(running):
            job, process, log = entry
            if process.poll() is None:
                continue
            running.remove(entry)
            log.close()
            print(f"{'finished' if process.returncode == 0 else 'FAILED'} {job.name}", flush=True)
            if process.returncode != 0:
                failed.append(job.name)
    return failed


def run_xmanager(jobs: Sequence[Job], root: str, python: str, module: str, title: str, executor: str) -> None:
    """One XManager experiment, one work unit per job; returns when the local jobs have ended."""
    if xm is None:
        raise SystemExit("XManager is not installed in this Python. Install the optional extra in its own "
                         "environment: python -m venv .venv-xm && .venv-xm/bin/pip install -r requirements-xm.txt, "
                         "then run this module with .venv-xm/bin/python.")
    if flags.FLAGS.xm_db_yaml_config_path is None:
        flags.FLAGS.xm_db_yaml_config_path = _write_sqlite_config(root)

    with xm_local.create_experiment(experiment_title=title) as experiment:
        if executor == "local":
            [executable] = experiment.package([xm.binary(path=python, args=["-m", module],
                                                         executor_spec=xm_local.Local.Spec())])
            job_executor = xm_local.Local()
        else:  # Vertex AI: a container of this repository with its pinned requirements.
            [executable] = experiment.package([xm.python_container(
                path=REPO, base_image="python:3.11", entrypoint=xm.ModuleName(module), use_deep_module=True,
                executor_spec=xm_local.Vertex.Spec())])
            job_executor = xm_local.Vertex(requirements=xm.JobRequirements(A100=1))
        for job in jobs:
            experiment.add(xm.Job(executable, executor=job_executor, args=job_flags(job, root)))
        print(f"XManager experiment {experiment.experiment_id}: {len(jobs)} work units", flush=True)


def run_job(command: List[str], cwd: str) -> int:
    """One job of a Slurm array (each of its tasks, one per node, runs it): the command's exit status.
    Under a job step of several tasks, launch.offline finds the other nodes through Slurm's
    variables (`synther_jax.distributed`)."""
    return subprocess.run(command, cwd=cwd).returncode


def slurm_settings(time_min: Optional[int], partition: Optional[str], nodes: int, gpus_per_node: int,
                   cpus_per_task: Optional[int], max_parallel: int, executor: str) -> Dict[str, object]:
    """submitit's parameters of the array, checked: one line (UsageError) naming what is missing."""
    if time_min is None:
        raise app.UsageError("--launcher=slurm needs --slurm_time_min: the time limit of each job, in minutes.")
    if executor == "slurm" and partition is None:
        raise app.UsageError("--launcher=slurm needs --slurm_partition: the Slurm partition to queue the jobs on.")
    if executor == "local" and nodes > 1:
        raise app.UsageError(f"--slurm_nodes={nodes} needs Slurm: --slurm_executor=local runs on this machine only.")
    settings = {"timeout_min": time_min, "nodes": nodes, "tasks_per_node": 1, "slurm_array_parallelism": max_parallel}
    if executor == "slurm":
        settings.update(slurm_partition=partition, gpus_per_node=gpus_per_node)
        if cpus_per_task is not None:
            settings["cpus_per_task"] = cpus_per_task
    return settings


def submit_slurm(jobs: Sequence[Job], root: str, python: str, module: str, settings: Dict[str, object],
                 executor: str) -> list:
    """Submits one submitit job array, a task per job (logs under `<root>/slurm/`); its jobs."""
    try:
        import submitit
    except ImportError:
        raise app.UsageError("--launcher=slurm needs submitit: pip install 'synther_jax[slurm]'.") from None
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise app.UsageError("No Slurm here (sbatch is not on the PATH): run this on the cluster's login node, or "
                             "pass --slurm_executor=local to run the array on this machine.")
    array = submitit.AutoExecutor(folder=os.path.join(root, "slurm"), cluster=executor)
    array.update_parameters(name="synther_jax", **settings)
    with array.batch():
        submitted = [array.submit(run_job, command_line(python, module, job_flags(job, root)), REPO) for job in jobs]
    if submitted:
        print(f"submitted {len(jobs)} jobs as array {submitted[0].job_id.split('_')[0]} (logs in "
              f"{os.path.join(root, 'slurm')})", flush=True)
    return submitted


def wait_for_slurm(jobs: Sequence[Job], submitted: list) -> List[str]:
    """Waits for the array's jobs; the names of those that failed on any node."""
    failed = []
    for job, task in zip(jobs, submitted):
        try:
            succeeded = all(status == 0 for status in task.results())  # one per node
        except Exception:  # submitit raises for a task that died (time limit, node failure)
            succeeded = False
        print(f"{'finished' if succeeded else 'FAILED'} {job.name}", flush=True)
        if not succeeded:
            failed.append(job.name)
    return failed


def _write_sqlite_config(root: str) -> str:
    """An XManager database config that keeps the experiment records next to the sweep's results."""
    os.makedirs(root, exist_ok=True)
    path = os.path.join(root, "xmanager_db.yaml")
    with open(path, "w") as f:
        f.write("sql_connector: sqlite\nsql_connection_settings:\n  backend: sqlite\n"
                f"  db_name: {os.path.join(root, 'xmanager.sqlite3')}\n")
    return path


# ---------------------------------------------------------------------------------------------
# The summary table.


def read_results(root: str) -> List[dict]:
    """Every results.json under `root` (any depth), each with its folder under the key `workdir`."""
    results = []
    for path in sorted(glob.glob(os.path.join(root, "**", RESULTS_FILE), recursive=True)):
        with open(path) as f:
            results.append({**json.load(f), "workdir": os.path.dirname(path)})
    return results


def summarize(results: Sequence[dict]) -> List[dict]:
    """One row per (dataset, algorithm, data): the final normalised scores of all its seeds pooled.

    A cell may gather several jobs (one seed each, as the paper's runs) or one job with vmapped
    seeds; either way mean and std are over all per-seed scores (std with ddof 0, as numpy's default).
    """
    cells: Dict[Tuple[str, str, str], List[float]] = defaultdict(list)
    jobs: Dict[Tuple[str, str, str], int] = defaultdict(int)
    for result in results:
        key = (result.get("name") or result["dataset"], result["algorithm"], result["data"])
        cells[key].extend(float(score) for score in result["final_normalized_score"]["per_seed"])
        jobs[key] += 1
    rows = []
    for (dataset, algorithm, data), scores in cells.items():
        rows.append({"dataset": dataset, "algorithm": algorithm, "data": data, "num_jobs": jobs[dataset, algorithm, data],
                     "num_seeds": len(scores), "mean": statistics.fmean(scores), "std": statistics.pstdev(scores),
                     "per_seed": scores})
    return sorted(rows, key=lambda row: (row["dataset"], _column_order(row["algorithm"], row["data"])))


def _column_order(algorithm: str, data: str):
    algorithm_rank = ALGORITHMS.index(algorithm) if algorithm in ALGORITHMS else len(ALGORITHMS)
    data_rank = DATA_ORDER.index(data) if data in DATA_ORDER else len(DATA_ORDER)
    return algorithm_rank, algorithm, data_rank, data


def markdown_table(rows: Sequence[dict]) -> str:
    """Datasets down, algorithm (data) across, `mean ± std` cells, and the average over datasets.

    The average row is the paper's: the mean of a column's means ± the mean of its stds, over the
    datasets that have that column.
    """
    columns = sorted({(row["algorithm"], row["data"]) for row in rows}, key=lambda c: _column_order(*c))
    datasets = sorted({row["dataset"] for row in rows})
    cell = {(row["dataset"], row["algorithm"], row["data"]): row for row in rows}
    header = ["Dataset"] + [f"{ALGORITHM_NAMES.get(a, a)} ({DATA_NAMES.get(d, d)})" for a, d in columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for dataset in datasets:
        entries = [f"{cell[dataset, a, d]['mean']:.1f} ± {cell[dataset, a, d]['std']:.1f}"
                   if (dataset, a, d) in cell else "-" for a, d in columns]
        lines.append("| " + " | ".join([dataset] + entries) + " |")
    if len(datasets) > 1:
        averages = []
        for a, d in columns:
            present = [cell[dataset, a, d] for dataset in datasets if (dataset, a, d) in cell]
            averages.append(f"{statistics.fmean(r['mean'] for r in present):.1f} ± "
                            f"{statistics.fmean(r['std'] for r in present):.1f}")
        lines.append("| " + " | ".join(["average"] + averages) + " |")
    return "\n".join(lines) + "\n"


def write_summary(root: str, expected: Optional[Sequence[Job]] = None) -> Tuple[str, str]:
    """Writes `root/summary.csv` and `root/summary.md` from the results under `root`."""
    rows = summarize(read_results(root))
    csv_path, md_path = os.path.join(root, "summary.csv"), os.path.join(root, "summary.md")
    with open(csv_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["dataset", "algorithm", "data", "num_jobs", "num_seeds", "mean", "std", "per_seed"])
        for row in rows:
            writer.writerow([row["dataset"], row["algorithm"], row["data"], row["num_jobs"], row["num_seeds"],
                             f"{row['mean']:.4f}", f"{row['std']:.4f}",
                             " ".join(f"{score:.4f}" for score in row["per_seed"])])
    missing = [job.name for job in pending(expected or [], root)]
    with open(md_path, "w") as f:
        f.write("Final D4RL-normalised score, mean ± std over seeds.\n\n")
        f.write(markdown_table(rows) if rows else "No results yet.\n")
        if missing:
            f.write(f"\nMissing ({len(missing)} jobs without {RESULTS_FILE}): {', '.join(missing)}\n")
    return csv_path, md_path


FLAGS = flags.FLAGS
flags.DEFINE_enum("sweep", None, sorted(SWEEPS), "A sweep of configs/sweeps.py.")
flags.DEFINE_string("root", None, "Folder of the sweep: one work directory per job, and the summary table.")
flags.DEFINE_enum("launcher", "local", ["local", "xmanager", "slurm"], "How to start the jobs.")
flags.DEFINE_enum("xm_executor", "local", ["local", "vertex"], "XManager executor (with --launcher=xmanager).")
flags.DEFINE_string("python", sys.executable, "Interpreter that runs the jobs (one with synther_jax's requirements).")
flags.DEFINE_string("module", "launch.offline", "The program each job runs (python -m MODULE).")
flags.DEFINE_integer("max_parallel", 1, "Jobs at once with --launcher=local or slurm.", lower_bound=1)
flags.DEFINE_integer("slurm_time_min", None, "Time limit of each job, in minutes (with --launcher=slurm).")
flags.DEFINE_string("slurm_partition", None, "Slurm partition to queue the jobs on.")
flags.DEFINE_integer("slurm_nodes", 1, "Nodes per job: one process per node, as one multi-process job.", lower_bound=1)
flags.DEFINE_integer("slurm_gpus_per_node", 0, "GPUs per node.", lower_bound=0)
flags.DEFINE_integer("slurm_cpus_per_task", None, "CPUs per process (default: Slurm's).")
flags.DEFINE_enum("slurm_executor", "slurm", ["slurm", "local"], "slurm: sbatch an array; local: the same array on "
                  "this machine through submitit's local executor, to try a sweep before the cluster.")
flags.DEFINE_bool("summarize_only", False, "Only write the summary table from the results already there.")


def main(argv):
    del argv
    if not FLAGS.sweep or not FLAGS.root:  # checked here, not at import, so tests can import this module
        raise app.UsageError("--sweep and --root are required, e.g. --sweep=smoke --root=runs/sweep-smoke.")
    root = os.path.abspath(FLAGS.root) if "://" not in FLAGS.root else FLAGS.root
    jobs = get_sweep(FLAGS.sweep)
    failed = []
    if not FLAGS.summarize_only:
        todo = pending(jobs, root)
        print(f"sweep {FLAGS.sweep}: {len(jobs)} jobs, {len(jobs) - len(todo)} already finished", flush=True)
        if FLAGS.launcher == "local":
            failed = run_local(todo, root, FLAGS.python, FLAGS.module, FLAGS.max_parallel)
        elif FLAGS.launcher == "slurm":
            settings = slurm_settings(FLAGS.slurm_time_min, FLAGS.slurm_partition, FLAGS.slurm_nodes,
                                      FLAGS.slurm_gpus_per_node, FLAGS.slurm_cpus_per_task, FLAGS.max_parallel,
                                      FLAGS.slurm_executor)
            submitted = submit_slurm(todo, root, FLAGS.python, FLAGS.module, settings, FLAGS.slurm_executor)
            failed = wait_for_slurm(todo, submitted)
        elif todo:
            run_xmanager(todo, root, FLAGS.python, FLAGS.module, f"synther_jax {FLAGS.sweep}", FLAGS.xm_executor)
    csv_path, md_path = write_summary(root, jobs)
    with open(md_path) as f:
        print(f.read())
    print(f"wrote {csv_path} and {md_path}")
    if failed and FLAGS.launcher == "slurm":
        boundary.fail(f"{len(failed)} of {len(todo)} jobs failed ({', '.join(failed)}; their logs are under "
                      f"{os.path.join(root, 'slurm')}); rerun the same command to retry them.")
    if failed:
        boundary.fail(f"{len(failed)} of {len(todo)} jobs failed (each one's error is at the end of its log.txt): "
                      f"{', '.join(os.path.join(root, name, 'log.txt') for name in failed)}; rerun the same command "
                      "to retry them.")


if __name__ == "__main__":
    boundary.run(main, one_process=True)
