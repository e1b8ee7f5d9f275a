"""PGR's Table 1 row for DMC cheetah-run (Wang et al., ICLR 2025): SAC at UTD 1 against SynthER and
PGR (SynthER's generator guided towards curious transitions) at UTD 20 on a denoiser of the same
size. Our CPU-scale run, made an arm at a time into one JSON, and PGR's scale:

    python -m experiments.online_arms --env=cheetah-run --variants=sac,synther,pgr --num_seeds=3 \\
        --total_steps=30000 --retrain_every=10000 --denoiser=256x3:10000 --num_samples=100000 \\
        --workdir=runs/cheetah-run-cpu --out=experiments/results/online_curves_cheetah-run_cpu.json
    python -m experiments.online_arms --env=cheetah-run --variants=sac,synther,pgr --num_seeds=5 \\
        --total_steps=100000 --workdir=DIR                                            # a GPU job

Results: `RESULTS` in experiments/results/ (the learning curves and PGR's relevance per seed beside
the JSON). Tables: `cheetah-run-curves` and `cheetah-run-arms` in docs/guided.md; `summary_rows`
in docs/results.md and README.md.
"""
from typing import List

from experiments.tables import ONLINE_LABELS, RESULTS as RESULTS_DIR
from experiments.tables import curves_table, denoiser_label, load, returns, table

RESULTS = ("online_curves_cheetah-run_cpu.json",)
DETAILS = "docs/results.md#pgr-table-1-cheetah-run-online"
# PGR's Table 1, DMC cheetah-run at 100K environment steps, 5 seeds, ± as printed.
PAPER = {"sac": "347 ± 62", "synther": "729 ± 50", "pgr": "817 ± 36"}


def summary_rows(results: str = RESULTS_DIR) -> List[List[str]]:
    """Rows of experiment, paper, ours and our scale; an arm not yet run is named so."""
    record = load(RESULTS[0], results)
    runs = record["runs"]
    ours = " / ".join(returns(runs[v]["evaluations"][-1]) if v in runs else "not yet run" for v in PAPER)
    synther = next((r["config"]["synther"] for r in runs.values() if r["config"]["synther"]["enabled"]), None)
    denoiser = "" if synther is None else (
        f", {denoiser_label(synther['diffusion'])} denoiser (SynthER and PGR alike), "
        f"{synther['num_samples'] // 1000}K samples per retrain")
    steps = next(iter(runs.values()))["config"]["total_steps"]
    return [["PGR Table 1: cheetah-run online, return, SAC UTD 1 / SynthER UTD 20 / PGR UTD 20",
             " / ".join(PAPER.values()) + " (100K steps)", ours,
             f"{steps // 1000}K environment steps (PGR 100K){denoiser}, {record['num_seeds']} seeds"]]


def curves(results: str = RESULTS_DIR) -> List[str]:
    """SAC UTD 1, SynthER and PGR at UTD 20 on DMC cheetah-run: evaluation returns."""
    return curves_table(load(RESULTS[0], results))


def arms(results: str = RESULTS_DIR) -> List[str]:
    """Each arm's last return beside PGR's Table 1, the fidelity of its synthetic data and, for PGR,
    the curiosity of real against generated rows at its last retrain."""
    record = load(RESULTS[0], results)
    rows = []
    for variant, paper in PAPER.items():
        arm = record["runs"].get(variant)
        if arm is None:
            rows.append([ONLINE_LABELS[variant], paper, "not yet run", "", ""])
            continue
        last = arm["evaluations"][-1]
        fidelity = arm.get("fidelity")
        relevance = (arm.get("relevance") or {}).get("last")
        rows.append([ONLINE_LABELS[variant], paper, f"{returns(last)} ({last['env_step'] // 1000}K steps)",
                     f"{fidelity['marginal_score']:.3f} / {fidelity['correlation_score']:.3f}" if fidelity else "",
                     f"{relevance['real_mean']:.3g} / {relevance['real_top_mean']:.3g} / "
                     f"{relevance['generated_mean']:.3g} ({relevance['generated_above_top_cut']:.0%})"
                     if relevance else ""])
    return table(["arm", "PGR Table 1, 100K steps", "ours", "synthetic data: marginal / correlation",
                  "curiosity: real / real top / generated (generated above the top cut)"], rows)


TABLES = {"cheetah-run-curves": curves, "cheetah-run-arms": arms}
