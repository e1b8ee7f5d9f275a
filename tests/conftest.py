"""Test-wide settings and fixtures: JAX on the CPU whatever the machine has, XLA's quick compile
mode, one compilation cache for the whole run, small real data, one finished offline run that
several tests compare against, and a quick `python -m` for commands that end before they compute."""
import json
import os
import shutil
import subprocess
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

# The tiny configurations spend most of their time compiling, and LLVM's optimisation of the CPU code
# is most of that: without it the suite's CPU time nearly halves. The programs and their arithmetic
# are XLA's same; only the machine code is slower. An explicit level in XLA_FLAGS is left alone.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level=0".strip()

# The tiny configurations spend most of their time compiling, and many tests (and the launchers they
# start as subprocesses) compile the same programs: one persistent XLA cache for the run, made by the
# main pytest process and inherited by its test processes and their children, compiles each once.
_OWN_CACHE = "PYTEST_XDIST_WORKER" not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ
if _OWN_CACHE:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="synther_jax-tests-xla-")
    os.environ["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] = "0"
    os.environ["JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES"] = "0"

import gymnasium as gym  # noqa: E402
import pytest  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REAL_DATA_AGENT_STEPS = 300


def _memory_mappings() -> tuple[int, int]:
    """This process's memory mappings and the kernel's limit on them (0, 0 where Linux's /proc is absent)."""
    try:
        with open("/proc/self/maps") as maps, open("/proc/sys/vm/max_map_count") as limit:
            return sum(1 for _ in maps), int(limit.read())
    except OSError:
        return 0, 0


@pytest.fixture(autouse=True, scope="module")
def _release_compiled_programs():
    """XLA's CPU backend maps each compiled program's code into memory, and the suite compiles
    thousands in one process: past the kernel's `vm.max_map_count` (65530 by default) the next
    compilation segfaults. After a module that leaves the process past half the limit, JAX's
    in-memory caches are dropped; the persistent cache above still spares the recompilation."""
    yield
    mappings, limit = _memory_mappings()
    if mappings > limit // 2:
        import jax
        jax.clear_caches()


def pytest_collection_modifyitems(config, items):
    """The slow tests first: each worker then takes the short ones as it frees up, and the run does
    not end on one worker's minutes-long test while the other idles."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_unconfigure(config):
    if _OWN_CACHE:
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def hopper_random_npz(tmp_path_factory):
    """2000 real Hopper-v5 transitions under uniform random actions, as a synthetic-format .npz."""
    from synther_jax.data import write_synthetic
    from synther_jax.data.collection import rollout, uniform_random_policy
    from synther_jax.data.flatten import episodes_to_transitions

    env = gym.make("Hopper-v5")
    episodes = rollout(env, uniform_random_policy(env.action_space, 0), 2000, seed=0)
    path = str(tmp_path_factory.mktemp("data") / "hopper_random.npz")
    write_synthetic(path, episodes_to_transitions(episodes), source_dataset="hopper-random", config={}, seed=0,
                    model_checkpoint=None, env_id="Hopper-v5")
    return path


# A `python -m` that starts in milliseconds: one process imports JAX and the rest once and forks a
# child per command, which runs the module as `python -m` does (runpy, as __main__, the same argv),
# for commands that end before they compute (`--help`, refusals of bad input).
_MODULE_SERVER = """
import json, os, runpy, sys, traceback
import absl.app, distrax, flax, gymnasium, jax, matplotlib.pyplot, ml_collections, optax, orbax.checkpoint
import scipy.stats, tensorboardX
for line in sys.stdin:
    module, arguments, environment, output = json.loads(line)
    child = os.fork()
    if child == 0:
        file = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(file, 1)
        os.dup2(file, 2)
        os.environ.update(environment)
        sys.argv = [module, *arguments]
        try:
            runpy.run_module(module, run_name="__main__", alter_sys=True)
            status = 0
        except SystemExit as exit:
            status = exit.code if isinstance(exit.code, int) else int(exit.code is not None)
        except BaseException:
            traceback.print_exc()
            status = 1
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    print(os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]), flush=True)
"""


@pytest.fixture(scope="session")
def run_module(tmp_path_factory):
    """`run_module(module, *arguments, env={})`: (exit status, stdout and stderr) of
    `python -m module arguments` with `env` added to the environment, for quick commands."""
    server = subprocess.Popen([sys.executable, "-c", _MODULE_SERVER], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    folder = tmp_path_factory.mktemp("module_output")
    count = 0

    def run(module: str, *arguments: str, env: dict = None) -> tuple:
        nonlocal count
        count += 1
        output = folder / f"{count}.txt"
        server.stdin.write(json.dumps([module, arguments, env or {}, str(output)]) + "\n")
        server.stdin.flush()
        status = server.stdout.readline()
        assert status, "the python -m server ended early"
        return int(status), output.read_text()

    yield run
    server.stdin.close()
    server.wait(timeout=60)


def offline_real_data_command(dataset, workdir, agent_steps=REAL_DATA_AGENT_STEPS):
    """`launch.offline` of TD3+BC on `dataset`'s real Hopper transitions (no denoiser, no analysis),
    evaluated and checkpointed every 30 updates."""
    return [sys.executable, "-m", "launch.offline", "--config=configs/d4rl.py:hopper-random,smoke",
            f"--config.dataset={dataset}", "--config.env_id=Hopper-v5", "--config.data=real", "--config.analyze=False",
            f"--config.agent_steps={agent_steps}", "--config.eval_every=30", "--config.eval_episodes=1",
            f"--workdir={workdir}"]


@pytest.fixture(scope="session")
def finished_real_data_run(hopper_random_npz, tmp_path_factory):
    """The work directory of a finished `offline_real_data_command` run (read it, do not write to it)."""
    workdir = tmp_path_factory.mktemp("real_data_run") / "run"
    result = subprocess.run(offline_real_data_command(hopper_random_npz, workdir), cwd=ROOT, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    return workdir
