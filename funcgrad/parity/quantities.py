"""The verdict on each reported quantity: :func:`compare_results`, and the judge of one
synced step (private: the step-synchronized verdict's, :mod:`funcgrad.parity.steps`).

    rows = compare_results(jax_results, torch_results, np.float32, reference=torch_float64_results)
    assert all(row.passed for row in rows), format_failures(rows)

How a value is judged (the formulas are :mod:`funcgrad.parity.band`'s):

- **float64**: the direct rule, ``|jax - torch| <= 1e-10 + 1e-10 |torch|`` elementwise.
- **float32 with a float64 reference** (the PyTorch side run again in float64 from the
  same inputs): the band, each element on its own scale; a history's PyTorch distance at
  step ``t`` is its largest over a trailing window of steps ending at ``t``.
- **float32 without a reference**: ``torch.testing.assert_close``'s rule and defaults,
  ``|jax - torch| <= 1e-5 + 1.3e-6 |torch|``.
- :class:`Exact` values must be identical; in float32 with a reference, where torch's own
  float32 run does not reproduce its float64 value (a trained model's accuracy), within
  ``BAND_FACTOR`` times that distance.
- :class:`Logits` agree class by class; a class may differ only at a near-tie, a top-two
  margin within what rounding allows the sample's logits.

Every row also keeps the direct ``|jax - torch|`` and assert_close's float32 verdict, as
information. What is refused rather than judged: the two sides (and the reference)
reporting different keys, wrapping a value differently, or giving it different shapes; a
float result whose dtype is not the dtype judged; non-finite values (NaN, +inf, -inf) at
different places or of different signs on either side or in the reference; a quantity
with no elements; and a comparison of nothing.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Mapping

import numpy as np

from funcgrad.parity import band
from funcgrad.parity.values import Exact, History, Logits, flatten, judged_dtype, summarize, unwrap, wrapper_name


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
    factor_needed: float | None  # the least factor that would pass, band rule only
    first_divergence: int | None  # first step out of band, histories only
    passed: bool
    note: str = ""


def compare_results(jax_results: Mapping, torch_results: Mapping, dtype, reference: Mapping | None = None,
                    ) -> list[Quantity]:
    """One :class:`Quantity` per key; both sides (and the reference) must report the same keys.

    ``reference``: the PyTorch side's results in float64 from the same inputs. With it,
    float32 values are judged by the band; without it, by assert_close's rule. A float64
    verdict ignores it.

    >>> rows = compare_results({"loss": np.float32(0.5)}, {"loss": np.float32(0.5)}, np.float32)
    >>> rows[0].passed
    True
    """
    jax_results, torch_results = flatten(jax_results), flatten(torch_results)
    check_same_keys("the two sides report different quantities", jax_results, torch_results, "jax", "torch")
    if not torch_results:
        raise ValueError("compare_results: nothing to compare: both sides report no quantities")
    dtype = judged_dtype("compare_results", dtype)
    if reference is not None and dtype == np.float32:
        reference = flatten(reference)
        check_same_keys("the float64 reference reports other quantities than the torch run",
                        torch_results, reference, "torch", "reference")
    else:
        reference = {}
    return [_compare(name, value, torch_results[name], dtype, reference.get(name))
            for name, value in jax_results.items()]


def check_same_keys(problem: str, left: dict, right: dict, left_name: str, right_name: str) -> None:
    if left.keys() != right.keys():
        raise ValueError(f"{problem}: only in {left_name} {sorted(left.keys() - right.keys())}, "
                         f"only in {right_name} {sorted(right.keys() - left.keys())}")


def _compare(name, jax_value, torch_value, dtype, reference) -> Quantity:
    a, b = np.asarray(unwrap(jax_value)), np.asarray(unwrap(torch_value))
    ref = None if reference is None else np.asarray(unwrap(reference))
    kind, rule = _kind_and_rule(jax_value, dtype, ref is not None)
    refused = _refusal(jax_value, torch_value, reference, a, b, ref, kind, dtype)
    if refused:
        return row(name, kind, rule, a, b, dtype, note=refused)
    if kind == "exact":
        return _compare_exact(name, a, b, ref if dtype == np.float32 else None)
    if kind == "classes":
        return _compare_classes(name, a, b, ref, dtype)
    return _compare_floats(name, kind, rule, a, b, ref, dtype, jax_value.step_axis if kind == "history" else None)


def _kind_and_rule(value, dtype, has_reference) -> tuple[str, str]:
    if isinstance(value, Exact):
        return "exact", "exact"
    if isinstance(value, Logits):
        return "classes", "classes"
    kind = "history" if isinstance(value, History) else "float"
    return kind, "float32 band" if has_reference else f"{dtype.name} direct"


def _refusal(jax_value, torch_value, reference, a, b, ref, kind, dtype) -> str:
    """Why a quantity cannot be judged (wrapped differently, shapes, no elements, dtypes), or ''."""
    wrappers = {"jax": wrapper_name(jax_value), "torch": wrapper_name(torch_value)}
    if reference is not None:
        wrappers["reference"] = wrapper_name(reference)
    if len(set(wrappers.values())) > 1:
        return "wrapped differently: " + ", ".join(f"{side} {wrapper}" for side, wrapper in wrappers.items())
    shapes = {"jax": a.shape, "torch": b.shape} | ({} if ref is None or kind == "exact" else {"reference": ref.shape})
    if len(set(shapes.values())) > 1:
        return "shapes differ: " + ", ".join(f"{side} {shape}" for side, shape in shapes.items())
    if a.size == 0:
        return "no elements: nothing compared"
    if kind == "exact":
        return ""
    return dtype_mismatch(dtype, a, b, ref)


def dtype_mismatch(dtype, a, b, ref) -> str:
    """What is not of the judged dtype (the reference: float64), or ''."""
    wrong = [f"{side} {array.dtype}" for side, array, expected in
             (("jax", a, dtype), ("torch", b, dtype), ("reference", ref, np.float64))
             if array is not None and array.dtype != expected]
    return f"judged as {dtype.name} (reference float64), but {', '.join(wrong)}" if wrong else ""


def row(name, kind, rule, a, b, dtype, **fields) -> Quantity:
    """A :class:`Quantity` with the fields not given set to a failed, unmeasured verdict."""
    rtol, atol = band.TOLERANCES[dtype]
    values = dict(jax=summarize(a), torch=summarize(b), max_abs_err=np.inf, max_rel_err=np.inf,
                  rtol=rtol, atol=atol, direct_passed=False, jax_ref_err=None,
                  torch_ref_err=None, band_ratio=np.inf, factor_needed=None, first_divergence=None,
                  passed=False)
    return Quantity(name, kind, rule, **(values | fields))


def _steps_first(values: np.ndarray, step_axis: int | None) -> np.ndarray:
    """``(steps, elements)``: a history's steps along the first axis, anything else one step."""
    if step_axis is None:
        return np.reshape(values, (1, -1))
    steps = np.moveaxis(np.atleast_1d(values), step_axis, 0)
    return steps.reshape(len(steps), -1)


