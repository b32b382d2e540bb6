"""Shared test set-up: where real MNIST lies, and one comparison context per dtype."""

import dataclasses
import functools
import os
import shutil
import tempfile
from pathlib import Path

# Under pytest-xdist with no more cores than workers, each worker gets a core of its own and
# one OpenMP thread: the frameworks' thread pools would otherwise fight over the cores (torch's
# OpenMP threads spin while they wait), which made the 2-core suite 22 minutes instead of 16.
if os.environ.get("PYTEST_XDIST_WORKER") and hasattr(os, "sched_setaffinity"):
    _cores = sorted(os.sched_getaffinity(0))
    if len(_cores) <= int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")):
        os.sched_setaffinity(0, {_cores[int(os.environ["PYTEST_XDIST_WORKER"].removeprefix("gw")) % len(_cores)]})
        os.environ["OMP_NUM_THREADS"] = "1"

# Two thirds of the suite's time was XLA compiling, much of it the same programs again: each
# mutant clears jax's caches (compare/mutants.py) and the honest runs after it compile anew,
# examples and cases build the same steps from fresh closures. One persistent compilation
# cache for the run, in a temporary folder the workers and the subprocesses inherit, compiles
# each program once (its key holds XLA_FLAGS, so an instruction-set corner compiles its own).
# A cached executable is the one XLA built: nothing judged changes. A cache the user names
# ($JAX_COMPILATION_CACHE_DIR) is theirs and kept; JAX_ENABLE_COMPILATION_CACHE=false turns it off.
_RUN_COMPILATION_CACHE = None
if not os.environ.get("PYTEST_XDIST_WORKER") and not os.environ.get("JAX_COMPILATION_CACHE_DIR"):
    _RUN_COMPILATION_CACHE = tempfile.mkdtemp(prefix="funcgrad-tests-xla-")
    os.environ["JAX_COMPILATION_CACHE_DIR"] = _RUN_COMPILATION_CACHE
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
    os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")

import jax
import numpy as np
import pytest
import torch
from hypothesis import settings

# CI draws the same fuzz examples every run (a finding there must reproduce); locally each
# run explores new ones, and a failure is replayed from hypothesis's example database.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")

import funcgrad as fg
from compare.cases import CASES
from compare.run import run_in_dtypes
from compare.runtime import Context

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_MNIST = REPO_ROOT.parent / "shared" / "data" / "mnist"
SHARED_TEXT = REPO_ROOT.parent / "shared" / "data" / "tinyshakespeare" / "input.txt"


def pytest_configure(config):
    # Tests read real MNIST from ../shared/data/mnist unless the user names another folder.
    if not os.environ.get(fg.MNIST_ENV_VAR) and SHARED_MNIST.is_dir():
        os.environ[fg.MNIST_ENV_VAR] = str(SHARED_MNIST)
    # ... and tinyshakespeare from ../shared/data/tinyshakespeare (char-gpt).
    if not os.environ.get(fg.TEXT_ENV_VAR) and SHARED_TEXT.is_file():
        os.environ[fg.TEXT_ENV_VAR] = str(SHARED_TEXT)


def pytest_unconfigure(config):
    if _RUN_COMPILATION_CACHE:  # the process that made the run's cache, after its workers
        shutil.rmtree(_RUN_COMPILATION_CACHE, ignore_errors=True)


@pytest.fixture(scope="session")
def text_file() -> Path:
    """tinyshakespeare's input.txt: $FUNCGRAD_TEXT, else ../shared/data (set above); skipped
    without it, except under CI, where it fails."""
    named = os.environ.get(fg.TEXT_ENV_VAR)
    if not named or not Path(named).is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must have tinyshakespeare: set ${fg.TEXT_ENV_VAR} or put it at {SHARED_TEXT}")
        pytest.skip(f"no tinyshakespeare: set ${fg.TEXT_ENV_VAR} or put it at {SHARED_TEXT}")
    return Path(named)


# Session-wide, so that module-wide fixtures (test_mnist's loaded dataset) can use it.
@pytest.fixture(scope="session")
def mnist_dir() -> str:
    directory = os.environ.get(fg.MNIST_ENV_VAR)
    if not directory:
        if os.environ.get("CI"):
            pytest.fail(f"CI must have real MNIST: set ${fg.MNIST_ENV_VAR} or put it at {SHARED_MNIST}")
        pytest.skip(f"no MNIST folder: set ${fg.MNIST_ENV_VAR} or put it at {SHARED_MNIST}")
    return directory


def cpu_context(dtype, mnist_dir=None) -> Context:
    return Context(
        dtype=np.dtype(dtype),
        jax_device=jax.devices("cpu")[0],
        torch_device=torch.device("cpu"),
        mnist_dir=mnist_dir,
    )


@functools.lru_cache(maxsize=None)
def case_reports(name: str, mnist_dir: str | None = None) -> dict:
    """Case ``name`` judged in float64 and float32 (against the float64 run), once per session;
    a case whose full run takes minutes (``TEST_STEPS``) runs that many steps (README says which)."""
    ctx = dataclasses.replace(cpu_context(np.float32, mnist_dir), max_steps=getattr(CASES[name], "TEST_STEPS", None))
    return run_in_dtypes(name, ctx)


def failures(report: dict) -> str:
    """The failing quantities of a report, one line each, with their numbers."""
    return "\n".join(
        f"{q['name']}: {q['rule']}, {q['band_ratio']:.3g}x allowed, |jax-torch| {q['max_abs_err']:.3g}, "
        f"jax/torch to float64 {q['jax_ref_err']}/{q['torch_ref_err']} {q['note']}"
        for q in report["quantities"] if not q["passed"]
    )
