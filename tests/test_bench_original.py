"""`bench.original`'s harness on a stand-in model (the original PyTorch code itself is not in CI):
the figures come from the fastest timed call after an untimed warm-up, the rounds interleave the
implementations, and a folder that is not a SynthER checkout, or a missing PyTorch, ends in one line."""
import os
import subprocess
import sys

import numpy as np
import pytest

from bench.original import Workload, compare, import_original, ratios
from configs.checks import ConfigError
from synther_jax.errors import MissingExtraError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_STEPS, NUM_SAMPLES, SAMPLER_STEPS, DIM = 5, 16, 4, 3


class WorkClock:
    """A clock that only the stand-in model's work moves: `cost` simulated seconds per matmul."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def linear_stand_in(clock: WorkClock, cost: float, warmup_cost: float, slow_call: int, log: list, name: str):
    """A real numpy model standing in for a denoiser: `train` takes SGD steps of least squares
    towards a fixed map, `sample` applies the model `SAMPLER_STEPS` times to noise. Every matmul
    advances `clock` by `cost`; each callable's first call also costs `warmup_cost` (compilation),
    and its call number `slow_call` costs twice as much (other work on the machine)."""
    rng = np.random.default_rng(0)
    target = rng.normal(size=(DIM, DIM))
    state = {"w": np.zeros((DIM, DIM)), "losses": [], "calls": {"train": 0, "sample": 0}}

    def charge(part: str, matmuls: int):
        calls = state["calls"][part]
        clock.now += matmuls * cost * (2 if calls == slow_call else 1) + (warmup_cost if calls == 0 else 0)
        state["calls"][part] += 1
        log.append((name, part))

    def train():
        for _ in range(TRAIN_STEPS):
            x = rng.normal(size=(32, DIM))
            error = x @ state["w"] - x @ target
            state["losses"].append(float(np.mean(error ** 2)))
            state["w"] -= 0.1 * x.T @ error / len(x)
        charge("train", 3 * TRAIN_STEPS)

    def sample():
        x = rng.normal(size=(NUM_SAMPLES, DIM))
        for _ in range(SAMPLER_STEPS):
            x = 0.5 * x @ state["w"]
        charge("sample", SAMPLER_STEPS)

    return Workload(train, sample), state


def test_rates_come_from_the_fastest_timed_call_and_rounds_interleave():
    clock, log = WorkClock(), []
    theirs, their_state = linear_stand_in(clock, cost=0.3, warmup_cost=100.0, slow_call=1, log=log, name="original")
    ours, _ = linear_stand_in(clock, cost=0.1, warmup_cost=50.0, slow_call=3, log=log, name="synther_jax")
    figures = compare({"original": theirs, "synther_jax": ours}, TRAIN_STEPS, NUM_SAMPLES, repeats=3, clock=clock)

    # Warm-up calls are not timed; 3 timed calls each; the slow (2x) call does not count.
    assert figures["original"]["train_steps_per_s"] == pytest.approx(TRAIN_STEPS / (3 * TRAIN_STEPS * 0.3))
    assert figures["original"]["samples_per_s"] == pytest.approx(NUM_SAMPLES / (SAMPLER_STEPS * 0.3))
    assert figures["synther_jax"]["train_steps_per_s"] == pytest.approx(TRAIN_STEPS / (3 * TRAIN_STEPS * 0.1))
    assert figures["original"]["train_call_seconds"] == pytest.approx([2 * 4.5, 4.5, 4.5])
    assert figures["synther_jax"]["sample_call_seconds"] == pytest.approx([0.4, 0.4, 2 * 0.4])
    assert ratios(figures, ours="synther_jax", theirs="original") == pytest.approx(
        {"train_steps_per_s": 3.0, "samples_per_s": 3.0})

    warmup = [("original", "train"), ("original", "sample"), ("synther_jax", "train"), ("synther_jax", "sample")]
    assert log == warmup * 4  # the warm-up, then each round runs both, in turn
    assert their_state["losses"][-1] < 0.1 * their_state["losses"][0]  # the stand-in really trains


def test_a_folder_that_is_not_a_synther_checkout_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="not a checkout of the original SynthER.*elucidated_diffusion.py"):
        import_original(str(tmp_path))


@pytest.fixture
def stand_in_checkout(tmp_path, monkeypatch):
    """A folder laid out like the original's checkout whose diffusion modules import PyTorch."""
    for path in ("synther/diffusion/denoiser_network.py", "synther/diffusion/norm.py",
                 "synther/diffusion/elucidated_diffusion.py"):
        (tmp_path / path).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / path).write_text("import torch\n")
    (tmp_path / "synther/diffusion/__init__.py").write_text("")
    (tmp_path / "config").mkdir()
    (tmp_path / "config/resmlp_w1024_denoiser.gin").write_text("")
    monkeypatch.setattr(sys, "path", list(sys.path))
    yield str(tmp_path)
    for name in [name for name in sys.modules if name == "synther" or name.startswith("synther.")]:
        del sys.modules[name]


def test_missing_pytorch_is_named_with_what_to_install(stand_in_checkout, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` fails as where it is not installed
    with pytest.raises(MissingExtraError, match="torch is not installed.*pip install torch einops"):
        import_original(stand_in_checkout)


def test_the_entry_point_says_so_in_one_line_and_writes_nothing(tmp_path):
    out = tmp_path / "original.json"
    child = subprocess.run([sys.executable, "-m", "bench.original", f"--original={tmp_path}", f"--out={out}"],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    lines = [line for line in child.stderr.splitlines() if line.strip()]
    assert child.returncode != 0 and len(lines) == 1, child.stderr
    assert lines[0].startswith("bench.original: ") and "not a checkout of the original SynthER" in lines[0]
    assert not out.exists()
