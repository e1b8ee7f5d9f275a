"""`python -m launch.<x> --help` lists the launcher's own flags: those its module defines and the
`--config`/`--workdir` pair that `launch.cli.define_flags` defines for it. The expected names
are read from each module's source, not from absl."""
import ast
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LAUNCHERS = ("analyze", "collect", "offline", "online", "pixels", "sweep", "synthesize")


def own_flags(module: str) -> set:
    """The flags `launch/<module>.py` defines: the first argument of each `DEFINE_*` call, and
    config and workdir where it calls `define_flags`."""
    with open(os.path.join(ROOT, "launch", f"{module}.py")) as f:
        tree = ast.parse(f.read())
    names = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        function = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        if function.startswith("DEFINE_") and node.args and isinstance(node.args[0], ast.Constant):
            names.add(node.args[0].value)
        elif function == "define_flags":
            names |= {"config", "workdir"}
    return names


@pytest.mark.parametrize("module", LAUNCHERS)
def test_help_lists_the_launchers_own_flags(module):
    expected = own_flags(module)
    assert expected, f"launch/{module}.py defines no flags: the source reader is out of date"
    result = subprocess.run([sys.executable, "-m", f"launch.{module}", "--help"], cwd=ROOT, capture_output=True,
                            text=True, timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert result.returncode == 0, result.stderr[-2000:]
    listed = set(re.findall(r"^\s+--(?:\[no\])?(\w+):", result.stdout, re.MULTILINE))
    assert expected <= listed, f"missing from --help: {sorted(expected - listed)}"
