"""The python blocks of README.md, CONTRIBUTING.md and docs/*.md, held to the code they
describe, so that a claim that drifts fails.

The convention, for every fenced ```python block of those pages (output shown as text goes
in a ```text block):

- it is a complete program: it runs after ``import jax, optax, funcgrad as fg`` (which every
  block takes as read) in a namespace of its own, and must finish without an exception.
  The blocks of a page run one after another in one fresh Python process (one import of
  jax and torch a page); a block right below ``<!-- readme-test: run on N devices -->`` (an
  HTML comment, invisible on GitHub) runs in a process of its own on N CPU devices
  (``XLA_FLAGS=--xla_force_host_platform_device_count=N``, which must be set before jax
  starts). Tracebacks give the page's own line numbers;
- every ``fg.NAME``, ``funcgrad.NAME``, ``fg.optim.NAME`` or ``parity.NAME`` it mentions,
  comments included, exists; so does every ``fg.NAME`` and ``funcgrad.NAME`` in the
  prose's inline code, and every link to a file of the repository.

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
MARKER = re.compile(r"<!-- readme-test: run on (?P<devices>\d+) devices -->")
# A funcgrad name: fg.NAME, fg.optim.NAME, funcgrad.NAME, parity.NAME (not x.parity.NAME).
FUNCGRAD_NAME = re.compile(r"(?<![\w.])(fg|funcgrad|parity)((?:\.[A-Za-z_]\w*)+)")
ROOTS = {"fg": funcgrad, "funcgrad": funcgrad, "parity": funcgrad.parity}


class Block(NamedTuple):
    page: str  # the page's path from the repository root
    line: int  # the page's line number of the block's first line of code
    source: str
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
        devices = int(marker["devices"]) if marker else 1
        blocks.append(Block(name, i + 2, "\n".join(lines[i + 1:end]) + "\n", devices))
    return blocks


BLOCKS = [block for page in PAGES for block in python_blocks(page)]


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


# Runs the blocks given as (line, source) pairs one after another, each in a namespace of its
# own after the prelude: each block's output (and traceback) ends with a line "BLOCK <line> ok"
# or "BLOCK <line> FAILED"; exits 1 if one failed.
DRIVER = """
import sys, traceback
page, blocks = sys.argv[1], eval(open(sys.argv[2]).read())
failed = False
for line, source in blocks:
    namespace = {"__name__": "__main__"}
    try:
        exec(compile(PRELUDE + "\\n" * (line - 1) + source, page, "exec"), namespace)
        print(f"BLOCK {line} ok", flush=True)
    except BaseException:
        failed = True
        print(traceback.format_exc() + f"BLOCK {line} FAILED", flush=True)
sys.exit(1 if failed else 0)
""".replace("PRELUDE", repr(PRELUDE))


@functools.lru_cache(maxsize=None)
def run_page(page: str, devices: int, tmp_dir: str) -> subprocess.CompletedProcess:
    """Every block of ``page`` meant for ``devices`` devices, in one fresh process."""
    blocks = [(block.line, block.source) for block in BLOCKS if block.page == page and block.devices == devices]
    stem = os.path.join(tmp_dir, page.replace("/", "_").removesuffix(".md") + f"_{devices}")
    with open(stem + ".blocks", "w") as f:
        f.write(repr(blocks))
    with open(stem + "_driver.py", "w") as f:
        f.write(DRIVER)
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=str(REPO_ROOT))
    if devices > 1:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    return subprocess.run([sys.executable, stem + "_driver.py", page, stem + ".blocks"], cwd=tmp_dir, env=env,
                          capture_output=True, text=True, timeout=600)


def block_output(block: Block, tmp_dir: str) -> str:
    """What ``block`` printed (and its traceback), from its page's run."""
    completed = run_page(block.page, block.devices, tmp_dir)
    parts = re.split(r"^BLOCK (\d+) (?:ok|FAILED)\n", completed.stdout, flags=re.M)
    outputs = dict(zip(parts[1::2], parts[0::2]))
    return outputs.get(str(block.line), "never ran:\n" + completed.stdout[-2000:] + completed.stderr[-2000:])


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


@pytest.mark.parametrize("block", BLOCKS, ids=block_id)
def test_every_python_block_runs(block, tmp_dir):
    completed = run_page(block.page, block.devices, tmp_dir)
    assert f"BLOCK {block.line} ok" in completed.stdout.splitlines(), block_output(block, tmp_dir)


def test_scaling_out_runs_as_written_on_eight_devices(tmp_dir):
    """docs/scaling.md's snippet, on 8 forced CPU devices: every batch of 200 split 25 per device."""
    [block] = [block for block in BLOCKS if block.page == "docs/scaling.md"]
    assert block.devices == 8
    assert block_output(block, tmp_dir).startswith("8 device(s), 25 examples each per step;")
