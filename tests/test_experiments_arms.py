"""The experiments' runners at their smallest size, end to end: experiments.offline_arms with explicit
augmentation arms (paper Figure 1a) and experiments.online_arms (paper Figure 6)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _run(module, *flags) -> str:
    """Runs `python -m module flags`; its stderr."""
    result = subprocess.run([sys.executable, "-m", module, *flags], cwd=ROOT, capture_output=True, text=True,
                            timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stderr


@pytest.mark.slow
def test_offline_arms_with_augmentation_arms(tmp_path):
    """One arm first on its own (`--only`, as a parallel process would), then the whole set, which
    runs the rest, reads the finished arm back and writes the JSON."""
    out = tmp_path / "figure1a.json"
    flags = ["--config=walker2d,smoke", "--augmentations=additive,dynamics", "--denoisers=32x1:100",
             "--num_samples=2000", "--sample_chunk_size=1000", "--num_sample_steps=4", "--S_churn=0",
             "--num_seeds=2", "--agent_steps=40", "--eval_every=20", "--eval_episodes=1",
             f"--workdir={tmp_path / 'runs'}", f"--out={out}"]
    _run("experiments.offline_arms", *flags, "--only=synthetic")
    assert os.listdir(tmp_path / "runs") == ["synthetic-32x1-100"] and not out.exists()
    synthetic = tmp_path / "runs" / "synthetic-32x1-100"
    first_scores = json.loads((synthetic / "results.json").read_text())["final_normalized_score"]
    samples_written = os.path.getmtime(synthetic / "samples" / "seed0.npz")

    _run("experiments.offline_arms", *flags)
    assert os.path.getmtime(synthetic / "samples" / "seed0.npz") == samples_written  # the finished arm is not redone
    record = json.loads(out.read_text())
    runs = {run["name"]: run for run in record["runs"]}
    assert runs["synthetic-32x1-100"]["final_normalized_score"] == first_scores
    assert list(runs) == ["real", "augmentation-additive", "augmentation-dynamics", "synthetic-32x1-100"]
    assert runs["synthetic-32x1-100"]["diffusion"]["num_sample_steps"] == 4
    assert runs["synthetic-32x1-100"]["diffusion"]["S_churn"] == 0
    assert runs["augmentation-dynamics"]["augmentation"] == "dynamics" and runs["augmentation-dynamics"]["diffusion"] is None
    assert runs["synthetic-32x1-100"]["diffusion"]["width"] == 32
    assert "diffusion" not in runs["augmentation-additive"]["stage_seconds"]  # no denoiser was trained for it
    assert all(len(run["final_normalized_score"]["per_seed"]) == 2 for run in runs.values())
    for run in runs.values():  # every evaluation is recorded, the last one being the final score
        assert run["scores_by_step"]["steps"] == [20, 40]
        assert run["scores_by_step"]["per_seed"][-1] == run["final_normalized_score"]["per_seed"]
    assert (tmp_path / "figure1a.png").exists() and (tmp_path / "figure1a_curves.png").exists()
    # The synthetic arm has one denoiser per seed (the default), and says so per seed.
    synthetic_run = runs["synthetic-32x1-100"]
    assert synthetic_run["denoiser_protocol"] == "per_seed" and record["denoiser_per_seed"] is True
    assert [s["denoiser_seed"] for s in synthetic_run["seeds"]] == [0, 1]
    assert os.path.exists(synthetic / "samples" / "seed1.npz") and len(synthetic_run["fidelity"]["per_denoiser"]) == 2
    assert runs["augmentation-additive"]["denoiser_protocol"] is None
    assert record["command"].startswith("python -m experiments.offline_arms --config=walker2d,smoke")
    assert synthetic_run["command"].endswith("--only=synthetic")  # the arm was made by the first command


@pytest.mark.slow
def test_online_arms_smoke(tmp_path):
    """First with no time left, so the first variant stops at its first evaluation and the others
    do not start; then without the budget, which resumes the first there and runs every variant to
    the end; then into an empty work directory, which keeps every run finished in the JSON instead
    of training it again. The smoke configs shrunk further by the command line: 400 environment steps
    (updates from step 300), an evaluation every 200 and a retrain at 300."""
    out = tmp_path / "curves.json"
    flags = ["--smoke", "--env=hopper", "--variants=synther,sac,pgr", "--num_seeds=2", "--total_steps=400",
             "--eval_every=200", "--eval_episodes=1", "--retrain_every=300", "--denoiser=32x1:200",
             "--num_samples=1000", "--fidelity_samples=500", f"--out={out}"]
    _run("experiments.online_arms", *flags, f"--workdir={tmp_path / 'runs'}", "--max_hours=0")
    stopped = json.loads(out.read_text())
    assert list(stopped["runs"]) == ["synther"]  # the budget was spent before sac and pgr
    assert not (tmp_path / "runs" / "sac").exists()
    run = stopped["runs"]["synther"]
    assert run["env_steps"] == 200 and [e["env_step"] for e in run["evaluations"]] == [200]
    assert "fidelity" not in run  # measured only once a run has finished

    _run("experiments.online_arms", *flags, f"--workdir={tmp_path / 'runs'}")
    record = json.loads(out.read_text())
    assert list(record["runs"]) == ["synther", "sac", "pgr"]
    for run in record["runs"].values():
        assert run["env_steps"] == 400 and [e["env_step"] for e in run["evaluations"]] == [200, 400]
        assert all(len(e["returns"]) == 2 for e in run["evaluations"])
        assert run["config"]["synther"]["num_samples"] == 1000  # the flags reach every variant's config
    runs = record["runs"]
    assert runs["synther"]["config"]["agent"]["utd_ratio"] == runs["pgr"]["config"]["agent"]["utd_ratio"] == 20
    assert "fidelity" not in runs["sac"] and "relevance" not in runs["synther"]
    for variant in ("synther", "pgr"):  # each synthesizing arm's extra denoiser, fitted to seed 0's final data
        fidelity = runs[variant]["fidelity"]
        assert fidelity["real_rows"] == 400 and 0 < fidelity["marginal_score"] <= 1
    relevance = runs["pgr"]["relevance"]
    assert relevance["condition"] == "curiosity" and relevance["scale"] == 2.0
    assert [r["env_step"] for r in relevance["retrains"]] == [300]  # --retrain_every=300, none at the last step
    assert all(len(r["per_seed"]) == 2 for r in relevance["retrains"])
    newest = relevance["retrains"][-1]["per_seed"]  # "last": the newest retrain's figures, averaged over seeds
    assert relevance["last"]["generated_mean"] == sum(r["generated"]["mean"] for r in newest) / 2
    for name in ("curves.png", "curves_pgr_relevance_seed0.png", "curves_pgr_relevance_seed1.png"):
        assert (tmp_path / name).exists(), name

    _run("experiments.online_arms", *flags, f"--workdir={tmp_path / 'later'}")
    assert not (tmp_path / "later").exists() or not os.listdir(tmp_path / "later")  # nothing trained again
    assert json.loads(out.read_text())["runs"] == runs


def test_a_run_is_kept_only_if_it_finished_with_the_same_config():
    from experiments.online_arms import finished_run
    from configs import online

    config = online.get_config("cheetah-run-synther,smoke")
    record = {"runs": {"synther": {"env_steps": config.total_steps, "config": config.to_dict()}}}
    previous = json.loads(json.dumps(record))  # as read back from the JSON
    assert finished_run(previous, "synther", config) is previous["runs"]["synther"]
    assert finished_run(previous, "pgr", config) is None  # never run
    assert finished_run(None, "synther", config) is None  # no earlier JSON
    longer = online.get_config("cheetah-run-synther,smoke")
    longer.total_steps += 600
    assert finished_run(previous, "synther", longer) is None  # stopped short of this config's length
    other = online.get_config("cheetah-run-synther,smoke")
    other.synther.num_samples = 1000
    assert finished_run(previous, "synther", other) is None  # another config
