"""``python -m compare.bench``: every row carries min / median / max over enough repeats.

No timing thresholds here: the machine running the tests may be busy. These tests check
the shape of what the benchmark reports and that both sides of a row do the same work.
"""

import json
import time

import numpy as np
import pytest

from compare import bench
from compare.cases import CASES
from tests.conftest import cpu_context

# Enough to run every code path, short enough for a test: the minimum repeats still hold.
QUICK = bench.Repeats(minimum=5, min_time_s=0.01)


def assert_spread(row: bench.Row):
    assert row.repeats >= 5 and row.calls_per_repeat >= 1
    assert 0 < row.run_min_s <= row.run_s <= row.run_max_s


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


def test_every_case_with_a_timing_hook_is_benched_from_the_one_registry():
    assert bench.TIMED_CASES == [name for name in CASES if hasattr(CASES[name], "timed")]
    assert {"iris-softmax", "mnist-softmax", "per-example-grads", "mnist-mlp"} <= set(bench.TIMED_CASES)


def test_the_cli_prints_a_markdown_table_and_writes_the_spread(tmp_path, capsys):
    report_path = tmp_path / "bench.json"
    assert bench.main(["--case", "linear-regression", "--min-time", "0.01",
                       "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    header, rule, first = out[out.index("| case "):].splitlines()[:3]
    assert [cell.strip() for cell in header.strip("|").split("|")] == [
        "case", "framework", "compile s", "run s (min / median / max)", "µs / step", "× funcgrad", "× floor"]
    assert first.startswith("| linear-regression (300 steps) | funcgrad ")
    rows = json.loads(report_path.read_text())["rows"]
    assert [row["framework"] for row in rows] == ["funcgrad", "torch-eager"]
    for row in rows:
        assert_spread(bench.Row(**{k: v for k, v in row.items() if k != "per_step_us"}))


@pytest.mark.parametrize("value, text", [(0.037612, "0.0376"), (3.6, "3.60"), (95.84, "95.8"),
                                         (3290.4, "3 290"), (10_000, "10 000")])
def test_figures_are_written_as_readme_writes_them(value, text):
    assert bench.significant(value) == text
