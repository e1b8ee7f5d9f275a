"""One job on many processes (several hosts, or several processes on one): start-up and who writes.

JAX runs one copy of the program per process; every process runs the same computations in the same
order, and arrays span the devices of all of them (`synther_jax.sharding`). The rule for files:
process 0 writes every output (JSON, metrics, samples, plots) and holds the work directory's lock;
the other processes compute beside it and write nothing, except their part of Orbax's checkpoints,
which every process saves and restores together. What a process decides from the files on disk,
process 0 decides for all (`from_main`), so no process takes a branch the others skip.

A one-process run (a laptop, one GPU, one TPU VM) needs none of this: `initialize` returns False
and the rest are no-ops.
"""
import hashlib
import os
import socket
import time
from typing import Callable, Mapping, Optional, Sequence, Type

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from synther_jax.errors import DistributedSetupError

COORDINATOR_TIMEOUT_S = 300  # how long a process waits for the coordinator, unless SYNTHER_COORDINATOR_TIMEOUT_S says
_MESSAGE_BYTES = 4096  # longest message `from_main` carries

_process_index, _process_count = 0, 1


def initialize(environ: Optional[Mapping[str, str]] = None) -> bool:
    """Starts JAX's multi-process runtime when the launcher provides a coordinator; else does nothing.

    Must run before anything else touches JAX devices. A coordinator is provided by
    - `JAX_COORDINATOR_ADDRESS` (host:port of process 0) with `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`,
      as set by hand or by a cluster launcher;
    - a SLURM job step with more than one task (JAX reads the rest from SLURM's variables);
    - Open MPI's `mpirun` (JAX reads `OMPI_MCA_orte_hnp_uri`).
    A process other than 0 waits up to SYNTHER_COORDINATOR_TIMEOUT_S (300) seconds for the
    coordinator to answer; process 0 waits as long for the others (past it, JAX ends the process).
    Each process then logs one line: its index, its devices and the cross-process collectives in
    use. Returns whether it initialised.
    """
    global _process_index, _process_count
    environ = os.environ if environ is None else environ
    timeout = int(environ.get("SYNTHER_COORDINATOR_TIMEOUT_S", COORDINATOR_TIMEOUT_S))
    if "JAX_COORDINATOR_ADDRESS" in environ:
        address = environ["JAX_COORDINATOR_ADDRESS"]
        num_processes, process_id = _process_numbers(environ)
        if process_id != 0:
            _wait_for_coordinator(address, timeout)  # XLA's own client would end the process with a stack dump
        arguments = dict(coordinator_address=address, num_processes=num_processes, process_id=process_id)
    elif int(environ.get("SLURM_NTASKS", "1")) > 1 or "OMPI_MCA_orte_hnp_uri" in environ:
        arguments = {}  # JAX reads them from the cluster's variables
    else:
        return False
    jax.distributed.initialize(**arguments, initialization_timeout=timeout)
    _process_index, _process_count = jax.process_index(), jax.process_count()
    collectives = check_collectives()
    logging.info("Process %d of %d on %s: %d local device(s) of %d (%s); cross-process collectives: %s.",
                 _process_index, _process_count, os.uname().nodename, jax.local_device_count(), jax.device_count(),
                 jax.default_backend(), collectives)
    return True


def _wait_for_coordinator(address: str, timeout: int) -> None:
    """Returns once the coordinator at host:port takes connections; DistributedSetupError after `timeout` s."""
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection((host.strip("[]"), int(port)), timeout=1):
                return
        except (OSError, ValueError):
            if time.monotonic() > deadline:
                raise DistributedSetupError(
                    f"No coordinator answered at {address} within {timeout} s: start process 0 (JAX_PROCESS_ID=0) "
                    "there, check JAX_COORDINATOR_ADDRESS, or set SYNTHER_COORDINATOR_TIMEOUT_S to wait longer."
                ) from None
            time.sleep(0.5)


