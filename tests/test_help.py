"""`--help` of every command the docs show: it runs, lists each flag the docs pass to it, and, for
the launchers, lists their own flags (those their module defines and the `--config`/`--workdir`
pair that `launch.cli.define_flags` defines for it), so a documented command cannot go stale.
The expected names are read from the sources and the pages, not from absl."""
import ast
import glob
import os
import re

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
def test_help_lists_the_flags_the_docs_pass_and_a_launchers_own(module, run_module):
    """One `--help` per module: it exits 0, lists every flag the pages pass to the module and, for a
    launcher, every flag its source defines."""
    status, text = run_module(module, "--help")
    assert status == 0, text[-2000:]
    missing = DOCUMENTED.get(module, set()) - listed_flags(text) - {"help", "helpfull", "helpshort"}
    assert not missing, f"the docs pass {sorted(missing)} to python -m {module}, whose --help does not list them"
    package, _, name = module.partition(".")
    if package == "launch" and name in LAUNCHERS:
        expected = own_flags(name)
        assert expected, f"launch/{name}.py defines no flags: the source reader is out of date"
        assert expected <= listed_flags(text), f"missing from --help: {sorted(expected - listed_flags(text))}"
