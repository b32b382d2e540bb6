"""``python -m compare.bench``: every row carries min / median / max over enough repeats.

No timing thresholds here: the machine running the tests may be busy. A fake clock pins
what the timing helpers make of given call times; the other tests check the shape of what
the benchmark reports and that both sides of a row do the same work.
"""

import functools
import json
import time
import types

import numpy as np
import pytest
import torch

import funcgrad as fg
from compare import bench, runtime
from compare import timed
from compare.cases import CASES, _mnist
from compare.timed import Timed
from tests.conftest import cpu_context

# Enough to run every code path, short enough for a test: the minimum repeats still hold.
QUICK = bench.Repeats(minimum=5, min_time_s=0.01)


def assert_spread(row: bench.Row):
    assert row.repeats >= 5 and row.calls_per_repeat >= 1
    assert 0 < row.run_min_s <= row.run_s <= row.run_max_s


class FakeClock:
    """Stands in for ``time`` in compare.bench: time moves only when a run of ``taking`` is called."""

    def __init__(self):
        self.now = 0.0

    def perf_counter(self) -> float:
        return self.now

    def taking(self, *seconds: float):
        """A run whose calls take ``seconds`` in turn (the last one from then on); it counts its calls."""
        def run():
            run.calls += 1
            self.now += seconds[min(run.calls, len(seconds)) - 1]
            return np.zeros(1)
        run.calls = 0
        return run


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(bench, "time", fake)
    monkeypatch.setattr(bench, "MIN_REGION_S", 0.05)
    return fake


def test_each_long_call_is_its_own_repeat_and_the_row_spans_min_median_max(clock):
    run = clock.taking(2.0, 0.3, 0.1, 0.2, 0.9, 0.4, 9.0)
    timing = bench.measure(run, bench.Repeats(minimum=5, min_time_s=0.0))
    assert run.calls == 6  # the warm-up, then five repeats: the 9 s call never happens
    assert timing.first_call_s == 2.0 and timing.calls_per_repeat == 1
    assert timing.per_call_s == pytest.approx((0.3, 0.1, 0.2, 0.9, 0.4))
    row = bench.row_from("case", "funcgrad", 10, 0.0, timing)
    # The median, not the mean (0.38).
    assert (row.run_min_s, row.run_s, row.run_max_s, row.repeats) == pytest.approx((0.1, 0.3, 0.9, 5))
    assert row.per_step_us == pytest.approx(3e4)


def test_short_calls_are_batched_into_regions_and_timed_until_the_minimum_time(clock):
    call_s = 1 / 64  # a power of two: the fake clock's sums stay exact
    run = clock.taking(call_s)
    timing = bench.measure(run, bench.Repeats(minimum=2, min_time_s=1.0))
    # 1 and 2 calls last under MIN_REGION_S, 5 calls 0.078 s: that trial is the first region.
    assert timing.calls_per_repeat == 5 and set(timing.per_call_s) == {call_s}
    # Past the minimum of 2, regions go on until 1 s of timed work: 13 of 5/64 s.
    assert len(timing.per_call_s) == 13
    assert run.calls == 1 + (1 + 2 + 5) + 12 * 5


def test_rows_are_built_from_the_cases_own_timed_hook(clock, monkeypatch):
    runs = {"funcgrad": clock.taking(1.0, 0.25), "torch-eager": clock.taking(0.5, 0.25)}
    asked = []

    def timed(ctx):
        asked.append(ctx)
        return Timed(7, runs, {"torch-eager": "the seed's loop"})

    monkeypatch.setitem(CASES, "fake-case", types.SimpleNamespace(timed=timed))
    ctx = cpu_context(np.float32)
    rows = bench.time_case("fake-case", ctx, bench.Repeats(minimum=3, min_time_s=0.0))
    assert asked == [ctx] and [run.calls for run in runs.values()] == [4, 4]
    assert [(row.case, row.framework, row.steps, row.note, row.run_s) for row in rows] == [
        ("fake-case", "funcgrad", 7, "", 0.25), ("fake-case", "torch-eager", 7, "the seed's loop", 0.25)]
    # Compile time is the warm-up's extra time over the median; torch eager compiles nothing.
    assert [row.compile_s for row in rows] == [0.75, 0.0]


