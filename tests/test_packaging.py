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
    roots = set()
    for path in folder.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots.add(node.module.split(".")[0])
    return {root for root in roots if root not in sys.stdlib_module_names and root not in ("funcgrad", "__future__")}


def test_the_library_declares_exactly_what_it_imports():
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {re.split(r"[<>=!~ ;\[]", requirement)[0] for requirement in project["dependencies"]}
    imported = {DISTRIBUTION_OF.get(root, root) for root in third_party_imports(REPO_ROOT / "funcgrad")}
    assert imported == declared - BACKENDS


def test_only_funcgrad_is_installed():
    find = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]
    assert find["include"] == ["funcgrad", "funcgrad.*"]
