"""Where the suite's time goes: each test file's seconds, and how many of them JAX spent
tracing, lowering and XLA compiling (jax.monitoring's compile events), summed over workers.

    python -m pytest -p tests.compile_time          # the table after the run's summary

Tests run in subprocesses (the instruction-set corners, the docs' blocks) count as wall
time only. Not loaded unless named: it adds nothing to a plain run.
"""

import collections
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower",
    "/jax/core/compile/backend_compile_duration": "compile",
}
FOLDER_VARIABLE = "FUNCGRAD_COMPILE_TIME_DIR"
_seconds = collections.defaultdict(lambda: collections.defaultdict(float))  # file -> column -> s
_running = ["(outside a test)"]


def _listen(event, duration, **_):
    if event in EVENTS:
        _seconds[_running[0]][EVENTS[event]] += duration


def pytest_configure(config):
    # jax is imported here, after tests/conftest.py has set up the run's compilation cache.
    import jax.monitoring

    jax.monitoring.register_event_duration_secs_listener(_listen)
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        os.environ[FOLDER_VARIABLE] = tempfile.mkdtemp(prefix="funcgrad-compile-time-")  # workers inherit it


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    _running[0] = item.nodeid.split("::")[0]
    started = time.perf_counter()
    yield
    _seconds[_running[0]]["wall"] += time.perf_counter() - started


def pytest_sessionfinish(session):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        folder = Path(os.environ[FOLDER_VARIABLE])
        (folder / f"{os.environ['PYTEST_XDIST_WORKER']}.json").write_text(json.dumps(_seconds))


def pytest_terminal_summary(terminalreporter):
    totals = collections.defaultdict(lambda: collections.defaultdict(float))
    for part in [dict(_seconds), *(json.loads(p.read_text()) for p in Path(os.environ[FOLDER_VARIABLE]).glob("*.json"))]:
        for file, columns in part.items():
            for column, seconds in columns.items():
                totals[file][column] += seconds
    columns = ["wall", *EVENTS.values()]
    write = terminalreporter.write_line
    write("")
    write(f"{'test file':48} " + " ".join(f"{c + ' s':>9}" for c in columns))
    for file, row in sorted(totals.items(), key=lambda item: -item[1]["wall"])[:20]:
        write(f"{file:48} " + " ".join(f"{row[c]:9.1f}" for c in columns))
    write(f"{'all files':48} " + " ".join(f"{sum(r[c] for r in totals.values()):9.1f}" for c in columns))


def pytest_unconfigure(config):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ.pop(FOLDER_VARIABLE, ""), ignore_errors=True)
