"""What every benchmark reports: the device, versions, date, and the measured matmul peak."""
import datetime
import os
import platform
import time
from typing import Callable, Dict, Tuple

import jax
import jax.numpy as jnp

from launch.common import command_line
from synther_jax import atomic


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


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """The fastest of `repeats` timed calls of `fn` (which must block until its work is done)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def matmul_peak_flops(sizes=(1024, 2048, 4096), repeats: int = 5) -> float:
    """FLOP/s of the fastest large float32 square matmul on the default device: the ceiling a dense
    MLP can reach. Several sizes, since the fastest one depends on the device's caches."""
    matmul = jax.jit(lambda a, b: a @ b)
    best = 0.0
    for size in sizes:
        a = jax.random.normal(jax.random.PRNGKey(0), (size, size), jnp.float32)
        b = jax.random.normal(jax.random.PRNGKey(1), (size, size), jnp.float32)
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
