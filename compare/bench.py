"""``python -m compare.bench``: how fast each case's two sides run, side by side, in one process.

    python -m compare.bench --json bench.json            # every case with a timing hook
    python -m compare.bench --case per-example-grads --min-time 0.2   # one row, quickly

It times the cases' own sides (``timed(ctx)`` in a case module, from the one registry
``compare.cases.CASES``): funcgrad's JAX side, compiled on its first call (the compile
time is that call's extra time), and the PyTorch twin as the comparison runs it, with
the same data, settings and steps. mnist-softmax adds the floor, the forward and
weight-gradient matmuls over all 60 000 rows that a full epoch cannot avoid.

The training cases whose torch side is a module in an eager loop (iris-softmax,
linear-regression, binary-logistic, mnist-batch-64, mnist-mlp) add a ``torch.compile`` row:
the same loop, on a model of its own compiled as a torch user first writes it,
``torch.compile(model)`` (default mode, inductor; :func:`torch_compiled`), built once in
``timed(ctx)`` and reused by every call. Its first call compiles (the forward, and the
backward at the first ``backward()``; an epoch's short last batch recompiles once for a
dynamic batch size), so its compile time is that call's extra time, as funcgrad's is; its
note counts what the warm-up compiled, and what any later call did (none is expected; a
count there is marked RECOMPILED). Inductor keeps compiled graphs on disk
(``/tmp/torchinductor_$USER``), so a second bench compiles faster than the first; the note
says how many came from that cache. Where torch.compile fails (no C++ compiler, an inductor
error) the row is not run and its note says ``torch.compile unavailable: <reason>``.
mnist-softmax has no such row: the seed's loop multiplies raw tensors, there is no model to
compile without writing a second loop. sweep-iris and per-example-grads time torch.func
recipes (and per-example-grads one gradient, no training).

Each row is one warm-up call, then at least ``--repeats`` timed repeats and ``--min-time``
seconds of timed work; calls shorter than ``MIN_REGION_S`` are timed in batches of N calls
and divided by N, as ``timeit``'s autorange does. Each call's results are fetched as numpy,
which synchronises both frameworks. Rows report min / median / max per call; ratios use
medians (torch.compile's too: its compile time is not in them). The table is Markdown
(``funcgrad.parity.markdown_table``), ready for README.

A case with a ``timed_checks(ctx)`` hook (mnist-mlp) adds what proving a port costs: the
whole-run check (``fg.assert_same_training``) against the synced one
(``fg.assert_same_steps``), each over both dtypes on the case's own set-up, each call
compiling its JAX side afresh as a test does. A check is seconds long, so its rows take at
most ``CHECK_REPEATS`` timed repeats.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
from typing import Callable, NamedTuple

# torch runs with its defaults: its OpenMP threads spin while they wait for work. On an
# idle machine that is its fastest setting (OMP_WAIT_POLICY=PASSIVE made Iris's eager loop
# 3x slower); beside other jobs a spinning thread holds the core its partner needs, and
# one per-example-gradients call went from 2 ms to 40-56 ms, which explains an old 46.7x.
# So time on an idle machine: warn_if_busy says when it is not, and the min / median / max
# show it. libgomp reads OMP_WAIT_POLICY once, when torch loads; the JSON records it.
TORCH_LOADED_BEFORE = "torch" in sys.modules

import jax
import numpy as np
import torch

from compare.cases import CASES
from compare.runtime import Context, check_output_path, describe_environment, select_devices, set_matmul_precision
from compare.timed import COMPILED, TORCH_COMPILE
from funcgrad.parity.steps import compare_steps, floor
from funcgrad.parity import markdown_table

TIMED_CASES = [name for name, case in CASES.items() if hasattr(case, "timed")]
# The cases whose step-synchronized check is timed beside its floor: judged step by step in the
# comparison (``synced``), or with the arguments of one for the bench (``synced_check``).
SYNCED_CASES = [name for name, case in CASES.items() if hasattr(case, "synced") or hasattr(case, "synced_check")]
SYNCED_REPEATS = 3
# A parity check runs whole trainings in two dtypes: seconds to minutes a call.
CHECK_REPEATS = 3


@dataclasses.dataclass
class Row:
    case: str
    framework: str
    steps: int
    compile_s: float
    run_s: float                    # median seconds per call over the repeats
    note: str = ""
    ratio_to_funcgrad: float | None = None
    ratio_to_floor: float | None = None
    run_min_s: float = 0.0
    run_max_s: float = 0.0
    repeats: int = 0                # timed repeats (regions) behind min / median / max
    calls_per_repeat: int = 1       # calls in one timed region; its time is divided by this
    ratio_to_whole_run_check: float | None = None   # check rows only

    @property
    def per_step_us(self) -> float:
        return 1e6 * self.run_s / self.steps

    @property
    def measured(self) -> bool:
        """False for a row that could not run (an unavailable torch.compile): no times, no ratios."""
        return self.repeats > 0



# Repeats: at least this many timed regions and this much timed work per row, after one
# warm-up call (the CLI's --repeats and --min-time). A region shorter than MIN_REGION_S
# holds several calls: a 1 ms call timed alone shows the scheduler's and the thread
# pools' wake-up noise more than its own time (seen: 0.6 to 4.8 ms for one 0.7 ms call).
MIN_REPEATS = 5
MIN_TIME_S = 1.0
MIN_REGION_S = 0.05


@dataclasses.dataclass(frozen=True)
class Repeats:
    """How long to measure one row: ``Repeats(minimum=5, min_time_s=1.0)``."""

    minimum: int = MIN_REPEATS
    min_time_s: float = MIN_TIME_S


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call of each timed region, and the warm-up call's own time."""

    per_call_s: tuple[float, ...]
    calls_per_repeat: int
    first_call_s: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.per_call_s)


