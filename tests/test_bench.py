"""``python -m compare.bench``: every row carries min / median / max over enough repeats.

No timing thresholds here: the machine running the tests may be busy. These tests check
the shape of what the benchmark reports and that both sides of a row do the same work.
"""

import json
import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad as fg
from compare import bench
from compare.cases import per_example_grads as per_example_case
from funcgrad.tutorials import mnist_softmax
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
    rows = bench.bench_per_example_grads(cpu_context(np.float32, mnist_dir), QUICK)
    assert [row.framework for row in rows] == ["funcgrad", "torch-func"]
    for row in rows:
        assert_spread(row)


def test_both_per_example_sides_compute_the_same_gradients(mnist_dir):
    ctx = cpu_context(np.float32, mnist_dir)
    _, data = ctx.mnist()
    images, labels = data["train_images"][:8], data["train_labels"][:8]
    params = mnist_softmax.init_params(ctx.key(12), images[0].size)
    expected = jax.vmap(jax.grad(per_example_case.loss_of_one_example), in_axes=(None, 0, 0))(
        params, jnp.asarray(images), jnp.asarray(labels, jnp.int32))
    got = bench.torch_per_example_grads(ctx, fg.to_state_dict(params))(
        ctx.to_torch(images), ctx.to_torch(labels.astype(np.int64)))
    for name in ("W", "b"):
        np.testing.assert_allclose(got[name].numpy(), expected[name], rtol=1e-5, atol=1e-6)


def test_the_cli_prints_a_markdown_table_and_writes_the_spread(tmp_path, capsys):
    report_path = tmp_path / "bench.json"
    assert bench.main(["--case", "linear-regression", "--skip-torch-compile", "--min-time", "0.01",
                       "--json", str(report_path)]) == 0
    out = capsys.readouterr().out
    assert "| case | framework | compile s | run s (min / median / max) | µs / step | × funcgrad | × floor |" in out
    assert "| linear-regression (300 steps) | funcgrad |" in out
    rows = json.loads(report_path.read_text())["rows"]
    assert [row["framework"] for row in rows] == ["funcgrad", "torch-eager"]
    for row in rows:
        assert_spread(bench.Row(**{k: v for k, v in row.items() if k != "per_step_us"}))


@pytest.mark.parametrize("value, text", [(0.037612, "0.0376"), (3.6, "3.60"), (95.84, "95.8"),
                                         (3290.4, "3 290"), (10_000, "10 000")])
def test_figures_are_written_as_readme_writes_them(value, text):
    assert bench.significant(value) == text
