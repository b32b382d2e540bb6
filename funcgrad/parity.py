"""Parity verdicts: is a JAX result what its PyTorch original computes, up to rounding?

Both sides report flat dicts of the same keys (nested dicts are flattened to ``a/b``).
Plain arrays are floats; wrap a value to say how else to compare it:
:class:`History` (one entry per training step: the report names the first step that
leaves the allowed band), :class:`Exact` (identical or wrong: an accuracy, a count; in
float32, where torch's own float32 run does not reproduce its float64 value, within
``BAND_FACTOR`` times that distance) and
:class:`Logits` (compared through their argmax, a flip allowed only at a near-tie).

    rows = compare_results(jax_results, torch_results, np.float32, reference=torch_float64_results)
    assert all(row.passed for row in rows), format_failures(rows)

How float values are judged (the error model; README's "How parity is judged"):

- **float64**: directly, ``|jax - torch| <= 1e-10 + 1e-10 |torch|`` elementwise. Runs of
  the same algorithm agree to ~1e-13 there, so this is what proves the algorithm equal.
- **float32 with a float64 reference** (the PyTorch side run again in float64 from the
  same inputs): each element on its own scale. Element ``i``'s distance to the reference
  must be within ``BAND_FACTOR`` times the noise PyTorch shows at that element's scale,
  plus ``FLOOR_ULPS`` float32 ulps of ``|ref_i|`` (for values PyTorch happens to round
  exactly). That noise is the larger of PyTorch's largest distance on any element no
  larger than ``|ref_i|`` and the ``NOISE_QUANTILE`` (99th percentile) of PyTorch's
  distances over the quantity's nonzero elements: an error cannot hide behind a larger
  element's rounding unless 1 % of the quantity shows that much noise, and an
  element where PyTorch happened to land exactly is not held to PyTorch's luck (a
  gradient element near zero is often the cancellation of terms as large as its
  neighbours', and carries their noise, whatever its own size). float32 runs of the same
  algorithm differ in the last bits because the two frameworks sum in different orders,
  on different kernels per machine, and a long run amplifies that. The band scales with
  that amplification as PyTorch itself exhibits it, so the same verdict holds on every
  machine, where a fixed tolerance holds only where it was tuned. For a history, PyTorch's distance on each
  element at step ``t`` is its largest over a trailing window of steps ending at ``t``.
- **float32 without a reference**: ``torch.testing.assert_close``'s rule and defaults,
  ``|jax - torch| <= 1e-5 + 1.3e-6 |torch|``.

Every row also keeps the direct ``|jax - torch|`` and assert_close's float32 verdict, as
information.

What is refused rather than judged: the two sides (and the reference) reporting different
keys, wrapping a value differently, or giving it different shapes; a float result whose
dtype is not the dtype judged; non-finite values (NaN, +inf, -inf) at different places or
of different signs on either side or in the reference (non-finite values never widen a
band: the finite elements are judged as if they were absent); a quantity with no
elements; and a comparison of nothing.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

# (rtol, atol) of the direct rule. float32: torch.testing.assert_close's defaults;
# float64: far tighter than its default (1e-7), since same-algorithm runs agree to ~1e-13.
TOLERANCES = {
    np.dtype(np.float32): (1.3e-6, 1e-5),
    np.dtype(np.float64): (1e-10, 1e-10),
}

# The float32 error model. BAND_FACTOR: over the portability matrix (every case on the
# SSE4.2 / AVX2 / AVX-512 corners of XLA and ATen, all cores and one thread), JAX's
# distance to float64 was at most ~1.5x PyTorch's (compare/results/*-matrix.md); 4 leaves
# room for machines not in it while staying orders of magnitude below any porting bug
# (README: "What the verdict catches"). FLOOR_ULPS: rounding of one or two operations
# that PyTorch happens to land exactly.
BAND_FACTOR = 4.0
FLOOR_ULPS = 4.0
# A history's band at step t follows PyTorch's largest distance over the last
# max(MIN_BAND_WINDOW, steps / 100) steps: it grows with a drift that grows and shrinks
# with one that dies out (a converging loss), where a running maximum would stay wide.
MIN_BAND_WINDOW = 10
# An element's noise is at least this quantile (taken at an element, never between two)
# of PyTorch's distances over the quantity's nonzero elements (see the module doc). The
# ratio of two independent roundings of one element has a heavy tail (a quarter of draws
# beyond 2.5x), so an element judged by PyTorch's distance there alone fails correct
# ports. The least factor that passes, by this quantile: the median left torch-optimizers'
# Adam parameters needing 3.6x and the 870 synced steps of digits-mlp-synced 4.2x; the
# 90th percentile 2.4x and 3.7x; the 99th 2.4x and 2.2x. Of two elements it takes the
# smaller, of three the middle.
NOISE_QUANTILE = 0.99


@dataclasses.dataclass(frozen=True)
class Exact:
    """A value both sides must produce identically (an accuracy, a count)."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Logits:
    """Class scores ``(N, C)``; compared through their argmax. ``(N, 1)`` means binary."""

    value: Any


