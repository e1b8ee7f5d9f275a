"""The Colab notebook, executed top to bottom on the CPU with the smoke config shrunk further.

It runs in a real Jupyter kernel (nbclient + ipykernel) from this checkout, without the pip
install, so it exercises exactly the cells a Colab user runs. The data is the bundled walker2d
dataset when the package ships it, else 2000 random Hopper steps from the real simulator.
"""
import json
import os

import pytest

nbclient = pytest.importorskip("nbclient", reason="executing the notebook needs nbclient and ipykernel")
nbformat = pytest.importorskip("nbformat")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(ROOT, "notebooks", "synther_colab.ipynb")
SHRINK = ("--config.num_samples=2000 --config.diffusion.num_train_steps=300 --config.diffusion.steps_per_call=100 "
          "--config.diffusion.sample_chunk_size=1000 --config.agent_steps=500 --config.eval_every=250 "
          "--config.eval_episodes=1")


def _dataset_overrides(request) -> str:
    """Nothing when the bundled dataset is present; else the small Hopper dataset of conftest.py."""
    from synther_jax.data import load_dataset
    from synther_jax.data.errors import DatasetNotFoundError
    try:
        load_dataset()
        return ""
    except DatasetNotFoundError:
        return f" --config.dataset={request.getfixturevalue('hopper_random_npz')}"


def _text(cell) -> str:
    return "".join(output.get("text", "") for output in cell.outputs if output.output_type == "stream")


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
