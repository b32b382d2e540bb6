"""Mutants of the verdict itself: crafted pairs that differ, each of which must fail.

``compare/mutants.py`` breaks ports and checks the comparison notices; this file feeds
the engine (``funcgrad.parity``) pairs that earlier versions passed, or that a plausible
simplification of it would pass, and asserts that each is caught and named: one element
hiding behind a larger one, an infinity widening a band, a wrapper on one side only, a
reference with other keys or shapes, a result in the wrong dtype, a comparison of nothing.
"""

import numpy as np
import pytest

import funcgrad as fg
from funcgrad.parity import Exact, History, Logits, compare_results

INF = np.inf


def f32(*values):
    return np.asarray(values, np.float32)


def f64(*values):
    return np.asarray(values, np.float64)


def verdict(jax_value, torch_value, reference=None, dtype=np.float32):
    (row,) = compare_results({"q": jax_value}, {"q": torch_value}, dtype,
                             None if reference is None else {"q": reference})
    return row


# Each: (jax, torch, float64 reference or None, judged dtype, what the failure note must say).
BLIND_SPOTS = {
    "one matching +inf widening every other element's band":
        (f32(INF, 2), f32(INF, 1), f64(INF, 1), np.float32, ""),
    "one huge finite element widening every other element's band":
        (f32(3e38, 2), f32(3e38, 1), f64(3e38, 1), np.float32, ""),
    "-inf on both sides where the reference is finite":
        (f32(-INF, 5), f32(-INF, 1), f64(0, 1), np.float32, "-inf"),
    "-inf on one side only":
        (f32(-INF, 1), f32(INF, 1), f64(INF, 1), np.float32, "-inf"),
    "NaN where the reference has none":
        (f32(np.nan, 1), f32(np.nan, 1), f64(0, 1), np.float32, "NaN"),
    "a 10 % error in a small element beside a large one":
        (f32(1e3, 1.1e-3), f32(1e3, 1e-3), f64(1e3, 1e-3), np.float32, ""),
    "a small element's error beside a large element torch rounds coarsely":
        (f32(1e3 + 0.06, 1.1e-3, 2e-3), f32(1e3 + 0.03, 1e-3, 2e-3), f64(1e3, 1e-3, 2e-3), np.float32, ""),
    "a 10 % error in a small element, float64":
        (f64(1e3, 1.1e-3), f64(1e3, 1e-3), None, np.float64, ""),
    "Logits on the JAX side against a plain array":
        (Logits(f32([0, 100])), f32([0, 1]), None, np.float32, "wrapped differently"),
    "a plain array on the JAX side against Logits":
        (f32([0, 1]), Logits(f32([0, 1])), None, np.float32, "wrapped differently"),
    "History on one side only":
        (History(f32(1, 2)), f32(1, 2), None, np.float32, "wrapped differently"),
    "Histories stepping along different axes":
        (History(f32([1, 2]), step_axis=1), History(f32([1, 2])), None, np.float32, "wrapped differently"),
    "Exact on one side only":
        (Exact(0.9), 0.8, None, np.float32, "wrapped differently"),
    "a Logits reference of another shape":
        (Logits(f32([0, 1])), Logits(f32([0, 1])), Logits(f64([0, 1], [1, 0])), np.float32, "shapes differ"),
    "a plain reference of another shape":
        (f32(1, 2), f32(1, 2), f64(1), np.float32, "shapes differ"),
    "a float64 JAX result under a float32 verdict":
        (f64(1, 2), f32(1, 2), f64(1, 2), np.float32, "jax float64"),
    "an integer JAX result under a float32 verdict":
        (np.asarray([1, 2]), f32(1, 2), f64(1, 2), np.float32, "jax int"),
    "a float32 torch result under a float64 verdict":
        (f64(1, 2), f32(1, 2), None, np.float64, "torch float32"),
    "a float32 reference":
        (f32(1, 2), f32(1, 2), f32(1, 2), np.float32, "reference float32"),
    "a quantity with no elements":
        (f32(), f32(), f64(), np.float32, "no elements"),
    "a sign-flipped huge gradient (BCE's edge)":
        (f32(-1e12, 0.5), f32(1e12, 0.5), f64(1e12, 0.5), np.float32, ""),
    "a doubled huge gradient (BCE's edge)":
        (f32(2e12, 0.5), f32(1e12, 0.5), f64(1e12, 0.5), np.float32, ""),
    "finite elements wrong beside a matching infinity":
        (f32(INF, 123, 123), f32(INF, -0.5, 0.25), f64(INF, -0.5, 0.25), np.float32, ""),
}


