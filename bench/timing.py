"""What every benchmark and experiment records (the device, versions, date, load and command line)
and how the benchmarks time: best-of-n calls, the measured matmul peak, samples/s net of compiling."""
import datetime
import importlib.metadata
import os
import platform
import time
from typing import Callable, Dict, Iterable, Tuple

import jax
import jax.numpy as jnp
import numpy as np

from pipelines.workdir import command_line
from synther_jax import atomic
from synther_jax.diffusion import iterate_samples


def environment() -> Dict[str, str]:
    """The device, versions, date and load, and the exact command line that made the record."""
    device = jax.devices()[0]
    return {
        "command": command_line(),
        "device": f"{device.platform}:{device.device_kind}",
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "load_average_1min": os.getloadavg()[0],  # other work on a shared machine slows every figure
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "versions": {"python": platform.python_version(), "jax": jax.__version__, "jaxlib": jax.lib.__version__},
    }


def package_versions(names: Iterable[str]) -> Dict[str, str]:
    """The installed version of each distribution in `names` (those not installed left out)."""
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed calls of `fn` (which must block until its work is done)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def timed_samples(model, num_samples: int, key: jax.Array, chunk_size: int):
    """(rows, samples/s): all chunks of `iterate_samples`; the rate counts every chunk but the
    first, whose time includes compiling the sampler for this step count."""
    chunks, times = [], []
    start = time.perf_counter()
    for rows in iterate_samples(model, num_samples, key, chunk_size, progress=False):
        chunks.append(rows)
        now = time.perf_counter()
        times.append(now - start)
        start = now
    timed = sum(len(c) for c in chunks[1:]) if len(chunks) > 1 else len(chunks[0])
    seconds = sum(times[1:]) if len(chunks) > 1 else times[0]
    return np.concatenate(chunks), timed / seconds


# How a float32 matmul may round its inputs: `default` is what JAX does unasked (what the models run
# at; on NVIDIA GPUs since Ampere it may use TF32), `float32` full precision, `tf32` and `bfloat16`
# the tensor-core formats (bfloat16: bfloat16 inputs and output).
PRECISIONS = ("default", "float32", "tf32", "bfloat16")


def matmul_peak_flops(sizes=(1024, 2048, 4096), repeats: int = 5, precision: str = "default") -> float:
    """FLOP/s of the fastest large square matmul on the default device at `precision`: the ceiling a
    dense MLP can reach. Several sizes, since the fastest one depends on the device's caches. A
    precision the device lacks raises (XLA:CPU has no TF32)."""
    dtype = jnp.bfloat16 if precision == "bfloat16" else jnp.float32
    option = {"default": None, "float32": jax.lax.Precision.HIGHEST, "bfloat16": None,
              "tf32": jax.lax.DotAlgorithmPreset.TF32_TF32_F32}[precision]
    matmul = jax.jit(lambda a, b: jnp.matmul(a, b, precision=option))
    best = 0.0
    for size in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (size, size), dtype)
        b = jax.random.normal(jax.random.PRNGKey(1), (size, size), dtype)
        matmul(a, b).block_until_ready()
        best = max(best, 2.0 * size**3 / best_time(lambda: matmul(a, b).block_until_ready(), repeats))
    return best


def parse_denoiser(spec: str) -> Tuple[int, int, int]:
    """(width, depth, training steps) from `WIDTHxDEPTH:TRAIN_STEPS`, e.g. 1024x6:100000."""
    try:
        size, steps = spec.split(":")
        width, depth = size.split("x")
        return int(width), int(depth), int(steps)
    except ValueError:
        raise ValueError(f"A denoiser is WIDTHxDEPTH:TRAIN_STEPS, e.g. 1024x6:100000; got {spec!r}.") from None


def write_json(path: str, record: dict) -> None:
    atomic.write_json(path, record)
    print(f"wrote {path}")