@dataclasses.dataclass(frozen=True)
class History:
    """One value per training step along ``step_axis``; the report names the first step out of band."""

    value: Any
    step_axis: int = 0


@dataclasses.dataclass
class Quantity:
    """The verdict on one reported quantity, with the numbers behind it."""

    name: str
    kind: str  # "float", "history", "exact" or "classes"
    rule: str  # "float64 direct", "float32 band", "float32 direct", "exact", "classes"
    jax: str
    torch: str
    max_abs_err: float  # max |jax - torch|
    max_rel_err: float  # max |jax - torch| / |torch|
    rtol: float
    atol: float
    direct_passed: bool  # assert_close's verdict with (rtol, atol), information under the band rule
    jax_ref_err: float | None  # max |jax - float64 reference|, band rule only
    torch_ref_err: float | None  # max |torch - float64 reference|, band rule only
    band_ratio: float  # worst error as a multiple of what its rule allows: passes at <= 1
    factor_needed: float | None  # the least BAND_FACTOR that would pass, band rule only
    first_divergence: int | None  # first step out of band, histories only
    passed: bool
    note: str = ""


def compare_results(
    jax_results: Mapping, torch_results: Mapping, dtype, reference: Mapping | None = None,
    recent_torch_error: Mapping | None = None, jax_reference: Mapping | None = None,
    band_factor: float = BAND_FACTOR,
) -> list[Quantity]:
    """One :class:`Quantity` per key; both sides (and the reference) must report the same keys.

    ``reference``: the PyTorch side's results in float64 from the same inputs. With it,
    float32 values are judged by the error model; without it, by assert_close's rule.
    ``recent_torch_error``: for some plain float quantities, PyTorch's per-element distance
    to its reference at earlier runs of the same computation (the steps before, when each
    step is judged from a shared state); each element's noise is then at least that, as a
    history's is over its trailing window. ``jax_reference``: for some plain float
    quantities, the JAX side's own float64 result from the same inputs; JAX's float32
    distance is then measured to it (each framework to its own float64 twin, so that
    neither is credited with the other's summation order), and it must equal
    ``reference`` by the float64 rule (the algorithm is the same). ``band_factor``: the
    error model's factor (the step-synchronized verdict calibrates its own).

    >>> rows = compare_results({"loss": np.float32(0.5)}, {"loss": np.float32(0.5)}, np.float32)
    >>> rows[0].passed
    True
    """
    jax_results, torch_results = flatten(jax_results), flatten(torch_results)
    _check_same_keys("the two sides report different quantities", jax_results, torch_results, "jax", "torch")
    if not torch_results:
        raise ValueError("compare_results: nothing to compare: both sides report no quantities")
    dtype = np.dtype(dtype)
    if dtype not in TOLERANCES:
        raise ValueError(f"compare_results: no parity rule for {dtype}; use float32 or float64")
    if reference is not None and dtype == np.float32:
        reference = flatten(reference)
        _check_same_keys("the float64 reference reports other quantities than the torch run",
                         torch_results, reference, "torch", "reference")
    else:
        reference = {}
    recent_torch_error, jax_reference = recent_torch_error or {}, jax_reference or {}
    return [
        _compare(name, jax_value, torch_results[name], dtype, reference.get(name), recent_torch_error.get(name),
                 jax_reference.get(name), band_factor)
        for name, jax_value in jax_results.items()
    ]


