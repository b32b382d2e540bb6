"""The house: no import cycles in funcgrad/ or compare/ (lazy imports inside functions count),
and ``import funcgrad`` loads none of the frameworks it bridges to."""

import ast
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT


def modules() -> dict[str, object]:
    """Every module of funcgrad/ and compare/, by dotted name."""
    found = {}
    for root in ("funcgrad", "compare"):
        for path in (REPO_ROOT / root).rglob("*.py"):
            name = ".".join(path.relative_to(REPO_ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def imports_of(name: str, path, known: dict) -> set[str]:
    """The modules of ``known`` that module ``name`` imports, anywhere in its file."""
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            candidates = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            candidates = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found |= {candidate for candidate in candidates if candidate in known and candidate != name}
    return found


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every cycle a depth-first walk meets, each as the modules around it."""
    found, done = [], set()

    def visit(node, path):
        if node in path:
            found.append(path[path.index(node):] + [node])
            return
        if node in done:
            return
        for neighbour in sorted(graph[node]):
            visit(neighbour, path + [node])
        done.add(node)

    for node in sorted(graph):
        visit(node, [])
    return found


def test_the_import_graph_of_funcgrad_and_compare_has_no_cycle():
    known = modules()
    graph = {name: imports_of(name, path, known) for name, path in known.items()}
    assert len(graph) > 40 and graph["compare.bench"] and graph["funcgrad.parity.steps"]
    assert not cycles(graph), "\n".join(" -> ".join(cycle) for cycle in cycles(graph)[:5])


def test_a_cycle_is_found_where_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
    assert not cycles({"a": {"b"}, "b": set()})


@pytest.mark.parametrize("framework", ["torch", "flax", "equinox"])
def test_import_funcgrad_loads_no_framework_it_bridges_to(framework):
    check = (f"import sys, funcgrad, funcgrad.parity, funcgrad.interop; "
             f"assert {framework!r} not in sys.modules, sorted(m for m in sys.modules if m.startswith({framework!r}))")
    subprocess.run([sys.executable, "-c", check], check=True, cwd=REPO_ROOT)
