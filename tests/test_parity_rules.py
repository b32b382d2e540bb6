"""The parity rules themselves: float64 direct, the float32 error model, histories, exact values, near-ties."""

import numpy as np
import pytest

import funcgrad as fg
from funcgrad.parity import (
    BAND_FACTOR,
    FLOOR_ULPS,
    TOLERANCES,
    Exact,
    History,
    Logits,
    compare_results,
    format_failures,
    summarize,
)

EPS32 = float(np.finfo(np.float32).eps)


def f32(values):
    return np.asarray(values, np.float32)


def only(rows):
    (row,) = rows
    return row


def test_float32_direct_tolerance_is_no_looser_than_torch_testing_defaults():
    rtol, atol = TOLERANCES[np.dtype(np.float32)]
    assert rtol <= 1.3e-6 and atol <= 1e-5


def test_values_within_tolerance_pass_and_report_their_errors():
    row = only(compare_results({"w": np.float32([1.0, 2.0])},
                               {"w": np.float32([1.0, 2.0 + 2e-6])}, np.float32))
    assert row.passed and row.rule == "float32 direct"
    assert row.max_abs_err == pytest.approx(2e-6, rel=0.1)
    assert row.max_rel_err == pytest.approx(1e-6, rel=0.1)


def test_float64_beyond_its_tolerance_fails():
    row = only(compare_results({"w": np.float64([1.0])}, {"w": np.float64([1.0 + 1e-9])}, np.float64))
    assert not row.passed and row.rule == "float64 direct"


def test_float64_ignores_a_reference():
    row = only(compare_results({"w": np.float64([1.0])}, {"w": np.float64([1.0])}, np.float64,
                               reference={"w": np.float64([5.0])}))
    assert row.passed and row.rule == "float64 direct" and row.jax_ref_err is None


def band(torch_err, magnitude=1.0):
    return BAND_FACTOR * torch_err + FLOOR_ULPS * EPS32 * magnitude


def test_float32_passes_while_jax_is_within_the_band_of_torchs_own_error():
    reference = {"w": np.float64([1.0])}
    torch_value = {"w": np.float32([1.0 + 1e-4])}  # a long run's float32 drift
    inside = only(compare_results({"w": np.float32([1.0 - 3e-4])}, torch_value, np.float32, reference))
    outside = only(compare_results({"w": np.float32([1.0 + 1.01 * band(1e-4)])}, torch_value, np.float32, reference))
    assert inside.passed and inside.rule == "float32 band"
    assert not inside.direct_passed  # |jax - torch| = 4e-4 is far beyond assert_close's 1e-5
    assert inside.jax_ref_err == pytest.approx(3e-4, rel=1e-3) and inside.torch_ref_err == pytest.approx(1e-4, rel=1e-2)
    assert not outside.passed and outside.band_ratio > 1
    assert inside.factor_needed == pytest.approx(3.0, rel=0.02)


def test_where_torch_lands_exactly_a_few_ulps_still_pass():
    reference = {"z": np.float64([3.0])}
    torch_value = {"z": np.float32([3.0])}
    within_floor = only(compare_results({"z": np.float32([3.0 + 2 * EPS32 * 3])}, torch_value, np.float32, reference))
    beyond_floor = only(compare_results({"z": np.float32([3.0 + 8 * EPS32 * 3])}, torch_value, np.float32, reference))
    assert within_floor.passed and not beyond_floor.passed


def test_a_history_names_the_first_step_that_leaves_the_band():
    steps = 1000
    reference = np.linspace(2.0, 0.1, steps)
    torch_run = reference + 1e-6 * np.linspace(0, 1, steps)  # float32 drift growing over the run
    jax_run = reference - 2e-6 * np.linspace(0, 1, steps)
    jax_run[700:] += 1e-3  # a bug from step 700 on
    row = only(compare_results({"loss": History(f32(jax_run))}, {"loss": History(f32(torch_run))}, np.float32,
                               {"loss": History(reference)}))
    assert not row.passed and row.first_divergence == 700 and row.kind == "history"
    assert "step 700" in row.note and "step 700" in format_failures([row])