def seconds_for(run: Callable[[], object], calls: int) -> float:
    """Wall time of ``calls`` back-to-back calls of ``run`` (which synchronises itself)."""
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return time.perf_counter() - start


def first_region(run: Callable[[], object]) -> tuple[int, float]:
    """How many calls make one region at least ``MIN_REGION_S`` long, and that region's time.

    Tries 1, 2, 5, 10, 20, ... calls, as ``timeit.Timer.autorange`` does; the shorter
    trials warm ``run`` up further, and the last one is the first timed repeat, so a
    30 s run is not run once more to find out that one call is enough.
    """
    calls = 1
    while True:
        for multiple in (1, 2, 5):
            seconds = seconds_for(run, calls * multiple)
            if seconds >= MIN_REGION_S:
                return calls * multiple, seconds
        calls *= 10


def measure(run: Callable[[], object], repeats: Repeats) -> Timing:
    """Time ``run`` (which must synchronise itself) after one untimed call, its warm-up.

        timing = measure(lambda: jax.block_until_ready(f(x)), Repeats())

    Repeats regions until there are ``repeats.minimum`` of them and together they took
    ``repeats.min_time_s``; a row of sub-millisecond calls thus gets thousands of calls.
    """
    warm_up_s = seconds_for(run, 1)
    calls, seconds = first_region(run)
    per_call = [seconds / calls]
    while len(per_call) < repeats.minimum or sum(per_call) * calls < repeats.min_time_s:
        per_call.append(seconds_for(run, calls) / calls)
    return Timing(tuple(per_call), calls, warm_up_s)


def row_from(case: str, framework: str, steps: int, compile_s: float, timing: Timing) -> Row:
    return Row(case, framework, steps, compile_s, timing.median_s,
               run_min_s=min(timing.per_call_s), run_max_s=max(timing.per_call_s),
               repeats=len(timing.per_call_s), calls_per_repeat=timing.calls_per_repeat)


def fetch(result):
    """Every array of a run's result on the host: a call is timed until its numbers exist
    (JAX dispatches asynchronously, and so does a GPU)."""
    return jax.tree.map(lambda leaf: leaf.detach().cpu().numpy() if isinstance(leaf, torch.Tensor)
                        else np.asarray(leaf), result)


