"""The original SynthER PyTorch code beside ours: the paper-size denoiser's training step and its
128-step sampler, timed on the same device in one process run, their rounds interleaved.

    python -m bench.original --original=DIR [--train_steps=10 --num_samples=1024 --repeats=3]

DIR is a checkout of the original's repository (github.com/conglu1997/SynthER), imported as it is,
nothing copied: its config `config/resmlp_w1024_denoiser.gin` (the paper's 1024x6 network, 128
sampler steps with S_churn 80, AdamW 3e-4 on a cosine schedule, EMA every 10 steps), its
`ResidualMLPDenoiser` and `ElucidatedDiffusion`, its `Trainer.train_on_batch` (loss, backward,
gradient clip, AdamW, EMA through accelerate and ema-pytorch) and its EMA model's `sample`. Only
the model is assembled here, as its `construct_diffusion_model` does it (standard normaliser, the
terminal dimension not normalised), because `synther.diffusion.utils` imports D4RL.

The original's diffusion modules import PyTorch, einops, gin-config, accelerate, ema-pytorch,
torchdiffeq, wandb, gym and REDQ's `redq.algos.core`; all must be importable (REDQ is not on PyPI:
a checkout of it on PYTHONPATH). Both implementations draw every training batch on the device
from the same 100K random rows (ours holds them normalised once; the original normalises each
batch, as it does); batch 256, the paper's for datasets under 800K rows. Ratios are ours over the
original's.
"""
import contextlib
import dataclasses
import importlib
import io
import itertools
import os
import subprocess
import sys
import tempfile
import time
from typing import Callable, Dict, List, Optional

from absl import flags

from bench.timing import environment, package_versions, write_json
from configs.checks import ConfigError
from launch import boundary
from launch.cli import INPUT_ERRORS
from synther_jax.errors import MissingExtraError

GIN_CONFIG = "config/resmlp_w1024_denoiser.gin"  # the paper's base denoiser, relative to the checkout
ORIGINAL_MODULES = ("synther.diffusion.denoiser_network", "synther.diffusion.norm",
                    "synther.diffusion.elucidated_diffusion")
ORIGINAL_PACKAGES = ("torch", "einops", "gin-config", "accelerate", "ema-pytorch", "torchdiffeq", "wandb", "gym")
INSTALL = (f"pip install {' '.join(ORIGINAL_PACKAGES[:-1])} gym==0.23.0, and put a checkout of REDQ "
           "(github.com/watchernyu/REDQ, for redq.algos.core) on PYTHONPATH")
DIM = 42  # a walker2d row: 17 + 6 + 1 + 17 + 1 (terminal)
NUM_ROWS = 100_000
# One float32 matmul precision for both: ours (`DiffusionConfig.matmul_precision`) and PyTorch's name for
# it. bfloat16 is left out: PyTorch has no setting that rounds every product's operands to it. The CPU
# has no TF32.
TORCH_PRECISIONS = {"float32": "highest", "tf32": "high"}

FLAGS = flags.FLAGS


def define_flags() -> None:
    """The command line; defined only when run as a program, so tests can import the module's functions
    beside launchers that define flags of the same names."""
    flags.DEFINE_string("original", None,
                        "A checkout of the original SynthER repository (github.com/conglu1997/SynthER).")
    flags.DEFINE_string("out", None, "JSON file for the figures (default: bench/results/original_<platform>.json).")
    flags.DEFINE_integer("batch_size", 256, "Training batch size of both.")
    flags.DEFINE_integer("train_steps", 10, "Training steps per timed call (ours: one lax.scan; the original: a loop).")
    flags.DEFINE_integer("num_samples", 1024, "Samples per timed sampler call (one batch for both).")
    flags.DEFINE_integer("repeats", 3, "Timed rounds after one untimed warm-up; the fastest call counts.")
    flags.DEFINE_enum("matmul_precision", "float32", list(TORCH_PRECISIONS),
                      "Matmul precision of both: `float32` (PyTorch's default, and ours) or `tf32` (on a GPU).")


@dataclasses.dataclass(frozen=True)
class Workload:
    """One implementation's timed work: `train()` runs the training steps of one timed call and
    `sample()` draws one call's samples; each returns only when its work is done on the device."""
    train: Callable[[], object]
    sample: Callable[[], object]


