"""`--help` of every command the docs show: it runs, lists each flag the docs pass to it, and, for
the launchers, lists their own flags (those their module defines and the `--config`/`--workdir`
pair that `launch.cli.define_flags` defines for it), so a documented command cannot go stale.
The expected names are read from the sources and the pages, not from absl."""
import ast
import glob
import json
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = ["README.md", "WORKSPACE.md", *sorted(glob.glob(os.path.join(ROOT, "docs", "*.md")))]
PACKAGES = ("launch", "bench", "experiments", "accelerator")
LAUNCHERS = ("analyze", "collect", "compare", "offline", "online", "pixels", "sweep", "synthesize")
COMMAND = re.compile(r"python -m ((?:%s)\.\w+)((?:[^\n`]|\\\n)*)" % "|".join(PACKAGES))


def documented_commands() -> dict:
    """{module: the flag names the pages pass to it} over every `python -m <module> ...` command in
    the pages (a command continues over lines ending in a backslash)."""
    commands = {}
    for page in PAGES:
        with open(os.path.join(ROOT, page)) as file:
            for module, rest in COMMAND.findall(file.read()):
                commands.setdefault(module, set()).update(re.findall(r"(?<![\w-])--(\w+)(?=[=\s`]|$)", rest))
    return commands


DOCUMENTED = documented_commands()


# Each `--help` would spend most of its time importing JAX and the rest; one process imports them
# once and forks a child per command, which then runs the module as `python -m` does.
HELP_SERVER = """
import json, os, runpy, sys, traceback
import absl.app, distrax, flax, gymnasium, jax, matplotlib.pyplot, ml_collections, optax, orbax.checkpoint
import scipy.stats, tensorboardX
for line in sys.stdin:
    module, output = json.loads(line)
    child = os.fork()
    if child == 0:
        file = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(file, 1)
        os.dup2(file, 2)
        sys.argv = [module, "--help"]
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


@pytest.fixture(scope="module")
def help_text(tmp_path_factory):
    """`help_text(module)`: (exit status, output) of `python -m module --help`."""
    server = subprocess.Popen([sys.executable, "-c", HELP_SERVER], cwd=ROOT, stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    folder = tmp_path_factory.mktemp("help")

    def run(module: str) -> tuple:
        output = folder / f"{module}.txt"
        server.stdin.write(json.dumps([module, str(output)]) + "\n")
        server.stdin.flush()
        status = server.stdout.readline()
        assert status, "the --help server ended early"
        return int(status), output.read_text()

    yield run
    server.stdin.close()
    server.wait(timeout=60)


def listed_flags(text: str) -> set:
    """Flag names in an absl (`  --name: ...`, `  --[no]name: ...`) or argparse (`  --name ...`) help."""
    return set(re.findall(r"^\s+--(?:\[no\])?(\w+)", text, re.MULTILINE))


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


def test_the_pages_show_commands_of_every_kind():
    assert {module.split(".")[0] for module in DOCUMENTED} == set(PACKAGES)
    assert "workdir" in DOCUMENTED["launch.offline"]  # the reader finds flags, continued lines included


@pytest.mark.parametrize("module", sorted(set(DOCUMENTED) | {f"launch.{name}" for name in LAUNCHERS}))
def test_help_lists_the_flags_the_docs_pass_and_a_launchers_own(module, help_text):
    """One `--help` per module: it exits 0, lists every flag the pages pass to the module and, for a
    launcher, every flag its source defines."""
    status, text = help_text(module)
    assert status == 0, text[-2000:]
    missing = DOCUMENTED.get(module, set()) - listed_flags(text) - {"help", "helpfull", "helpshort"}
    assert not missing, f"the docs pass {sorted(missing)} to python -m {module}, whose --help does not list them"
    package, _, name = module.partition(".")
    if package == "launch" and name in LAUNCHERS:
        expected = own_flags(name)
        assert expected, f"launch/{name}.py defines no flags: the source reader is out of date"
        assert expected <= listed_flags(text), f"missing from --help: {sorted(expected - listed_flags(text))}"
