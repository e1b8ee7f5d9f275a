"""One run per work directory: a second run on a live folder is refused at once; the folder of a
SIGKILLed run is taken over, and the run resumes exactly."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import ml_collections
import numpy as np
import pytest

from configs.checks import ConfigError
from pipelines.workdir import WorkdirBusyError, claim_workdir
from tests.conftest import REAL_DATA_AGENT_STEPS, offline_real_data_command

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOLD = textwrap.dedent("""
    import sys, time
    import ml_collections
    from pipelines.workdir import claim_workdir
    with claim_workdir(sys.argv[1], ml_collections.ConfigDict({"holder": True})):
        print("claimed", flush=True)
        time.sleep(120)
""")


@pytest.fixture
def holder(tmp_path):
    """A live process that holds `tmp_path / "run"`."""
    process = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path / "run")], cwd=ROOT, stdout=subprocess.PIPE,
                               text=True)
    assert process.stdout.readline().strip() == "claimed"
    yield process
    process.kill()
    process.wait()


def test_a_second_claim_on_a_live_folder_is_refused_naming_the_process(holder, tmp_path):
    with pytest.raises(WorkdirBusyError, match=f"pid {holder.pid} "):
        with claim_workdir(str(tmp_path / "run"), ml_collections.ConfigDict({"holder": True})):
            pass


def test_launch_offline_on_a_live_folder_exits_at_once(holder, tmp_path):
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", "launch.offline", "--config=configs/d4rl.py:walker2d,smoke",
                             f"--workdir={tmp_path / 'run'}"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode != 0 and f"pid {holder.pid}" in result.stderr, result.stderr[-2000:]
    assert time.perf_counter() - start < 20
    assert sorted(os.listdir(tmp_path / "run")) == [".lock", "config.json"]  # the holder's files only


def test_the_folder_of_a_killed_run_is_taken_over(holder, tmp_path):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    with claim_workdir(str(tmp_path / "run"), ml_collections.ConfigDict({"holder": True})):
        assert (tmp_path / "run" / ".lock").read_text().startswith(f"pid {os.getpid()} ")
    with pytest.raises(ConfigError, match="another config"):  # the lock does not lift the config check
        with claim_workdir(str(tmp_path / "run"), ml_collections.ConfigDict({"holder": False})):
            pass


def test_a_rerun_may_change_where_it_is_tracked_but_not_what_it_computes(tmp_path):
    config = lambda seed, project: ml_collections.ConfigDict({"seed": seed, "wandb": {"project": project}})
    with claim_workdir(str(tmp_path / "run"), config(0, None)):
        pass
    with claim_workdir(str(tmp_path / "run"), config(0, "my-project")):  # now also logged to W&B
        pass
    with pytest.raises(ConfigError, match=r"another config \(seed: 0 then, 1 now; see "):
        with claim_workdir(str(tmp_path / "run"), config(1, "my-project")):
            pass


def test_the_refusal_names_the_fields_that_differ(tmp_path):
    recorded = {"seed": 0, "diffusion": {"width": 256, "depth": 3, "old": 1}, "wandb": {"project": None}}
    with claim_workdir(str(tmp_path / "run"), ml_collections.ConfigDict(recorded)):
        pass
    # A field added to the code since the run started, one changed, one removed, one that may change.
    current = {"seed": 0, "diffusion": {"width": 512, "depth": 3, "matmul_precision": "float32"},
               "wandb": {"project": "p"}}
    with pytest.raises(ConfigError) as error:
        with claim_workdir(str(tmp_path / "run"), ml_collections.ConfigDict(current)):
            pass
    message = str(error.value)
    assert ("(diffusion.matmul_precision: not in that run's config; diffusion.old: no longer a field; "
            "diffusion.width: 256 then, 512 now; see ") in message
    assert "wandb" not in message and "\n" not in message


@pytest.mark.parametrize("section", [None, "synther"])  # offline configs hold it at the top, online in synther
def test_a_run_that_recorded_modelled_terminals_resumes_under_terminals(section, tmp_path):
    def config(terminals_field: dict) -> dict:
        return {"seed": 0, **(terminals_field if section is None else {section: {"width": 8, **terminals_field}})}

    workdir = str(tmp_path / "run")
    os.makedirs(workdir)
    with open(os.path.join(workdir, "config.json"), "w") as file:
        json.dump(config({"modelled_terminals": False}), file)  # as written before `terminals` replaced it
    with claim_workdir(workdir, ml_collections.ConfigDict(config({"terminals": "none"}))):
        pass
    prefix = "" if section is None else f"{section}."
    with pytest.raises(ConfigError, match=f"{prefix}terminals: 'none' then, 'modelled' now"):
        with claim_workdir(workdir, ml_collections.ConfigDict(config({"terminals": "modelled"}))):
            pass


def test_a_run_made_before_clip_actions_resumes_while_it_stays_off(tmp_path):
    workdir = str(tmp_path / "run")
    with claim_workdir(workdir, ml_collections.ConfigDict({"seed": 0})):  # as written before the field was added
        pass
    with claim_workdir(workdir, ml_collections.ConfigDict({"seed": 0, "clip_actions": False})):
        pass
    with pytest.raises(ConfigError, match="clip_actions: not in that run's config"):
        with claim_workdir(workdir, ml_collections.ConfigDict({"seed": 0, "clip_actions": True})):
            pass


@pytest.mark.parametrize("section", [None, "synther"])  # offline configs hold it at the top, online in synther
def test_a_run_made_before_distillation_resumes_while_it_stays_off(section, tmp_path):
    def config(distill: dict) -> ml_collections.ConfigDict:
        fields = {"width": 8, **({"distill": distill} if distill else {})}
        return ml_collections.ConfigDict({"seed": 0, **(fields if section is None else {section: fields})})

    workdir = str(tmp_path / "run")
    with claim_workdir(workdir, config({})):  # as written before the section was added
        pass
    off = {"num_steps": 0, "learning_rate": 1e-4}
    with claim_workdir(workdir, config(off)):
        pass
    prefix = "" if section is None else f"{section}."
    with pytest.raises(ConfigError, match=f"{prefix}distill.num_steps: not in that run's config"):
        with claim_workdir(workdir, config({**off, "num_steps": 4})):
            pass


def _offline(dataset, workdir, agent_steps=REAL_DATA_AGENT_STEPS):
    return subprocess.Popen(offline_real_data_command(dataset, workdir, agent_steps), cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def test_a_sigkilled_run_resumes_to_the_same_result(hopper_random_npz, finished_real_data_run, tmp_path):
    killed = _offline(hopper_random_npz, tmp_path / "resumed")
    _wait_for_checkpoint(killed, tmp_path / "resumed" / "agent")
    killed.send_signal(signal.SIGKILL)
    assert killed.wait() == -signal.SIGKILL  # killed midway, not finished
    assert not (tmp_path / "resumed" / "results.json").exists()

    resumed = _offline(hopper_random_npz, tmp_path / "resumed")
    assert resumed.wait(timeout=600) == 0, resumed.stderr.read()[-2000:]
    results = [json.loads((run / "results.json").read_text()) for run in (finished_real_data_run, tmp_path / "resumed")]
    assert results[0]["num_updates"] == results[1]["num_updates"] == REAL_DATA_AGENT_STEPS
    np.testing.assert_array_equal(results[0]["final_return"]["per_seed"], results[1]["final_return"]["per_seed"])
    log = resumed.stderr.read()
    assert "Resumed the agents in" in log, log[-3000:]  # the console says that, and where, it resumed


def _wait_for_checkpoint(process, checkpoints):
    while process.poll() is None and not (checkpoints.exists() and any(p.isdigit() for p in os.listdir(checkpoints))):
        time.sleep(0.05)


def test_ctrl_c_ends_in_one_line_that_says_a_rerun_resumes(hopper_random_npz, tmp_path):
    # Far more updates than the run reaches before the signal, so a busy machine cannot let it finish first.
    run = _offline(hopper_random_npz, tmp_path / "run", agent_steps=1_000_000)
    try:
        _wait_for_checkpoint(run, tmp_path / "run" / "agent")
        assert run.poll() is None, run.stderr.read()[-2000:]
        run.send_signal(signal.SIGINT)
        # At once: not after the chunk of updates in flight, which JAX's teardown would wait for.
        assert run.wait(timeout=20) == 130
    finally:
        run.kill()  # a run that ignored the signal must not outlive the test: it has a million updates to go
    log = run.stderr.read()
    lines = log.splitlines()
    assert "Traceback" not in log, log[-3000:]
    assert lines[-1] == "launch.offline: interrupted; rerun the same command to resume where it stopped."
    assert any(line.startswith("I") and "scores.py" in line for line in lines), log[-3000:]  # our INFO lines are shown
    assert not any("orbax" in line or "checkpoint_manager" in line for line in lines), log[-3000:]  # Orbax's INFO hidden
