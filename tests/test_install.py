"""The installed package, used from outside the clone: `pip install` of this checkout, then the
README's "SynthER for your own agent" example, run as written from another directory."""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def readme_example() -> str:
    with open(os.path.join(ROOT, "README.md")) as file:
        section = file.read().split("## SynthER for your own agent", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_example_runs_against_the_installed_package(tmp_path):
    site = tmp_path / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                              f"--target={site}", ROOT], capture_output=True, text=True, timeout=300)
    assert install.returncode == 0, install.stderr[-3000:]
    assert (site / "synther_jax" / "data" / "bundled" / "walker2d-medium-replay.hdf5").exists()
    assert not (site / "launch").exists() and not (site / "agents").exists()  # the library only

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    prelude = ("import synther_jax, os\n"
               f"assert synther_jax.__file__.startswith({str(site)!r}), synther_jax.__file__\n"
               "assert len(synther_jax.data.load_dataset()) > 0  # the bundled data ships with the package\n")
    environment = {**os.environ, "PYTHONPATH": str(site), "JAX_PLATFORMS": "cpu"}
    run = subprocess.run([sys.executable, "-c", prelude + readme_example()], cwd=elsewhere, env=environment,
                         capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "(10000, 11)" in run.stdout
    assert (elsewhere / "hopper_synther" / "synther.json").exists()
