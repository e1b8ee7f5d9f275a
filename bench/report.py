"""The result tables of README.md and docs/, generated from the committed `bench/results/*.json`.

    python -m bench.report           # rewrites every generated table in place
    python -m bench.report --check   # changes nothing; exits 1 naming the pages whose tables are stale

A page marks a generated table with two comments; everything outside them is written by hand:

    <!-- bench.report: figure-1a -->
    ...the table, replaced on every run...
    <!-- /bench.report -->

Each name in `TABLES` is one function from the results folder to the table's Markdown lines. The
paper's figures in the tables are constants below, quoted from the paper's tables as printed;
every other figure is read from a results JSON, which also names the device, date and versions.
"""
import argparse
import glob
import json
import os
import re
import sys
from typing import Callable, Dict, List, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "bench", "results")
PAGES = ("README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))))
MARKER = re.compile(r"(<!-- bench\.report: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /bench\.report -->)", re.S)

# The paper's numbers (mean ± std over 4 seeds), Table 1: original data -> SynthER data.
PAPER_TABLE1 = {("walker2d-medium", "td3_bc"): ("82.7 ± 5.5", "85.2 ± 1.1"),
                ("maze2d-umaze", "td3_bc"): ("29.4 ± 14.2", "40.5 ± 9.8"),
                ("maze2d-umaze", "edac"): ("95.3 ± 7.4", "101.5 ± 20.6")}
PAPER_TABLE2_FIDELITY = (0.989, 0.998)  # SynthER's marginal / correlation on halfcheetah medium-replay
# PGR's Table 1 (Wang et al., ICLR 2025), DMC cheetah-run at 100K environment steps, 5 seeds, ± as printed.
PGR_TABLE1_CHEETAH_RUN = {"sac": "347 ± 62", "synther": "729 ± 50", "pgr": "817 ± 36"}
ONLINE_LABELS = {"sac": "SAC, UTD 1", "synther": "SAC(SynthER), UTD 20", "redq": "REDQ, UTD 20",
                 "pgr": "PGR (curiosity), UTD 20"}


def load(name: str, results: str = RESULTS) -> dict:
    with open(os.path.join(results, name)) as file:
        return json.load(file)


def mean_std(score: dict) -> str:
    return f"{score['mean']:.1f} ± {score['std']:.1f}"


def returns(evaluation: dict) -> str:
    return f"{evaluation['mean_return']:.0f} ± {evaluation['std_return']:.0f}"


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> List[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]


def run(record: dict, name: str) -> dict:
    return next(r for r in record["runs"] if r["name"] == name)


def machine(record: dict) -> str:
    """Where and when a benchmark ran: device, cores, the 1-minute load average (other work slows
    every figure on a shared machine) and the date."""
    load_average = record.get("load_average_1min")  # not recorded by the oldest runs
    load_text = "" if load_average is None else f", load {load_average:.1f}"
    return f"{record['device']}, {record['cpu_count']} cores{load_text}, {record['date'][:10]}"


def denoiser_label(run_record: dict) -> str:
    diffusion = run_record["diffusion"]
    return f"{diffusion['width']}x{diffusion['depth']} ({diffusion['num_train_steps'] // 1000}K)"


# --- one function per table ---------------------------------------------------------------------

def offline_walker2d_medium(results: str) -> List[str]:
    """TD3+BC on our Walker2d-v5 medium data against synthetic data from three denoisers."""
    two = load("offline_walker2d_medium_cpu.json", results)
    four = load("offline_walker2d_medium_cpu_4seeds.json", results)
    four_runs = {r["name"]: r for r in four["runs"]}
    rows = []
    for r in two["runs"]:
        fidelity = r["fidelity"]
        four_seeds = mean_std(four_runs[r["name"]]["final_normalized_score"]) if r["name"] in four_runs else ""
        if fidelity is None:
            rows.append(["real data", "", "", "", two["real_terminals"], mean_std(r["final_normalized_score"]),
                         four_seeds])
            continue
        label = denoiser_label(r) + (", the paper's size" if r["diffusion"]["width"] == 1024 else "")
        rows.append([f"synthetic, {r['num_samples']:,}", label,
                     f"{fidelity['marginal_score']:.3f} / {fidelity['correlation_score']:.3f}",
                     f"{fidelity['dynamics_mse_median']:.3g}", fidelity["terminals"],
                     mean_std(r["final_normalized_score"]), four_seeds])
    return table(["TD3+BC trained on", "denoiser (diffusion steps)", "marginal / correlation",
                  "dynamics MSE (median)", "terminals", f"score, {two['num_seeds']} seeds",
                  f"score, {four['num_seeds']} seeds"], rows)


AUGMENTATION_LABELS = {"additive": "additive noise", "multiplicative": "multiplicative noise",
                       "dynamics": "dynamics noise"}


def figure_1a(results: str, name: str = "offline_walker2d_figure1a_cpu.json") -> List[str]:
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


def figure_1a_per_seed(results: str) -> List[str]:
    """Figure 1a's real and SynthER arms again, with one denoiser per agent seed."""
    return figure_1a(results, "offline_walker2d_figure1a_cpu_per_seed.json")


def maze2d_reference_scores(results: str) -> List[str]:
    """Our maze2d reference returns beside D4RL's (from `synther_jax.data.scores`, not a JSON)."""
    from synther_jax.data.scores import D4RL_REFERENCE_SCORES, MAZE2D_REFERENCE_SCORES

    rows = []
    for task, (low, high) in MAZE2D_REFERENCE_SCORES.items():
        d4rl_low, d4rl_high = D4RL_REFERENCE_SCORES[task]
        rows.append([task, f"{low:g} / {high:g}", f"{d4rl_low:g} / {d4rl_high:g}"])
    return table(["task", "ours: random / controller", "D4RL v1: random / controller"], rows)


def maze2d_umaze(results: str) -> List[str]:
    """TD3+BC and EDAC on real and synthetic maze2d-umaze data, beside the paper's Table 1 row."""
    files = ["offline_maze2d-umaze_cpu.json", "offline_maze2d-umaze_cpu_20k.json",
             "offline_maze2d-umaze_cpu_40k.json", "offline_maze2d-umaze_cpu_per_seed.json",
             "offline_maze2d-umaze_cpu_edac.json"]
    records = [load(name, results) for name in files]
    last = {algorithm: max((r for r in records if r["algorithm"] == algorithm), key=lambda r: (r["agent_steps"], bool(r.get("denoiser_per_seed"))))
            for algorithm in ("td3_bc", "edac")}
    rows = []
    for record in records:
        algorithm = record["algorithm"]
        synthetic = next(r for r in record["runs"] if r["name"] != "real")
        paper = ""
        if record is last[algorithm]:
            original, synther = PAPER_TABLE1[("maze2d-umaze", algorithm)]
            paper = f"{original} -> {synther} ({'1M' if algorithm == 'td3_bc' else '3M'} updates)"
        name = {"td3_bc": "TD3+BC", "edac": "EDAC"}[algorithm]
        protocol = ", one denoiser per seed" if record.get("denoiser_per_seed") else ""
        rows.append([f"{name} ({record['agent_steps']:,}{protocol})", mean_std(run(record, "real")["final_normalized_score"]),
                     mean_std(synthetic["final_normalized_score"]), paper])
    return table(["learner (updates)", "real data", "SynthER (synthetic data)",
                  "paper Table 1, umaze: original -> SynthER"], rows)


def online_curves(record: dict) -> List[str]:
    """A `bench.online_curves` JSON as a table: each variant's evaluation return at every evaluation."""
    runs = record["runs"]
    steps = [e["env_step"] for e in runs[next(iter(runs))]["evaluations"]]
    rows = [[ONLINE_LABELS[variant]] + [returns(e) for e in runs[variant]["evaluations"]] for variant in runs]
    return table(["variant"] + [f"{step // 1000}K steps" for step in steps], rows)


def figure_6_hopper(results: str) -> List[str]:
    """Figure 6 at CPU scale: evaluation returns of SAC UTD 1 and SAC(SynthER) UTD 20 on Hopper-v5."""
    return online_curves(load("online_curves_hopper_cpu.json", results))


def cheetah_run_curves(results: str) -> List[str]:
    """PGR's Table 1 row at CPU scale: SAC UTD 1, SynthER and PGR at UTD 20 on DMC cheetah-run."""
    return online_curves(load("online_curves_cheetah-run_cpu.json", results))


def cheetah_run_arms(results: str) -> List[str]:
    """Each cheetah-run arm's last return beside PGR's Table 1, the fidelity of its synthetic data
    and, for PGR, the curiosity of real against generated rows at its last retrain."""
    record = load("online_curves_cheetah-run_cpu.json", results)
    rows = []
    for variant, paper in PGR_TABLE1_CHEETAH_RUN.items():
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


def sampler_steps(results: str) -> List[str]:
    """Fidelity and samples/s of one denoiser against the number of Heun steps, with and without churn."""
    record = load("sampler_steps_cpu.json", results)
    num = record["num_samples_per_setting"]
    by_sampler = {name: {s["steps"]: s for s in record["summary"][name]["settings"]} for name in ("churn", "no_churn")}

    def cells(s: dict) -> List[str]:
        return [f"{s['marginal_score']:.3f} / {s['correlation_score']:.3f}", f"{s['dynamics_mse_median']:.3g}",
                f"{s['terminal_fraction'] * num:.1f}", f"{s['samples_per_s']:.0f}"]

    rows = [[f"{steps}" + (" (the paper's)" if steps == 128 else "")] + cells(by_sampler["churn"][steps])
            + cells(by_sampler["no_churn"][steps]) for steps in sorted(by_sampler["churn"])]
    per_sampler = ["marginal / correlation", "dynamics MSE median", f"terminals / {num}", "samples/s"]
    return table(["steps"] + [f"churn: {h}" if i == 0 else h for i, h in enumerate(per_sampler)]
                 + [f"no churn: {h}" if i == 0 else h for i, h in enumerate(per_sampler)], rows)


def precision(results: str) -> List[str]:
    """Fidelity, training steps/s and samples/s of one denoiser per matmul precision."""
    record = load("precision_cpu.json", results)
    rows = [[run["name"], f"{run['marginal_score']:.4f} / {run['correlation_score']:.4f}",
             f"{run['dynamics_mse_median']:.3g}", f"{run['min_distance_median']:.3f}",
             f"{run['train_steps_per_s']:.0f}", f"{run['samples_per_s']:.0f}"] for run in record["runs"]]
    return table(["denoiser", "marginal / correlation", "dynamics MSE median", "distance to the data (median)",
                  "training steps/s", "samples/s"], rows)


def benchmarks(results: str) -> List[str]:
    """The headline figure of every speed benchmark, with the ratio measured in the same run."""
    rows = []
    for size in ("paper", "small"):
        d = load(f"diffusion_cpu_{size}.json", results)
        rows.append([f"`bench.diffusion --size={size}` ({d['width']}x{d['depth']}, {d['param_count']:,} parameters, "
                     f"batch {d['batch_size']}, {d['num_sample_steps']} sampler steps)",
                     f"{d['train_steps_per_s']:,.1f} train steps/s, {d['samples_per_s']:,.0f} samples/s",
                     f"{d['train_fraction_of_peak']:.0%} and {d['sample_fraction_of_peak']:.0%} of the measured matmul "
                     f"peak ({d['matmul_peak_flops_per_s'] / 1e9:.0f} GFLOP/s)", machine(d)])
    d = load("agents_cpu.json", results)
    one = {name: runs[0]["updates_per_s"] for name, runs in d["results"].items()}
    ratios = [r["agent_updates_vs_1_seed"] for runs in d["results"].values() for r in runs[1:]]
    seeds = "/".join(str(r["num_seeds"]) for r in d["results"]["td3_bc"][1:])
    rows.append([f"`bench.agents` (batch {d['batch_size']}, one seed)",
                 ", ".join(f"{name} {rate:.0f}" for name, rate in one.items()) + " updates/s",
                 f"{seeds} vmapped seeds: {min(ratios):.1f}-{max(ratios):.1f}x the one-seed rate per agent",
                 machine(d)])
    d = load("online_cpu_hopper.json", results)
    seeds = d["seeds"]
    rows.append([f"`bench.online_steps --env={d['env']}` (diffusion excluded)",
                 f"SAC UTD 1: {d['sac_utd1_env_steps_per_s']:.0f}, REDQ UTD 20: {d['redq_utd20_env_steps_per_s']:.1f}, "
                 f"SynthER UTD 20: {d['synther_utd20_env_steps_per_s']:.1f} env steps/s",
                 f"{seeds['num_seeds']} seeds vmapped vs {seeds['num_seeds']} processes: "
                 f"{seeds['vmapped_seed_steps_per_s'] / seeds['separate_processes_seed_steps_per_s']:.2f}x",
                 machine(d)])
    d = load("pixels_cpu.json", results)
    one = {name: learner["1_seeds"] for name, learner in d["learners"].items()}
    four = {name: learner["4_seeds"] for name, learner in d["learners"].items()}
    vmapped = ", ".join(f"{four[name]['pixel_agent_updates_per_s'] / one[name]['pixel_agent_updates_per_s']:.2f}x"
                        f" ({label})" for name, label in (("drqbc", "DrQ+BC"), ("bc", "BC")))
    rows.append([f"`bench.pixel_agents` (84 px, batch {d['batch_size']}, {d['diffusion']['denoiser']} latent denoiser)",
                 f"{d['frames_rendered_per_s']:.0f} frames rendered/s; "
                 f"DrQ+BC {one['drqbc']['pixel_updates_per_s']:.1f}, "
                 f"BC {one['bc']['pixel_updates_per_s']:.1f} pixel updates/s; latent denoiser "
                 f"{d['diffusion']['train_steps_per_s']:.0f} train steps/s, {d['diffusion']['samples_per_s']:.0f} "
                 "samples/s", f"4 vmapped seeds: {vmapped} the 1-seed agent-update rate", machine(d)])
    d = load("scaling_cpu8_small.json", results)
    rows.append([f"`bench.scaling --size={d['size']}` on {d['device_count']} forced CPU devices",
                 f"train x{d['train_speedup']:.2f}, sample x{d['sample_speedup']:.2f} vs 1 device",
                 f"the {d['device_count']} devices share {d['cpu_count']} cores: this shows the sharding overhead, "
                 "not a speed-up", machine(d)])
    return table(["benchmark", "figure", "ratio measured in the same run", "measured on"], rows)


def results_at_a_glance(results: str) -> List[str]:
    """Each paper result beside ours, with the scale ours ran at and the page that has the details."""
    medium4 = load("offline_walker2d_medium_cpu_4seeds.json", results)
    medium2 = load("offline_walker2d_medium_cpu.json", results)
    paper_size = next(r for r in medium2["runs"] if r["diffusion"] and r["diffusion"]["width"] == 1024)
    figure1a = load("offline_walker2d_figure1a_cpu.json", results)
    synther1a = next(r for r in figure1a["runs"] if r["diffusion"])
    augmentations = [r for r in figure1a["runs"] if r["augmentation"] not in ("none", None)]
    best = max(augmentations, key=lambda r: r["final_normalized_score"]["mean"])
    maze = load("offline_maze2d-umaze_cpu_per_seed.json", results)  # one denoiser per seed
    edac = load("offline_maze2d-umaze_cpu_edac.json", results)
    online = load("online_curves_hopper_cpu.json", results)
    last = {variant: r["evaluations"][-1] for variant, r in online["runs"].items()}
    online_synther = online["runs"]["synther"]["config"]["synther"]
    online_denoiser = denoiser_label({"diffusion": online_synther["diffusion"]})
    maze_synthetic = next(r for r in maze["runs"] if r["name"] != "real")

    def real_synthetic(record):
        synthetic = next(r for r in record["runs"] if r["name"] != "real")
        return (f"{mean_std(run(record, 'real')['final_normalized_score'])} -> "
                f"{mean_std(synthetic['final_normalized_score'])}")

    cheetah = load("online_curves_cheetah-run_cpu.json", results)
    cheetah_runs = cheetah["runs"]
    cheetah_scores = " / ".join(returns(cheetah_runs[v]["evaluations"][-1]) if v in cheetah_runs else "not yet run"
                                for v in PGR_TABLE1_CHEETAH_RUN)
    cheetah_synther = next((r["config"]["synther"] for r in cheetah_runs.values() if r["config"]["synther"]["enabled"]),
                           None)
    cheetah_denoiser = "" if cheetah_synther is None else (
        f", {denoiser_label({'diffusion': cheetah_synther['diffusion']})} denoiser (SynthER and PGR alike), "
        f"{cheetah_synther['num_samples'] // 1000}K samples per retrain")
    fidelity = paper_size["fidelity"]
    figure1a_per_seed = load("offline_walker2d_figure1a_cpu_per_seed.json", results)
    synther1a_per_seed = next(r for r in figure1a_per_seed["runs"] if r["diffusion"])
    figure1a_scores = (f"real {mean_std(run(figure1a, 'real')['final_normalized_score'])}, best augmentation "
                       f"({best['augmentation']}) {mean_std(best['final_normalized_score'])}, SynthER "
                       f"{mean_std(synther1a['final_normalized_score'])} (one denoiser); with one denoiser per seed "
                       f"({synther1a_per_seed['num_samples'] // 1000}K samples each): SynthER "
                       f"{mean_std(synther1a_per_seed['final_normalized_score'])}")
    rows = [
        ["walker2d medium, TD3+BC (Table 1): real -> synthetic data",
         " -> ".join(PAPER_TABLE1[("walker2d-medium", "td3_bc")]), real_synthetic(medium4),
         f"our Walker2d-v5 medium data ({medium4['num_real']:,} transitions; the paper's is D4RL's 1M of v2), "
         f"{paper_size['num_samples'] // 1000}K samples, "
         f"{medium4['agent_steps'] // 1000}K updates, {medium4['num_seeds']} seeds",
         "[offline](docs/offline.md#walker2d-medium-at-cpu-scale)"],
        ["synthetic data fidelity, marginal / correlation (Table 2)",
         f"{PAPER_TABLE2_FIDELITY[0]} / {PAPER_TABLE2_FIDELITY[1]} (halfcheetah medium-replay)",
         f"{fidelity['marginal_score']:.3f} / {fidelity['correlation_score']:.3f}",
         "walker2d medium, the paper's 1024x6 denoiser trained 100K steps, 100K samples",
         "[offline](docs/offline.md#walker2d-medium-at-cpu-scale)"],
        ["15 % of walker2d medium-replay, TD3+BC (Figure 1a)",
         "SynthER above real data and every augmentation (bars only)", figure1a_scores,
         f"the bundled {figure1a['num_real'] // 1000}K transitions, {synther1a['num_samples'] // 1000}K samples of a "
         f"{synther1a['diffusion']['num_train_steps'] // 1000}K-step denoiser, "
         f"{figure1a['agent_steps'] // 1000}K updates, {figure1a['num_seeds']} seeds",
         "[offline](docs/offline.md#figure-1a-at-cpu-scale-upsampling-a-small-dataset)"],
        ["maze2d-umaze, TD3+BC (Table 1): real -> synthetic data",
         " -> ".join(PAPER_TABLE1[("maze2d-umaze", "td3_bc")]), real_synthetic(maze),
         f"{maze['agent_steps'] // 1000}K updates (paper 1M), one {denoiser_label(maze_synthetic)} denoiser per seed, "
         f"{maze_synthetic['num_samples'] // 1000}K samples, {maze['num_seeds']} seeds",
         "[maze2d](docs/maze2d.md#maze2d-umaze-at-cpu-scale)"],
        ["maze2d-umaze, EDAC (Table 1): real -> synthetic data", " -> ".join(PAPER_TABLE1[("maze2d-umaze", "edac")]),
         real_synthetic(edac), f"{edac['agent_steps']:,} updates (paper 3M): not learned yet",
         "[maze2d](docs/maze2d.md#maze2d-umaze-at-cpu-scale)"],
        ["hopper online, return (Figure 6): SAC UTD 1 vs SAC(SynthER) UTD 20",
         "SAC(SynthER) above SAC (curves only)", f"{returns(last['sac'])} vs {returns(last['synther'])}",
         f"{last['synther']['env_step'] // 1000}K environment steps (paper 100K), {online_denoiser} denoiser, "
         f"{online_synther['num_samples'] // 1000}K samples per retrain, {online['num_seeds']} seeds",
         "[online](docs/online.md#figure-6-at-cpu-scale-hopper)"],
        ["cheetah-run online, return (PGR Table 1): SAC UTD 1 / SynthER UTD 20 / PGR UTD 20",
         " / ".join(PGR_TABLE1_CHEETAH_RUN.values()) + " (100K steps)", cheetah_scores,
         f"{cheetah_runs['sac']['config']['total_steps'] // 1000}K environment steps (PGR 100K){cheetah_denoiser}, "
         f"{cheetah['num_seeds']} seeds", "[guided](docs/guided.md#cheetah-run-at-cpu-scale)"],
    ]
    return table(["experiment", "paper", "ours", "our scale (2-core CPU)", "details"], rows)


def against_original(results: str) -> List[str]:
    """The original SynthER PyTorch code and ours timed in one process run (`bench.original`), one
    row per run, oldest first: on a shared machine the spread between runs is part of the figure."""
    records = [load(os.path.basename(path), results) for path in glob.glob(os.path.join(results, "original_*.json"))]
    rows = []
    for d in sorted(records, key=lambda record: record["date"]):
        theirs, ours, ratio = d["figures"]["original"], d["figures"]["synther_jax"], d["ratios"]
        rows.append([f"{d['width']}x{d['depth']}, batch {d['batch_size']}; {d['num_samples']:,} samples per call",
                     f"{theirs['train_steps_per_s']:,.2f} -> {ours['train_steps_per_s']:,.2f} "
                     f"(**{ratio['train_steps_per_s']:.2f}x**)",
                     f"{theirs['samples_per_s']:,.1f} -> {ours['samples_per_s']:,.1f} (**{ratio['samples_per_s']:.2f}x**)",
                     machine(d)])
    return table(["run (paper denoiser, 128 sampler steps)", "training steps/s: original -> ours",
                  "samples/s: original -> ours", "measured on"], rows)


TABLES: Dict[str, Callable[[str], List[str]]] = {
    "results-at-a-glance": results_at_a_glance,
    "offline-walker2d-medium": offline_walker2d_medium,
    "figure-1a": figure_1a,
    "figure-1a-per-seed": figure_1a_per_seed,
    "maze2d-reference-scores": maze2d_reference_scores,
    "maze2d-umaze": maze2d_umaze,
    "figure-6-hopper": figure_6_hopper,
    "cheetah-run-curves": cheetah_run_curves,
    "cheetah-run-arms": cheetah_run_arms,
    "sampler-steps": sampler_steps,
    "precision": precision,
    "benchmarks": benchmarks,
    "against-original": against_original,
}


def render(text: str, results: str = RESULTS) -> str:
    """`text` with every marked table regenerated; an unknown table name is an error."""
    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name not in TABLES:
            raise KeyError(f"Unknown generated table {name!r}; known: {', '.join(TABLES)}.")
        return match.group(1) + "\n".join(TABLES[name](results)) + "\n" + match.group(4)

    return MARKER.sub(replace, text)


def stale_pages(root: str = ROOT, results: str = RESULTS, write: bool = False) -> List[str]:
    """The pages whose generated tables differ from what the results give; rewritten when `write`."""
    stale = []
    for page in PAGES:
        path = os.path.join(root, page)
        with open(path) as file:
            text = file.read()
        fresh = render(text, results)
        if fresh != text:
            stale.append(page)
            if write:
                with open(path, "w") as file:
                    file.write(fresh)
    return stale


def main(argv: Sequence[str] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a table is stale")
    args = parser.parse_args(argv)
    stale = stale_pages(write=not args.check)
    if args.check and stale:
        print(f"Stale generated tables in {', '.join(stale)}: run `python -m bench.report`.")
        return 1
    print(f"Rewrote {', '.join(stale)}." if stale else "Every generated table is up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
