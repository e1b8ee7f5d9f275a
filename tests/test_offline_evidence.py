"""experiments.offline_evidence: the committed plan lists the commands the module runs, and each
derived arm's files are the base's files changed in its one factor only."""
import dataclasses
import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments.offline_evidence import (AGAINST_REAL, ARMS, DEFAULT_WORKDIR, DISTILLATION, NUM_SEEDS, RESULTS,
                                          arm_config, arms_table, command, derive_files, report, summary_rows)
from pipelines.synthesis import SEED_SAMPLES_FILE, load_real
from synther_jax.checkpoint import Checkpointer
from synther_jax.data import Transitions, read_synthetic, write_synthetic
from synther_jax.diffusion import DiffusionConfig
from synther_jax.diffusion.training import train_diffusion
from synther_jax.termination import RULES
from tests.test_compare import fake_run

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = 300
ARMS_BY_NAME = {arm.name: arm for arm in ARMS}


def test_the_plan_lists_every_arm_and_its_command():
    with open(os.path.join(ROOT, "experiments", "offline_evidence.md")) as file:
        plan = file.read()
    for arm in ARMS:
        assert f"| `{arm.name}` |" in plan
        assert "    " + " ".join(command(arm, DEFAULT_WORKDIR)) + "\n" in plan


def _flat(config: dict) -> dict:
    return {f"{key}.{inner}" if isinstance(value, dict) else key: inner_value
            for key, value in config.items()
            for inner, inner_value in (value.items() if isinstance(value, dict) else [(None, value)])}


def test_every_arm_is_a_valid_config_differing_from_the_base_in_its_factor():
    base = _flat(arm_config(ARMS_BY_NAME["base"]).to_dict())
    differences = {arm.name: {key for key, value in _flat(arm_config(arm).to_dict()).items() if value != base[key]}
                   for arm in ARMS}
    assert differences["base"] == set()
    assert differences["env_rule"] == {"terminals"}
    assert differences["first100k"] == {"num_samples"}
    assert differences["steps32"] == {"diffusion.num_sample_steps", "diffusion.S_churn"}
    assert differences["clipped"] == {"clip_actions"}
    assert differences["distilled4"] == differences["distilled1"] == {"distill.num_steps"}
    assert {"data", "denoiser_per_seed"} <= differences["real"]


@pytest.fixture
def base_files(tmp_path):
    """Base sample files of walker2d's shape, drawn at random, one per seed: actions beyond [-1, 1],
    heights on both sides of the health rule, every terminal flag 0."""
    rng, folder = np.random.default_rng(0), tmp_path / "base"
    config = arm_config(ARMS_BY_NAME["base"])
    for i in range(NUM_SEEDS):
        observations = rng.normal(size=(ROWS, 17)).astype(np.float32)
        next_observations = rng.normal(size=(ROWS, 17)).astype(np.float32)
        next_observations[:, 0] = rng.uniform(0.5, 2.3, ROWS)  # the height: about a third outside (0.8, 2.0)
        data = Transitions(observations, rng.normal(0, 1.5, (ROWS, 6)).astype(np.float32),
                           rng.normal(size=ROWS).astype(np.float32), next_observations, np.zeros(ROWS, np.float32))
        write_synthetic(str(folder / SEED_SAMPLES_FILE.format(i)), data, source_dataset=config.dataset, config={},
                        seed=i, model_checkpoint=None, env_id="Walker2d-v4")
    return tmp_path


def _files(workdir, arm):
    return [read_synthetic(str(workdir / arm / SEED_SAMPLES_FILE.format(i))) for i in range(NUM_SEEDS)]


@pytest.mark.parametrize("name", ["env_rule", "first100k", "clipped"])
def test_derived_files_change_only_their_factor(name, base_files):
    arm = ARMS_BY_NAME[name]
    if name == "first100k":  # the cut, scaled to the test's files
        arm = dataclasses.replace(arm, overrides={**arm.overrides, "num_samples": 120})
    derive_files(arm, str(base_files))
    for base, derived in zip(_files(base_files, "base"), _files(base_files, name)):
        expected = {"env_rule": lambda: dataclasses.replace(
                        base, terminals=RULES["walker2d"](base.next_observations).astype(np.float32)),
                    "first100k": lambda: base.subset(slice(0, 120)),
                    "clipped": lambda: dataclasses.replace(base, actions=np.clip(base.actions, -1, 1))}[name]()
        for key, value in expected.as_dict().items():
            np.testing.assert_array_equal(getattr(derived, key), value, err_msg=key)
    if name == "env_rule":
        assert 0 < derived.terminals.mean() < 1
    if name == "clipped":
        assert np.any(np.abs(base.actions) > 1) and np.max(np.abs(derived.actions)) == 1