@pytest.mark.parametrize("name", BLIND_SPOTS)
def test_the_verdict_fails_what_differs(name):
    jax_value, torch_value, reference, dtype, said = BLIND_SPOTS[name]
    row = verdict(jax_value, torch_value, reference, dtype)
    assert not row.passed, f"{name}: passed at {row.band_ratio:.3g}x its band"
    assert said in row.note


@pytest.mark.parametrize("name", BLIND_SPOTS)
def test_the_same_values_on_both_sides_pass(name):
    """The control: each blind spot's torch value against itself passes (where it is a
    comparable value at all), so the failures above are about what differs."""
    jax_value, torch_value, reference, dtype, said = BLIND_SPOTS[name]
    if said and said not in ("NaN", "-inf"):
        pytest.skip("refused whatever the values: nothing to control")
    consistent = reference if reference is not None and np.array_equal(
        np.isfinite(reference), np.isfinite(np.asarray(torch_value))) else None
    if said in ("NaN", "-inf") and consistent is None:
        pytest.skip("the reference disagrees with torch on purpose")
    assert verdict(torch_value, torch_value, consistent, dtype).passed


def test_matching_infinities_pass_and_leave_the_finite_elements_judged_alone():
    row = verdict(f32(INF, -INF, 1 + 1e-7), f32(INF, -INF, 1), f64(INF, -INF, 1))
    assert row.passed and row.band_ratio < 1


def test_a_reference_missing_a_quantity_is_named():
    with pytest.raises(ValueError, match=r"only in torch \['b'\]"):
        compare_results({"a": f32(1), "b": f32(1)}, {"a": f32(1), "b": f32(1)}, np.float32, {"a": f64(1)})


def test_a_reference_with_an_extra_quantity_is_named():
    with pytest.raises(ValueError, match=r"only in reference \['c'\]"):
        compare_results({"a": f32(1)}, {"a": f32(1)}, np.float32, {"a": f64(1), "c": f64(1)})


def test_nothing_to_compare_is_refused():
    with pytest.raises(ValueError, match="nothing to compare"):
        compare_results({}, {}, np.float32)
    with pytest.raises(ValueError, match="nothing to compare"):
        fg.assert_same_run({}, {}, dtype=np.float32)


def test_training_in_no_dtype_is_refused():
    with pytest.raises(ValueError, match="no dtype"):
        fg.assert_same_training(lambda dtype: {}, lambda dtype: {}, dtypes=[])


def test_a_run_of_mixed_float_dtypes_cannot_pick_its_rule():
    run = {"loss": f32(1), "weight": f64(1)}
    with pytest.raises(ValueError, match="float32 and float64"):
        fg.assert_same_run(run, run)


def test_an_element_torch_rounds_exactly_is_judged_by_its_peers_not_by_luck():
    """No false alarm: torch lands exactly on the reference at one element (its error is 0)
    while JAX is a few ulps off there; the elements of the same scale show the noise."""
    reference = np.linspace(-1, 1, 101)[1:]  # no exact zero
    noise = 3e-7 * np.sin(np.arange(100))
    torch_value = (reference + noise).astype(np.float32)
    torch_value[7] = np.float32(reference[7])
    jax_value = (reference - noise).astype(np.float32)
    assert verdict(jax_value, torch_value, reference).passed