def test_fast_calls_are_timed_in_batches_and_slow_ones_alone():
    fast = bench.measure(lambda: None, bench.Repeats(minimum=5, min_time_s=0.0))
    assert fast.calls_per_repeat > 1 and len(fast.per_call_s) >= 5
    slow = bench.measure(lambda: time.sleep(bench.MIN_REGION_S), bench.Repeats(minimum=5, min_time_s=0.0))
    assert slow.calls_per_repeat == 1 and len(slow.per_call_s) == 5


def test_repeats_continue_until_the_minimum_time():
    timing = bench.measure(lambda: time.sleep(0.001), bench.Repeats(minimum=1, min_time_s=0.2))
    assert sum(timing.per_call_s) * timing.calls_per_repeat >= 0.2


def test_per_example_rows_carry_min_median_max(mnist_dir):
    rows = bench.time_case("per-example-grads", cpu_context(np.float32, mnist_dir), QUICK)
    assert [row.framework for row in rows] == ["funcgrad", "torch-func"]
    for row in rows:
        assert_spread(row)


def test_both_per_example_kernels_compute_the_same_gradients(mnist_dir):
    # The bench times these two kernels alone; they must be the same work.
    timed = CASES["per-example-grads"].timed(cpu_context(np.float32, mnist_dir))
    ours, theirs = bench.fetch(timed.runs["funcgrad"]()), bench.fetch(timed.runs["torch-func"]())
    for name in ("W", "b"):
        np.testing.assert_allclose(theirs[name], ours[name], rtol=1e-5, atol=1e-6)


def test_the_cases_in_readmes_speed_table_have_timing_hooks():
    assert {"iris-softmax", "mnist-softmax", "per-example-grads", "mnist-mlp"} <= set(bench.TIMED_CASES)


