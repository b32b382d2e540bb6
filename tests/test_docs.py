"""The python blocks of README.md, CONTRIBUTING.md and docs/*.md, held to the code they
describe, so that a claim that drifts fails.

The convention, for every fenced ```python block of those pages:

- it compiles. Illustrative blocks may use ``...``, names they do not define
  (``jax_results``), torch loops, or the "torch idiom  # → funcgrad idiom" table, but
  never invalid Python;
- every ``fg.NAME``, ``funcgrad.NAME``, ``fg.optim.NAME`` or ``parity.NAME`` it mentions,
  comments included (the idiom table's funcgrad side is a comment), exists; so does every
  ``fg.NAME`` and ``funcgrad.NAME`` in the prose's inline code;
- a block right below the line ``<!-- readme-test: run -->`` (an HTML comment, invisible
  on GitHub) is a complete program: it runs in a fresh Python process after
  ``import jax, optax, funcgrad as fg`` (the line the API section opens with, which the
  other blocks take as read) and must exit 0. ``<!-- readme-test: run on N devices -->``
  runs it on N CPU devices (``XLA_FLAGS=--xla_force_host_platform_device_count=N``, which
  must be set before jax starts). Tracebacks give the page's own line numbers.

A ``readme-test`` marker of any other form, or not right above a python fence, fails.
"""

import functools
import os
import re
import subprocess
import sys
from typing import NamedTuple

import pytest

import funcgrad
from tests.conftest import REPO_ROOT

PAGES = [REPO_ROOT / "README.md", REPO_ROOT / "CONTRIBUTING.md", *sorted((REPO_ROOT / "docs").glob("*.md"))]
PRELUDE = "import jax, optax, funcgrad as fg"
MARKER = re.compile(r"<!-- readme-test: run(?: on (?P<devices>\d+) devices)? -->")
# A funcgrad name: fg.NAME, fg.optim.NAME, funcgrad.NAME, parity.NAME (not x.parity.NAME).
FUNCGRAD_NAME = re.compile(r"(?<![\w.])(fg|funcgrad|parity)((?:\.[A-Za-z_]\w*)+)")
ROOTS = {"fg": funcgrad, "funcgrad": funcgrad, "parity": funcgrad.parity}


class Block(NamedTuple):
    page: str  # the page's path from the repository root
    line: int  # the page's line number of the block's first line of code
    source: str
    run: bool
    devices: int


def python_blocks(page) -> list[Block]:
    lines = page.read_text().splitlines()
    name = str(page.relative_to(REPO_ROOT))
    blocks = []
    for i, line in enumerate(lines):
        if line != "```python":
            continue
        end = lines.index("```", i + 1)
        marker = MARKER.fullmatch(lines[i - 1])
        devices = int(marker["devices"] or 1) if marker else 1
        blocks.append(Block(name, i + 2, "\n".join(lines[i + 1:end]) + "\n", marker is not None, devices))
    return blocks


BLOCKS = [block for page in PAGES for block in python_blocks(page)]
RUN_BLOCKS = [block for block in BLOCKS if block.run]


def block_id(block: Block) -> str:
    return f"{block.page}:{block.line}"


def missing_names(text: str, roots=tuple(ROOTS)) -> list[str]:
    """The funcgrad names ``text`` mentions that do not exist."""
    missing = []
    for root, chain in FUNCGRAD_NAME.findall(text):
        if root not in roots:
            continue
        value = ROOTS[root]
        for attribute in chain.lstrip(".").split("."):
            if not hasattr(value, attribute):
                missing.append(root + chain)
                break
            value = getattr(value, attribute)
    return missing


@functools.lru_cache(maxsize=None)
def run_block(block: Block, tmp_dir: str) -> subprocess.CompletedProcess:
    """``block`` as a program, its code on README's own line numbers, in a fresh process."""
    program = os.path.join(tmp_dir, f"{block.page.replace('/', '_').removesuffix('.md')}_{block.line}.py")
    with open(program, "w") as f:
        f.write(PRELUDE + "\n" * (block.line - 1) + block.source)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    if block.devices > 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={block.devices}"
    return subprocess.run([sys.executable, program], cwd=tmp_dir, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def tmp_dir(tmp_path_factory) -> str:
    return str(tmp_path_factory.mktemp("docs"))


def test_readme_is_a_front_page():
    assert len((REPO_ROOT / "README.md").read_text().splitlines()) <= 250


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_marker_sits_right_above_a_python_block(page):
    lines = page.read_text().splitlines()
    for number, line in enumerate(lines, start=1):
        if "readme-test" in line:
            assert MARKER.fullmatch(line), f"{page.name}:{number}: unknown marker {line!r}"
            assert lines[number] == "```python", f"{page.name}:{number}: the marker is not right above a ```python fence"


@pytest.mark.parametrize("block", BLOCKS, ids=block_id)
def test_every_python_block_compiles(block):
    compile("\n" * (block.line - 1) + block.source, block.page, "exec")


@pytest.mark.parametrize("block", BLOCKS, ids=block_id)
def test_every_funcgrad_name_a_block_mentions_exists(block):
    assert not missing_names(block.source)


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_funcgrad_name_in_the_prose_exists(page):
    prose = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)
    spans = re.findall(r"`([^`]+)`", prose)
    assert not missing_names("\n".join(spans), roots=("fg", "funcgrad"))


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(REPO_ROOT)))
def test_every_link_to_a_file_of_the_repository_resolves(page):
    prose = re.sub(r"`[^`]*`", "", re.sub(r"^```.*?^```", "", page.read_text(), flags=re.DOTALL | re.MULTILINE))
    targets = re.findall(r"\]\(([^)#:]+)(?:#[^)]*)?\)", prose)
    missing = [target for target in targets if not (page.parent / target).exists()]
    assert not missing


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=block_id)
def test_every_runnable_block_runs(block, tmp_dir):
    completed = run_block(block, tmp_dir)
    assert completed.returncode == 0, completed.stdout + completed.stderr


def test_scaling_out_runs_as_written_on_eight_devices(tmp_dir):
    """docs/scaling.md's snippet, on 8 forced CPU devices: every batch of 200 split 25 per device."""
    [block] = [block for block in BLOCKS if block.page == "docs/scaling.md"]
    assert block.run and block.devices == 8
    completed = run_block(block, tmp_dir)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.startswith("8 device(s), 25 examples each per step;"), completed.stdout