def _compare_floats(name, kind, rule, a, b, ref, dtype, step_axis) -> Quantity:
    a64, b64 = (_steps_first(x.astype(np.float64), step_axis) for x in (a, b))
    ref64 = None if ref is None else _steps_first(ref.astype(np.float64), step_axis)
    nonfinite = band.nonfinite_mismatch(a64, b64, ref64)
    if nonfinite:
        return row(name, kind, rule, a, b, dtype, note=nonfinite)
    diff = band.abs_diff(a64, b64)
    direct_excess = band.ratio(diff, band.direct_allowed(b64, dtype))
    fields = dict(max_abs_err=band.largest(diff), max_rel_err=band.largest_relative(diff, b64),
                  direct_passed=bool(np.all(direct_excess <= 1)))
    if ref64 is None:
        excess = direct_excess
    else:
        torch_err = band.abs_diff(b64, ref64)
        jax_err = band.abs_diff(a64, ref64)
        envelope = band.trailing_max(torch_err, 1 if step_axis is None else band.window(len(ref64)))
        judged = band.judge(jax_err, envelope, band.magnitude(ref64))
        excess = judged["excess"]
        fields |= dict(jax_ref_err=band.largest(jax_err), torch_ref_err=band.largest(torch_err),
                       factor_needed=judged["factor_needed"])
    outside = np.flatnonzero(excess.max(axis=1) > 1)
    first = int(outside[0]) if step_axis is not None and outside.size else None
    note = "" if first is None else f"leaves the band at step {first:,}".replace(",", " ")
    nonfinite_steps = np.flatnonzero(~np.isfinite(b64).all(axis=1))
    if step_axis is not None and nonfinite_steps.size:  # they agree, or the row failed above: say where
        note = "; ".join(filter(None, [note, f"non-finite on both sides from step {int(nonfinite_steps[0])}"]))
    return row(name, kind, rule, a, b, dtype, band_ratio=band.largest(excess), first_divergence=first,
               passed=outside.size == 0, note=note, **fields)


