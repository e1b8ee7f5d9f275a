"""The installed package, used from outside the clone: `pip install` of this checkout, its metadata,
then the README's "SynthER for your own agent" example, run as written from another directory with
nothing but the core importable; and the extras that the errors for a missing
optional package name."""
import ast
import importlib.metadata
import os
import re
import subprocess
import sys
import tomllib

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the extras bring: none of it may be needed by the README example.
EXTRAS_ONLY = ("gymnasium", "mujoco", "dm_control", "shimmy", "gymnasium_robotics", "minari", "scipy", "matplotlib",
               "tensorboardX", "ml_collections", "distrax", "tensorflow_probability", "wandb")


def version() -> str:
    """`__version__` as the source says it, read without importing the package."""
    with open(os.path.join(ROOT, "synther_jax", "__init__.py")) as file:
        return re.search(r'^__version__ = "(.+)"$', file.read(), re.M).group(1)


def readme_example() -> str:
    with open(os.path.join(ROOT, "README.md")) as file:
        section = file.read().split("## SynthER for your own agent", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


@pytest.mark.slow
def test_the_readme_example_runs_against_the_installed_package(tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              f"--target={site}", ROOT], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    assert (site / "synther_jax" / "data" / "bundled" / "walker2d-medium-replay.hdf5").exists()
    assert (site / "synther_jax" / "py.typed").exists()  # type checkers read the package's hints (PEP 561)
    assert not (site / "launch").exists() and not (site / "agents").exists()  # the library only

    metadata = next(site.glob("synther_jax-*.dist-info")) / "METADATA"
    fields = metadata.read_text().split("\n\n", 1)[0].splitlines()
    core = {canonicalize_name(Requirement(line.split(": ", 1)[1]).name) for line in fields
            if line.startswith("Requires-Dist: ") and "extra ==" not in line}
    assert core == {"jax", "flax", "optax", "orbax-checkpoint", "numpy", "h5py", "tqdm"}
    assert "License-Expression: MIT" in fields and (metadata.parent / "licenses" / "LICENSE").exists()

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    # Nothing that only an extra brings can be imported.
    prelude = (f"import sys; sys.modules.update(dict.fromkeys({list(EXTRAS_ONLY)!r}))\n"
               "import synther_jax, os\n"
               f"assert synther_jax.__version__ == {version()!r}\n"
               f"assert synther_jax.__file__.startswith({str(site)!r}), synther_jax.__file__\n"
               "assert len(synther_jax.data.load_dataset()) > 0  # the bundled data ships with the package\n")
    environment = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", prelude + readme_example()], cwd=elsewhere, env=environment,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(10000, 17)" in run.stdout
    assert (elsewhere / "my_synther" / "synther.json").exists()


def extra_requirements(extra: str) -> set:
    """The distributions `pip install "synther_jax[extra]"` brings beyond the core, extras it names expanded."""
    with open(os.path.join(ROOT, "pyproject.toml"), "rb") as file:
        extras = tomllib.load(file)["project"]["optional-dependencies"]
    found = set()
    for requirement in map(Requirement, extras[extra]):
        if canonicalize_name(requirement.name) == "synther-jax":
            found |= set().union(*(extra_requirements(name) for name in requirement.extras))
        else:
            found.add(canonicalize_name(requirement.name))
    return found


def require_calls():
    """(module, extra, file) of every `require("module", "extra")` in the library."""
    for folder, _, files in os.walk(os.path.join(ROOT, "synther_jax")):
        for file in (os.path.join(folder, name) for name in files if name.endswith(".py")):
            for node in ast.walk(ast.parse(open(file).read())):
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "require":
                    yield node.args[0].value, node.args[1].value, os.path.relpath(file, ROOT)


def test_every_extra_an_error_names_brings_the_missing_package():
    calls = list(require_calls())
    assert {extra for _, extra, _ in calls} >= {"envs", "dmc", "maze", "minari", "analysis", "launch"}
    distributions = importlib.metadata.packages_distributions()
    for module, extra, file in calls:
        brings = {canonicalize_name(name) for name in distributions[module.split(".")[0]]}
        assert brings & extra_requirements(extra), f"{file}: {module} is not in the {extra!r} extra"


def test_the_changelog_opens_with_the_package_version():
    with open(os.path.join(ROOT, "CHANGELOG.md")) as file:
        releases = re.findall(r"^## (\d+\.\d+\.\d+)$", file.read(), re.M)
    assert releases and releases[0] == version(), f"CHANGELOG.md's newest release {releases[:1]} is not {version()}"
    assert len(set(releases)) == len(releases)
