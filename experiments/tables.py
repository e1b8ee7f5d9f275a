"""What the experiments' tables are made of: results JSONs read back, figures formatted the same way
everywhere, Markdown tables and the commands a results JSON records."""
import json
import os
import shlex
from typing import Dict, List, Sequence

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
RESULTS = os.path.join(ROOT, "experiments", "results")

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
    """The offline arm called `name` of an `experiments.offline_arms` JSON."""
    return next(r for r in record["runs"] if r["name"] == name)


def real_to_synthetic(record: dict) -> str:
    """An `experiments.offline_arms` JSON's real-data score -> its (first) synthetic arm's."""
    real, synthetic = run(record, "real"), next(r for r in record["runs"] if r["name"] != "real")
    return f"{mean_std(real['final_normalized_score'])} -> {mean_std(synthetic['final_normalized_score'])}"


def machine(record: dict) -> str:
    """Where and when a benchmark ran: device, cores, the 1-minute load average (other work slows
    every figure on a shared machine) and the date."""
    load_average = record.get("load_average_1min")  # not recorded by the oldest runs
    load_text = "" if load_average is None else f", load {load_average:.1f}"
    return f"{record['device']}, {record['cpu_count']} cores{load_text}, {record['date'][:10]}"


def denoiser_label(diffusion: Dict[str, int]) -> str:
    return f"{diffusion['width']}x{diffusion['depth']} ({diffusion['num_train_steps'] // 1000}K)"


def curves_table(record: dict) -> List[str]:
    """An `experiments.online_arms` JSON as a table: each variant's evaluation return at every evaluation."""
    runs = record["runs"]
    steps = [e["env_step"] for e in runs[next(iter(runs))]["evaluations"]]
    rows = [[ONLINE_LABELS[variant]] + [returns(e) for e in runs[variant]["evaluations"]] for variant in runs]
    return table(["variant"] + [f"{step // 1000}K steps" for step in steps], rows)


def wrapped(command: str, width: int = 100) -> List[str]:
    """A shell command as lines of at most about `width` characters, broken between arguments."""
    lines = [""]
    for word in map(shlex.quote, shlex.split(command)):
        if lines[-1] and len(lines[-1]) + len(word) > width:
            lines[-1] += " \\"
            lines.append("    ")
        lines[-1] += ("" if lines[-1].strip() == "" else " ") + word
    return lines


def commands(names: Sequence[str], results: str = RESULTS) -> List[str]:
    """Each results JSON's `command` (one or a list, run in order) and its `command_note`, as Markdown."""
    lines = []
    for name in names:
        record = load(name, results)
        recorded = record["command"] if isinstance(record["command"], list) else [record["command"]]
        note = record.get("command_note")
        lines += ["", f"`{name}`:" + (f" {note}" if note else ""), "", "```bash"]
        lines += [line for command in recorded for line in wrapped(command)] + ["```"]
    return lines