def test_a_history_band_uses_torchs_largest_recent_error():
    reference = np.ones(3)
    torch_run = reference + np.array([0.0, 1e-4, 0.0])  # torch happens to land on 1.0 again at step 2
    jax_run = reference + np.array([0.0, 1e-4, 2e-4])
    row = only(compare_results({"loss": History(f32(jax_run))}, {"loss": History(f32(torch_run))}, np.float32,
                               {"loss": History(reference)}))
    assert row.passed and row.first_divergence is None


def test_a_history_band_shrinks_with_a_drift_that_dies_out():
    steps = 300
    reference = 20 * np.exp(-np.arange(steps) / 10.0)  # a converging loss
    torch_run = reference * (1 + 1e-7)  # float32 rounding, relative to the value
    jax_run = reference * (1 + 1e-7)
    jax_run[200:] += 1e-8  # late, small, but far beyond rounding of a loss near 1e-8
    row = only(compare_results({"loss": History(f32(jax_run))}, {"loss": History(f32(torch_run))}, np.float32,
                               {"loss": History(reference)}))
    assert row.first_divergence == 200


def test_history_steps_along_another_axis():
    reference = np.ones((2, 5))
    jax_run = reference.copy()
    jax_run[1, 3] += 1e-3
    row = only(compare_results({"loss": History(f32(jax_run), step_axis=1)}, {"loss": History(f32(reference), step_axis=1)},
                               np.float32, {"loss": History(reference, step_axis=1)}))
    assert row.first_divergence == 3


def test_nan_on_one_side_fails_and_says_so():
    row = only(compare_results({"loss": np.float32([np.nan])}, {"loss": np.float32([1.0])}, np.float32))
    assert not row.passed and "non-finite" in row.note


def test_shape_mismatch_fails_naming_both_shapes():
    row = only(compare_results({"w": np.zeros((3, 1))}, {"w": np.zeros(3)}, np.float32))
    assert not row.passed and "(3, 1)" in row.note and "(3,)" in row.note


def test_exact_values_must_be_identical():
    assert only(compare_results({"acc": Exact(0.9)}, {"acc": Exact(0.9)}, np.float32)).passed
    assert not only(compare_results({"acc": Exact(0.9)}, {"acc": Exact(0.9000001)}, np.float32)).passed


def test_exact_on_one_side_only_is_refused_as_wrapped_differently():
    row = only(compare_results({"acc": Exact(0.9)}, {"acc": 0.9}, np.float32))
    assert not row.passed and "wrapped differently: jax Exact, torch a plain array" in row.note


def test_a_dtype_without_a_rule_is_named():
    with pytest.raises(ValueError, match="float16"):
        compare_results({"w": np.float16([1.0])}, {"w": np.float16([1.0])}, np.float16)


def test_nested_results_are_compared_leaf_by_leaf():
    rows = compare_results({"linear": {"weight": np.zeros(2), "bias": np.zeros(1)}},
                           {"linear": {"weight": np.zeros(2), "bias": np.ones(1)}}, np.float64)
    assert {row.name: row.passed for row in rows} == {"linear/weight": True, "linear/bias": False}


def test_a_class_may_flip_only_at_a_near_tie_which_the_report_names():
    jax_logits = np.float32([[1.0, 1.0 + 1e-7], [0.0, 5.0]])
    torch_logits = np.float32([[1.0 + 1e-7, 1.0], [0.0, 5.0]])
    row = only(compare_results({"c": Logits(jax_logits)}, {"c": Logits(torch_logits)}, np.float32))
    assert row.passed
    assert "sample 0" in row.note and "margin" in row.note


def test_under_the_error_model_a_near_tie_is_one_within_torchs_own_error():
    reference = np.float64([[1.0, 1.0 + 1e-5]])
    torch_logits = np.float64([[1.0 + 2e-5, 1.0 + 1e-5]])  # torch's own error flips it
    jax_logits = np.float64([[1.0, 1.0 + 1e-5]])
    row = only(compare_results({"c": Logits(f32(jax_logits))}, {"c": Logits(f32(torch_logits))}, np.float32,
                               {"c": Logits(reference)}))
    assert row.passed and "sample 0" in row.note