def band_per_step(jax_history, torch_history, reference, step_axis: int = 0) -> dict[str, np.ndarray]:
    """A float32 history under the band, step by step, at each step's worst element (the one
    with the largest error over its band): ``jax_err`` and ``torch_err``, each side's
    distance to the float64 ``reference`` there; ``allowed``, its band; ``jax_vs_torch``,
    the largest ``|jax - torch|`` of the step.

    >>> steps = band_per_step(jax_losses, torch_losses, torch_float64_losses)
    >>> first_out = np.flatnonzero(steps["jax_err"] > steps["allowed"])[:1]
    """
    a, b, ref = (_steps_first(np.asarray(unwrap(v), np.float64), step_axis)
                 for v in (jax_history, torch_history, reference))
    errors = {"jax_err": band.abs_diff(a, ref), "torch_err": band.abs_diff(b, ref)}
    judged = band.judge(errors["jax_err"], band.trailing_max(errors["torch_err"], band.window(len(ref))),
                        band.magnitude(ref))
    worst = judged["excess"].argmax(axis=1)[:, None]
    per_element = errors | {"allowed": judged["allowed"]}
    return {key: np.take_along_axis(values, worst, axis=1)[:, 0] for key, values in per_element.items()} | {
        "jax_vs_torch": band.abs_diff(a, b).max(axis=1)}


def _compare_exact(name, a, b, ref=None) -> Quantity:
    """Identical, element by element; in float32 with a reference, an element where torch's
    own float32 run does not reproduce its float64 value (a trained model's test accuracy,
    whose runs part within their band) may differ by ``BAND_FACTOR`` times torch's own
    distance there, as a float would."""
    same = a == b
    rule, allowed = "exact", np.zeros(np.shape(b))
    numeric = a.dtype.kind in "biuf" and b.dtype.kind in "biuf"
    if numeric and ref is not None and np.shape(ref) == np.shape(b) and np.asarray(ref).dtype.kind in "biuf":
        allowed = band.allowed(band.abs_diff(b.astype(np.float64), np.asarray(ref, np.float64)), 0.0)
        rule = "exact, float32 band" if np.any(allowed > 0) else rule
    fields = dict(rtol=0.0, atol=0.0, direct_passed=bool(np.all(same)))
    if numeric:
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        excess = np.where(same, 0.0, band.ratio(diff, allowed))
        fields |= dict(max_abs_err=band.largest(diff), max_rel_err=band.largest_relative(diff, b.astype(np.float64)),
                       band_ratio=band.largest(excess), passed=bool(np.all(same | (diff <= allowed))))
        if rule != "exact" and not np.all(same):
            fields["note"] = (f"torch's own float32 run gives {summarize(b)} where its float64 run gives "
                              f"{summarize(np.asarray(ref))}: held to {band.BAND_FACTOR:g}x that distance")
    else:
        fields |= dict(band_ratio=0.0 if np.all(same) else np.inf, passed=bool(np.all(same)))
    return row(name, "exact", rule, a, b, np.dtype(np.float64), **fields)


def _as_class_scores(logits: np.ndarray) -> np.ndarray:
    # A binary model's single logit z is the two-class score pair (0, z).
    return np.concatenate([np.zeros_like(logits), logits], axis=1) if logits.shape[1] == 1 else logits


