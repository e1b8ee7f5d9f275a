"""The experiment benchmarks at their smallest size, end to end: bench.offline with explicit
augmentation arms (paper Figure 1a) and bench.online_curves (paper Figure 6)."""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *flags):
    result = subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]


def test_offline_benchmark_with_augmentation_arms(tmp_path):
    """One arm first on its own (`--only`, as a parallel process would), then the whole set, which
    runs the rest, reads the finished arm back and writes the JSON."""
    out = tmp_path / "figure1a.json"
    flags = ["--config=walker2d,smoke", "--augmentations=additive,dynamics", "--denoisers=64x2:200",
             "--num_samples=2000", "--sample_chunk_size=1000", "--num_sample_steps=8", "--S_churn=0",
             "--num_seeds=2", "--agent_steps=100", "--eval_every=50", "--eval_episodes=1",
             f"--workdir={tmp_path / 'runs'}", f"--out={out}"]
    _run("bench.offline", *flags, "--only=synthetic")
    assert os.listdir(tmp_path / "runs") == ["synthetic-64x2-200"] and not out.exists()
    synthetic = tmp_path / "runs" / "synthetic-64x2-200"
    first_scores = json.loads((synthetic / "results.json").read_text())["final_normalized_score"]
    samples_written = os.path.getmtime(synthetic / "samples" / "seed0.npz")

    _run("bench.offline", *flags)
    assert os.path.getmtime(synthetic / "samples" / "seed0.npz") == samples_written  # the finished arm is not redone
    record = json.loads(out.read_text())
    runs = {run["name"]: run for run in record["runs"]}
    assert runs["synthetic-64x2-200"]["final_normalized_score"] == first_scores
    assert list(runs) == ["real", "augmentation-additive", "augmentation-dynamics", "synthetic-64x2-200"]
    assert runs["synthetic-64x2-200"]["diffusion"]["num_sample_steps"] == 8
    assert runs["synthetic-64x2-200"]["diffusion"]["S_churn"] == 0
    assert runs["augmentation-dynamics"]["augmentation"] == "dynamics" and runs["augmentation-dynamics"]["diffusion"] is None
    assert runs["synthetic-64x2-200"]["diffusion"]["width"] == 64
    assert "diffusion" not in runs["augmentation-additive"]["stage_seconds"]  # no denoiser was trained for it
    assert all(len(run["final_normalized_score"]["per_seed"]) == 2 for run in runs.values())
    for run in runs.values():  # every evaluation is recorded, the last one being the final score
        assert run["scores_by_step"]["steps"] == [50, 100]
        assert run["scores_by_step"]["per_seed"][-1] == run["final_normalized_score"]["per_seed"]
    assert (tmp_path / "figure1a.png").exists() and (tmp_path / "figure1a_curves.png").exists()
    # The synthetic arm has one denoiser per seed (the default), and says so per seed.
    synthetic_run = runs["synthetic-64x2-200"]
    assert synthetic_run["denoiser_protocol"] == "per_seed" and record["denoiser_per_seed"] is True
    assert [s["denoiser_seed"] for s in synthetic_run["seeds"]] == [0, 1]
    assert os.path.exists(synthetic / "samples" / "seed1.npz") and len(synthetic_run["fidelity"]["per_denoiser"]) == 2
    assert runs["augmentation-additive"]["denoiser_protocol"] is None
    assert record["command"].startswith("python -m bench.offline --config=walker2d,smoke")
    assert synthetic_run["command"].endswith("--only=synthetic")  # the arm was made by the first command


def test_online_curves_smoke(tmp_path):
    """First with no time left, so every variant stops at its first evaluation; then without the
    budget, which resumes each variant there and finishes it."""
    out = tmp_path / "curves.json"
    flags = ["--smoke", "--num_seeds=2", "--fidelity_samples=1000", f"--workdir={tmp_path / 'runs'}", f"--out={out}"]
    _run("bench.online_curves", *flags, "--max_hours=0")
    stopped = json.loads(out.read_text())
    for run in stopped["runs"].values():
        assert run["env_steps"] == 600 and [e["env_step"] for e in run["evaluations"]] == [600]

    _run("bench.online_curves", *flags)
    record = json.loads(out.read_text())
    assert all(run["env_steps"] == 1200 for run in record["runs"].values())
    assert set(record["runs"]) == {"sac", "synther"}
    for run in record["runs"].values():
        assert [e["env_step"] for e in run["evaluations"]] == [600, 1200]
        assert all(len(e["returns"]) == 2 for e in run["evaluations"])
    assert record["runs"]["synther"]["config"]["agent"]["utd_ratio"] == 20
    fidelity = record["denoiser_fidelity"]
    assert fidelity["real_rows"] == 1200 and 0 < fidelity["marginal_score"] <= 1
    assert (tmp_path / "curves.png").exists()
