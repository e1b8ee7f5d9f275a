"""The protocol that can separate arms: a run's score, per-arm intervals (exact statistics, coverage),
paired differences with Holm's correction, and `launch.compare` on fake run directories (no training)."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from absl import app
from scipy import stats

from configs.d4rl import get_config
from launch import compare, offline
from pipelines.workdir import StageTimer
from synther_jax.analysis import intervals
from synther_jax.analysis.protocol import run_score
from synther_jax.errors import IncomparableRunsError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = [970_000, 980_000, 990_000, 1_000_000]


def fake_run(folder, per_seed_by_step, dataset="walker2d-medium-v2", steps=STEPS, episodes=10, agent_seed=0,
             denoiser_seeds=None, score_block=True):
    """A finished launch.offline work directory as far as `launch.compare` reads it: results.json
    (with or without its score block; config.json then gives the episode count) and evaluations.json."""
    os.makedirs(folder)
    per_seed_by_step = np.asarray(per_seed_by_step, np.float64).tolist()
    num_seeds = len(per_seed_by_step[0])
    denoiser_seeds = denoiser_seeds or [None] * num_seeds
    results = {"dataset": dataset, "num_updates": steps[-1], "num_seeds": num_seeds,
               "seeds": [{"agent": i, "agent_seed": agent_seed, "denoiser_seed": d, "samples": None}
                         for i, d in enumerate(denoiser_seeds)],
               "scores_by_step": {"steps": steps, "per_seed": per_seed_by_step},
               "final_normalized_score": {"per_seed": per_seed_by_step[-1],
                                          "mean": float(np.mean(per_seed_by_step[-1]))}}
    if score_block:
        results["score"] = run_score(steps, per_seed_by_step, episodes, "D4RL-normalised score")
    else:
        with open(os.path.join(folder, "config.json"), "w") as file:
            json.dump({"eval_episodes": episodes}, file)
    with open(os.path.join(folder, "results.json"), "w") as file:
        json.dump(results, file)
    with open(os.path.join(folder, "evaluations.json"), "w") as file:
        json.dump([{"step": s, "returns": v, "scores": v} for s, v in zip(steps, per_seed_by_step)], file)
    return str(folder)


def curve(final_scores, noise=0.0, seed=0):
    """Per-seed scores at the four evaluations of `STEPS` whose last three average to `final_scores`."""
    final_scores = np.asarray(final_scores, np.float64)
    wobble = np.random.default_rng(seed).normal(0, noise, (2, len(final_scores)))
    last_three = np.stack([final_scores + wobble[0], final_scores + wobble[1], final_scores - wobble.sum(0)])
    return np.concatenate([final_scores[None] - 50, last_three])


# --- the score and the statistics -------------------------------------------------------------


def test_a_runs_score_is_each_seeds_mean_over_its_last_three_evaluations():
    score = run_score([1, 2, 3, 4], [[0, 10], [1, 11], [2, 12], [6, 16]], 10, "return")
    assert score == {"protocol": "mean of the last 3 evaluations", "metric": "return", "per_seed": [3.0, 13.0],
                     "mean": 8.0, "std": 5.0, "evaluations_used": [2, 3, 4], "episodes_per_evaluation": 10}
    assert run_score([5, 6], [[1.0], [3.0]], 2, "return")["protocol"] == "mean of the last 2 evaluations"


def test_results_json_carries_the_score_block_beside_the_final_score(tmp_path):
    config = get_config("walker2d,smoke")
    config.update(data="real", eval_episodes=10, agent_steps=8_000)
    per_seed = [[10.0, 20.0], [30.0, 40.0], [50.0, 60.0], [70.0, 80.0]]
    evaluations = [{"step": 2_000 * (i + 1), "returns": [1.0, 2.0], "scores": s} for i, s in enumerate(per_seed)]
    results = offline.write_results(config, "Walker2d-v4", evaluations, StageTimer(), str(tmp_path))
    assert results["score"] == {"protocol": "mean of the last 3 evaluations", "metric": "D4RL-normalised score",
                                "per_seed": [50.0, 60.0], "mean": 55.0, "std": 5.0,
                                "evaluations_used": [4_000, 6_000, 8_000], "episodes_per_evaluation": 10}
    assert results["final_normalized_score"] == {"per_seed": [70.0, 80.0], "mean": 75.0, "std": 5.0}
    assert json.loads((tmp_path / "results.json").read_text())["score"] == results["score"]


def test_mean_and_iqm_are_exact_on_fixed_scores():
    scores = np.array([7.0, 1.0, 100.0, 3.0, 2.0, 6.0, 5.0, 4.0])  # the IQM: the mean of the middle four
    np.testing.assert_allclose(intervals.arm_statistics(scores), [128 / 8, (3 + 4 + 5 + 6) / 4])
    assert intervals.iqm([1.0, 2.0, 3.0, 4.0, 5.0, 60.0]) == 3.5  # floor(6/4) = 1 cut from each end, as rliable
    from rliable import metrics
    for size in range(2, 12):
        values = np.random.default_rng(size).normal(size=(size, 1))
        assert intervals.iqm(values) == pytest.approx(metrics.aggregate_iqm(values), abs=1e-12)
    points, _ = intervals.interval_estimates({"arm": scores}, reps=100, seed=0)["arm"]
    np.testing.assert_allclose(points, [16.0, 4.5])


@pytest.mark.parametrize("scores", [[10.0, 20.0], [3.0, 9.0, 4.0, 12.0, 7.0]])
def test_an_arms_mean_interval_is_students_t_interval(scores):
    _, bounds = intervals.interval_estimates({"arm": scores}, reps=4000, seed=0)["arm"]
    expected = stats.t.interval(0.95, len(scores) - 1, loc=np.mean(scores), scale=stats.sem(scores))
    np.testing.assert_allclose(bounds[:, 0], expected, rtol=0.03)  # up to the bootstrap's error of its error


@pytest.mark.parametrize("num_seeds", [4, 8])
def test_intervals_cover_a_known_mean_95_percent_of_the_time(num_seeds):
    """1000 samples of `num_seeds` normal scores, each bootstrapped on its own (rliable resamples each
    column apart) with 1000 resamples rather than the command's 10,000, to stay within seconds. A
    plain normal or percentile bootstrap interval covers the mean 81 to 82 % of the time at 4 seeds.
    The IQM's interval, widened as the mean's, errs on the wide side (97 % here)."""
    true_mean, samples = 5.0, np.random.default_rng(num_seeds).normal(5.0, 2.0, (num_seeds, 1000))
    per_sample = lambda scores: np.concatenate([scores.mean(0), intervals.iqm(scores, axis=0)])
    estimates = intervals.interval_estimates({"samples": samples}, reps=1000, seed=0, statistic=per_sample)
    _, (low, high) = estimates["samples"]
    covered = ((low <= true_mean) & (true_mean <= high)).reshape(2, -1).mean(1)
    assert 0.93 <= covered[0] <= 0.97, f"mean: {covered[0]:.3f}"
    assert 0.93 <= covered[1] <= 0.985, f"IQM: {covered[1]:.3f}"


def test_a_paired_difference_recovers_a_known_shift_that_per_arm_intervals_miss():
    rng = np.random.default_rng(0)
    reference = rng.normal(50.0, 10.0, 8)  # seeds differ far more than the arms
    noise = rng.normal(0.0, 1.0, 8)
    arm = reference + 5.0 + noise - noise.mean()  # a difference of exactly 5 on average
    per_arm = intervals.interval_estimates({"reference": reference, "arm": arm}, reps=2000, seed=0)
    assert per_arm["arm"][1][0, 0] < per_arm["reference"][1][1, 0]  # the mean intervals overlap
    difference = intervals.paired_differences({"arm": (reference, arm)}, reps=10_000, seed=0)["arm"]
    mean = difference["mean"]
    assert mean["estimate"] == pytest.approx(5.0)
    assert 0 < mean["low"] < 5.0 < mean["high"]
    t_statistic = stats.t.isf(mean["p"] / 2, len(arm) - 1)  # the paired t-test's, on the bootstrap's error
    assert t_statistic == pytest.approx(stats.ttest_rel(arm, reference).statistic, rel=0.03)
    assert difference["iqm"]["low"] > 0
    assert (mean["level"], difference["iqm"]["level"]) in {(0.975, 0.95), (0.95, 0.975)}


def test_holm_adjustment_is_exact_on_known_p_values():
    p_values = [0.01, 0.04, 0.03, 0.005]
    assert intervals.holm_adjust(p_values) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert intervals.holm_levels(p_values) == pytest.approx([1 - 0.05 / 3, 0.95, 1 - 0.05 / 2, 1 - 0.05 / 4])
    assert intervals.holm_adjust([0.5, 0.4]) == pytest.approx([0.8, 0.8])  # capped by the step-down maximum
    assert intervals.holm_adjust([0.9, 0.8, 0.7]) == pytest.approx([1.0, 1.0, 1.0])


def test_each_difference_interval_excludes_zero_exactly_when_its_p_value_is_below_its_level():
    rng = np.random.default_rng(1)
    reference = rng.normal(50.0, 5.0, 6)
    pairs = {f"shift {shift}": (reference, reference + shift + rng.normal(0, 2.0, 6)) for shift in (0, 1, 2, 4, 8)}
    table = intervals.paired_differences(pairs, reps=2000, seed=0)
    raw = [d["p"] for arm in table.values() for d in arm.values()]
    assert [d["p_holm"] for arm in table.values() for d in arm.values()] == intervals.holm_adjust(raw)
    for arm in table.values():
        for d in arm.values():
            assert (d["low"] > 0 or d["high"] < 0) == (d["p"] < 1 - d["level"])


# --- the command ---------------------------------------------------------------------------


@pytest.fixture
def arms(tmp_path):
    """Three arms of 6 seeds: `real` (no denoiser), `synthetic` (shared denoiser, seed 0, paired with
    real), and `other-seeds` (agent seed 1, so not paired)."""
    base = np.array([40.0, 55.0, 62.0, 48.0, 70.0, 51.0])
    return [fake_run(tmp_path / "real", curve(base, 1.0, 0)),
            fake_run(tmp_path / "synthetic", curve(base + 6.0 + np.array([0.5, -1.0, 1.2, -0.3, 0.8, -1.2]), 1.0, 1),
                     denoiser_seeds=[0] * 6),
            fake_run(tmp_path / "other-seeds", curve(base + 1.0, 1.0, 2), agent_seed=1)]


def test_compare_writes_the_table_json_and_plot_and_regenerates_them_exactly(arms, tmp_path):
    out = tmp_path / "comparison"
    result = subprocess.run([sys.executable, "-m", "launch.compare", *arms, f"--out={out}", "--reps=2000"],
                            cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    for name in ("comparison.md", "comparison.json", "intervals.png"):
        assert (out / name).stat().st_size > 0, name
    written = json.loads((out / "comparison.json").read_text())
    assert written["baseline"] == "real" and written["score"] == "mean of the last 3 evaluations"
    assert written["holm_family_size"] == 2
    real, synthetic, other = written["arms"]
    assert [real["name"], synthetic["name"], other["name"]] == ["real", "synthetic", "other-seeds"]
    assert real["baseline"] and real["difference"] is None
    assert synthetic["paired"] and synthetic["difference"]["mean"]["estimate"] == pytest.approx(6.0)
    assert synthetic["difference"]["mean"]["low"] > 0 and synthetic["difference"]["mean"]["p_holm"] < 0.05
    assert other["paired"] is False and other["difference"] is None and "agent seeds differ" in other["unpaired_reason"]
    table = (out / "comparison.md").read_text()
    assert "| other-seeds | 6 |" in table and "not paired: agent seeds differ" in table
    assert table in result.stdout
    again = compare.run(arms, str(tmp_path / "again"), reps=2000)  # in-process, after other draws: the same numbers
    assert json.loads(json.dumps(again)) == written


def test_compare_names_arms_and_takes_another_baseline(arms, tmp_path):
    comparison = compare.run(arms, str(tmp_path / "out"), names=["R", "S", "O"], baseline="S", reps=200)
    assert comparison["baseline"] == "S" and [row["name"] for row in comparison["arms"]] == ["R", "S", "O"]
    assert comparison["arms"][0]["difference"]["mean"]["estimate"] == pytest.approx(-6.0)
    assert "agent seeds differ" in comparison["arms"][2]["unpaired_reason"]


def test_compare_reads_a_run_made_before_results_json_had_a_score(tmp_path):
    legacy = fake_run(tmp_path / "legacy", curve([10.0, 20.0, 30.0]), score_block=False)
    arm = compare.read_arm(legacy, "legacy")
    assert arm["score"]["per_seed"] == pytest.approx([10.0, 20.0, 30.0])
    assert arm["score"]["episodes_per_evaluation"] == 10


def test_denoiser_seeds_pair_only_where_both_arms_have_them(tmp_path):
    scores = curve([10.0, 20.0])
    shared = compare.read_arm(fake_run(tmp_path / "a", scores, denoiser_seeds=[0, 0]), "a")
    per_seed = compare.read_arm(fake_run(tmp_path / "b", scores, denoiser_seeds=[0, 1]), "b")
    real = compare.read_arm(fake_run(tmp_path / "c", scores), "c")
    assert "denoiser seeds differ" in compare.pairing_problem(shared, per_seed)
    assert compare.pairing_problem(real, per_seed) is None
    three = compare.read_arm(fake_run(tmp_path / "d", curve([10.0, 20.0, 30.0])), "d")
    assert compare.pairing_problem(real, three) == "3 seeds against 2"


def bad_runs(tmp_path):
    """(run directories, names, baseline, a part of the one-line refusal) per bad input."""
    good = fake_run(tmp_path / "good", curve([10.0, 20.0, 30.0]))
    make = lambda name, *args, **kwargs: fake_run(tmp_path / name, *args, **kwargs)
    other_results = tmp_path / "online"
    other_results.mkdir()
    (other_results / "results.json").write_text(json.dumps({"variant": "sac", "returns": [1.0, 2.0]}))
    return [
        ([good, str(tmp_path / "missing")], None, None, "has no results.json"),
        ([good, str(other_results)], None, None, "has no dataset, num_updates, scores_by_step: it is not"),
        ([good, make("hopper", curve([1.0, 2.0, 3.0]), dataset="hopper-medium-v2")], None, None,
         "differ in their tasks (walker2d-medium against hopper-medium)"),
        ([good, make("short", curve([1.0, 2.0, 3.0]), steps=[5, 10, 15, 20])], None, None,
         "differ in their update counts (1000000 against 20)"),
        ([good, make("few-episodes", curve([1.0, 2.0, 3.0]), episodes=5)], None, None,
         "5 episodes per evaluation; the protocol needs at least 10"),
        ([good, make("one-seed", curve([1.0]))], None, None, "has 1 seed; an interval needs at least 2"),
        ([good, make("two-evaluations", [[1.0, 2.0], [3.0, 4.0]], steps=[500_000, 1_000_000])], None, None,
         "made 2 evaluations; a score is the mean of the last 3"),
        ([good, good], None, None, "two arms are named 'good'"),
        ([good, good], ["a"], None, "--names gives 1 names for 2 run directories"),
        ([good], None, "nope", "--baseline=nope names no arm"),
    ]


def test_compare_refuses_what_it_cannot_compare_fairly_in_one_line(tmp_path):
    for run_dirs, names, baseline, message in bad_runs(tmp_path):
        with pytest.raises((IncomparableRunsError, app.UsageError)) as refused:
            compare.run(run_dirs, str(tmp_path / "out"), names=names, baseline=baseline, reps=100)
        assert message in str(refused.value) and "\n" not in str(refused.value)
    assert not os.path.exists(tmp_path / "out")  # refused before anything is written


def test_the_command_prints_a_refusal_as_one_line(tmp_path):
    good = fake_run(tmp_path / "good", curve([10.0, 20.0, 30.0]))
    result = subprocess.run([sys.executable, "-m", "launch.compare", good, str(tmp_path / "missing"),
                             f"--out={tmp_path / 'out'}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [f"launch.compare: {tmp_path / 'missing'} has no results.json: give the work "
                                          "directory of a finished launch.offline run (results.json is written when "
                                          "its agents finish)."]
