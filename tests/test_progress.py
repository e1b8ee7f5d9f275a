"""`synther_jax.progress.Progress`: a bar on a terminal, plain INFO lines each tenth of the way (or
every 30 s) elsewhere, nothing where logging hides INFO; and a launcher's log file without a
carriage return."""
import io
import logging
import os
import re
import subprocess
import sys

import pytest

from synther_jax import progress as progress_module
from synther_jax.progress import Progress

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def lines(caplog):
    return [record.getMessage() for record in caplog.records if record.name == "absl"]


def test_a_log_gets_a_line_each_tenth_of_the_way_with_the_postfix(caplog):
    caplog.set_level(logging.INFO, logger="absl")
    with Progress(300, "training", unit="step") as bar:
        for step in range(300):
            bar.update()
            if step == 200:
                bar.set_postfix(loss="0.5")
    logged = lines(caplog)
    assert [re.match(r"training: (\d+)% \((\d+)/300\)", line).groups() for line in logged] == [
        (str(10 * k), str(30 * k)) for k in range(1, 11)]
    assert all("loss=0.5" in line for line in logged[6:]) and not any("loss" in line for line in logged[:6])


def test_a_resumed_count_logs_from_its_next_tenth_and_close_logs_where_it_stopped(caplog):
    caplog.set_level(logging.INFO, logger="absl")
    with Progress(100, "agents", initial=45) as bar:
        bar.update(10)  # 55: past the 50% mark
        bar.update(2)  # 57: below 60%, nothing
    assert [re.match(r"agents: (\d+)% \((\d+)/100\)", line).groups() for line in lines(caplog)] == [
        ("55", "55"), ("57", "57")]


def test_a_slow_loop_logs_every_30_seconds(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="absl")
    clock = iter(range(0, 10_000, 20))  # 20 s per call of the clock
    monkeypatch.setattr(progress_module.time, "monotonic", lambda: next(clock))
    bar = Progress(None, "evaluating", unit="step")  # no total: only the clock says when
    for _ in range(4):
        bar.update()
    bar.close()
    # Start at 0 s; updates read 20, 40 (log), 60, 80 (log); close logs nothing new.
    assert [re.match(r"evaluating: (\d+),", line).group(1) for line in lines(caplog)] == ["2", "4"]


@pytest.mark.parametrize("level", [logging.WARNING, logging.INFO])
def test_nothing_is_shown_when_absl_hides_info_or_progress_is_off(caplog, monkeypatch, level):
    caplog.set_level(level, logger="absl")
    for terminal in (False, True):
        monkeypatch.setattr(progress_module, "_stderr_is_terminal", lambda: terminal)
        stderr = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stderr)
        enabled = level == logging.WARNING  # at INFO, only progress=False hides it
        assert list(Progress(50, "quiet", enabled=enabled).track(range(50))) == list(range(50))
        assert stderr.getvalue() == ""
    assert lines(caplog) == []


def test_a_library_user_with_logging_untouched_sees_a_bar_on_a_terminal_and_no_lines_elsewhere(monkeypatch):
    monkeypatch.setattr(logging.getLogger("absl"), "level", logging.NOTSET)
    monkeypatch.setattr(logging.getLogger(), "level", logging.WARNING)  # Python's default
    for terminal in (True, False):
        monkeypatch.setattr(progress_module, "_stderr_is_terminal", lambda: terminal)
        stderr = io.StringIO()
        monkeypatch.setattr(sys, "stderr", stderr)
        with Progress(10, "fitting", unit="step") as bar:
            bar.update(10)
        assert ("fitting: 100%" in stderr.getvalue()) == terminal


def test_a_terminal_gets_a_tqdm_bar_and_no_log_lines(caplog, monkeypatch):
    caplog.set_level(logging.INFO, logger="absl")
    monkeypatch.setattr(progress_module, "_stderr_is_terminal", lambda: True)
    stderr = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stderr)
    with Progress(20, "drawing", unit="frame") as bar:
        bar.update(20)
    assert "\r" in stderr.getvalue() and "drawing: 100%" in stderr.getvalue() and "20/20" in stderr.getvalue()
    assert lines(caplog) == []


def collect(tmp_path, name, *flags):
    """`launch.collect` of 300 random steps with stderr to a file; returns that file's text."""
    log = tmp_path / f"{name}.log"
    command = [sys.executable, "-m", "launch.collect", "--env=Walker2d-v5", "--level=random", "--num_steps=300",
               f"--dataset_id=synther/walker2d/{name}-v0", *flags]
    environment = {**os.environ, "MINARI_DATASETS_PATH": str(tmp_path / "minari"), "JAX_PLATFORMS": "cpu"}
    with open(log, "w") as stderr:
        result = subprocess.run(command, cwd=ROOT, env=environment, stdout=subprocess.DEVNULL, stderr=stderr,
                                timeout=600)
    text = log.read_text()
    assert result.returncode == 0, text[-3000:]
    return text


def test_a_launcher_logged_to_a_file_writes_plain_lines_and_none_at_verbosity_minus_1(tmp_path):
    text = collect(tmp_path, "logged")
    assert "\r" not in text
    shown = re.findall(r"random Walker2d-v5: (\d+)% \((\d+)/300\)", text)
    assert shown == [(str(10 * k), str(30 * k)) for k in range(1, 11)]

    quiet = collect(tmp_path, "quiet", "--verbosity=-1")
    assert "\r" not in quiet and "random Walker2d-v5" not in quiet