def _top_two_margin(scores: np.ndarray) -> np.ndarray:
    top_two = np.sort(scores, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def _compare_classes(name, jax_logits, torch_logits, ref, dtype) -> Quantity:
    """Argmax per sample. A sample may differ only at a near-tie: its top-two margin within
    what rounding allows its logits (the direct rule, or under the error model the float32
    band of that sample)."""
    if jax_logits.ndim != 2:
        return row(name, "classes", "classes", jax_logits, torch_logits, dtype,
                   note=f"logits must be (N, C): got {jax_logits.shape}")
    a = _as_class_scores(jax_logits.astype(np.float64))
    b = _as_class_scores(torch_logits.astype(np.float64))
    jax_classes, torch_classes = a.argmax(axis=1), b.argmax(axis=1)
    differing = np.flatnonzero(jax_classes != torch_classes)
    margins = np.minimum(_top_two_margin(a), _top_two_margin(b))[differing]
    if ref is None:
        near_tie = band.direct_allowed(np.abs(b[differing]).max(axis=1, initial=0.0), dtype)
    else:
        reference = _as_class_scores(ref)
        near_tie = band.allowed(band.abs_diff(b, reference)[differing].max(axis=1, initial=0.0),
                                band.magnitude(reference)[differing].max(axis=1, initial=0.0))
    allowed = margins <= near_tie
    note = "; ".join(
        f"sample {i}: jax {jax_classes[i]}, torch {torch_classes[i]}, top-2 margin {m:.3g}"
        + ("" if ok else " (not a near-tie)")
        for i, m, ok in zip(differing, margins, allowed)
    )
    passed = bool(np.all(allowed))
    return row(name, "classes", "classes", jax_logits, torch_logits, dtype,
               jax=f"{len(jax_classes)} classes", torch=f"{len(differing)} differ",
               max_abs_err=float(len(differing)), max_rel_err=len(differing) / max(len(jax_classes), 1),
               direct_passed=passed, band_ratio=0.0 if passed else np.inf, passed=passed, note=note)


class StepJudge:
    """The judge of synced steps, one dtype: each step's quantities judged as they come, in
    one pass over all of them (their float elements laid end to end), and only what the
    verdict over the steps needs kept: per step and quantity its numbers, and the values'
    summaries where a step is the worst so far or fails. Private to the step-synchronized
    verdict (:mod:`funcgrad.parity.steps`), which feeds it.

    A float32 step is judged against ``reference``, torch's float64 step from the same state,
    and JAX's distance is measured to ``jax_reference``, JAX's own float64 step from it,
    which must equal ``reference`` by the float64 rule (the algorithm is the same). Each
    element's envelope is torch's largest distance there over this step and the
    ``MIN_BAND_WINDOW - 1`` synced steps before it; the factor is ``SYNCED_BAND_FACTOR``.

        judge = StepJudge(np.float32)
        judge.add(t, jax_side, torch_side, reference, jax_reference)
        rows = judge.rows()
    """

    def __init__(self, dtype, factor: float = band.SYNCED_BAND_FACTOR):
        self.dtype = np.dtype(dtype)
        self.factor = factor
        self.keys: list[str] = []
        self.steps: list[int] = []
        self.numbers: dict[str, list] = collections.defaultdict(list)  # field -> per step, per quantity
        self.failures: dict[int, dict[str, tuple[bool, str]]] = {}  # step -> quantity -> (has a reference, note)
        self.largest_gradient: dict[str, float] = {}
        self._worst_passing: dict[str, tuple[float, str, str]] = {}
        self._failing_values: dict[tuple[int, str], tuple[float, str, str]] = {}
        self._recent: collections.deque = collections.deque(maxlen=band.MIN_BAND_WINDOW - 1)

    def add(self, t: int, jax_side: dict, torch_side: dict, reference: dict | None = None,
            jax_reference: dict | None = None) -> None:
        """Judge synced step ``t``: flat dicts of numpy arrays (``Exact`` for counts) from each side."""
        if not self.keys:
            self._lay_out(torch_side)
        for side, results in (("jax", jax_side), ("reference", reference), ("jax's float64 step", jax_reference)):
            if results is not None:
                check_same_keys(f"step {t}: the sides report different quantities", results, torch_side, side, "torch")
        notes = {key: "" for key in self.keys}
        arrays = self._floats(jax_side, torch_side, reference, jax_reference, notes)
        numbers = self._judge_floats(arrays, notes) if self.float_keys else {}
        passed = {key: numbers["band_ratio"][key] <= 1 and not notes[key] for key in self.float_keys}
        for key in self.exact_keys:
            exact = _compare_exact(key, np.asarray(unwrap(jax_side[key])), np.asarray(unwrap(torch_side[key])),
                                   None if reference is None else np.asarray(unwrap(reference[key])))
            for field in _FIELDS:
                numbers.setdefault(field, {})[key] = getattr(exact, field)
            passed[key], notes[key] = exact.passed, exact.note
        self.steps.append(t)
        for field in _FIELDS:
            self.numbers[field].append([numbers[field][key] for key in self.keys])
        self.numbers["passed"].append([passed[key] for key in self.keys])
        for key in self.keys:
            ratio_ = numbers["band_ratio"][key]
            if not passed[key]:
                self._failing_values[t, key] = (ratio_, summarize(unwrap(jax_side[key])), summarize(unwrap(torch_side[key])))
            elif key not in self._worst_passing or ratio_ > self._worst_passing[key][0]:
                self._worst_passing[key] = (ratio_, summarize(unwrap(jax_side[key])), summarize(unwrap(torch_side[key])))
        if not all(passed.values()):
            self.failures[t] = {key: (reference is not None and key in self.float_keys, notes[key])
                                for key in self.keys if not passed[key]}

    def _lay_out(self, torch_side: dict) -> None:
        """The quantities' order, kinds and shapes, from the first step."""
        self.keys = list(torch_side)
        self.exact_keys = [key for key, value in torch_side.items() if isinstance(value, Exact)]
        self.float_keys = [key for key in self.keys if key not in self.exact_keys]
        self.shapes = {key: np.shape(torch_side[key]) for key in self.float_keys}
        sizes = [int(np.prod(self.shapes[key])) for key in self.float_keys]
        self.starts = np.cumsum([0] + sizes[:-1])
        self.ends = np.cumsum(sizes)
        self.gradient_keys = [(i, key.split("/", 1)[1]) for i, key in enumerate(self.float_keys)
                              if key.startswith("gradient/")]

    def _floats(self, jax_side, torch_side, reference, jax_reference, notes) -> dict:
        """Each side's float quantities laid end to end in float64; a quantity that cannot be
        judged (a shape, a dtype, a wrapper) is noted and laid as zeros."""
        sides = {"jax": jax_side, "torch": torch_side, "reference": reference, "jax_reference": jax_reference}
        arrays = {side: [] for side, results in sides.items() if results is not None}
        for key in self.float_keys:
            values = {side: sides[side][key] for side in arrays}
            wrapped = [side for side, value in values.items() if isinstance(value, (Exact, Logits, History))]
            values = {side: np.asarray(value) for side, value in values.items()}
            shapes = {np.shape(value) for value in values.values()}
            if wrapped:
                notes[key] = f"wrapped differently: {', '.join(wrapped)} wrapped"
            elif shapes != {self.shapes[key]}:
                notes[key] = "shapes differ: " + ", ".join(f"{side} {np.shape(v)}" for side, v in values.items())
            else:
                notes[key] = dtype_mismatch(self.dtype, values["jax"], values["torch"], values.get("reference")) or (
                    dtype_mismatch(np.dtype(np.float64), values["jax_reference"], values["reference"], None)
                    .replace("jax", "jax's float64 step") if "jax_reference" in values else "")
            for side, value in values.items():
                arrays[side].append(np.zeros(self.shapes[key]).ravel() if notes[key] else value.ravel())
        return {side: np.concatenate(parts).astype(np.float64, copy=False) for side, parts in arrays.items()}

    def _per_quantity(self, values: np.ndarray) -> np.ndarray:
        return np.maximum.reduceat(values, self.starts)

    def _judge_floats(self, arrays: dict, notes: dict) -> dict:
        a, b = arrays["jax"], arrays["torch"]
        reference, jax_reference = arrays.get("reference"), arrays.get("jax_reference")
        if not all(np.isfinite(x).all() for x in arrays.values()):
            self._note_nonfinite(arrays, notes)
            arrays = {side: np.nan_to_num(x) for side, x in arrays.items()}  # non-finite places noted: no distance
            a, b = arrays["jax"], arrays["torch"]
            reference, jax_reference = arrays.get("reference"), arrays.get("jax_reference")
        diff = np.abs(a - b)
        torch_size = np.abs(b)
        direct = diff / band.direct_allowed(torch_size, self.dtype)  # atol > 0: never a zero denominator
        numbers = {"max_abs_err": self._per_quantity(diff),
                   "max_rel_err": self._per_quantity(band.ratio(diff, torch_size)),
                   "direct_passed": self._per_quantity(direct) <= 1}
        largest_gradient = self._per_quantity(torch_size)
        for i, name in self.gradient_keys:
            self.largest_gradient[name] = max(self.largest_gradient.get(name, 0.0), float(largest_gradient[i]))
        if reference is None:
            numbers["band_ratio"] = self._per_quantity(direct)
            numbers |= {field: [None] * len(self.float_keys) for field in ("jax_ref_err", "torch_ref_err",
                                                                           "factor_needed")}
        else:
            numbers |= self._judge_band(a, b, reference, jax_reference, notes)
        return {field: dict(zip(self.float_keys, np.asarray(values).tolist())) for field, values in numbers.items()}

    def _judge_band(self, a, b, reference, jax_reference, notes) -> dict:
        """The band on finite arrays (non-finite places, which agree, zeroed before)."""
        magnitude = np.abs(reference)
        distance64 = np.abs(jax_reference - reference)
        differs64 = self._per_quantity(distance64 / band.direct_allowed(magnitude, np.float64))
        if (differs64 > 1).any():
            for key, excess, distance in zip(self.float_keys, differs64, self._per_quantity(distance64)):
                if excess > 1 and not notes[key]:
                    notes[key] = (f"JAX's and torch's float64 results from the same inputs differ by "
                                  f"{distance:.3g}: the algorithm differs")
        torch_err = np.abs(b - reference)
        envelope = torch_err.copy()
        for earlier in self._recent:
            np.maximum(envelope, earlier, out=envelope)
        self._recent.append(torch_err)
        jax_err = np.abs(a - jax_reference)
        level = np.empty_like(envelope)
        for start, end in zip(self.starts, self.ends):
            level[start:end] = band.noise(envelope[None, start:end], magnitude[None, start:end])[0]
        base = band.floor(magnitude)
        return {"band_ratio": self._per_quantity(band.ratio(jax_err, self.factor * level + base)),
                "factor_needed": self._per_quantity(band.ratio(np.maximum(jax_err - base, 0.0), level)),
                "jax_ref_err": self._per_quantity(jax_err), "torch_ref_err": self._per_quantity(torch_err)}

    def _note_nonfinite(self, arrays: dict, notes: dict) -> None:
        """Each quantity whose non-finite values differ between the sides, noted (the slow path)."""
        for key, start, end in zip(self.float_keys, self.starts, self.ends):
            part = {side: values[start:end] for side, values in arrays.items()}
            notes[key] = notes[key] or band.nonfinite_mismatch(part["jax"], part["torch"], part.get("reference")) or (
                band.nonfinite_mismatch(part["jax_reference"], part["reference"]).replace("jax and torch",
                                                                                          "JAX's and torch's float64 steps")
                if "jax_reference" in part else "")

    def rows(self, excluded: set[int] = frozenset()) -> list[Quantity]:
        """One row per quantity over the synced steps: its worst step and its first failing one.
        Steps in ``excluded`` (a discontinuity's) are named in the note, not judged."""
        numbers = {field: np.asarray(values, dtype=object) for field, values in self.numbers.items()}
        steps = np.asarray(self.steps)
        judged = ~np.isin(steps, list(excluded))
        if not judged.any():
            judged[:] = True
        rows = []
        for column, key in enumerate(self.keys):
            passed = numbers["passed"][:, column].astype(bool)
            failing = steps[judged & ~passed]
            kinks = steps[~judged & ~passed]
            worst_ratio, jax_summary, torch_summary = max(
                [self._worst_passing.get(key, (-1.0, "", ""))]
                + [self._failing_values[int(t), key] for t in failing], key=lambda item: item[0])
            worst_note = next((self.failures[int(t)][key][1] for t in failing if self.failures[int(t)][key][1]), "")

            def largest_judged(field):
                values = [v for v in numbers[field][judged, column] if v is not None]
                return max(values) if values else None

            is_float = key in self.float_keys
            rtol, atol = band.TOLERANCES[self.dtype] if is_float else (0.0, 0.0)
            rule = (("float32 band" if numbers["jax_ref_err"][0, column] is not None else f"{self.dtype.name} direct")
                    if is_float else "exact")
            note = ((f"differs at step {failing[0]} ({len(failing)} of {len(steps)} synced steps)"
                     + (f": {worst_note}" if worst_note else "")) if len(failing) else
                    f"out of band at {len(kinks)} step(s) at a discontinuity (from step {kinks[0]}; information)"
                    if len(kinks) else "")
            rows.append(Quantity(
                f"{key} (synced)", "history" if is_float else "exact", rule, jax_summary, torch_summary,
                max(numbers["max_abs_err"][:, column]), max(numbers["max_rel_err"][:, column]), rtol, atol,
                bool(all(numbers["direct_passed"][:, column])), largest_judged("jax_ref_err"),
                largest_judged("torch_ref_err"), float(max(numbers["band_ratio"][judged, column])),
                largest_judged("factor_needed"), int(failing[0]) if len(failing) else None, not len(failing), note))
        return rows


# The numbers the step judge keeps per step and quantity (with whether it passed).
_FIELDS = ("max_abs_err", "max_rel_err", "direct_passed", "jax_ref_err", "torch_ref_err", "band_ratio",
           "factor_needed")