def test_a_class_flip_without_a_near_tie_fails():
    row = only(compare_results({"c": Logits(np.float32([[0.0, 1.0]]))},
                               {"c": Logits(np.float32([[1.0, 0.0]]))}, np.float32))
    assert not row.passed and "not a near-tie" in row.note


def test_binary_logits_compare_by_sign():
    row = only(compare_results({"c": Logits(np.float32([[2.0], [-1.0]]))},
                               {"c": Logits(np.float32([[1.5], [-3.0]]))}, np.float32))
    assert row.passed and row.max_abs_err == 0


def test_sides_reporting_different_quantities_is_an_error():
    with pytest.raises(ValueError, match="different quantities"):
        compare_results({"a": 1.0}, {"b": 1.0}, np.float32)


def test_summaries_are_short():
    assert summarize(np.float32(3.5)) == "3.5"
    assert summarize(np.arange(3.0)) == "[0, 1, 2]"
    assert summarize(np.zeros((100, 10))) == "(100, 10) last=0"


@pytest.mark.parametrize("jax_accuracy, torch64_accuracy, passes", [
    (0.9831, 0.9832, True),    # mnist-cnn's float32 runs: torch's own float32 model is 2 samples off its float64 one
    (0.9820, 0.9832, False),   # 14 samples: beyond 4x torch's own distance
    (0.9831, 0.9834, False),   # torch's float32 reproduces its float64 accuracy: exact it must be
])
def test_a_float32_exact_value_is_held_to_torchs_own_float32_distance(jax_accuracy, torch64_accuracy, passes):
    jax_side = {"test accuracy": fg.parity.Exact(jax_accuracy)}
    torch_side = {"test accuracy": fg.parity.Exact(0.9834)}
    reference = {"test accuracy": fg.parity.Exact(torch64_accuracy)}
    (row,) = fg.parity.compare_results(jax_side, torch_side, np.float32, reference)
    assert row.passed == passes, row
    (row64,) = fg.parity.compare_results(jax_side, torch_side, np.float64)
    assert not row64.passed


def test_a_history_that_turns_non_finite_alike_on_both_sides_passes_and_says_from_which_step():
    losses = np.float32([1.0, 0.5, np.nan, np.nan])
    row = only(compare_results({"loss": History(losses)}, {"loss": History(losses.copy())}, np.float32,
                               {"loss": History(losses.astype(np.float64))}))
    assert row.passed and "non-finite on both sides from step 2" in row.note


def brute_force_noise(envelope, magnitude):
    """The noise as the error model defines it, element by element: the larger of torch's
    largest distance over the elements no larger than this one and the 99th percentile
    (numpy's "lower") of its distances over the nonzero elements."""
    nonzero = envelope[magnitude > 0]
    level = np.quantile(nonzero, fg.parity.NOISE_QUANTILE, method="lower") if nonzero.size else 0.0
    return np.array([max(level, envelope[magnitude <= m].max()) for m in magnitude])


@pytest.mark.parametrize("seed", range(40))
def test_the_noise_found_by_binary_search_is_the_noise_the_error_model_defines(seed):
    from funcgrad.parity import band

    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 300)) if seed % 2 else int(rng.integers(1000, 5000))  # the sampled cut too
    magnitude = np.round(np.abs(rng.normal(size=size)), int(rng.integers(0, 3)))  # ties, and zeros
    envelope = np.abs(rng.standard_cauchy(size=size)) * (rng.random(size) < 0.9)
    expected = brute_force_noise(envelope, magnitude)
    np.testing.assert_array_equal(band.row_noise(envelope, magnitude), expected)
    rows = np.stack([envelope, envelope[::-1]])
    np.testing.assert_array_equal(band.noise(rows, np.stack([magnitude, magnitude[::-1]])),
                                  np.stack([expected, brute_force_noise(envelope[::-1], magnitude[::-1])]))


@pytest.mark.parametrize("width", [1, 3, 10])
def test_the_running_maximum_is_the_largest_of_the_last_rows_pushed(width):
    from funcgrad.parity import band

    rows = np.random.default_rng(width).random((47, 5))
    window = band.RunningMaximum(width, 5)
    pushed = np.stack([window.push(row) for row in rows])
    np.testing.assert_array_equal(pushed, band.trailing_max(rows, width))