def _check_same_keys(problem: str, left: dict, right: dict, left_name: str, right_name: str) -> None:
    if left.keys() != right.keys():
        raise ValueError(f"{problem}: only in {left_name} {sorted(left.keys() - right.keys())}, "
                         f"only in {right_name} {sorted(right.keys() - left.keys())}")


def flatten(results: Mapping, prefix: str = "") -> dict:
    """Nested dicts of results as one flat dict, keys joined by ``/``."""
    flat = {}
    for key, value in results.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{name}/"))
        else:
            flat[name] = value
    return flat


def unwrap(value):
    """The array inside an :class:`Exact`, :class:`Logits` or :class:`History` (else ``value``)."""
    return value.value if isinstance(value, (Exact, Logits, History)) else value


def _wrapper(value) -> str:
    if isinstance(value, History):
        return f"History(step_axis={value.step_axis})"
    return type(value).__name__ if isinstance(value, (Exact, Logits)) else "a plain array"


def _compare(name, jax_value, torch_value, dtype, reference, recent_torch_error=None, jax_reference=None,
             band_factor=BAND_FACTOR) -> Quantity:
    a, b = np.asarray(unwrap(jax_value)), np.asarray(unwrap(torch_value))
    ref = None if reference is None else np.asarray(unwrap(reference))
    kind, rule = _kind_and_rule(jax_value, dtype, ref is not None)
    wrappers = {"jax": _wrapper(jax_value), "torch": _wrapper(torch_value)}
    if reference is not None:
        wrappers["reference"] = _wrapper(reference)
    if len(set(wrappers.values())) > 1:
        return _row(name, kind, rule, a, b, dtype, note="wrapped differently: " + ", ".join(
            f"{side} {wrapper}" for side, wrapper in wrappers.items()))
    shapes = {"jax": a.shape, "torch": b.shape} | ({} if ref is None or kind == "exact" else {"reference": ref.shape})
    if len(set(shapes.values())) > 1:
        return _row(name, kind, rule, a, b, dtype,
                    note="shapes differ: " + ", ".join(f"{side} {shape}" for side, shape in shapes.items()))
    if a.size == 0:
        return _row(name, kind, rule, a, b, dtype, note="no elements: nothing compared")
    if kind == "exact":
        return _compare_exact(name, a, b, ref if dtype == np.float32 else None)
    wrong_dtypes = [f"{side} {array.dtype}" for side, array, expected in
                    (("jax", a, dtype), ("torch", b, dtype), ("reference", ref, np.float64))
                    if array is not None and array.dtype != expected]
    if wrong_dtypes:
        return _row(name, kind, rule, a, b, dtype, note=f"judged as {dtype.name} (reference float64), "
                    f"but {', '.join(wrong_dtypes)}")
    if kind == "classes":
        return _compare_classes(name, a, b, ref, dtype)  # Logits keep the whole-run factor
    step_axis = jax_value.step_axis if kind == "history" else None
    return _compare_floats(name, kind, rule, a, b, ref, dtype, step_axis, recent_torch_error,
                           None if jax_reference is None or step_axis is not None else np.asarray(jax_reference),
                           band_factor)


def _kind_and_rule(value, dtype, has_reference) -> tuple[str, str]:
    if isinstance(value, Exact):
        return "exact", "exact"
    if isinstance(value, Logits):
        return "classes", "classes"
    kind = "history" if isinstance(value, History) else "float"
    return kind, "float32 band" if has_reference else f"{dtype.name} direct"


def _row(name, kind, rule, a, b, dtype, **fields) -> Quantity:
    rtol, atol = TOLERANCES[dtype]
    values = dict(jax=summarize(a), torch=summarize(b), max_abs_err=np.inf, max_rel_err=np.inf,
                  rtol=rtol, atol=atol, direct_passed=False, jax_ref_err=None,
                  torch_ref_err=None, band_ratio=np.inf, factor_needed=None, first_divergence=None,
                  passed=False)
    return Quantity(name, kind, rule, **(values | fields))