def compare(workloads: Dict[str, Workload], train_steps: int, num_samples: int, repeats: int,
            clock: Callable[[], float] = time.perf_counter) -> Dict[str, Dict[str, object]]:
    """Training steps/s and samples/s of each workload, from the fastest of `repeats` timed calls.

    Every callable runs once untimed first (compilation, allocation, caches). Then each round
    times every workload's `train` and `sample` in turn, so other work on a shared machine falls on
    all of them alike rather than on whichever ran last.
    """
    for workload in workloads.values():
        workload.train()
        workload.sample()
    seconds = {name: {"train": [], "sample": []} for name in workloads}
    for _ in range(repeats):
        for name, workload in workloads.items():
            for part in ("train", "sample"):
                start = clock()
                getattr(workload, part)()
                seconds[name][part].append(clock() - start)
    return {name: {"train_steps_per_s": train_steps / min(times["train"]),
                   "samples_per_s": num_samples / min(times["sample"]),
                   "train_call_seconds": times["train"], "sample_call_seconds": times["sample"]}
            for name, times in seconds.items()}


def ratios(figures: Dict[str, Dict[str, object]], ours: str, theirs: str) -> Dict[str, float]:
    """Each rate of `ours` over the same rate of `theirs` (above 1: ours is faster)."""
    return {key: figures[ours][key] / figures[theirs][key] for key in ("train_steps_per_s", "samples_per_s")}


def import_original(checkout: str) -> dict:
    """The original's diffusion modules, imported from `checkout` as they are. Fails with one line
    if `checkout` is not a SynthER checkout or a package they import is missing."""
    checkout = os.path.abspath(checkout)
    expected = [os.path.join("synther", "diffusion", "elucidated_diffusion.py"), GIN_CONFIG]
    missing = [path for path in expected if not os.path.isfile(os.path.join(checkout, path))]
    if missing:
        raise ConfigError(f"--original={checkout} is not a checkout of the original SynthER repository (it lacks "
                          f"{', '.join(missing)}): clone github.com/conglu1997/SynthER and pass its folder.")
    if checkout not in sys.path:
        sys.path.insert(0, checkout)
    try:
        return {name.rpartition(".")[2]: importlib.import_module(name) for name in ORIGINAL_MODULES}
    except ModuleNotFoundError as error:
        raise MissingExtraError(f"{error.name} is not installed, and the original SynthER code imports it: {INSTALL}.",
                                name=error.name) from error


def original_workload(modules: dict, checkout: str, rows, batch_size: int, train_steps: int, num_samples: int,
                      use_gpu: bool) -> tuple:
    """The original's training step and sampler at its w1024 gin config, and its parameter count."""
    import gin
    import torch

    with contextlib.chdir(checkout):  # its config includes `config/resmlp_denoiser.gin`, relative to the checkout
        gin.parse_config_files_and_bindings([GIN_CONFIG], [], skip_unknown=True)  # the D4RL helpers are not imported
    device = torch.device("cuda" if use_gpu else "cpu")
    data = torch.from_numpy(rows)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints the normaliser's statistics and its sizes
        net = modules["denoiser_network"].ResidualMLPDenoiser(d_in=DIM)
        normalizer = modules["norm"].normalizer_factory("standard", data, skip_dims=[DIM - 1])
        model = modules["elucidated_diffusion"].ElucidatedDiffusion(net=net, normalizer=normalizer, event_shape=[DIM])
        trainer = modules["elucidated_diffusion"].Trainer(model, train_batch_size=batch_size, use_gpu=use_gpu,
                                                          results_folder=tempfile.mkdtemp())
    data = data.to(device)
    param_count = sum(p.numel() for p in model.parameters() if p.requires_grad)

    def synchronize():
        if use_gpu:
            torch.cuda.synchronize()

    def train():
        for _ in range(train_steps):
            trainer.train_on_batch(data[torch.randint(0, len(data), (batch_size,), device=device)], use_wandb=False)
        synchronize()

    def sample():
        trainer.ema.ema_model.sample(batch_size=num_samples, num_sample_steps=128, clamp=False, disable_tqdm=True)
        synchronize()

    return Workload(train, sample), param_count


