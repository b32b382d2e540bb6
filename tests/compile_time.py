"""Where the suite's time goes: each test file's seconds, and how many of them JAX spent
tracing, lowering and XLA compiling (jax.monitoring's compile events), summed over workers;
then the programs XLA spent longest compiling, with how many times each name was compiled and
the files that compiled it.

    python -m pytest -p tests.compile_time          # the tables after the run's summary

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
_programs = collections.defaultdict(lambda: collections.defaultdict(float))  # program -> file -> compile s
_compiles = collections.Counter()  # program -> times compiled (a persistent-cache hit counts)
_running = ["(outside a test)"]


def _listen(event, duration, fun_name=None, **_):
    if event in EVENTS:
        _seconds[_running[0]][EVENTS[event]] += duration
        if EVENTS[event] == "compile" and fun_name is not None:
            _programs[fun_name][_running[0]] += duration
            _compiles[fun_name] += 1


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
        (folder / f"{os.environ['PYTEST_XDIST_WORKER']}.json").write_text(
            json.dumps({"files": _seconds, "programs": _programs, "compiles": _compiles}))


def pytest_terminal_summary(terminalreporter):
    totals = collections.defaultdict(lambda: collections.defaultdict(float))
    programs = collections.defaultdict(lambda: collections.defaultdict(float))
    compiles = collections.Counter()
    parts = [{"files": _seconds, "programs": _programs, "compiles": _compiles},
             *(json.loads(p.read_text()) for p in Path(os.environ[FOLDER_VARIABLE]).glob("*.json"))]
    for part in parts:
        for into, table in ((totals, part["files"]), (programs, part["programs"])):
            for row, columns in table.items():
                for column, seconds in columns.items():
                    into[row][column] += seconds
        compiles.update(part["compiles"])
    columns = ["wall", *EVENTS.values()]
    write = terminalreporter.write_line
    write("")
    write(f"{'test file':48} " + " ".join(f"{c + ' s':>9}" for c in columns))
    for file, row in sorted(totals.items(), key=lambda item: -item[1]["wall"])[:20]:
        write(f"{file:48} " + " ".join(f"{row[c]:9.1f}" for c in columns))
    write(f"{'all files':48} " + " ".join(f"{sum(r[c] for r in totals.values()):9.1f}" for c in columns))
    write("")
    write(f"{'program':40} {'compile s':>9} {'times':>6}  files (s)")
    for name, files in sorted(programs.items(), key=lambda item: -sum(item[1].values()))[:25]:
        where = ", ".join(f"{Path(f).stem} {s:.0f}" for f, s in sorted(files.items(), key=lambda i: -i[1])[:3])
        write(f"{name[:40]:40} {sum(files.values()):9.1f} {compiles[name]:6d}  {where}")


def pytest_unconfigure(config):
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        shutil.rmtree(os.environ.pop(FOLDER_VARIABLE, ""), ignore_errors=True)
