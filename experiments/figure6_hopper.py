"""Paper Figure 6, hopper: SAC at UTD 1 against SAC(SynthER) at UTD 20, evaluation return against
environment steps. Our CPU-scale run (stopped by `--max_hours` and resumed) and the paper's scale:

    python -m experiments.online_arms --env=hopper --num_seeds=3 --total_steps=30000 --retrain_every=10000 \\
        --denoiser=256x3:10000 --num_samples=100000 --max_hours=H --workdir=runs/figure6-hopper-cpu \\
        --out=experiments/results/online_curves_hopper_cpu.json
    python -m experiments.online_arms --env=hopper --variants=sac,synther,redq --workdir=DIR   # a GPU job

Results: `RESULTS` in experiments/results/ (the learning curves beside the JSON).
Tables: `figure-6-hopper` in docs/online.md; `summary_rows` in docs/results.md and README.md.
"""
from typing import List

from experiments.tables import RESULTS as RESULTS_DIR
from experiments.tables import curves_table, denoiser_label, load, returns

RESULTS = ("online_curves_hopper_cpu.json",)
DETAILS = "docs/results.md#figure-6-hopper-online"


def summary_rows(results: str = RESULTS_DIR) -> List[List[str]]:
    """Rows of experiment, paper, ours and our scale."""
    record = load(RESULTS[0], results)
    last = {variant: r["evaluations"][-1] for variant, r in record["runs"].items()}
    synther = record["runs"]["synther"]["config"]["synther"]
    return [["Figure 6: hopper online, return, SAC UTD 1 vs SAC(SynthER) UTD 20",
             "SAC(SynthER) above SAC (curves only)", f"{returns(last['sac'])} vs {returns(last['synther'])}",
             f"{last['synther']['env_step'] // 1000}K environment steps (paper 100K), "
             f"{denoiser_label(synther['diffusion'])} denoiser, {synther['num_samples'] // 1000}K samples per retrain, "
             f"{record['num_seeds']} seeds"]]


def curves(results: str = RESULTS_DIR) -> List[str]:
    """Figure 6 at CPU scale: evaluation returns of SAC UTD 1 and SAC(SynthER) UTD 20 on Hopper-v5."""
    return curves_table(load(RESULTS[0], results))


TABLES = {"figure-6-hopper": curves}