def our_workload(rows, batch_size: int, train_steps: int, num_samples: int, matmul_precision: str) -> tuple:
    """Our training steps (one jitted scan) and sampler at the same sizes, and our parameter count."""
    import jax

    from synther_jax.diffusion import Diffusion, DiffusionConfig
    from synther_jax.diffusion.normalizer import Normalizer
    from synther_jax.diffusion.model import init_state, with_seed_axis
    from synther_jax.diffusion.sampling import sample_rows
    from synther_jax.diffusion.training import train_steps as run_train_steps

    config = DiffusionConfig(width=1024, depth=6, batch_size=batch_size, num_train_steps=100_000,
                             matmul_precision=matmul_precision)
    normalizer = Normalizer.fit(rows, skip_dims=[DIM - 1])
    data = normalizer.normalize(jax.numpy.asarray(rows))
    state = with_seed_axis(init_state(config, jax.random.PRNGKey(0), DIM))  # one model: a seed axis of 1
    param_count = sum(x.size for x in jax.tree.leaves(state.params))
    calls = itertools.count()

    def train():
        nonlocal state
        state, loss = run_train_steps(state, data, jax.random.PRNGKey(next(calls))[None], config=config,
                                      num_steps=train_steps, batch_size=batch_size, shared_data=True)
        loss.block_until_ready()

    def sample():
        model = Diffusion(config, DIM, state.ema_params, state.constants, with_seed_axis(normalizer))
        sample_rows(model, jax.random.PRNGKey(next(calls))[None], num_samples).block_until_ready()

    return Workload(train, sample), int(param_count)


def checkout_commit(checkout: str) -> Optional[str]:
    """The checkout's git commit, or None where it is not a git work tree (an unpacked archive)."""
    result = subprocess.run(["git", "-C", checkout, "rev-parse", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else None


def main(argv: List[str]):
    del argv
    if not FLAGS.original:
        raise ConfigError("--original is required: the folder of a checkout of github.com/conglu1997/SynthER.")
    for name in ("batch_size", "train_steps", "num_samples", "repeats"):
        if getattr(FLAGS, name) < 1:
            raise ConfigError(f"--{name} must be positive, got {getattr(FLAGS, name)}.")
    checkout = os.path.abspath(FLAGS.original)
    modules = import_original(checkout)  # before JAX or any work starts, so a missing package fails at once
    import jax
    import numpy as np
    import torch

    torch.set_float32_matmul_precision(TORCH_PRECISIONS[FLAGS.matmul_precision])
    platform = jax.devices()[0].platform
    if platform not in ("cpu", "gpu"):
        raise ConfigError(f"JAX runs on {platform}, where the original (PyTorch on CUDA or the CPU) cannot run; "
                          "run this on a GPU or the CPU (JAX_PLATFORMS=cpu).")
    use_gpu = platform == "gpu"
    if use_gpu and not torch.cuda.is_available():
        raise ConfigError("JAX runs on the GPU but this PyTorch build has no CUDA: install one that does, so both "
                          "run on the same device.")
    rows = np.random.default_rng(0).standard_normal((NUM_ROWS, DIM)).astype(np.float32)
    sizes = dict(batch_size=FLAGS.batch_size, train_steps=FLAGS.train_steps, num_samples=FLAGS.num_samples)
    theirs, their_params = original_workload(modules, checkout, rows, use_gpu=use_gpu, **sizes)
    ours, our_params = our_workload(rows, matmul_precision=FLAGS.matmul_precision, **sizes)
    figures = compare({"original": theirs, "synther_jax": ours}, FLAGS.train_steps, FLAGS.num_samples, FLAGS.repeats)
    ratio = ratios(figures, ours="synther_jax", theirs="original")

    record = {
        "width": 1024, "depth": 6, "row_dim": DIM, "num_sample_steps": 128, **sizes, "repeats": FLAGS.repeats,
        "matmul_precision": FLAGS.matmul_precision,
        "param_count": {"original": their_params, "synther_jax": our_params},
        "figures": figures, "ratios": ratio,
        "original": {"checkout_commit": checkout_commit(checkout), "gin_config": GIN_CONFIG,
                     "torch_threads": torch.get_num_threads(),
                     "torch_device": "cuda:" + torch.cuda.get_device_name() if use_gpu else "cpu",
                     "versions": package_versions(ORIGINAL_PACKAGES)},
        **environment(),
    }
    for name in ("original", "synther_jax"):
        print(f"{name:>12}: {record['param_count'][name]:,} params | train {figures[name]['train_steps_per_s']:.2f} "
              f"steps/s (batch {FLAGS.batch_size}) | sample {figures[name]['samples_per_s']:.1f} samples/s")
    print(f"synther_jax / original: training {ratio['train_steps_per_s']:.2f}x, sampling {ratio['samples_per_s']:.2f}x "
          f"on {record['device']}")
    write_json(FLAGS.out or f"bench/results/original_{platform}.json", record)


if __name__ == "__main__":
    define_flags()
    boundary.run(main, INPUT_ERRORS, resumes=False)