def _compare_floats(name, kind, rule, a, b, ref, dtype, step_axis, recent_torch_error=None,
                    jax_ref=None, band_factor=BAND_FACTOR) -> Quantity:
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    nonfinite = _nonfinite_mismatch(a64, b64, ref) or (
        "" if jax_ref is None else _nonfinite_mismatch(jax_ref, ref, None))
    if nonfinite:
        return _row(name, kind, rule, a, b, dtype, note=nonfinite)
    if jax_ref is not None and jax_ref.shape != ref.shape:
        return _row(name, kind, rule, a, b, dtype,
                    note=f"shapes differ: jax's float64 {jax_ref.shape}, reference {ref.shape}")
    if jax_ref is not None:
        rtol64, atol64 = TOLERANCES[np.dtype(np.float64)]
        if not np.all(_abs_diff(jax_ref, ref) <= atol64 + rtol64 * np.abs(np.nan_to_num(ref))):
            return _row(name, kind, rule, a, b, dtype, note="JAX's and torch's float64 results from the same "
                        f"inputs differ by {_max(_abs_diff(jax_ref, ref)):.3g}: the algorithm differs")
    rtol, atol = TOLERANCES[dtype]
    diff = _abs_diff(a64, b64)
    direct_excess = diff / (atol + rtol * np.abs(np.nan_to_num(b64)))
    fields = dict(max_abs_err=_max(diff), max_rel_err=_max_relative(diff, b64),
                  direct_passed=bool(np.all(direct_excess <= 1)))
    if ref is None:
        excess = _steps_first(direct_excess, step_axis)
    else:
        band = _band(*(_steps_first(x, step_axis) for x in (a64, b64, ref)),
                     window=1 if step_axis is None else _band_window(a.shape[step_axis]),
                     recent=None if recent_torch_error is None or step_axis is not None
                     else _steps_first(np.asarray(recent_torch_error, np.float64), None),
                     jax_reference=None if jax_ref is None else _steps_first(jax_ref.astype(np.float64), None),
                     band_factor=band_factor)
        excess = band["excess"]
        fields |= dict(jax_ref_err=_max(band["jax_err"]), torch_ref_err=_max(band["torch_err"]),
                       factor_needed=band["factor_needed"])
    outside = np.flatnonzero(excess.max(axis=1) > 1)
    first = int(outside[0]) if step_axis is not None and outside.size else None
    note = "" if first is None else f"leaves the band at step {first:,}".replace(",", " ")
    return _row(name, kind, rule, a, b, dtype, band_ratio=_max(excess), first_divergence=first,
                passed=outside.size == 0, note=note, **fields)


def band_per_step(jax_history, torch_history, reference, step_axis: int = 0) -> dict[str, np.ndarray]:
    """A float32 history under the error model, step by step, at each step's worst element
    (the one with the largest error over its band): ``jax_err`` and ``torch_err``, each
    side's distance to the float64 ``reference`` there; ``allowed``, its band;
    ``jax_vs_torch``, the largest ``|jax - torch|`` of the step.

    >>> band = band_per_step(jax_losses, torch_losses, torch_float64_losses)
    >>> first_out = np.flatnonzero(band["jax_err"] > band["allowed"])[:1]
    """
    a, b, ref = (_steps_first(np.asarray(unwrap(v), np.float64), step_axis)
                 for v in (jax_history, torch_history, reference))
    band = _band(a, b, ref, window=_band_window(len(ref)))
    worst = band["excess"].argmax(axis=1)[:, None]
    return {key: np.take_along_axis(band[key], worst, axis=1)[:, 0] for key in ("jax_err", "torch_err", "allowed")} | {
        "jax_vs_torch": _abs_diff(a, b).max(axis=1)}


