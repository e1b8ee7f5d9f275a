"""The Colab notebook, executed top to bottom on the CPU with the smoke config shrunk further, and
its install cell as a fresh runtime runs it.

The pipeline runs in a real Jupyter kernel (nbclient + ipykernel) from this checkout, without the
pip install, so it exercises exactly the cells a Colab user runs. The data is the bundled walker2d
dataset when the package ships it, else 2000 random Hopper steps from the real simulator. The
install cell runs outside any checkout, in a new virtual environment that sees this one's packages
(a runtime's preinstalled ones), with no package index: it clones this repository and installs a
wheel of it built here.
"""
import json
import os
import site
import subprocess
import sys

import pytest

nbclient = pytest.importorskip("nbclient", reason="executing the notebook needs nbclient and ipykernel")
nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "synther_colab.ipynb")
SHRINK = ("--config.num_samples=2000 --config.diffusion.num_train_steps=300 --config.diffusion.steps_per_call=100 "
          "--config.diffusion.sample_chunk_size=1000 --config.agent_steps=500 --config.eval_every=250 "
          "--config.eval_episodes=1 --config.diffusion.width=64 --config.diffusion.depth=2 --config.diffusion.dim_t=16 "
          "--config.batch_size=64 --config.td3_bc.hidden_dims=(32,32)")


def _dataset_overrides(request) -> str:
    """Nothing when the bundled dataset is present; else the small Hopper dataset of conftest.py."""
    from synther_jax.data import load_dataset
    from synther_jax.errors import DatasetNotFoundError
    try:
        load_dataset()
        return ""
    except DatasetNotFoundError:
        return f" --config.dataset={request.getfixturevalue('hopper_random_npz')}"


def _text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


@pytest.mark.slow
def test_notebook_runs_the_pipeline_and_shows_its_plots(tmp_path, monkeypatch, request):
    workdir = tmp_path / "run"
    monkeypatch.setenv("SYNTHER_NOTEBOOK_INSTALL", "0")
    monkeypatch.setenv("SYNTHER_NOTEBOOK_WORKDIR", str(workdir))
    monkeypatch.setenv("SYNTHER_NOTEBOOK_OVERRIDES", SHRINK + _dataset_overrides(request))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(notebook, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": os.path.dirname(NOTEBOOK)}}).execute()
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not any(output.output_type == "error" for output in cell.outputs) for cell in code)

    assert "INSTALL is off" in _text(code[1]) and "runtime accelerator: cpu" in _text(code[1])
    assert "(cpu)" in _text(code[2]) and "configs/d4rl.py:walker2d,smoke" in _text(code[2])  # CPU picks smoke
    with open(workdir / "results.json") as f:
        results = json.load(f)
    assert len(results["final_normalized_score"]["per_seed"]) == results["num_seeds"]
    assert f"over {results['num_seeds']} seeds" in _text(code[4])

    pngs = sorted(p for p in workdir.rglob("*.png"))
    assert any(p.name == "learning_curve.png" for p in pngs)
    shown = [output for output in code[5].outputs if "image/png" in output.get("data", {})]
    assert len(shown) == len(pngs)


def test_install_cell_clones_and_installs_the_package_with_runtime_dependencies_only(tmp_path):
    wheelhouse, runtime, fresh = tmp_path / "wheels", tmp_path / "runtime", tmp_path / "content"
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                            f"--wheel-dir={wheelhouse}", ROOT], capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = wheelhouse.glob("synther_jax-*.whl")
    # The runtime sees this interpreter's packages (jax, pip, ...) through a .pth file: `venv
    # --system-site-packages` would show the base interpreter's instead, which inside a virtual
    # environment lacks them.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(runtime)], check=True)
    outer = "".join(f"import site; site.addsitedir({path!r})\n" for path in site.getsitepackages())
    (next(runtime.glob("lib/python*/site-packages")) / "outer_packages.pth").write_text(outer)
    fresh.mkdir()
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters, install = [cell.source for cell in notebook.cells if cell.cell_type == "code"][:2]
    environment = {**os.environ, "SYNTHER_REPO_URL": f"file://{ROOT}", "SYNTHER_NOTEBOOK_PACKAGE": str(wheel),
                   "PIP_NO_INDEX": "1", "PIP_FIND_LINKS": str(wheelhouse), "PYTHONNOUSERSITE": "1"}
    python = str(runtime / "bin" / "python")
    run = subprocess.run([python, "-c", parameters + "\n" + install], cwd=fresh, env=environment, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert (fresh / "synther_jax" / "launch" / "offline.py").exists()  # the clone, for launch/ and configs/
    assert "installed synther_jax" in run.stdout

    where = subprocess.run([python, "-c", "import synther_jax; print(synther_jax.__file__)"], cwd=tmp_path,
                           env=environment, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(runtime))  # the package itself, installed into the runtime
    installed = subprocess.run([python, "-m", "pip", "list", "--path", str(next(runtime.glob("lib/python*/site-packages"))),
                                "--format=json"], env=environment, capture_output=True, text=True, check=True).stdout
    assert [package["name"] for package in json.loads(installed)] == ["synther_jax"]
    assert "requirements" not in install and "[test" not in install  # runtime dependencies only, no test pins