def test_the_arms_that_sample_the_bases_denoisers_again(base_files):
    """The base's denoisers (tiny here) sampled with each arm's sampler, distilled first for the
    distilled arms: one file per seed, rows that differ between seeds, and no training anew."""
    tiny = {"num_samples": 40, "diffusion.width": 16, "diffusion.depth": 1, "diffusion.dim_t": 8,
            "diffusion.sample_chunk_size": 40, "diffusion.num_train_steps": 20, "diffusion.steps_per_call": 10,
            "diffusion.checkpoint_every": 10}
    arms = {"steps32": {**tiny, "diffusion.num_sample_steps": 3},
            "distilled4": {**tiny, "distill.num_train_steps": 10, "distill.steps_per_call": 5,
                           "distill.checkpoint_every": 5}}
    arms = {name: dataclasses.replace(ARMS_BY_NAME[name], overrides={**ARMS_BY_NAME[name].overrides, **overrides})
            for name, overrides in arms.items()}
    config = arm_config(arms["steps32"])
    rows = load_real(config).to_rows()[:500]
    diffusion = DiffusionConfig(**{**config.diffusion, "num_sample_steps": 128})
    keys = jnp.stack([jax.random.PRNGKey(seed) for seed in range(NUM_SEEDS)])
    denoisers = base_files / "base" / "diffusion"
    train_diffusion(rows, diffusion, keys, (rows.shape[1] - 1,), workdir=str(denoisers))
    last = denoisers / "checkpoints" / "20"
    shutil.move(last, base_files / "later")  # as if the training were still at step 10
    for arm in arms.values():
        with pytest.raises(Exception, match="not trained yet: run --only=base first"):
            derive_files(arm, str(base_files))
    shutil.move(base_files / "later", last)
    (base_files / "base" / SEED_SAMPLES_FILE.format(0)).unlink()  # the base still samples
    for name, arm in arms.items():
        derive_files(arm, str(base_files))
        samples = _files(base_files, name)
        assert all(len(data) == 40 and data.obs_dim == 17 for data in samples)
        assert np.max(np.abs(samples[0].observations - samples[1].observations)) > 1e-3
        assert not os.path.exists(base_files / name / "diffusion")  # sampled from the base's, not trained anew
    # Each seed's student, in the folder both distilled arms share.
    assert Checkpointer(str(base_files / DISTILLATION / "distill" / "checkpoints")).latest_step() == 10


def test_a_derived_arm_before_the_base_has_finished_is_refused(tmp_path):
    with pytest.raises(Exception, match="run --only=base first"):
        derive_files(ARMS_BY_NAME["clipped"], str(tmp_path))
    assert not os.path.exists(tmp_path / "clipped")


def _finished_arms(runs, offsets, fidelity, seed):
    """A finished run per arm ({name: mean score}) in `runs`, 3 evaluations of 6 seeds around its
    mean; the synthetic arms with denoiser seeds and `fidelity(name)` as results.json's fidelity."""
    rng = np.random.default_rng(seed)
    for name, offset in offsets.items():
        folder = fake_run(runs / name, offset + rng.normal(0, 2, (3, NUM_SEEDS)), steps=[80_000, 90_000, 100_000],
                          denoiser_seeds=None if name == "real" else list(range(NUM_SEEDS)))
        results = json.loads(open(os.path.join(folder, "results.json")).read())
        results.update(stage_seconds={"agent": 1.0}, fidelity=None if name == "real" else fidelity(name))
        with open(os.path.join(folder, "results.json"), "w") as file:
            json.dump(results, file)