def _process_numbers(environ: Mapping[str, str]) -> tuple:
    """(JAX_NUM_PROCESSES, JAX_PROCESS_ID), checked."""
    missing = [name for name in ("JAX_NUM_PROCESSES", "JAX_PROCESS_ID") if name not in environ]
    if missing:
        raise DistributedSetupError(f"JAX_COORDINATOR_ADDRESS is set but {' and '.join(missing)} not: set all three "
                                    "(the number of processes, and this process's id, 0 on the coordinator) or none.")
    try:
        num_processes, process_id = int(environ["JAX_NUM_PROCESSES"]), int(environ["JAX_PROCESS_ID"])
    except ValueError:
        raise DistributedSetupError(f"JAX_NUM_PROCESSES={environ['JAX_NUM_PROCESSES']} and JAX_PROCESS_ID="
                                    f"{environ['JAX_PROCESS_ID']} must be whole numbers.") from None
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise DistributedSetupError(f"JAX_PROCESS_ID={process_id} is not one of the {num_processes} processes "
                                    f"(JAX_NUM_PROCESSES={num_processes}): number them 0 to {num_processes - 1}.")
    return num_processes, process_id


def check_collectives() -> str:
    """The cross-process collectives this job uses; DistributedSetupError where a CPU job has none."""
    backend = jax.default_backend()
    if backend == "cpu":
        implementation = jax.config.jax_cpu_collectives_implementation
        if implementation is None:
            raise DistributedSetupError("jax_cpu_collectives_implementation is unset, so processes on the CPU cannot "
                                        "exchange data: set it to gloo (JAX's default) or mpi.")
        return f"{implementation} (jax_cpu_collectives_implementation)"
    return {"gpu": "NCCL", "tpu": "the TPU interconnect"}.get(backend, backend)


def process_count() -> int:
    return _process_count


def is_main() -> bool:
    """Whether this process writes the job's files: process 0, the only one of a one-process run."""
    return _process_index == 0


def barrier(name: str) -> None:
    """Waits until every process gets here (e.g. until process 0's files are written)."""
    if _process_count > 1:
        multihost_utils.sync_global_devices(name)


def from_main(value: int) -> int:
    """Process 0's `value` (a whole number), on every process."""
    if _process_count == 1:
        return value
    return int(multihost_utils.broadcast_one_to_all(np.int64(value)))


def _raise_everywhere(error: Optional[Exception], types: Sequence[Type[Exception]]) -> None:
    """Raises process 0's `error` (one of `types`, or None for none) on every process, so that a
    refusal only process 0 can see (it holds the work directory) ends the whole job in one line."""
    if _process_count > 1:
        code = 0 if error is None else 1 + next(i for i, kind in enumerate(types) if isinstance(error, kind))
        text = np.zeros(_MESSAGE_BYTES, np.uint8)
        encoded = str(error or "").encode()[:_MESSAGE_BYTES]
        text[:len(encoded)] = np.frombuffer(encoded, np.uint8)
        code, text = multihost_utils.broadcast_one_to_all((np.int64(code), text))
        message = bytes(np.asarray(text)).rstrip(b"\0").decode(errors="ignore")
        error = None if code == 0 else types[int(code) - 1](message)
    if error is not None:
        raise error


def run_on_main(function: Callable[[], None], errors: Sequence[Type[Exception]]) -> None:
    """Calls `function` on process 0 only (a check of the files and what it writes); an error of
    `errors` that it raises is raised on every process."""
    error = None
    if is_main():
        try:
            function()
        except tuple(errors) as raised:
            error = raised
    _raise_everywhere(error, errors)


def check_same_everywhere(text: str, what: str) -> None:
    """DistributedSetupError on every process unless all processes hold the same `text` (say, the
    config), so that processes started with different commands stop before any work."""
    if _process_count == 1:
        return
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest(), np.uint8)
    digests = np.asarray(multihost_utils.process_allgather(digest))
    others = [i for i in range(_process_count) if not np.array_equal(digests[i], digests[0])]
    if others:
        raise DistributedSetupError(f"Process(es) {', '.join(map(str, others))} of this job were started with "
                                    f"another {what} than process 0: start every process with the same command.")
