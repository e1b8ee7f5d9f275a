"""The import graph of the code: no cycle inside `synther_jax`, and the layering rules of WORKSPACE.md.

Read from the source (every `import` statement, those inside functions included), so a cycle that
a lazy import hides at run time still counts.
"""
import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOP_LEVEL = ("synther_jax", "agents", "configs", "launch", "bench")


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


@pytest.mark.parametrize("importer, forbidden", [
    ("synther_jax", ("agents", "configs", "launch", "bench")),  # the pip library stands alone
    ("agents", ("synther_jax.diffusion", "launch", "bench")),
    ("synther_jax.diffusion", ("agents",)),
    ("configs", ("launch", "bench")),
])
def test_layers_import_only_downwards(importer, forbidden):
    wrong = sorted((name, target) for name in MODULES if name == importer or name.startswith(importer + ".")
                   for target in imports_of(name)
                   if any(target == f or target.startswith(f + ".") for f in forbidden))
    assert not wrong, f"{importer} must not import {forbidden}: {wrong}"
