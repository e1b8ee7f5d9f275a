"""Paper Table 1, walker2d medium, TD3+BC: the real data against SynthER's synthetic data in its
place, with the fidelity of those samples beside the paper's Table 2. Our CPU-scale run, on
Walker2d-v5 medium data made by `launch.collect` (the 4-seed file reran it with `--num_seeds=4
--denoisers=1024x6:100000`, reusing the 2-seed run's denoiser and samples), and the paper's setting:

    python -m experiments.offline_arms --config=walker2d --terminals=modelled \\
        --dataset=synther/walker2d/medium-v0 --env_id=Walker2d-v5 \\
        --denoisers=512x4:20000,512x4:100000,1024x6:100000 --num_samples=100000 \\
        --num_seeds=2 --agent_steps=50000 --eval_every=10000 --eval_episodes=5 --sample_chunk_size=20000 \\
        --denoiser_per_seed=false --workdir=runs/bench_offline_cpu \\
        --out=experiments/results/offline_walker2d_medium_cpu.json
    python -m experiments.offline_arms --workdir=DIR          # D4RL's data, 5M samples, 1M updates: a GPU job

Results: `RESULTS` in experiments/results/ (each JSON's `command` made it; a PNG beside each).
Tables: `offline-walker2d-medium` in docs/offline.md; `summary_rows` in docs/results.md and README.md.
"""
from typing import List

from experiments.tables import RESULTS as RESULTS_DIR
from experiments.tables import denoiser_label, load, mean_std, real_to_synthetic, table

RESULTS = ("offline_walker2d_medium_cpu.json", "offline_walker2d_medium_cpu_4seeds.json")
DETAILS = "docs/results.md#table-1-walker2d-medium-td3bc"
PAPER = ("82.7 ± 5.5", "85.2 ± 1.1")  # Table 1, mean ± std over 4 seeds: original data -> SynthER data
PAPER_FIDELITY = (0.989, 0.998)  # Table 2: SynthER's marginal / correlation on halfcheetah medium-replay


def paper_size_arm(record: dict) -> dict:
    return next(r for r in record["runs"] if r["diffusion"] and r["diffusion"]["width"] == 1024)


def summary_rows(results: str = RESULTS_DIR) -> List[List[str]]:
    """Rows of experiment, paper, ours and our scale."""
    two, four = (load(name, results) for name in RESULTS)
    arm = paper_size_arm(two)
    fidelity = arm["fidelity"]
    return [
        ["Table 1: walker2d medium, TD3+BC, real -> synthetic data", " -> ".join(PAPER), real_to_synthetic(four),
         f"our Walker2d-v5 medium data ({four['num_real']:,} transitions; the paper's is D4RL's 1M), "
         f"{arm['num_samples'] // 1000}K samples, {four['agent_steps'] // 1000}K updates, {four['num_seeds']} seeds"],
        ["Table 2: fidelity of the samples, marginal / correlation",
         f"{PAPER_FIDELITY[0]} / {PAPER_FIDELITY[1]} (halfcheetah medium-replay)",
         f"{fidelity['marginal_score']:.3f} / {fidelity['correlation_score']:.3f} (walker2d medium)",
         f"the paper's 1024x6 denoiser trained {arm['diffusion']['num_train_steps'] // 1000}K steps, "
         f"{arm['num_samples'] // 1000}K samples"],
    ]


def denoiser_sizes(results: str = RESULTS_DIR) -> List[str]:
    """TD3+BC on our Walker2d-v5 medium data against synthetic data from three denoisers."""
    two, four = (load(name, results) for name in RESULTS)
    four_runs = {r["name"]: r for r in four["runs"]}
    rows = []
    for r in two["runs"]:
        fidelity = r["fidelity"]
        four_seeds = mean_std(four_runs[r["name"]]["final_normalized_score"]) if r["name"] in four_runs else ""
        if fidelity is None:
            rows.append(["real data", "", "", "", two["real_terminals"], mean_std(r["final_normalized_score"]),
                         four_seeds])
            continue
        label = denoiser_label(r["diffusion"]) + (", the paper's size" if r["diffusion"]["width"] == 1024 else "")
        rows.append([f"synthetic, {r['num_samples']:,}", label,
                     f"{fidelity['marginal_score']:.3f} / {fidelity['correlation_score']:.3f}",
                     f"{fidelity['dynamics_mse_median']:.3g}", fidelity["terminals"],
                     mean_std(r["final_normalized_score"]), four_seeds])
    return table(["TD3+BC trained on", "denoiser (diffusion steps)", "marginal / correlation",
                  "dynamics MSE (median)", "terminals", f"score, {two['num_seeds']} seeds",
                  f"score, {four['num_seeds']} seeds"], rows)


TABLES = {"offline-walker2d-medium": denoiser_sizes}
