"""The layout holds: no import cycles between modules or between packages, and what the
parent loads never imports torch (the layers themselves are import-linter's contracts in
pyproject.toml, run by `tox -e lint`)."""

from __future__ import annotations

import grimp
import pytest


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("bench")


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in edges.get(node, ()):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in list(edges):
        if node not in index:
            visit(node)
    return found


def module_edges(graph: grimp.ImportGraph) -> dict[str, set[str]]:
    return {m: set(graph.find_modules_directly_imported_by(m)) for m in graph.modules}


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])


def test_tarjan_finds_a_cycle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_import_cycle_between_modules(graph):
    assert cycles(module_edges(graph)) == []


def test_no_import_cycle_between_packages(graph):
    edges: dict[str, set[str]] = {}
    for source, targets in module_edges(graph).items():
        for target in targets:
            if package_of(source) != package_of(target):
                edges.setdefault(package_of(source), set()).add(package_of(target))
    assert cycles(edges) == []


def test_the_parent_side_imports_torch_nowhere_at_module_level():
    """Every module outside bench.measure imports without torch (the two torch-free modules
    of measure included): import each in a fresh interpreter and look."""
    import subprocess
    import sys

    graph = grimp.build_graph("bench")
    parent_side = sorted(m for m in graph.modules if m != "bench.__main__" and (
                         not m.startswith("bench.measure")
                         or m in ("bench.measure", "bench.measure.protocol",
                                  "bench.measure.entry")))
    code = ("import importlib, sys\n"
            f"for name in {parent_side!r}:\n"
            "    importlib.import_module(name)\n"
            "    assert 'torch' not in sys.modules, name\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
