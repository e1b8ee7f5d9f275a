"""Multi-process jobs for real: launchers started as two CPU processes with only JAX's three
variables set (a localhost coordinator on a free port, gloo collectives), on one shared work
directory, against a one-process run on two devices."""
import json
import os
import random
import re
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from synther_jax import distributed
from synther_jax.errors import DistributedSetupError
from synther_jax.metrics import read_metrics

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# walker2d's bundled data; two seeds, each its own denoiser, trained and sampled in a few seconds.
TINY = ["--config=configs/d4rl.py:walker2d,smoke", "--config.denoiser_per_seed=true", "--config.num_seeds=2",
        "--config.diffusion.width=32", "--config.diffusion.depth=1", "--config.diffusion.dim_t=8",
        "--config.diffusion.num_train_steps=200", "--config.diffusion.steps_per_call=20",
        "--config.diffusion.checkpoint_every=20", "--config.diffusion.num_sample_steps=4",
        "--config.diffusion.sample_chunk_size=500", "--config.num_samples=1000", "--config.agent_steps=20",
        "--config.eval_every=10", "--config.eval_episodes=1"]


def free_port(lowest: int = 0) -> int:
    """A port no one listens on, at least `lowest` (0: any the system picks)."""
    for _ in range(100):
        port = random.randrange(lowest, 65536) if lowest else 0
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return probe.getsockname()[1]
    raise RuntimeError("no free port")


def start_job(module, arguments, logs, slurm=False):
    """The two processes of one job, each as a user starts it on its host: with JAX's three
    variables, or as the tasks of a Slurm job step on one node (JAX then finds the coordinator
    itself, on port 61440 + job id % 4096). `arguments` are both processes' command line, or a
    list of each one's."""
    port = free_port(61440 if slurm else 0)
    processes = []
    for i, process_arguments in enumerate(arguments if isinstance(arguments[0], list) else [arguments] * 2):
        if slurm:
            launcher = {"SLURM_JOB_ID": str(port - 61440), "SLURM_STEP_NODELIST": "localhost", "SLURM_NTASKS": "2",
                        "SLURM_PROCID": str(i), "SLURM_LOCALID": "0"}
        else:
            launcher = {"JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{port}", "JAX_NUM_PROCESSES": "2",
                        "JAX_PROCESS_ID": str(i)}
        with open(f"{logs}.{i}", "w") as log:
            processes.append(subprocess.Popen([sys.executable, "-m", module, *process_arguments], cwd=ROOT,
                                              env={**os.environ, **launcher}, stdout=log, stderr=subprocess.STDOUT))
    return processes


def finish(processes, logs, timeout=600):
    """Each process's (exit status, output)."""
    deadline = time.monotonic() + timeout
    for process in processes:
        process.wait(timeout=max(1, deadline - time.monotonic()))
    return [(process.returncode, open(f"{logs}.{i}").read()) for i, process in enumerate(processes)]


def last_line(output):
    return [line for line in output.splitlines() if line.strip()][-1]


def wait_until(condition, processes, what, timeout=600):
    deadline = time.monotonic() + timeout
    while not condition():
        assert all(p.poll() is None for p in processes), f"the job ended before {what}"
        assert time.monotonic() < deadline, f"no {what} after {timeout} s"
        time.sleep(0.2)


@pytest.mark.slow
def test_a_two_process_job_shares_its_workdir_refuses_a_second_job_resumes_and_equals_one_process(tmp_path):
    shared, logs = tmp_path / "shared", str(tmp_path / "log")
    job = start_job("launch.offline", [*TINY, f"--workdir={shared}"], f"{logs}-first")
    wait_until((shared / "config.json").exists, job, "claiming its folder")

    # A second job on the same folder while the first runs: every process of it refuses, in one line.
    second = finish(start_job("launch.offline", [*TINY, f"--workdir={shared}"], f"{logs}-second"),
                    f"{logs}-second")
    for status, output in second:
        assert status == 1 and "is in use by another run" in last_line(output), output[-2000:]
        assert "Traceback" not in output
    checkpoints = shared / "diffusion" / "checkpoints"
    wait_until(lambda: checkpoints.exists() and any(name.isdigit() for name in os.listdir(checkpoints)), job,
               "a diffusion checkpoint")
    for process in job:  # killed mid-run, as a preempted job is
        process.send_signal(signal.SIGKILL)
    finish(job, f"{logs}-first")
    assert not (shared / "results.json").exists()

    rerun = start_job("launch.offline", [*TINY, f"--workdir={shared}"], f"{logs}-resumed")
    resumed = finish(rerun, f"{logs}-resumed")
    for i, (status, output) in enumerate(resumed):
        assert status == 0, output[-3000:]
        assert f"Process {i} of 2" in output and "cross-process collectives: gloo" in output
        # It went on from where the kill left it: in training, sampling, or the agents.
        assert re.search("Resum|finished earlier", output), output[-3000:]

    alone = tmp_path / "alone"  # one process, two devices: the same devices for the seeds
    result = subprocess.run([sys.executable, "-m", "launch.offline", *TINY, f"--workdir={alone}"], cwd=ROOT,
                            capture_output=True, text=True, timeout=600,
                            env={**os.environ, "XLA_FLAGS": f"{os.environ.get('XLA_FLAGS', '')} "
                                                            "--xla_force_host_platform_device_count=2"})
    assert result.returncode == 0, result.stderr[-3000:]
    results, expected = (json.loads((folder / "results.json").read_text()) for folder in (shared, alone))
    # Each seed on its own device, with keys that do not depend on the processes: bit-equal.
    assert results["scores_by_step"] == expected["scores_by_step"]
    for i in range(2):
        with np.load(shared / "samples" / f"seed{i}.npz") as ours, \
                np.load(alone / "samples" / f"seed{i}.npz") as theirs:
            for key in theirs.files:
                np.testing.assert_array_equal(ours[key], theirs[key])
    for stage in ("agent", "eval"):  # the metrics of the sharded seeds, gathered from both processes
        assert read_metrics(shared / "metrics.jsonl", stage) == read_metrics(alone / "metrics.jsonl", stage)
    # Process 0 alone wrote: the job's files are the one-process run's, and the lock names process 0.
    assert sorted(os.listdir(shared)) == sorted(os.listdir(alone))
    assert (shared / ".lock").read_text().startswith(f"pid {rerun[0].pid} on ")

    # launch.synthesize on two processes: the same samples again.
    synthesized = tmp_path / "synthesized"
    made = finish(start_job("launch.synthesize", [*TINY, f"--workdir={synthesized}"], f"{logs}-synth"),
                  f"{logs}-synth")
    assert [status for status, _ in made] == [0, 0], made[0][1][-3000:] + made[1][1][-3000:]
    for i in range(2):
        with np.load(synthesized / "samples" / f"seed{i}.npz") as ours, \
                np.load(alone / "samples" / f"seed{i}.npz") as theirs:
            np.testing.assert_array_equal(ours["observations"], theirs["observations"])