def test_the_report_holds_every_arm_finished_or_pending(tmp_path):
    _finished_arms(tmp_path / "runs", {"real": 30.0, "base": 20.0, "env_rule": 25.0},
                   lambda name: {"mean": {"marginal_score": 0.9}}, seed=0)
    out = tmp_path / RESULTS[0]
    record = report(str(tmp_path / "runs"), str(out))

    assert json.loads(out.read_text()) == record
    assert [arm["name"] for arm in record["arms"]] == [arm.name for arm in ARMS]
    assert record["pending"] == ["first100k", "steps32", "clipped", "distilled4", "distilled1"]
    assert record["reference"] == "base"
    arms = {arm["name"]: arm for arm in record["arms"]}
    assert not arms["clipped"]["finished"] and "score" not in arms["clipped"]
    assert arms["clipped"]["command"] == " ".join(command(ARMS_BY_NAME["clipped"], DEFAULT_WORKDIR))
    assert arms["base"]["difference"] is None and arms["env_rule"]["fidelity"]["mean"]["marginal_score"] == 0.9
    for name in ("real", "env_rule"):  # paired with the base seed by seed
        per_seed = np.array(arms[name]["score"]["per_seed"]) - np.array(arms["base"]["score"]["per_seed"])
        assert arms[name]["difference"]["mean"]["estimate"] == pytest.approx(per_seed.mean())
        assert arms[name]["mean"]["low"] < arms[name]["mean"]["estimate"] < arms[name]["mean"]["high"]
    for name in ("base", "env_rule"):  # and with the real arm, in a family of its own
        per_seed = np.array(arms[name]["score"]["per_seed"]) - np.array(arms["real"]["score"]["per_seed"])
        assert arms[name]["difference_from_real"]["mean"]["estimate"] == pytest.approx(per_seed.mean())
    assert arms["real"]["difference_from_real"] is None
    folder = tmp_path / os.path.splitext(RESULTS[0])[0]
    for comparison in (folder, folder / AGAINST_REAL):
        assert (comparison / "comparison.md").exists() and (comparison / "intervals.png").exists()


def test_an_arm_whose_run_folder_is_gone_stays_in_the_report(tmp_path):
    _finished_arms(tmp_path / "runs", {"real": 30.0, "base": 20.0}, lambda name: {"mean": {"marginal_score": 0.9}},
                   seed=3)
    first = report(str(tmp_path / "runs"), str(tmp_path / RESULTS[0]))
    shutil.rmtree(tmp_path / "runs" / "real")  # lost with its machine; the base's run is still there
    again = report(str(tmp_path / "runs"), str(tmp_path / RESULTS[0]))
    assert again["pending"] == first["pending"] == ["env_rule", "first100k", "steps32", "clipped", "distilled4",
                                                    "distilled1"]
    assert again["arms"] == first["arms"]
    kept = tmp_path / os.path.splitext(RESULTS[0])[0] / "arms"
    assert sorted(os.listdir(kept)) == ["base", "real"]


def test_the_tables_show_every_arm_and_call_a_difference_covering_zero_not_shown(tmp_path):
    _finished_arms(tmp_path / "runs", {"real": 30.0, "base": 20.0, "env_rule": 20.5}, lambda name: {"mean": {
        "marginal_score": 0.95, "correlation_score": 0.99,
        "synthetic_falls_flagged": 0.1 if name == "base" else 1.0}}, seed=1)
    record = report(str(tmp_path / "runs"), str(tmp_path / RESULTS[0]))
    arms = {arm["name"]: arm for arm in record["arms"]}

    lines = arms_table(str(tmp_path))
    assert len(lines) == 2 + len(ARMS)
    rows = {line.split(" | ")[0].strip("| `"): line for line in lines[2:]}
    assert [name for name in rows] == [arm.name for arm in ARMS]
    for name in record["pending"]:
        assert " | pending | " in rows[name]
    for name, column in (("env_rule", "difference"), ("base", "difference_from_real")):
        mean = arms[name][column]["mean"]
        cell = f"{mean['estimate']:+.1f} [{mean['low']:+.1f}, {mean['high']:+.1f}]"
        covers_zero = mean["low"] <= 0 <= mean["high"]
        assert cell + (", not shown" if covers_zero else " |") in rows[name]
    assert arms["base"]["difference_from_real"]["mean"]["high"] < 0  # 10 points apart: shown
    assert "| 10% |" in rows["base"] and "| 100% |" in rows["env_rule"]
    [summary] = summary_rows(str(tmp_path))
    best = max(("base", "env_rule"), key=lambda name: arms[name]["difference_from_real"]["mean"]["estimate"])
    assert summary[2].startswith(f"{best} - real: -") and summary[2].endswith(f"; {len(ARMS) - 3} of {len(ARMS)} arms pending")


def test_before_the_base_finishes_no_difference_is_called_the_bases(tmp_path):
    _finished_arms(tmp_path / "runs", {"real": 20.0, "steps32": 20.0}, lambda name: None, seed=2)
    record = report(str(tmp_path / "runs"), str(tmp_path / RESULTS[0]))
    arms = {arm["name"]: arm for arm in record["arms"]}
    assert arms["steps32"]["difference"] is None and arms["steps32"]["difference_from_real"] is not None
    header = arms_table(str(tmp_path))[0]
    assert "| mean - base | mean - real |" in header
