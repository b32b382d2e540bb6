"""The comparison rules themselves: tolerances, exact values, near-tie class flips."""

import numpy as np
import pytest

from compare.harness import TOLERANCES, Exact, Logits, compare_results, summarize


def only(rows):
    (row,) = rows
    return row


def test_float32_tolerance_is_no_looser_than_torch_testing_defaults():
    rtol, atol = TOLERANCES[np.dtype(np.float32)]
    assert rtol <= 1.3e-6 and atol <= 1e-5


def test_values_within_tolerance_pass_and_report_their_errors():
    row = only(compare_results({"w": np.float32([1.0, 2.0])},
                               {"w": np.float32([1.0, 2.0 + 2e-6])}, np.float32))
    assert row.passed
    assert row.max_abs_err == pytest.approx(2e-6, rel=0.1)
    assert row.max_rel_err == pytest.approx(1e-6, rel=0.1)


def test_values_beyond_tolerance_fail():
    row = only(compare_results({"w": np.float64([1.0])}, {"w": np.float64([1.0 + 1e-9])}, np.float64))
    assert not row.passed


def test_nan_on_one_side_fails_and_says_so():
    row = only(compare_results({"loss": np.float32([np.nan])}, {"loss": np.float32([1.0])}, np.float32))
    assert not row.passed and "non-finite" in row.note


def test_shape_mismatch_fails_naming_both_shapes():
    row = only(compare_results({"w": np.zeros((3, 1))}, {"w": np.zeros(3)}, np.float32))
    assert not row.passed and "(3, 1)" in row.note and "(3,)" in row.note


def test_exact_values_must_be_identical():
    assert only(compare_results({"acc": Exact(0.9)}, {"acc": Exact(0.9)}, np.float32)).passed
    assert not only(compare_results({"acc": Exact(0.9)}, {"acc": Exact(0.9000001)}, np.float32)).passed


def test_a_class_may_flip_only_at_a_near_tie_which_the_report_names():
    jax_logits = np.float32([[1.0, 1.0 + 1e-7], [0.0, 5.0]])
    torch_logits = np.float32([[1.0 + 1e-7, 1.0], [0.0, 5.0]])
    row = only(compare_results({"c": Logits(jax_logits)}, {"c": Logits(torch_logits)}, np.float32))
    assert row.passed
    assert "sample 0" in row.note and "margin" in row.note


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