def time_case(name: str, ctx: Context, repeats: Repeats) -> list[Row]:
    """One row per side of case ``name``: ``time_case("iris-softmax", ctx, Repeats())``."""
    timed = CASES[name].timed(ctx)
    rows = []
    for framework, run in timed.runs.items():
        if framework == TORCH_COMPILE:
            rows.append(time_compiled(name, timed.steps, run, timed.notes.get(framework, ""), repeats))
            continue
        timing = measure(lambda: fetch(run()), repeats)
        compile_s = max(timing.first_call_s - timing.median_s, 0.0) if framework != "torch-eager" else 0.0
        row = row_from(name, framework, timed.steps, compile_s, timing)
        row.note = timed.notes.get(framework, "")
        rows.append(row)
    return rows


# ---- the torch.compile row ----------------------------------------------------------------

class Compiles(NamedTuple):
    """What torch.compile has compiled in this process so far (dynamo's counters)."""

    graphs: int      # graphs dynamo captured: a recompile (a failed guard) captures one more
    inductor: int    # graphs inductor compiled: a model's forward, and its backward at the first backward()
    cached: int      # of those, how many came from inductor's on-disk cache

    def __sub__(self, earlier: "Compiles") -> "Compiles":
        return Compiles(*(now - then for now, then in zip(self, earlier)))


def compiles_so_far() -> Compiles:
    """dynamo's and inductor's counters now; the difference of two is what happened between."""
    from torch._dynamo.utils import counters

    inductor = counters["inductor"]
    hits = inductor["fxgraph_cache_hit"]
    return Compiles(counters["stats"]["unique_graphs"],
                    inductor["fxgraph_cache_miss"] + hits + inductor["fxgraph_cache_bypass"], hits)


def time_compiled(case: str, steps: int, run: Callable[[], object], note: str, repeats: Repeats) -> Row:
    """The torch.compile row: measured as the other rows, its compile time the warm-up's extra
    time, each call's compilations counted. The note says what was compiled, what the warm-up
    compiled and that the later calls compiled nothing (else how much: a guard that fails on a
    later call would put a compile inside the timed regions, and the note says RECOMPILED).
    Where torch.compile fails (no C++ compiler, an inductor error) the row is not measured
    and its note says why."""
    import torch._dynamo

    per_call: list[Compiles] = []

    def counted_run():
        before = compiles_so_far()
        fetch(run())
        per_call.append(compiles_so_far() - before)

    # As a fresh process compiles it: every model torch.compile wraps runs through one code
    # object, whose cache holds at most torch._dynamo.config.recompile_limit (8) graphs over
    # all models (past it dynamo runs the frame eagerly, silently) and whose shape history
    # would make the next case's graph dynamic from its first call.
    torch._dynamo.reset()
    try:
        timing = measure(counted_run, repeats)
    except Exception as error:  # noqa: BLE001 - an unavailable torch.compile must not end the bench
        return Row(case, TORCH_COMPILE, steps, 0.0, 0.0, note=f"{TORCH_COMPILE} unavailable: {failure_reason(error)}")
    row = row_from(case, TORCH_COMPILE, steps, max(timing.first_call_s - timing.median_s, 0.0), timing)
    warm_up, later = per_call[0], Compiles(*map(sum, zip(*per_call[1:])))
    cached = f" ({warm_up.cached} loaded from its on-disk cache)" if warm_up.cached else ""
    counts = (f"the warm-up call captured {warm_up.graphs} graph(s), inductor compiled {warm_up.inductor}{cached}; "
              f"the {len(per_call) - 1} later calls " +
              ("compiled nothing" if not any(later) else
               f"RECOMPILED: {later.graphs} graph(s) captured, {later.inductor} compiled"))
    eager = ("" if warm_up.graphs else
             "NOTHING COMPILED: the loop ran eagerly (torch._dynamo.config.suppress_errors?)")
    row.note = "; ".join(part for part in (note, COMPILED, counts, eager) if part)
    return row


