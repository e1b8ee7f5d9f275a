"""Paper Table 1, maze2d-umaze: TD3+BC and EDAC on the real data against SynthER's synthetic data in
its place, on our D4RL-style umaze data, normalised with our own reference returns. Our CPU-scale
runs (TD3+BC at 10K updates, then continued to 20K and 40K; EDAC from a copy of TD3+BC's denoiser
and samples; TD3+BC at 40K again with one denoiser per seed; every command is in the results JSONs)
and the paper's scale:

    python -m experiments.offline_arms --config=maze2d-umaze --denoisers=256x3:10000 --num_samples=100000 \\
        --sample_chunk_size=50000 --num_seeds=4 --eval_episodes=100 --agent_steps=40000 --eval_every=5000 \\
        --workdir=runs/maze-per-seed --out=experiments/results/offline_maze2d-umaze_cpu_per_seed.json
    python -m experiments.offline_arms --config=maze2d-umaze --algorithm=edac --workdir=DIR   # a GPU job

Results: `RESULTS` in experiments/results/ (a bar chart beside each JSON).
Tables: `maze2d-umaze` and `maze2d-reference-scores` (from `synther_jax.scores`) in
docs/maze2d.md; `summary_rows` in docs/results.md and README.md.
"""
from typing import List

from experiments.tables import RESULTS as RESULTS_DIR
from experiments.tables import denoiser_label, load, mean_std, real_to_synthetic, run, table

RESULTS = ("offline_maze2d-umaze_cpu.json", "offline_maze2d-umaze_cpu_20k.json", "offline_maze2d-umaze_cpu_40k.json",
           "offline_maze2d-umaze_cpu_per_seed.json", "offline_maze2d-umaze_cpu_edac.json")
DETAILS = "docs/results.md#table-1-maze2d-umaze-td3bc-and-edac"
# Table 1, mean ± std over 4 seeds: original data -> SynthER data.
PAPER = {"td3_bc": ("29.4 ± 14.2", "40.5 ± 9.8"), "edac": ("95.3 ± 7.4", "101.5 ± 20.6")}
PAPER_UPDATES = {"td3_bc": "1M", "edac": "3M"}
NAMES = {"td3_bc": "TD3+BC", "edac": "EDAC"}


def summary_rows(results: str = RESULTS_DIR) -> List[List[str]]:
    """Rows of experiment, paper, ours and our scale: the longest run of each learner."""
    td3_bc, edac = load(RESULTS[3], results), load(RESULTS[4], results)
    synthetic = next(r for r in td3_bc["runs"] if r["name"] != "real")
    return [["Table 1: maze2d-umaze, TD3+BC, real -> synthetic data", " -> ".join(PAPER["td3_bc"]),
             real_to_synthetic(td3_bc),
             f"{td3_bc['agent_steps'] // 1000}K updates (paper 1M), one {denoiser_label(synthetic['diffusion'])} "
             f"denoiser per seed, {synthetic['num_samples'] // 1000}K samples, {td3_bc['num_seeds']} seeds"],
            ["Table 1: maze2d-umaze, EDAC, real -> synthetic data", " -> ".join(PAPER["edac"]),
             real_to_synthetic(edac), f"{edac['agent_steps']:,} updates (paper 3M): not learned yet"]]


def learners(results: str = RESULTS_DIR) -> List[str]:
    """TD3+BC and EDAC on real and synthetic maze2d-umaze data, beside the paper's Table 1 row."""
    records = [load(name, results) for name in RESULTS]
    last = {algorithm: max((r for r in records if r["algorithm"] == algorithm),
                           key=lambda r: (r["agent_steps"], bool(r.get("denoiser_per_seed"))))
            for algorithm in NAMES}
    rows = []
    for record in records:
        algorithm = record["algorithm"]
        synthetic = next(r for r in record["runs"] if r["name"] != "real")
        paper = ""
        if record is last[algorithm]:
            paper = f"{' -> '.join(PAPER[algorithm])} ({PAPER_UPDATES[algorithm]} updates)"
        protocol = ", one denoiser per seed" if record.get("denoiser_per_seed") else ""
        rows.append([f"{NAMES[algorithm]} ({record['agent_steps']:,}{protocol})",
                     mean_std(run(record, "real")["final_normalized_score"]),
                     mean_std(synthetic["final_normalized_score"]), paper])
    return table(["learner (updates)", "real data", "SynthER (synthetic data)",
                  "paper Table 1, umaze: original -> SynthER"], rows)


def reference_scores(results: str = RESULTS_DIR) -> List[str]:
    """Our maze2d reference returns beside D4RL's (from `synther_jax.scores`, not a JSON)."""
    from synther_jax.scores import D4RL_REFERENCE_SCORES, MAZE2D_REFERENCE_SCORES

    rows = []
    for task, (low, high) in MAZE2D_REFERENCE_SCORES.items():
        d4rl_low, d4rl_high = D4RL_REFERENCE_SCORES[task]
        rows.append([task, f"{low:g} / {high:g}", f"{d4rl_low:g} / {d4rl_high:g}"])
    return table(["task", "ours: random / controller", "D4RL v1: random / controller"], rows)


TABLES = {"maze2d-umaze": learners, "maze2d-reference-scores": reference_scores}