def test_the_cli_prints_a_markdown_table_and_writes_the_spread(tmp_path, capsys, dynamo_only):
    report_path = tmp_path / "bench.json"
    assert bench.main(["--case", "linear-regression", "--min-time", "0.01",
                       "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    header, rule, first = out[out.index("| case "):].splitlines()[:3]
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "case", "framework", "compile s", "run s (min / median / max)", "µs / step", "× funcgrad", "× floor"]
    assert first.startswith("| linear-regression (300 steps) | funcgrad ")
    rows = json.loads(report_path.read_text())["rows"]
    assert [row["framework"] for row in rows] == ["funcgrad", "torch-eager", "torch.compile"]
    for row in rows:
        assert_spread(bench.Row(**{k: v for k, v in row.items() if k != "per_step_us"}))


@pytest.mark.parametrize("value, text", [(0.037612, "0.0376"), (3.6, "3.60"), (95.84, "95.8"),
                                         (3290.4, "3 290"), (10_000, "10 000")])
def test_figures_are_written_as_readme_writes_them(value, text):
    assert bench.significant(value) == text


def test_check_rows_take_at_most_check_repeats_and_compare_to_the_whole_run_check(clock, monkeypatch):
    runs = {"whole-run check": clock.taking(4.0, 2.0), "synced check": clock.taking(9.0, 6.0, 5.0, 7.0, 99.0)}
    checks = {name: lambda run=run: (run(), f"verdict {run.calls}")[1] for name, run in runs.items()}
    monkeypatch.setitem(CASES, "fake-case", types.SimpleNamespace(timed_checks=lambda ctx: Timed(600, checks)))
    rows = bench.time_checks("fake-case", cpu_context(np.float32), bench.Repeats(minimum=5, min_time_s=0.0))
    assert [run.calls for run in runs.values()] == [1 + bench.CHECK_REPEATS] * 2  # the warm-up, then 3
    assert [(row.framework, row.run_s, row.ratio_to_whole_run_check) for row in rows] == [
        ("whole-run check", 2.0, 1.0), ("synced check", 6.0, 3.0)]
    assert rows[0].note == "verdict 1 / verdict 2 / verdict 3 / verdict 4"  # every distinct verdict, in order
    lines = bench.format_checks(rows).splitlines()
    assert [[cell.strip() for cell in line.strip("|").split("|")] for line in lines[2:4]] == [
        ["fake-case (600 steps)", "whole-run check", "2.00 / 2.00 / 2.00", "3.33", "1"],
        ["", "synced check", "5.00 / 6.00 / 7.00", "10.0", "3.00"]]


def test_the_synced_check_replays_the_batches_weights_and_scaling_of_the_mnist_mlp_loop(mnist_dir):
    # The bench's synced check must time the run the whole-run check times: the same
    # losses, bit for bit, from the case's DataLoader loop and from the check's batches.
    # 1 000 images in batches of 64 over two epochs: short batches and a second order too.
    ctx = cpu_context(np.float32, mnist_dir)
    mlp = CASES["mnist-mlp"]
    name, data, initial, _ = mlp.setup(ctx)
    setup = (name, {key: value[:1000] for key, value in data.items()}, initial,
             fg.loader_batches(ctx.key(0), 1000, 64, num_epochs=2))
    _, _, torch_setup, torch_loss, batches = _mnist.step_check(
        ctx, setup, fg.mlp_apply, mlp.torch_model, mlp.LEARNING_RATE)
    model, optimizer = torch_setup(np.float32)
    replayed = []
    for images, labels in batches:
        optimizer.zero_grad()
        loss = torch_loss(model, (torch.from_numpy(images), torch.from_numpy(labels)))
        loss.backward()
        optimizer.step()
        replayed.append(loss.item())
    _, torch_train = _mnist.training_check(ctx, setup, fg.mlp_apply, mlp.torch_model, mlp.LEARNING_RATE)
    np.testing.assert_array_equal(np.asarray(replayed, np.float32),
                                  torch_train(np.dtype(np.float32))["loss per step"].value)


# ---- the torch.compile row --------------------------------------------------------------

# Training cases with a torch-eager loop but no torch.compile row, and why; every other one
# must have the row (a new case cannot miss it silently, and an entry here must stay true).
NOT_COMPILED = {"mnist-softmax": "the seed's loop multiplies raw tensors: no model to compile"}


@pytest.fixture
def dynamo_only(monkeypatch):
    """torch.compile with dynamo's capture but no inductor: a compile costs about a second
    here, not inductor's 4-20 s of C++. Counts graphs and recompiles as the real one does."""
    monkeypatch.setattr(torch, "compile", functools.partial(torch.compile, backend="eager"))


def test_every_training_case_with_a_torch_eager_loop_has_a_torch_compile_run(monkeypatch):
    # The stand-in digits: the runs' names do not depend on the data, and MNIST takes seconds a case to load.
    monkeypatch.setattr(runtime, "mnist_source", lambda mnist_dir: None)
    ctx = cpu_context(np.float32)
    with_eager = []
    for name in bench.TIMED_CASES:
        runs = CASES[name].timed(ctx).runs  # builds the compiled model; nothing compiles before a call
        if "torch-eager" in runs:
            with_eager.append(name)
            assert (bench.TORCH_COMPILE in runs) == (name not in NOT_COMPILED), name
    assert set(NOT_COMPILED) <= set(with_eager)
    assert {"iris-softmax", "linear-regression", "binary-logistic", "mnist-batch-64", "mnist-mlp"} <= set(with_eager)


def test_the_torch_compile_row_times_its_compile_apart_and_counts_what_later_calls_compile(clock, monkeypatch):
    compiled = bench.Compiles(0, 0, 0)

    def compiling(run, *graphs_per_call):
        """``run`` that compiles ``graphs_per_call[i]`` graphs (one forward and backward each) on call i."""
        def call():
            nonlocal compiled
            graphs = graphs_per_call[run.calls] if run.calls < len(graphs_per_call) else 0
            compiled = bench.Compiles(compiled.graphs + graphs, compiled.inductor + 2 * graphs, compiled.cached)
            return run()
        return call

    monkeypatch.setattr(bench, "compiles_so_far", lambda: compiled)
    funcgrad, eager = clock.taking(1.0, 0.25), clock.taking(0.5)
    torch_compile = clock.taking(5.0, 0.5)
    runs = {"funcgrad": funcgrad, "torch-eager": eager, "torch.compile": compiling(torch_compile, 2)}
    monkeypatch.setitem(CASES, "fake-case", types.SimpleNamespace(timed=lambda ctx: Timed(7, runs)))
    rows = bench.time_case("fake-case", cpu_context(np.float32), bench.Repeats(minimum=3, min_time_s=0.0))
    bench.add_ratios(rows)
    row = rows[2]
    assert (row.framework, row.compile_s, row.run_s, row.ratio_to_funcgrad) == ("torch.compile", 4.5, 0.5, 2.0)
    assert row.note.startswith(bench.COMPILED)
    assert row.note.endswith(
        "the warm-up call captured 2 graph(s), inductor compiled 4; the 3 later calls compiled nothing")

    # A guard that fails on the third call: that compile lands in a timed region, and the note says so.
    runs["torch.compile"] = compiling(clock.taking(5.0, 0.5), 1, 0, 1)
    row = bench.time_case("fake-case", cpu_context(np.float32), bench.Repeats(minimum=3, min_time_s=0.0))[2]
    assert row.note.endswith("the 3 later calls RECOMPILED: 1 graph(s) captured, 2 compiled")

    # A warm-up that compiled nothing ran eagerly (dynamo told to suppress its errors): said so.
    runs["torch.compile"] = compiling(clock.taking(0.5))
    row = bench.time_case("fake-case", cpu_context(np.float32), bench.Repeats(minimum=3, min_time_s=0.0))[2]
    assert row.note.endswith("compiled nothing; NOTHING COMPILED: the loop ran eagerly "
                             "(torch._dynamo.config.suppress_errors?)")


def test_an_unavailable_torch_compile_is_a_row_note_not_a_crash(clock, monkeypatch, capsys):
    def compile_fails():
        raise RuntimeError("InvalidCxxCompiler: No working C++ compiler found in torch._inductor.config.cpp.cxx\n"
                           "(the rest of inductor's message)")

    runs = {"funcgrad": clock.taking(1.0, 0.25), "torch-eager": clock.taking(0.5), "torch.compile": compile_fails}
    monkeypatch.setitem(CASES, "fake-case", types.SimpleNamespace(timed=lambda ctx: Timed(7, runs)))
    rows = bench.time_case("fake-case", cpu_context(np.float32), QUICK)
    bench.add_ratios(rows)
    assert [row.measured for row in rows] == [True, True, False]
    assert rows[2].note == ("torch.compile unavailable: RuntimeError: InvalidCxxCompiler: "
                            "No working C++ compiler found in torch._inductor.config.cpp.cxx")
    assert rows[2].ratio_to_funcgrad is None and rows[1].ratio_to_funcgrad == 2.0
    table = bench.format_table(rows)
    assert "| torch.compile | " in table and "not run (see its note)" in table
    assert f"- fake-case, torch.compile: {rows[2].note}" in table


def test_a_model_torch_compile_refuses_fails_on_its_first_step(monkeypatch):
    # torch.compile itself can raise (a Python its dynamo does not support): the helper hands
    # back the model, parameters and all, whose forward raises that error, for the row's note.
    def refuse(model, **kwargs):
        raise RuntimeError("torch.compile is not supported on this Python")

    monkeypatch.setattr(torch, "compile", refuse)
    model = torch.nn.Linear(2, 3)
    compiled = timed.torch_compiled(model)
    assert list(compiled.parameters()) == list(model.parameters())
    with pytest.raises(RuntimeError, match="not supported on this Python"):
        compiled(torch.zeros(1, 2))


def test_the_compiled_loop_captures_its_graph_once_and_later_calls_reuse_it(dynamo_only):
    # The real torch.compile path through a case (dynamo only, not inductor): the warm-up call
    # captures the model's forward, the later calls compile nothing.
    rows = bench.time_case("linear-regression", cpu_context(np.float32), bench.Repeats(minimum=2, min_time_s=0.0))
    row = rows[2]
    assert row.framework == "torch.compile" and row.measured and row.ratio_to_funcgrad is None
    assert "the warm-up call captured 1 graph(s)" in row.note and "later calls compiled nothing" in row.note