def test_processes_started_with_different_configs_stop_before_any_work(tmp_path):
    """As the tasks of a Slurm job step, so JAX's own detection of the coordinator is used too."""
    workdir, logs = tmp_path / "run", str(tmp_path / "log")
    seeds = [[*TINY, f"--config.seed={seed}", f"--workdir={workdir}"] for seed in (0, 1)]
    for status, output in finish(start_job("launch.synthesize", seeds, logs, slurm=True), logs, timeout=300):
        assert status == 1 and last_line(output) == (
            "launch.synthesize: Process(es) 1 of this job were started with another config or --workdir than "
            "process 0: start every process with the same command."), output[-2000:]
    assert not workdir.exists()


def test_bad_coordinator_settings_end_each_process_in_one_line(run_module, tmp_path):
    workdir = tmp_path / "run"
    arguments = ["--config=configs/d4rl.py:walker2d,smoke", f"--workdir={workdir}"]
    status, output = run_module("launch.offline", *arguments, env={
        "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "2"})
    assert status == 1 and last_line(output) == ("launch.offline: JAX_PROCESS_ID=2 is not one of the 2 processes "
                                                 "(JAX_NUM_PROCESSES=2): number them 0 to 1."), output[-2000:]
    status, output = run_module("launch.synthesize", *arguments, env={
        "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1"})
    assert status == 1 and "JAX_NUM_PROCESSES and JAX_PROCESS_ID not" in last_line(output), output[-2000:]
    status, output = run_module("launch.synthesize", *arguments, env={
        "JAX_COORDINATOR_ADDRESS": f"127.0.0.1:{free_port()}", "JAX_NUM_PROCESSES": "2", "JAX_PROCESS_ID": "1",
        "SYNTHER_COORDINATOR_TIMEOUT_S": "2"})
    assert status == 1 and "No coordinator answered at 127.0.0.1:" in last_line(output), output[-2000:]
    assert "Traceback" not in output and not workdir.exists()


@pytest.mark.parametrize("module, arguments", [
    ("launch.online", ["--config=configs/online.py:hopper-synther,smoke", "--workdir=RUN"]),
    ("launch.pixels", ["--config=configs/vd4rl.py:walker-walk-medium,smoke", "--workdir=RUN"]),
    ("launch.collect", ["--env=hopper", "--level=random", "--out=RUN"]),
    ("launch.analyze", ["--dataset=bundled/walker2d-medium-replay", "--samples=RUN/samples.npz", "--out=RUN"]),
    ("launch.sweep", ["--sweep=smoke", "--root=RUN"])])
def test_one_process_tools_say_so_in_a_multi_process_job(run_module, tmp_path, module, arguments):
    arguments = [argument.replace("RUN", str(tmp_path / "run")) for argument in arguments]
    status, output = run_module(module, *arguments, env={"SLURM_NTASKS": "2"})
    assert status == 1 and last_line(output).startswith(f"{module}: a one-process tool, started here as one of a "
                                                        "multi-process job"), output[-2000:]
    assert not (tmp_path / "run").exists()


def test_a_cpu_job_without_collectives_is_refused():
    previous = jax.config.jax_cpu_collectives_implementation
    jax.config.update("jax_cpu_collectives_implementation", None)
    try:
        with pytest.raises(DistributedSetupError, match="set it to gloo"):
            distributed.check_collectives()
    finally:
        jax.config.update("jax_cpu_collectives_implementation", previous or "gloo")
    assert distributed.check_collectives().startswith("gloo")


def test_one_process_runs_start_nothing():
    assert not distributed.initialize({}) and not distributed.initialize({"SLURM_NTASKS": "1"})
    assert distributed.is_main() and distributed.process_count() == 1
    distributed.barrier("nothing to wait for")
    assert distributed.from_main(7) == 7
    def refuse():
        raise ValueError("some refusal")

    with pytest.raises(ValueError, match="some refusal"):
        distributed.run_on_main(refuse, (ValueError,))
