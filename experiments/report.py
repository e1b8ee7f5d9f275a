"""The generated tables of README.md and docs/: the paper's results beside ours from
`experiments/results/*.json`, and the speed benchmarks from `bench/results/*.json`.

    python -m experiments.report           # rewrites every generated table in place
    python -m experiments.report --check   # changes nothing; exits 1 naming the pages whose tables are stale

A page marks a generated table with two comments; everything outside them is written by hand:

    <!-- experiments.report: figure-1a -->
    ...the table, replaced on every run...
    <!-- /experiments.report -->

Each name in `TABLES` is one function from a results folder to the table's Markdown lines: the
tables of each experiment module (its `TABLES`), one section per experiment for docs/results.md
(named after the module: the paper's figures beside ours, the scale and the commands its results
JSONs record), `results` (README.md's one table), and the speed tables of docs/benchmarks.md. The
paper's figures are constants in the experiment modules, quoted as printed; every other figure is
read from a results JSON, which also names the device, date and versions.
"""
import argparse
import glob
import os
import re
import sys
from typing import Callable, Dict, List, Sequence

from experiments import (figure1a, figure6_hopper, offline_evidence, pgr_cheetah_run, sampler_steps, table1_maze2d,
                         table1_walker2d)
from experiments.tables import RESULTS, ROOT, commands, load, machine, table

BENCH_RESULTS = os.path.join(ROOT, "bench", "results")
PAGES = ("README.md", *sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, "docs", "*.md"))))
MARKER = re.compile(r"(<!-- experiments\.report: (?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /experiments\.report -->)",
                    re.S)
# In the order of README.md's table and docs/results.md's sections.
EXPERIMENTS = (table1_walker2d, figure1a, offline_evidence, table1_maze2d, figure6_hopper, pgr_cheetah_run,
               sampler_steps)


def experiment_name(module) -> str:
    return module.__name__.rpartition(".")[2]


# The README's rows: walker2d's offline results come from the evidence experiment's paired intervals,
# and its older single-evaluation rows (Table 1 walker2d medium, Figure 1a) stay in docs/results.md.
README_EXPERIMENTS = tuple(module for module in EXPERIMENTS if module not in (table1_walker2d, figure1a))


def readme_table(results: str = RESULTS) -> List[str]:
    """The README's experiments' rows, short: the paper's figure, ours and a link to its section in
    docs/results.md."""
    rows = [[experiment, paper, ours, f"[results]({module.DETAILS})"]
            for module in README_EXPERIMENTS for experiment, paper, ours, _ in module.summary_rows(results)]
    return table(["experiment", "paper", "ours", "details"], rows)


def section(module) -> Callable[[str], List[str]]:
    """docs/results.md's generated part of one experiment's section: its rows with our scale, then the
    commands its results JSONs record."""
    def lines(results: str = RESULTS) -> List[str]:
        rows = table(["experiment", "paper", "ours", "our scale (2-core CPU)"], module.summary_rows(results))
        return rows + ["", "The commands, as each results JSON records them:"] + commands(module.RESULTS, results)

    return lines


# --- the speed benchmarks (bench/), in docs/benchmarks.md ------------------------------------------

def benchmarks(results: str = BENCH_RESULTS) -> List[str]:
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


def distilled_speed(results: str = BENCH_RESULTS) -> List[str]:
    """Samples/s of the distilled samplers beside the 128-step sampler's, timed in one run per size,
    with the distillation's own steps/s and each sampler's time for the paper's 5M samples."""
    rows = []
    for size in ("small", "paper"):
        d = load(f"diffusion_distilled_cpu_{size}.json", results)
        fast = [f"{steps} step{'s' if steps != '1' else ''}: {f['samples_per_s']:,.0f} "
                f"(**{f['speedup_vs_128_steps']:.0f}x**, {f['minutes_for_5M']:.1f} min)" for steps, f in d["distilled"].items()]
        rows.append([f"{d['width']}x{d['depth']}", f"{d['samples_per_s']:,.0f} ({d['minutes_for_5M']:,.0f} min)",
                     "; ".join(fast), f"{d['distill_steps_per_s']:,.1f} at batch {d['distill_batch_size']}",
                     machine(d)])
    return table(["denoiser", "128 Heun steps: samples/s (5M samples)",
                  "distilled: samples/s (vs 128 steps, 5M samples)", "distillation steps/s", "measured on"], rows)


def precision(results: str = BENCH_RESULTS) -> List[str]:
    """Fidelity, training steps/s and samples/s of one denoiser per matmul precision."""
    record = load("precision_cpu.json", results)
    rows = [[run["name"], f"{run['marginal_score']:.4f} / {run['correlation_score']:.4f}",
             f"{run['dynamics_mse_median']:.3g}", f"{run['min_distance_median']:.3f}",
             f"{run['train_steps_per_s']:.0f}", f"{run['samples_per_s']:.0f}"] for run in record["runs"]]
    return table(["denoiser", "marginal / correlation", "dynamics MSE median", "distance to the data (median)",
                  "training steps/s", "samples/s"], rows)


def against_original(results: str = BENCH_RESULTS) -> List[str]:
    """The original SynthER PyTorch code and ours timed in one process run (`bench.original`), one
    row per run, oldest first: on a shared machine the spread between runs is part of the figure."""
    records = [load(os.path.basename(path), results) for path in glob.glob(os.path.join(results, "original_*.json"))]
    rows = []
    for d in sorted(records, key=lambda record: record["date"]):
        theirs, ours, ratio = d["figures"]["original"], d["figures"]["synther_jax"], d["ratios"]
        rows.append([f"{d['width']}x{d['depth']}, batch {d['batch_size']}; {d['num_samples']:,} samples per call",
                     f"{theirs['train_steps_per_s']:,.2f} -> {ours['train_steps_per_s']:,.2f} "
                     f"(**{ratio['train_steps_per_s']:.2f}x**)",
                     f"{theirs['samples_per_s']:,.1f} -> {ours['samples_per_s']:,.1f} "
                     f"(**{ratio['samples_per_s']:.2f}x**)", machine(d)])
    return table(["run (paper denoiser, 128 sampler steps)", "training steps/s: original -> ours",
                  "samples/s: original -> ours", "measured on"], rows)


# Tables read from experiments/results/, then those read from bench/results/.
TABLES: Dict[str, Callable[[str], List[str]]] = {
    "results": readme_table,
    **{experiment_name(module): section(module) for module in EXPERIMENTS},
    **{name: function for module in EXPERIMENTS for name, function in module.TABLES.items()},
}
SPEED_TABLES: Dict[str, Callable[[str], List[str]]] = {
    "benchmarks": benchmarks,
    "precision": precision,
    "against-original": against_original,
    "distilled-speed": distilled_speed,
}


def render(text: str, results: str = RESULTS, bench_results: str = BENCH_RESULTS) -> str:
    """`text` with every marked table regenerated; an unknown table name is an error."""
    def replace(match: re.Match) -> str:
        name = match.group("name")
        if name in TABLES:
            lines = TABLES[name](results)
        elif name in SPEED_TABLES:
            lines = SPEED_TABLES[name](bench_results)
        else:
            raise KeyError(f"Unknown generated table {name!r}; known: {', '.join([*TABLES, *SPEED_TABLES])}.")
        return match.group(1) + "\n".join(lines) + "\n" + match.group(4)

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
        print(f"Stale generated tables in {', '.join(stale)}: run `python -m experiments.report`.")
        return 1
    print(f"Rewrote {', '.join(stale)}." if stale else "Every generated table is up to date.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
