"""Pin the import graph of proxy/: no module imports itself back through others (issue 13:
cli.py and demo.py imported each other; entry points only parse and wire). Read from the
source, so an import inside a function (which only breaks at run time) counts too."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "proxy"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, ast.Module]:
    return {
        module_name(path): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def imported(tree: ast.Module, known: set[str]) -> Iterator[str]:
    """The proxy modules `tree` imports: `from proxy import dev` names the module proxy.dev,
    `from proxy.server import Proxy` the module proxy.server."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names if alias.name in known)
        elif isinstance(node, ast.ImportFrom) and node.module in known and node.level == 0:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            named = [name for name in submodules if name in known]
            yield from named or [node.module]


def import_graph() -> dict[str, set[str]]:
    trees = modules()
    known = set(trees)
    return {name: set(imported(tree, known)) - {name} for name, tree in trees.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str]:
    """One cycle as [a, b, ..., a], or [] when the graph is acyclic (depth-first search)."""
    done: set[str] = set()
    path: list[str] = []

    def visit(node: str) -> list[str]:
        if node in path:
            return [*path[path.index(node) :], node]
        if node in done:
            return []
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if cycle := visit(target):
                return cycle
        path.pop()
        done.add(node)
        return []

    for start in sorted(graph):
        if cycle := visit(start):
            return cycle
    return []


def test_proxy_has_no_import_cycle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle == [], " -> ".join(cycle)


def test_the_graph_sees_the_imports_that_made_the_old_cycle() -> None:
    # guard against a check that can never fail: it must see these edges
    graph = import_graph()
    assert {"proxy.lifecycle", "proxy.demo"} <= graph["proxy.cli"]
    assert "proxy.dev" in graph["proxy.lifecycle"]  # `from proxy import dev as dev_mode`
    assert "proxy.lifecycle" in graph["proxy.demo"]


def test_find_cycle_reports_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set(), "c": {"a", "b"}}) == []
