"""What pip installs: the funcgrad package alone, with the dependencies its code imports."""

import ast
import re
import sys

import pytest

from tests.conftest import REPO_ROOT

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

DISTRIBUTION_OF = {"sklearn": "scikit-learn"}  # import name -> distribution name, where they differ
BACKENDS = {"jaxlib"}  # a dependency pinned for jax, never imported by name


def third_party_imports(folder):
    """The distributions the package imports: at module level, and inside functions (on call)."""
    at_import, on_call = set(), set()
    for path in folder.rglob("*.py"):
        tree = ast.parse(path.read_text())
        in_functions = {id(node) for function in ast.walk(tree)
                        if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)) for node in ast.walk(function)}
        for node in ast.walk(tree):
            roots = on_call if id(node) in in_functions else at_import
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots.add(node.module.split(".")[0])
    return tuple({DISTRIBUTION_OF.get(root, root) for root in roots
                  if root not in sys.stdlib_module_names and root not in ("funcgrad", "__future__")}
                 for roots in (at_import, on_call))


def requirement_names(requirements):
    return {re.split(r"[<>=!~ ;\[]", requirement)[0] for requirement in requirements}


def test_the_library_declares_exactly_what_it_imports():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = requirement_names(project["dependencies"])
    extras = set().union(*map(requirement_names, project["optional-dependencies"].values()))
    at_import, on_call = third_party_imports(REPO_ROOT / "funcgrad")
    # An optional extra (torch, for fg.optim.state_to_torch) only inside the function that needs it.
    assert at_import | (on_call - extras) == declared - BACKENDS
    assert on_call <= declared | extras


def test_only_funcgrad_is_installed():
    find = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["funcgrad", "funcgrad.*"]