def failure_reason(error: BaseException) -> str:
    """An error in one line (inductor's errors start with their cause: ``InductorError:
    InvalidCxxCompiler: No working C++ compiler found ...``)."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    reason = f"{type(error).__name__}: {lines[0] if lines else ''}".rstrip(": ")
    return reason if len(reason) <= 300 else reason[:297] + "..."


def time_checks(name: str, ctx: Context, repeats: Repeats) -> list[Row]:
    """One row per parity check of case ``name`` (its ``timed_checks(ctx)``), at most
    ``CHECK_REPEATS`` repeats, each row's note its verdicts; ratios to the whole-run check."""
    timed = CASES[name].timed_checks(ctx)
    repeats = Repeats(min(repeats.minimum, CHECK_REPEATS), repeats.min_time_s)
    rows = []
    for check, run in timed.runs.items():
        outcomes = []
        row = row_from(name, check, timed.steps, 0.0, measure(lambda: outcomes.append(run()), repeats))
        row.note = " / ".join(dict.fromkeys(outcomes))  # one verdict, unless calls disagreed
        rows.append(row)
    for row in rows:
        row.ratio_to_whole_run_check = row.run_s / rows[0].run_s
    return rows


# ---- report ----------------------------------------------------------------------------

def add_ratios(rows: list[Row]) -> None:
    """Each measured row's median over its case's funcgrad and floor rows' (a row that could
    not be measured, an unavailable torch.compile, has none)."""
    by_case = {}
    for row in rows:
        if row.measured:
            by_case.setdefault(row.case, {})[row.framework] = row
    for row in rows:
        reference = by_case.get(row.case, {}) if row.measured else {}
        if "funcgrad" in reference:
            row.ratio_to_funcgrad = row.run_s / reference["funcgrad"].run_s
        if "floor" in reference:
            row.ratio_to_floor = row.run_s / reference["floor"].run_s


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table, as README's Speed section shows them, then their notes.

        print(format_table(rows))
    """
    header = ("case", "framework", "compile s", "run s (min / median / max)", "µs / step", "× funcgrad", "× floor")
    cells, notes, previous_case = [], [], None
    for r in rows:
        title = case_title(r) if r.case != previous_case else ""
        previous_case = r.case
        if not r.measured:
            cells.append((title, r.framework, "", "not run (see its note)", "", "", ""))
        else:
            spread = " / ".join(significant(t) for t in (r.run_min_s, r.run_s, r.run_max_s))
            cells.append((title, r.framework, significant(r.compile_s) if r.compile_s else "", spread,
                          significant(r.per_step_us), ratio_cell(r.ratio_to_funcgrad, r.framework == "funcgrad"),
                          ratio_cell(r.ratio_to_floor, r.framework == "floor")))
        if r.note:
            notes.append(f"- {r.case}, {r.framework}: {r.note}")
    return "\n".join([markdown_table(header, cells), ""] + notes)


# ---- the synced check beside its floor ------------------------------------------------------

def synced_arguments(name: str, ctx: Context) -> dict:
    """The arguments of ``fg.compare_steps`` that case ``name`` proves its port with."""
    case = CASES[name]
    return (case.synced_check if hasattr(case, "synced_check") else case.synced)(ctx)


def time_synced(name: str, ctx: Context, repeats: int) -> list[Row]:
    """Case ``name``'s synced check (``fg.compare_steps``, both dtypes) and its floor
    (``fg.parity.steps.floor``: the same steps, nothing judged), ``repeats`` times each,
    interleaved so that a change in the machine's load reaches both; each call compiles its
    JAX steps afresh, as a test's does. The check row's note holds the verdicts and the
    ratio to the floor of each repeat (min / median / max)."""
    arguments = synced_arguments(name, ctx)
    timings = {"synced check": [], "floor": []}
    verdicts = []
    for _ in range(repeats):
        start = time.perf_counter()
        outcome = compare_steps(**arguments)
        timings["synced check"].append(time.perf_counter() - start)
        verdicts.append("; ".join(v.summary.split(":", 1)[0] + (" passes" if v.passed else " FAILS")
                                  for v in outcome.values()))
        start = time.perf_counter()
        floor(**arguments)
        timings["floor"].append(time.perf_counter() - start)
    ratios = sorted(c / f for c, f in zip(timings["synced check"], timings["floor"]))
    rows = [row_from(name, framework, len(arguments["batches"]), 0.0, Timing(tuple(times), 1, 0.0))
            for framework, times in timings.items()]
    rows[0].ratio_to_floor = statistics.median(ratios)
    rows[0].note = (f"{' / '.join(dict.fromkeys(verdicts))}; × floor per repeat (min / median / max): "
                    + " / ".join(f"{r:.2f}" for r in (ratios[0], statistics.median(ratios), ratios[-1])))
    rows[1].note = ("the same steps, nothing judged: torch's runs, its float64 step from each float32 state, the "
                    "JAX steps from torch's state (to the device and back once a step), the JAX whole runs")
    return rows


def format_synced(rows: list[Row]) -> str:
    """The synced checks beside their floors, as a Markdown table, then the notes."""
    header = ("case", "run", "s (min / median / max)", "ms / step", "× floor (median)")
    cells, previous_case = [], None
    for r in rows:
        title = case_title(r) if r.case != previous_case else ""
        previous_case = r.case
        spread = " / ".join(significant(t) for t in (r.run_min_s, r.run_s, r.run_max_s))
        cells.append((title, r.framework, spread, significant(r.per_step_us / 1e3),
                      ratio_cell(r.ratio_to_floor, r.framework == "floor")))
    return "\n".join([markdown_table(header, cells), ""] + [f"- {r.case}, {r.framework}: {r.note}" for r in rows])


def format_checks(rows: list[Row]) -> str:
    """The check rows as a Markdown table, then each check's verdicts."""
    header = ("case", "check (both dtypes)", "run s (min / median / max)", "ms / step", "× whole-run check")
    cells, previous_case = [], None
    for r in rows:
        title = case_title(r) if r.case != previous_case else ""
        previous_case = r.case
        spread = " / ".join(significant(t) for t in (r.run_min_s, r.run_s, r.run_max_s))
        cells.append((title, r.framework, spread, significant(r.per_step_us / 1e3),
                      ratio_cell(r.ratio_to_whole_run_check, r.framework == "whole-run check")))
    return "\n".join([markdown_table(header, cells), ""] + [f"- {r.case}, {r.framework}: {r.note}" for r in rows])