def _steps_first(values: np.ndarray, step_axis: int | None) -> np.ndarray:
    """``(steps, elements)``: a history's steps along the first axis, anything else one step."""
    if step_axis is None:
        return np.reshape(values, (1, -1))
    steps = np.moveaxis(np.atleast_1d(values), step_axis, 0)
    return steps.reshape(len(steps), -1)


def _band(jax_values, torch_values, reference, window: int, recent=None, jax_reference=None,
          band_factor=BAND_FACTOR) -> dict:
    """Each element's distance to float64 against its own band (see the module doc), all
    ``(steps, elements)``: both sides' errors, the band, the excess (error over band), and
    the least factor that would have passed. ``recent``: PyTorch's earlier distances;
    ``jax_reference``: JAX's own float64 result, JAX's distance measured to it."""
    finite = np.isfinite(reference)  # non-finite places agree on all three (checked before)
    magnitude = np.where(finite, np.abs(reference), 0.0)
    jax_err = _abs_diff(jax_values, reference if jax_reference is None else jax_reference)
    torch_err = _abs_diff(torch_values, reference)
    envelope = _trailing_max(torch_err, window)
    if recent is not None:
        envelope = np.maximum(envelope, np.where(finite, recent, 0.0))
    noise = np.maximum(_largest_at_or_below(envelope, magnitude), _quantile_where(envelope, magnitude > 0))
    floor = FLOOR_ULPS * np.finfo(np.float32).eps * magnitude
    allowed = band_factor * noise + floor
    over_floor = np.maximum(jax_err - floor, 0.0)
    factor_needed = np.divide(over_floor, noise, out=np.where(over_floor > 0, np.inf, 0.0), where=noise > 0)
    excess = np.divide(jax_err, allowed, out=np.where(jax_err > 0, np.inf, 0.0), where=allowed > 0)
    return {"jax_err": jax_err, "torch_err": torch_err, "allowed": allowed, "excess": excess,
            "factor_needed": _max(factor_needed)}


