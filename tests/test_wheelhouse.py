"""accelerator.wheelhouse: a Python 3.12 environment holding only a GPU node's packages (the newest this
registry offers) runs the runbook's online-retrain step from the wheelhouse alone, installed with no
index through accelerator/booking.sh, and the wheelhouse stays under 40 MiB. The step imports both
sets' wheels (SAC's policy is distrax's); the learners themselves on the newest JAX are CI's
Python 3.12 run's (.ci/run)."""
import glob
import json
import os
import shutil
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HAVE = "jax,jaxlib,flax,optax,chex,orbax-checkpoint,numpy,scipy,h5py,matplotlib,tqdm,absl-py,protobuf"


def python312():
    """A Python 3.12 interpreter on the PATH or among pyenv's versions; None if there is none."""
    candidates = [shutil.which("python3.12")]
    if shutil.which("pyenv"):
        root = subprocess.run(["pyenv", "root"], capture_output=True, text=True).stdout.strip()
        candidates += sorted(glob.glob(os.path.join(root, "versions", "3.12*", "bin", "python3.12")))
    for candidate in filter(None, candidates):
        check = subprocess.run([candidate, "-c", "import sys; assert sys.version_info[:2] == (3, 12)"],
                               capture_output=True)
        if check.returncode == 0:
            return candidate
    return None


def run(command, **kwargs):
    result = subprocess.run(command, capture_output=True, text=True, **kwargs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.mark.slow
def test_a_python312_node_runs_the_runbook_from_the_wheelhouse_alone(tmp_path):
    python = python312()
    if python is None:
        pytest.skip("no Python 3.12 interpreter on this machine")
    node = tmp_path / "node"
    # The node's site packages, installed by uv (a pip-compatible installer that resolves and installs
    # in seconds where pip takes minutes); --seed gives the node its own pip, as a GPU node has.
    run([sys.executable, "-m", "uv", "venv", "--quiet", "--seed", "--python", python, str(node)], timeout=300)
    node_python = str(node / "bin" / "python")
    run([sys.executable, "-m", "uv", "pip", "install", "--quiet", "--python", node_python, *HAVE.split(",")],
        timeout=1800)

    wheelhouse = tmp_path / "wheelhouse"
    made = run([sys.executable, "-m", "accelerator.wheelhouse", "--python=3.12", f"--have={HAVE}",
                f"--out={wheelhouse}"], cwd=ROOT, timeout=1800)
    wheels = sorted(os.listdir(wheelhouse))
    assert sum(os.path.getsize(wheelhouse / wheel) for wheel in wheels) < 40 * 2**20, made.stdout
    assert not {wheel.split("-")[0].lower() for wheel in wheels} & {"jax", "jaxlib", "flax", "numpy", "scipy"}
    assert {"distrax", "mujoco", "gymnasium"} <= {wheel.split("-")[0].lower() for wheel in wheels}

    out = tmp_path / "out"
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment.update(OUT=str(out), PYTHON=node_python, WHEELHOUSE=str(wheelhouse), PIP_NO_INDEX="1",
                       JAX_PLATFORMS="cpu")
    booking = run(["bash", "accelerator/booking.sh", "420", "--smoke", "--only=online_retrain"],
                  cwd=ROOT, env=environment, timeout=900)
    record = json.loads((out / "runbook.json").read_text())
    status = {step["name"]: step["status"] for step in record["steps"]}
    assert status == {"device": "done", "online_retrain": "done"}, booking.stdout[-3000:]
    node_jax = run([node_python, "-c", "import jax; print(jax.__version__)"]).stdout.strip()
    assert record["versions"]["python"].startswith("3.12") and record["versions"]["jax"] == node_jax
    assert "distrax" in record["versions"] and "mujoco" in record["versions"]
    retrain = next(step for step in record["steps"] if step["name"] == "online_retrain")["figures"]
    assert retrain["retrains"] == 1 and retrain["last_chunk_loss"] < retrain["first_chunk_loss"]
