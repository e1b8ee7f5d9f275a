"""Every entry point (and the experiment runners that take paths) refuses bad input like a library: a
non-zero exit, one line on stderr naming the problem and the fix, no traceback, and no work
directory left behind.

Each launcher's cases run in one child process (`HARNESS` runs the module as `__main__` once per
case, as `python -m` does, after one `--helpshort` run that imports everything), since importing
JAX and MuJoCo takes longer than any refusal; each refusal is timed on its own.
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

HARNESS = r'''
import contextlib, io, json, runpy, sys, time, traceback
from absl import app, flags, logging
module, cases = sys.argv[1], json.loads(sys.argv[2])
defined = set(flags.FLAGS)
results = []
for argv in [["--helpshort"], *cases]:
    sys.argv = [module, *argv]
    stderr, status, start = io.StringIO(), None, time.perf_counter()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
        except SystemExit as exit:
            status = exit.code
        except BaseException:
            traceback.print_exc()
    flags.FLAGS.unparse_flags()
    for name in set(flags.FLAGS) - defined:  # the next run defines its flags again
        delattr(flags.FLAGS, name)
    results.append({"status": status, "stderr": stderr.getvalue(), "seconds": time.perf_counter() - start})
print(json.dumps(results[1:]))
'''


def _write_npz(path, num, obs_dim=17, action_dim=6, nan=False, short_actions=False):
    arrays = {"observations": np.random.default_rng(0).normal(size=(num, obs_dim)).astype(np.float32),
              "actions": np.zeros((num - short_actions, action_dim), np.float32), "rewards": np.zeros(num, np.float32),
              "next_observations": np.zeros((num, obs_dim), np.float32), "terminals": np.zeros(num, np.float32)}
    if nan:
        arrays["rewards"][0] = np.nan
    np.savez(path, **arrays)
    return str(path)


@pytest.fixture(scope="module")
def bad(tmp_path_factory):
    """Paths of bad inputs: datasets with each kind of fault, a file where a folder should be."""
    folder = tmp_path_factory.mktemp("bad")
    paths = {"nan": _write_npz(folder / "nan.npz", 50, nan=True),
             "lengths": _write_npz(folder / "lengths.npz", 50, short_actions=True),
             "empty": _write_npz(folder / "empty.npz", 0), "one": _write_npz(folder / "one.npz", 1),
             "dims": _write_npz(folder / "dims.npz", 50, obs_dim=11, action_dim=3),
             "good": _write_npz(folder / "good.npz", 50), "noise": str(folder / "noise.npz"),
             "file": str(folder / "a_file"), "minari": str(folder / "minari")}
    (folder / "noise.npz").write_bytes(np.random.default_rng(0).bytes(1000))
    (folder / "a_file").write_text("not a folder")
    os.makedirs(os.path.join(paths["minari"], "synther", "taken", "random-v0"))
    return paths


def _cases(launcher, bad, workdir):
    """(command-line flags, a part of the expected message) per bad input of `launcher`."""
    offline = "--config=configs/d4rl.py:walker2d,smoke"
    data = lambda name: [offline, f"--config.dataset={bad[name]}", "--config.env_id=Walker2d-v4", f"--workdir={workdir}"]
    workdirs = [([offline, f"--workdir={bad['file']}"], "is a file, not a folder"),
                ([offline, f"--workdir={bad['file']}/run"], "which is a file"),
                ([offline, "--workdir="], "--workdir is empty")]
    datasets = [(data("nan"), "NaN or inf"), (data("lengths"), "inconsistent shapes"), (data("empty"), "is empty"),
                (data("one"), "at least 2"), (data("noise"), "not a NumPy .npz archive"),
                (data("dims"), "another environment"), (data("missing"), "No dataset")]
    config = [([f"--config=configs/d4rl.py:walker2d,smoke", "--config.algoritm=iql", f"--workdir={workdir}"],
               'Did you mean "algorithm"'),
              (["--config=configs/nowhere.py:walker2d", f"--workdir={workdir}"], "cannot load the config file"),
              (["--config=configs/d4rl.py:walkr2d", f"--workdir={workdir}"], "Unknown config 'walkr2d'"),
              ([offline, "--config.seed=one", f"--workdir={workdir}"], "--config.seed=one"),
              ([offline], "--workdir must have a value")]
    online = "--config=configs/online.py:hopper-sac,smoke"
    samples = lambda name: ["--dataset=bundled/walker2d-medium-replay", f"--samples={bad[name]}", f"--out={workdir}"]
    return {
        "launch.offline": workdirs + datasets + config,
        "launch.synthesize": [(data("nan"), "NaN or inf"), (data("one"), "at least 2"),
                              ([offline, f"--workdir={bad['file']}"], "is a file")],
        "launch.online": [([online, f"--workdir={bad['file']}"], "is a file"),
                          (["--config=configs/online.py:hoper-sac", f"--workdir={workdir}"], "hoper"),
                          ([online, "--config.total_stepz=5", f"--workdir={workdir}"], 'Did you mean "total_steps"')],
        "launch.pixels": [(["--config=configs/vd4rl.py:walker-walk-medium,smoke", f"--config.dataset={bad['missing']}",
                            f"--workdir={workdir}"], bad["missing"]),
                          (["--config=configs/vd4rl.py:walker-walk-medium,smoke", f"--workdir={bad['file']}"],
                           "is a file")],
        "launch.collect": [(["--env=Walkr2d-v5", "--num_steps=10"], "did you mean Walker2d-v5?"),
                           (["--env=maze2d-umze", "--num_steps=10"], "did you mean maze2d-umaze?"),
                           (["--env=maze2d-umaze", "--level=medium"], "leave --level out"),
                           (["--env=Walker2d-v5", "--reference_scores"], "--reference_scores is for the maze2d"),
                           (["--env=Walker2d-v5", "--dataset_id=walker"], "Malformed Minari dataset id"),
                           (["--env=Walker2d-v5", "--dataset_id=synther/taken/random-v0"], "already exists"),
                           (["--env=walker-walk", "--pixels"], "--pixels needs --out"),
                           (["--env=Walker2d-v5", "--num_steps=ten"], "--num_steps=ten")],
        "launch.analyze": [(samples("missing"), "No synthetic dataset"), (samples("nan"), "NaN or inf"),
                           (samples("dims"), "differ in shape"), (samples("noise"), "not a NumPy .npz archive"),
                           (["--dataset=bundled/walker2d-medium-replay", f"--samples={bad['good']}",
                             f"--out={bad['file']}"], "is a file"),
                           ([*samples("good"), "--baselines=gaussian"], "--baselines: unknown"),
                           (["--dataset=bundled/walker2d", f"--samples={bad['good']}", f"--out={workdir}"],
                            "No bundled dataset")],
        "launch.sweep": [(["--sweep=smok", f"--root={workdir}"], "--sweep=smok"),
                         (["--sweep=smoke", f"--root={workdir}", "--max_parallel=0"], "--max_parallel=0"),
                         (["--sweep=smoke"], "--sweep and --root are required")],
        "experiments.online_arms": [([f"--workdir={bad['file']}/runs"], "which is a file")],
    }[launcher]


LAUNCHERS = ("launch.offline", "launch.synthesize", "launch.online", "launch.pixels", "launch.collect",
             "launch.analyze", "launch.sweep", "experiments.online_arms")


@pytest.mark.parametrize("launcher", LAUNCHERS)
def test_bad_input_exits_in_one_line_and_leaves_nothing(launcher, bad, tmp_path):
    bad = {**bad, "missing": str(tmp_path / "missing.npz")}
    workdir = tmp_path / "run"
    cases = _cases(launcher, bad, workdir)
    env = {**os.environ, "MINARI_DATASETS_PATH": bad["minari"]}
    child = subprocess.run([sys.executable, "-c", HARNESS, launcher, json.dumps([argv for argv, _ in cases])],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert child.returncode == 0, child.stderr[-3000:]
    for (argv, expected), result in zip(cases, json.loads(child.stdout.splitlines()[-1])):
        lines = [line for line in result["stderr"].splitlines() if line.strip()]
        assert isinstance(result["status"], int) and result["status"] != 0, (argv, result)
        assert len(lines) == 1 and lines[0].startswith(f"{launcher}: ") and expected in lines[0], (argv, lines)
        assert result["seconds"] < 20, (argv, result["seconds"])
        assert not workdir.exists(), argv
