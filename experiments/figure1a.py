"""Paper Figure 1a: TD3+BC on a small walker2d medium-replay dataset (the bundled 30K transitions)
against the same data upsampled by SynthER and by each explicit augmentation, then SynthER's arm
again with one denoiser per agent seed. Our CPU-scale runs (each arm a process of its own, then a
gathering run; every command is in the results JSONs) and the paper's scale:

    F="--config=walker2d --terminals=modelled --augmentations=additive,multiplicative,dynamics \\
       --denoisers=1024x6:10000 --num_samples=500000 --num_sample_steps=32 --S_churn=0 \\
       --agent_steps=100000 --eval_every=25000 --denoiser_per_seed=false --workdir=runs/figure1a"
    python -m experiments.offline_arms $F --only=real,augmentation-additive &
    python -m experiments.offline_arms $F --only=augmentation-multiplicative &
    python -m experiments.offline_arms $F --only=synthetic &
    python -m experiments.offline_arms $F --only=augmentation-dynamics; wait
    python -m experiments.offline_arms $F --out=experiments/results/offline_walker2d_figure1a_cpu.json
    python -m experiments.offline_arms --config=walker2d --augmentations=additive,multiplicative,dynamics \\
        --denoisers=1024x6:100000 --num_samples=5000000 --agent_steps=1000000 --workdir=DIR   # a GPU job

Results: `RESULTS` in experiments/results/ (a bar chart and learning curves beside each JSON).
Tables: `figure-1a` and `figure-1a-per-seed` in docs/offline.md; `summary_rows` in docs/results.md and
README.md.
"""
from typing import List

from experiments.tables import RESULTS as RESULTS_DIR
from experiments.tables import load, mean_std, run, table

RESULTS = ("offline_walker2d_figure1a_cpu.json", "offline_walker2d_figure1a_cpu_per_seed.json")
DETAILS = "docs/results.md#figure-1a-upsampling-a-small-dataset"
AUGMENTATION_LABELS = {"additive": "additive noise", "multiplicative": "multiplicative noise",
                       "dynamics": "dynamics noise"}


def summary_rows(results: str = RESULTS_DIR) -> List[List[str]]:
    """Rows of experiment, paper, ours and our scale."""
    shared, per_seed = (load(name, results) for name in RESULTS)
    synther = next(r for r in shared["runs"] if r["diffusion"])
    synther_per_seed = next(r for r in per_seed["runs"] if r["diffusion"])
    augmentations = [r for r in shared["runs"] if r["augmentation"] not in ("none", None)]
    best = max(augmentations, key=lambda r: r["final_normalized_score"]["mean"])
    return [["Figure 1a: 15 % of walker2d medium-replay, TD3+BC",
             "SynthER above real data and every augmentation (bars only)",
             f"SynthER {mean_std(synther['final_normalized_score'])}, real "
             f"{mean_std(run(shared, 'real')['final_normalized_score'])}, best augmentation "
             f"{mean_std(best['final_normalized_score'])}; a denoiser per seed: "
             f"{mean_std(synther_per_seed['final_normalized_score'])}",
             f"the bundled {shared['num_real'] // 1000}K transitions, {synther['num_samples'] // 1000}K samples of "
             f"one {synther['diffusion']['num_train_steps'] // 1000}K-step denoiser (one per seed: "
             f"{synther_per_seed['num_samples'] // 1000}K each), {shared['agent_steps'] // 1000}K updates, "
             f"{shared['num_seeds']} seeds"]]


def arms(results: str = RESULTS_DIR, name: str = RESULTS[0]) -> List[str]:
    """Figure 1a at CPU scale: real data, explicit augmentations and SynthER on the bundled data
    (with one denoiser per seed, the fidelity figures are the denoisers' mean)."""
    record = load(name, results)
    rows = []
    for r in record["runs"]:
        by_step = r["scores_by_step"]
        means = [sum(scores) / len(scores) for scores in by_step["per_seed"][:-1]]
        fidelity = r["fidelity"] or {}
        if r["name"] == "real":
            label, size, terminals = "real data", record["num_real"], record["real_terminals"]
        else:
            label = AUGMENTATION_LABELS.get(r["augmentation"]) or f"SynthER, {r['diffusion']['width']}x" \
                f"{r['diffusion']['depth']}" + (", one denoiser per seed" if r.get("denoiser_protocol") == "per_seed"
                                                else "")
            size, terminals = r["num_samples"], fidelity["synthetic_terminals"]
        rows.append([label, f"{size:,}",
                     f"{fidelity['marginal_score']:.3f} / {fidelity['correlation_score']:.3f}" if fidelity else "",
                     f"{fidelity['dynamics_mse_median']:.3g}" if fidelity else "",
                     f"{fidelity['min_distance_median']:.3g}" if fidelity else "", f"{terminals:,.0f}",
                     ", ".join(f"{s:.1f}" for s in r["final_normalized_score"]["per_seed"]),
                     " / ".join(f"{m:.1f}" for m in means), mean_std(r["final_normalized_score"])])
    steps = " / ".join(f"{s // 1000}K" for s in record["runs"][0]["scores_by_step"]["steps"][:-1])
    return table(["TD3+BC trained on", "transitions", "marginal / correlation", "dynamics MSE (median)",
                  "distance to the data (median)", "terminals", "score per seed", f"mean score at {steps}",
                  f"score at {record['agent_steps'] // 1000}K ({record['num_seeds']} seeds)"], rows)


def arms_per_seed(results: str = RESULTS_DIR) -> List[str]:
    """Figure 1a's real and SynthER arms again, with one denoiser per agent seed."""
    return arms(results, RESULTS[1])


TABLES = {"figure-1a": arms, "figure-1a-per-seed": arms_per_seed}
