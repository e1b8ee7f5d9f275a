"""The import graph of the code: no cycle inside `synther_jax`, and the layering rules of WORKSPACE.md.

Read from the source (every `import` statement, those inside functions included), so a cycle that
a lazy import hides at run time still counts. And the other side of lazy imports: the core (the
`SynthER` API, the diffusion code and its benchmark) runs with none of the optional packages, and a
missing one is named with the pip extra that brings it.
"""
import ast
import os
import subprocess
import sys
import textwrap

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL = ("synther_jax", "agents", "configs", "pipelines", "launch", "bench", "experiments", "accelerator")


def module_files():
    """Every module of the top-level packages, by dotted name (a package by its own name)."""
    modules = {}
    for top in TOP_LEVEL:
        for folder, _, files in os.walk(os.path.join(ROOT, top)):
            for file in files:
                if file.endswith(".py"):
                    path = os.path.join(folder, file)
                    name = os.path.relpath(path, ROOT)[:-len(".py")].replace(os.sep, ".")
                    modules[name.removesuffix(".__init__")] = path
    return modules


MODULES = module_files()


def imports_of(name: str) -> set:
    """The project modules `name` imports: `from a.b import c` means `a.b.c` if that is a module,
    else the package `a.b`."""
    path = MODULES[name]
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(open(path).read())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: drop one package level per dot after the first
                parent = package.split(".")[:len(package.split(".")) - node.level + 1]
                base = ".".join(parent + ([node.module] if node.module else []))
            for alias in node.names:
                found.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return {module for module in found if module in MODULES and module != name}


def find_cycle(graph: dict):
    """One cycle of `graph` as a list of nodes (first repeated at the end), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for neighbour in sorted(graph[node]):
            if state.get(neighbour) == "open":
                return stack[stack.index(neighbour):] + [neighbour]
            if neighbour not in state and (cycle := visit(neighbour)):
                return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_cycle_finder_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_synther_jax_has_no_import_cycle():
    library = {name: imports_of(name) for name in MODULES if name.split(".")[0] == "synther_jax"}
    assert len(library) > 30
    cycle = find_cycle(library)
    assert cycle is None, "synther_jax imports in a circle: " + " -> ".join(cycle)


ABOVE_LAUNCH = ("bench", "experiments", "accelerator")  # what runs the launchers' code; nothing below imports it


@pytest.mark.parametrize("importer, forbidden", [
    ("synther_jax", ("agents", "configs", "pipelines", "launch", *ABOVE_LAUNCH)),  # the pip library stands alone
    ("agents", ("synther_jax.diffusion", "pipelines", "launch", *ABOVE_LAUNCH)),
    ("synther_jax.diffusion", ("agents",)),
    ("synther_jax.envs", ("synther_jax.data",)),  # datasets are made from environments, not the reverse
    ("configs", ("pipelines", "launch", *ABOVE_LAUNCH)),
    ("pipelines", ("launch", *ABOVE_LAUNCH)),
    ("launch", ABOVE_LAUNCH),
    ("bench", ("experiments", "accelerator")),  # speed benchmarks stand alone; the others use their helpers
])
def test_layers_import_only_downwards(importer, forbidden):
    wrong = sorted((name, target) for name in MODULES if name == importer or name.startswith(importer + ".")
                   for target in imports_of(name)
                   if any(target == f or target.startswith(f + ".") for f in forbidden))
    assert not wrong, f"{importer} must not import {forbidden}: {wrong}"


# The optional packages (pyproject's extras; distrax, with TensorFlow Probability, comes with the launchers' learners).
OPTIONAL = ("gymnasium", "mujoco", "dm_control", "shimmy", "gymnasium_robotics", "minari", "matplotlib", "tensorboardX",
            "ml_collections", "distrax", "tensorflow_probability", "wandb")


def run_without(packages, code: str) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh Python where `packages` cannot be imported (None in `sys.modules`, so any
    `import` of them or of their submodules raises ModuleNotFoundError)."""
    blocker = f"import sys\nsys.modules.update(dict.fromkeys({list(packages)!r}))\n"
    return subprocess.run([sys.executable, "-c", blocker + textwrap.dedent(code)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})


def test_the_core_trains_and_samples_without_any_optional_package():
    run = run_without(OPTIONAL, """
        import jax, numpy as np
        import synther_jax
        from synther_jax import SynthER
        from synther_jax.diffusion import DiffusionConfig

        rows = np.random.default_rng(0).normal(size=(64, 3 + 2 + 1 + 3 + 1)).astype(np.float32)
        config = DiffusionConfig(width=16, depth=1, num_train_steps=3, batch_size=8, num_sample_steps=2,
                                 sample_chunk_size=32)
        synther = SynthER.fit(rows, config, obs_dim=3, action_dim=2, progress=False)
        print(synther.sample(jax.random.PRNGKey(0), 10).observations.shape)
        import bench.diffusion  # the diffusion benchmark starts too
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(10, 3)" in run.stdout


@pytest.mark.parametrize("missing, code, extra", [
    ("gymnasium", "import synther_jax.envs", "envs"),
    ("gymnasium", "from synther_jax.data import load_dataset; load_dataset(env_id='Walker2d-v5')", "envs"),
    ("mujoco", "from synther_jax.envs import make_env; make_env('Hopper-v5')", "envs"),
    ("dm_control", "from synther_jax.envs import make_env; make_env('cheetah-run')", "dmc"),
    ("gymnasium_robotics", "from synther_jax.envs import make_env; make_env('maze2d-umaze')", "maze"),
    ("minari", "from synther_jax.data import load_dataset; load_dataset('mujoco/hopper/medium-v0')", "minari"),
    ("matplotlib", "import synther_jax.analysis.plots", "analysis"),
    ("tensorboardX", "import synther_jax.metrics", "launch"),
])
def test_a_missing_optional_package_is_named_with_the_extra_that_brings_it(missing, code, extra):
    run = run_without([missing], f"""
        from synther_jax.errors import MissingExtraError
        try:
            {code}
        except MissingExtraError as error:
            print(error)
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    message = run.stdout.strip()
    assert message.startswith(f"{missing} is not installed") and f'pip install "synther_jax[{extra}]"' in message
    assert "\n" not in message


def test_the_offline_learners_import_without_environments_configs_or_pixel_learners():
    run = run_without([name for name in OPTIONAL if name not in ("distrax", "tensorflow_probability")], """
        import sys
        from agents import OFFLINE_LEARNERS, sac
        assert sorted(OFFLINE_LEARNERS) == ["edac", "iql", "td3_bc"]
        print(sorted(name for name in sys.modules if name in ("agents.drqbc", "agents.pixel_bc", "agents.pixel_networks")))
    """)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip() == "[]"