def case_title(row: Row) -> str:
    return f"{row.case} ({row.steps:,} steps)".replace(",", " ") if row.steps > 1 else row.case


def ratio_cell(ratio: float | None, is_reference: bool) -> str:
    if ratio is None:
        return ""
    return "1" if is_reference else significant(ratio)


def significant(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures, thousands spaced as README writes them.

        significant(0.037612) == "0.0376"; significant(3.6) == "3.60"; significant(3290.4) == "3 290"
    """
    if x == 0:
        return "0"
    if abs(x) >= 10 ** (digits - 1):
        return f"{round(x):,}".replace(",", " ")
    return f"{x:.{digits - 1 - math.floor(math.log10(abs(x)))}f}"


def warn_if_busy(load_average: tuple[float, float, float]) -> None:
    """Say so when other processes already keep a core busy.

    Every row then slows down, the torch rows most (their OpenMP threads wait for cores;
    see the note on OMP_WAIT_POLICY at the top): on 2 cores under a load of 4, torch.func's per-example
    gradients took 2-5 ms a call against 2 ms alone. The min / median / max show it.
    """
    one_minute = load_average[0]
    if one_minute >= 0.5 * os.cpu_count():
        print(f"WARNING: load average {one_minute:.2f} on {os.cpu_count()} cores before the first row: "
              "other processes are running, and the torch rows will be slow and noisy.", file=sys.stderr)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=list(dict.fromkeys(TIMED_CASES + SYNCED_CASES)),
                        metavar="NAME", help=f"time only this case (repeatable): "
                                             f"{', '.join(dict.fromkeys(TIMED_CASES + SYNCED_CASES))}")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS,
                        help=f"at least this many timed repeats per row (default {MIN_REPEATS})")
    parser.add_argument("--min-time", type=float, default=MIN_TIME_S, metavar="S",
                        help=f"and at least this many seconds of timed work per row (default {MIN_TIME_S})")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu")
    parser.add_argument("--mnist-dir", metavar="DIR", help="real MNIST (else $FUNCGRAD_MNIST_DIR, else digits)")
    parser.add_argument("--text", metavar="FILE", help="char-gpt's text (else $FUNCGRAD_TEXT, else the excerpt)")
    parser.add_argument("--json", metavar="PATH", help="write the rows and the environment here")
    parser.add_argument("--synced-repeats", type=int, default=SYNCED_REPEATS, metavar="N",
                        help=f"repeats of each synced check and its floor (default {SYNCED_REPEATS})")
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="the synced checks of the cases that read it (mnist-cnn, char-gpt) run at most N steps "
                             "(default: the full epoch)")
    args = parser.parse_args(argv)
    check_output_path(parser, "--json", args.json)
    repeats = Repeats(args.repeats, args.min_time)

    jax_device, torch_device = select_devices(args.device)
    precision = set_matmul_precision()
    torch.set_num_threads(os.cpu_count())
    ctx = Context(dtype=np.dtype(np.float32), jax_device=jax_device, torch_device=torch_device,
                  mnist_dir=args.mnist_dir, max_steps=args.max_steps, text_file=args.text)
    environment = describe_environment(ctx)
    threads = {"cpu_count": os.cpu_count(), "torch_intra_op": torch.get_num_threads(),
               "xla_cpu": "one intra-op thread per core (XLA's default)",
               "omp_wait_policy": "torch loaded before compare.bench" if TORCH_LOADED_BEFORE
               else os.environ.get("OMP_WAIT_POLICY", "libgomp's default")}
    print(f"funcgrad benchmark on {environment['device']['name']}: {threads}")
    load_at_start = os.getloadavg()
    warn_if_busy(load_at_start)
    print(f"Each row: one warm-up call, then at least {args.repeats} timed repeats and {args.min_time} s"
          f" of timed work; calls under {MIN_REGION_S * 1e3:.0f} ms are timed in batches. Ratios use medians.\n")

    rows, checks, synced = [], [], []
    with jax.default_device(jax_device):
        for name in args.case or dict.fromkeys(TIMED_CASES + SYNCED_CASES):
            if name in TIMED_CASES:
                rows.extend(time_case(name, ctx, repeats))
            if hasattr(CASES[name], "timed_checks"):
                checks.extend(time_checks(name, ctx, repeats))
            if name in SYNCED_CASES:
                synced.extend(time_synced(name, ctx, args.synced_repeats))
            print(f"{name}: done", file=sys.stderr)
    add_ratios(rows)
    print(format_table(rows))
    if checks:
        print(f"\nWhat proving the port costs: each check trains in float64 and float32 (judged against "
              f"torch's float64 run) and compiles its JAX side afresh, as a test does; one warm-up call, "
              f"then {min(args.repeats, CHECK_REPEATS)} timed repeats.\n")
        print(format_checks(checks))
    if synced:
        print(f"\nThe step-synchronized check beside its floor (the same steps, nothing judged), both dtypes, "
              f"{args.synced_repeats} interleaved repeats each, every call compiling afresh:\n")
        print(format_synced(synced))
    if args.json:
        report = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **environment,
                  "threads": threads, "matmul_precision": precision, "repeats": args.repeats,
                  "min_time_s": args.min_time, "min_region_s": MIN_REGION_S,
                  "load_average_1_5_15_min": {"start": load_at_start, "end": os.getloadavg()},
                  "rows": [dataclasses.asdict(r) | {"per_step_us": r.per_step_us} for r in rows],
                  "checks": [dataclasses.asdict(r) | {"per_step_us": r.per_step_us} for r in checks],
                  "synced": [dataclasses.asdict(r) | {"per_step_us": r.per_step_us} for r in synced]}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"report written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