def _band_window(num_steps: int) -> int:
    return max(MIN_BAND_WINDOW, num_steps // 100)


def _trailing_max(values: np.ndarray, window: int) -> np.ndarray:
    """``out[t] = max(values[t - window + 1 : t + 1])`` along the first axis."""
    out = values.copy()
    for lag in range(1, min(window, len(values))):
        np.maximum(out[lag:], values[:-lag], out=out[lag:])
    return out


def _largest_at_or_below(values: np.ndarray, magnitude: np.ndarray) -> np.ndarray:
    """Per row, each element's largest ``values`` over the elements whose magnitude is at
    most its own (itself and every equal magnitude included)."""
    order = np.argsort(magnitude, axis=1, kind="stable")
    sorted_magnitude = np.take_along_axis(magnitude, order, axis=1)
    running = np.maximum.accumulate(np.take_along_axis(values, order, axis=1), axis=1)
    columns = np.arange(magnitude.shape[1])
    last_of_equals = np.ones(magnitude.shape, bool)
    last_of_equals[:, :-1] = sorted_magnitude[:, 1:] != sorted_magnitude[:, :-1]
    group_end = np.minimum.accumulate(np.where(last_of_equals, columns, columns[-1])[:, ::-1], axis=1)[:, ::-1]
    out = np.empty_like(running)
    np.put_along_axis(out, order, np.take_along_axis(running, group_end, axis=1), axis=1)
    return out


def _quantile_where(values: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per row, the ``NOISE_QUANTILE`` of ``values`` where ``mask`` holds (0 where it holds
    nowhere), as a column; taken at an element below it, never between two, so that one
    large value of two cannot set the level."""
    masked = np.where(mask, values, np.nan)
    out = np.zeros((len(values), 1))
    some = mask.any(axis=1)
    out[some, 0] = np.nanquantile(masked[some], NOISE_QUANTILE, axis=1, method="lower")
    return out


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Non-finite values sit at the same places on both sides (checked before): they agree.
    both_nonfinite = ~np.isfinite(a) & ~np.isfinite(b)
    return np.where(both_nonfinite, 0.0, np.abs(np.nan_to_num(a) - np.nan_to_num(b)))


def _nonfinite_mismatch(a, b, ref) -> str:
    """What differs in the non-finite values (NaN, +inf, -inf: place and sign) of the two
    sides and the reference, or ''."""
    def pattern(x):
        return np.isnan(x), np.isposinf(x), np.isneginf(x)

    def differs(x, y):
        return [what for what, p, q in zip(("NaN", "+inf", "-inf"), pattern(x), pattern(y)) if not np.array_equal(p, q)]

    if differs(a, b):
        return f"non-finite values differ between jax and torch ({', '.join(differs(a, b))} at different places)"
    if ref is not None and differs(b, ref):
        return (f"non-finite values differ from the float64 reference "
                f"({', '.join(differs(b, ref))} at different places)")
    return ""


def _max(values) -> float:
    return float(np.max(values, initial=0.0))


def _max_relative(diff: np.ndarray, b: np.ndarray) -> float:
    scale = np.abs(np.nan_to_num(b))
    rel = np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0)
    return _max(rel)


def _compare_exact(name, a, b, ref=None) -> Quantity:
    """Identical, element by element; in float32 with a reference, an element where torch's
    own float32 run does not reproduce its float64 value (a trained model's test accuracy,
    whose runs part within their band) may differ by ``BAND_FACTOR`` times torch's own
    distance there, as a float would."""
    same = a == b
    rule, allowed = "exact", np.zeros(np.shape(b))
    numeric = a.dtype.kind in "biuf" and b.dtype.kind in "biuf"
    if numeric and ref is not None and np.shape(ref) == np.shape(b) and np.asarray(ref).dtype.kind in "biuf":
        allowed = BAND_FACTOR * np.abs(b.astype(np.float64) - np.asarray(ref, np.float64))
        rule = "exact, float32 band" if np.any(allowed > 0) else rule
    fields = dict(rtol=0.0, atol=0.0, direct_passed=bool(np.all(same)))
    if numeric:
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        ok = same | (diff <= allowed)
        excess = np.where(same, 0.0, np.divide(diff, allowed, out=np.full(np.shape(diff), np.inf), where=allowed > 0))
        fields |= dict(max_abs_err=_max(diff), max_rel_err=_max_relative(diff, b.astype(np.float64)),
                       band_ratio=_max(excess), passed=bool(np.all(ok)))
        if rule != "exact" and not np.all(same):
            fields["note"] = (f"torch's own float32 run gives {summarize(b)} where its float64 run gives "
                              f"{summarize(np.asarray(ref))}: held to {BAND_FACTOR:g}x that distance")
    else:
        fields |= dict(band_ratio=0.0 if np.all(same) else np.inf, passed=bool(np.all(same)))
    return _row(name, "exact", rule, a, b, np.dtype(np.float64), **fields)


def _as_class_scores(logits: np.ndarray) -> np.ndarray:
    # A binary model's single logit z is the two-class score pair (0, z).
    return np.concatenate([np.zeros_like(logits), logits], axis=1) if logits.shape[1] == 1 else logits


def _top_two_margin(scores: np.ndarray) -> np.ndarray:
    top_two = np.sort(scores, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def _compare_classes(name, jax_logits, torch_logits, ref, dtype) -> Quantity:
    """Argmax per sample. A sample may differ only at a near-tie: its top-two margin within
    what rounding allows its logits (the direct tolerance, or under the error model the
    float32 band of that sample)."""
    rule = "classes"
    if jax_logits.ndim != 2:
        return _row(name, "classes", rule, jax_logits, torch_logits, dtype,
                    note=f"logits must be (N, C): got {jax_logits.shape}")
    a = _as_class_scores(jax_logits.astype(np.float64))
    b = _as_class_scores(torch_logits.astype(np.float64))
    jax_classes, torch_classes = a.argmax(axis=1), b.argmax(axis=1)
    differing = np.flatnonzero(jax_classes != torch_classes)
    margins = np.minimum(_top_two_margin(a), _top_two_margin(b))[differing]
    rtol, atol = TOLERANCES[dtype]
    if ref is None:
        near_tie = atol + rtol * np.abs(b[differing]).max(axis=1, initial=0.0)
    else:
        torch_err = np.abs(b - _as_class_scores(ref))
        magnitude = np.abs(_as_class_scores(ref))
        near_tie = (BAND_FACTOR * torch_err[differing].max(axis=1, initial=0.0)
                    + FLOOR_ULPS * np.finfo(np.float32).eps * magnitude[differing].max(axis=1, initial=0.0))
    allowed = margins <= near_tie
    note = "; ".join(
        f"sample {i}: jax {jax_classes[i]}, torch {torch_classes[i]}, top-2 margin {m:.3g}"
        + ("" if ok else " (not a near-tie)")
        for i, m, ok in zip(differing, margins, allowed)
    )
    passed = bool(np.all(allowed))
    return _row(name, "classes", rule, jax_logits, torch_logits, dtype,
                jax=f"{len(jax_classes)} classes", torch=f"{len(differing)} differ",
                max_abs_err=float(len(differing)), max_rel_err=len(differing) / max(len(jax_classes), 1),
                direct_passed=passed, band_ratio=0.0 if passed else np.inf, passed=passed, note=note)


def summarize(value) -> str:
    """A short, readable rendering of a value for the side-by-side table."""
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        return str(a)[:40]
    if a.size == 1:
        return f"{a.item():.10g}"
    if a.size <= 3:
        return "[" + ", ".join(f"{v:.6g}" for v in a.ravel()) + "]"
    return f"{a.shape} last={a.ravel()[-1]:.6g}"


def format_failures(rows: list[Quantity]) -> str:
    """One line per failing quantity: what failed, by how much, and where it first diverged."""
    return "\n".join(
        f"{q.name}: {q.rule}, worst {q.band_ratio:.3g}x allowed, |jax - torch| max {q.max_abs_err:.3g}"
        + (f", jax/torch distance to float64 {q.jax_ref_err:.3g}/{q.torch_ref_err:.3g}"
           if q.jax_ref_err is not None else "")
        + (f"; {q.note}" if q.note else "")
        for q in rows if not q.passed
    )


TABLE_COLUMNS = ("quantity", "rule", "JAX", "PyTorch", "|jax-torch|", "jax→f64", "torch→f64",
                 "× allowed", "first out", "pass")


def format_table(rows: list) -> str:
    """The verdicts side by side, one line per quantity: both values, ``|jax - torch|``, each
    side's distance to the float64 reference, the error as a multiple of what its rule
    allows, the first step out of band. ``rows``: :class:`Quantity` or their JSON dicts.

    >>> print(format_table(compare_results(jax_results, torch_results, np.float64)))
    """
    table = []
    for q in (row if isinstance(row, Mapping) else dataclasses.asdict(row) for row in rows):
        table.append((
            q["name"], q["rule"], q["jax"], q["torch"], f"{q['max_abs_err']:.2e}",
            _optional(q["jax_ref_err"]), _optional(q["torch_ref_err"]), format_ratio(q["band_ratio"]),
            "-" if q["first_divergence"] is None else str(q["first_divergence"]),
            "ok" if q["passed"] else "FAIL",
        ))
    return markdown_table(TABLE_COLUMNS, table)


def markdown_table(header, rows) -> str:
    """A Markdown table with padded columns, readable as text too.

    >>> print(markdown_table(("case", "s"), [("iris", "0.12")]))
    | case | s    |
    | ---- | ---- |
    | iris | 0.12 |
    """
    lines = [tuple(str(cell) for cell in line) for line in (header, *rows)]
    widths = [max(3, *(len(line[i]) for line in lines)) for i in range(len(header))]
    rendered = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in lines]
    rendered.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(rendered)


def to_json(rows: list[Quantity]) -> list[dict]:
    """The verdicts as JSON-ready dicts: ``json.dump(to_json(rows), f, default=float)``."""
    return [dataclasses.asdict(row) for row in rows]


def format_ratio(value: float) -> str:
    """A band ratio as ``0.27x`` (``inf`` when nothing was allowed)."""
    return "inf" if not np.isfinite(value) else f"{value:.2f}x"


def _optional(value) -> str:
    return "-" if value is None else f"{value:.2e}"
