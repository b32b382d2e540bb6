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
    direct_excess = band.ratio(diff, band.direct_allowed(np.abs(np.nan_to_num(b64)), dtype))
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
        self._window = None  # torch's distances at the last synced steps judged: the envelope's memory
        self._work: dict[str, np.ndarray] = {}
        self._pending: list = []
        self._chunk = 1
        self._chunk_arrays: dict[str, np.ndarray] = {}  # each side's (chunk, elements) floats

    def add(self, t: int, jax_side: dict, torch_side: dict, reference: dict | None = None,
            jax_reference: dict | None = None) -> None:
        """Judge synced step ``t``: flat dicts of numpy arrays (``Exact`` for counts) from each
        side. Steps are judged in chunks (a few MB of arrays): one pass over a chunk's steps at
        once, and torch's and JAX's steps run back to back in between."""
        if not self.keys:
            self._lay_out(torch_side)
        for side, results in (("jax", jax_side), ("reference", reference), ("jax's float64 step", jax_reference)):
            if results is not None:
                check_same_keys(f"step {t}: the sides report different quantities", results, torch_side, side, "torch")
        notes = {key: "" for key in self.keys}
        arrays = self._floats(jax_side, torch_side, reference, jax_reference, notes)
        exact = {}
        for key in self.exact_keys:
            a, b = np.asarray(unwrap(jax_side[key])), np.asarray(unwrap(torch_side[key]))
            if a.shape == b.shape and a.dtype.kind in "iu" and np.array_equal(a, b):  # a count, as it should be
                exact[key] = _EXACT_AGREES
            else:
                exact[key] = _compare_exact(key, a, b, None if reference is None else np.asarray(unwrap(reference[key])))
        self._pending.append((t, arrays, notes, exact, jax_side, torch_side, reference is not None))
        if len(self._pending) >= self._chunk:
            self.flush()

    def flush(self) -> None:
        """Judge the steps added and not judged yet."""
        if not self._pending:
            return
        pending, self._pending = self._pending, []
        notes = [step_notes for _, _, step_notes, *_ in pending]
        # (steps, quantities) per field, NaN for a number the rule has not (no reference).
        numbers = {field: np.full((len(pending), len(self.keys)), np.nan) for field in _FIELDS}
        if self.float_keys:
            stacked = {side: self._chunk_arrays[side][:len(pending)] for side in pending[0][1]}
            for field, values in self._judge_floats(stacked, notes).items():
                numbers[field][:, self.float_columns] = values
        for row, (_, _, step_notes, exact, *_) in enumerate(pending):
            for key, verdict in exact.items():
                for field in _FIELDS:
                    value = getattr(verdict, field)
                    numbers[field][row, self.keys.index(key)] = np.nan if value is None else value
                step_notes[key] = verdict.note
        noted = np.array([[bool(step_notes[key]) for key in self.keys] for step_notes in notes])
        exact_failed = np.zeros_like(noted)
        for row, (_, _, _, exact, *_) in enumerate(pending):
            for key, verdict in exact.items():
                exact_failed[row, self.keys.index(key)] = not verdict.passed
                noted[row, self.keys.index(key)] = False  # an exact value's note is information
        passed = (numbers["band_ratio"] <= 1) & ~noted & ~exact_failed
        for row, (t, _, step_notes, _, jax_side, torch_side, has_reference) in enumerate(pending):
            self.steps.append(t)
            if not passed[row].all():
                self.failures[t] = {key: (has_reference and key in self.float_keys, step_notes[key])
                                    for key, ok in zip(self.keys, passed[row]) if not ok}
                for key in self.failures[t]:
                    self._failing_values[t, key] = (numbers["band_ratio"][row, self.keys.index(key)],
                                                    summarize(unwrap(jax_side[key])), summarize(unwrap(torch_side[key])))
        ratios = np.where(passed, numbers["band_ratio"], -np.inf)
        for column, key in enumerate(self.keys):  # the summaries of the worst passing step so far
            row = int(np.argmax(ratios[:, column]))
            if passed[row, column] and (key not in self._worst_passing or ratios[row, column] > self._worst_passing[key][0]):
                _, _, _, _, jax_side, torch_side, _ = pending[row]
                self._worst_passing[key] = (float(ratios[row, column]), summarize(unwrap(jax_side[key])),
                                            summarize(unwrap(torch_side[key])))
        for field in _FIELDS:
            self.numbers[field].append(numbers[field])
        self.numbers["passed"].append(passed)

    def _lay_out(self, torch_side: dict) -> None:
        """The quantities' order, kinds and shapes, from the first step."""
        self.keys = list(torch_side)
        self.exact_keys = [key for key, value in torch_side.items() if isinstance(value, Exact)]
        self.float_keys = [key for key in self.keys if key not in self.exact_keys]
        self.float_columns = [self.keys.index(key) for key in self.float_keys]
        self.shapes = {key: np.shape(torch_side[key]) for key in self.float_keys}
        sizes = [int(np.prod(self.shapes[key])) for key in self.float_keys]
        self.starts = np.cumsum([0] + sizes[:-1])
        self.ends = np.cumsum(sizes)
        # As many steps a chunk as fit in ~4 MB of the four sides. arrays (a cache, not memory), at most 16.
        self._chunk = int(np.clip(4e6 / (32 * max(sum(sizes), 1)), 1, 16))
        self._window = band.RunningMaximum(band.MIN_BAND_WINDOW, sum(sizes))
        # The noise of a long quantity is found row by row (band.row_noise); the short ones
        # (a loss, biases) are laid side by side as the rows of one padded array (band.noise).
        self.long = [(start, end) for start, end in zip(self.starts, self.ends) if end - start > _SHORT]
        short = [(i, start, end) for i, (start, end) in enumerate(zip(self.starts, self.ends)) if end - start <= _SHORT]
        self.short_at = np.concatenate([np.arange(start, end) for _, start, end in short] or [np.zeros(0, int)])
        self.short_rows = np.repeat(np.arange(len(short)), [end - start for _, start, end in short])
        self.short_columns = np.concatenate([np.arange(end - start) for _, start, end in short] or [np.zeros(0, int)])
        self.short_valid = np.zeros((len(short), max((end - start for _, start, end in short), default=0)), bool)
        self.short_valid[self.short_rows, self.short_columns] = True
        self.gradient_keys = [(i, key.split("/", 1)[1]) for i, key in enumerate(self.float_keys)
                              if key.startswith("gradient/")]

    def _floats(self, jax_side, torch_side, reference, jax_reference, notes) -> dict:
        """Each side's float quantities laid end to end in float64; a quantity that cannot be
        judged (a shape, a dtype, a wrapper) is noted and laid as zeros."""
        sides = {"jax": jax_side, "torch": torch_side, "reference": reference, "jax_reference": jax_reference}
        arrays = {side: [] for side, results in sides.items() if results is not None}
        expected_dtypes = {"jax": self.dtype, "torch": self.dtype, "reference": np.float64, "jax_reference": np.float64}
        for key in self.float_keys:
            values = {side: sides[side][key] for side in arrays}
            if all(isinstance(value, np.ndarray) and value.shape == self.shapes[key]
                   and value.dtype == expected_dtypes[side] for side, value in values.items()):
                for side, value in values.items():  # what every step gives: nothing to note
                    arrays[side].append(value.ravel())
                continue
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
        row = len(self._pending)  # this step's row of the chunk's arrays, written in place
        for side, parts in arrays.items():
            if side not in self._chunk_arrays:
                self._chunk_arrays[side] = np.empty((self._chunk, int(self.ends[-1]) if len(self.ends) else 0))
            np.concatenate(parts, out=self._chunk_arrays[side][row], casting="same_kind")
        return {side: self._chunk_arrays[side][row] for side in arrays}

    def _largest_relative(self, diff: np.ndarray, torch_size: np.ndarray) -> np.ndarray:
        """Per quantity, the largest ``|jax - torch| / |torch|`` (inf where torch is 0 and jax
        is not), in one division: a zero is divided as the least positive float."""
        tiny = np.finfo(np.float64).tiny
        largest = self._per_quantity(diff / np.maximum(torch_size, tiny))
        return np.where(largest > 1e300, np.inf, largest)

    def _per_quantity(self, values: np.ndarray) -> np.ndarray:
        """``(steps, elements)`` to each step's largest per quantity, ``(steps, quantities)``."""
        return np.maximum.reduceat(values, self.starts, axis=1)

    def _buffer(self, name: str, rows: int, dtype=np.float64) -> np.ndarray:
        """A work array of the chunk's shape, made once: a fresh array of a large model's size
        costs more in page faults than the arithmetic written into it (numpy's temporaries
        are returned to the system when freed, and every new one faults its pages in again)."""
        if name not in self._work:
            self._work[name] = np.empty((self._chunk, int(self.ends[-1])), dtype)
        return self._work[name][:rows]

    def _judge_floats(self, arrays: dict, notes: list[dict]) -> dict[str, np.ndarray]:
        """A chunk's float quantities (each side ``(steps, elements)``): each field's numbers,
        ``(steps, float quantities)``; the reference's fields only with one. Written into the
        judge's work arrays, no temporary of the chunk's size made."""
        if not all(np.isfinite(x).all() for x in arrays.values()):
            for row, step_notes in enumerate(notes):
                self._note_nonfinite({side: x[row] for side, x in arrays.items()}, step_notes)
            for x in arrays.values():  # non-finite places noted (and alike): no distance
                np.nan_to_num(x, copy=False)
        a, b = arrays["jax"], arrays["torch"]
        reference, jax_reference = arrays.get("reference"), arrays.get("jax_reference")
        rows = len(a)
        diff, size, work = self._buffer("diff", rows), self._buffer("size", rows), self._buffer("work", rows)
        np.abs(np.subtract(a, b, out=diff), out=diff)
        np.abs(b, out=size)
        rtol, atol = band.TOLERANCES[self.dtype]
        np.divide(diff, np.add(np.multiply(size, rtol, out=work), atol, out=work), out=work)  # atol > 0
        direct = self._per_quantity(work)
        numbers = {"max_abs_err": self._per_quantity(diff), "direct_passed": direct <= 1}
        largest = self._per_quantity(np.divide(diff, np.maximum(size, np.finfo(np.float64).tiny, out=work), out=work))
        numbers["max_rel_err"] = np.where(largest > 1e300, np.inf, largest)  # a zero divided as the least float
        largest_gradient = self._per_quantity(size).max(axis=0)
        for i, name in self.gradient_keys:
            self.largest_gradient[name] = max(self.largest_gradient.get(name, 0.0), float(largest_gradient[i]))
        if reference is None:
            numbers["band_ratio"] = direct
        else:
            numbers |= self._judge_band(a, b, reference, jax_reference, notes)
        return numbers

    def _judge_band(self, a, b, reference, jax_reference, notes: list[dict]) -> dict:
        """The band on finite ``(steps, elements)`` arrays (non-finite places, which agree,
        zeroed before), each step's envelope reaching back over the steps judged before."""
        rows = len(a)
        magnitude, work, spare = (self._buffer(name, rows) for name in ("magnitude", "work", "spare"))
        np.abs(reference, out=magnitude)
        rtol, atol = band.TOLERANCES[np.dtype(np.float64)]
        distance64 = np.abs(np.subtract(jax_reference, reference, out=work), out=work)
        differs64 = np.greater(distance64, np.add(np.multiply(magnitude, rtol, out=spare), atol, out=spare),
                               out=self._buffer("flag", rows, bool))
        if differs64.any():
            per_quantity = np.logical_or.reduceat(differs64, self.starts, axis=1)
            for row, key_index in zip(*np.nonzero(per_quantity)):
                key = self.float_keys[key_index]
                if not notes[row][key]:
                    distance = self._per_quantity(distance64[row:row + 1])[0, key_index]
                    notes[row][key] = (f"JAX's and torch's float64 results from the same inputs differ by "
                                       f"{distance:.3g}: the algorithm differs")
        torch_err = np.abs(np.subtract(b, reference, out=self._buffer("torch_err", rows)), out=self._buffer("torch_err", rows))
        envelope = self._buffer("envelope", rows)
        for row in range(rows):
            self._window.push(torch_err[row], out=envelope[row])
        jax_err = np.abs(np.subtract(a, jax_reference, out=self._buffer("jax_err", rows)), out=self._buffer("jax_err", rows))
        level = self._buffer("level", rows)
        for row in range(rows):
            for start, end in self.long:
                band.row_noise(envelope[row, start:end], magnitude[row, start:end], out=level[row, start:end])
        if len(self.short_at):
            short_rows, columns = self.short_rows, self.short_columns
            shape = (rows,) + self.short_valid.shape
            padded, sizes = np.zeros(shape), np.ones(shape)
            padded[:, short_rows, columns], sizes[:, short_rows, columns] = (envelope[:, self.short_at],
                                                                             magnitude[:, self.short_at])
            valid = np.broadcast_to(self.short_valid, shape).reshape(-1, shape[2])
            judged = band.noise(padded.reshape(-1, shape[2]), sizes.reshape(-1, shape[2]), valid).reshape(shape)
            level[:, self.short_at] = judged[:, short_rows, columns]
        base = np.multiply(magnitude, band.FLOOR_ULPS * band.EPS32, out=magnitude)  # magnitude is done with
        limit = np.add(np.multiply(level, self.factor, out=work), base, out=work)
        numbers = {"band_ratio": self._per_quantity(band.ratio(jax_err, limit, out=spare)),
                   "jax_ref_err": self._per_quantity(jax_err), "torch_ref_err": self._per_quantity(torch_err)}
        over = np.maximum(np.subtract(jax_err, base, out=work), 0.0, out=work)
        numbers["factor_needed"] = self._per_quantity(band.ratio(over, level, out=spare))
        return numbers

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
        self.flush()
        numbers = {field: np.concatenate(values) for field, values in self.numbers.items()}
        steps = np.asarray(self.steps)
        judged = ~np.isin(steps, list(excluded))
        if not judged.any():
            judged[:] = True
        rows = []
        for column, key in enumerate(self.keys):
            passed = numbers["passed"][:, column]
            failing = steps[judged & ~passed]
            kinks = steps[~judged & ~passed]
            _, jax_summary, torch_summary = max(
                [self._worst_passing.get(key, (-1.0, "", ""))]
                + [self._failing_values[int(t), key] for t in failing], key=lambda item: item[0])
            worst_note = next((self.failures[int(t)][key][1] for t in failing if self.failures[int(t)][key][1]), "")

            def largest(field, where=judged):
                values = numbers[field][where, column]
                return None if np.isnan(values).all() else float(np.nanmax(values))

            is_float = key in self.float_keys
            rtol, atol = band.TOLERANCES[self.dtype] if is_float else (0.0, 0.0)
            rule = (("float32 band" if largest("jax_ref_err") is not None else f"{self.dtype.name} direct")
                    if is_float else "exact")
            note = ((f"differs at step {failing[0]} ({len(failing)} of {len(steps)} synced steps)"
                     + (f": {worst_note}" if worst_note else "")) if len(failing) else
                    f"out of band at {len(kinks)} step(s) at a discontinuity (from step {kinks[0]}; information)"
                    if len(kinks) else "")
            everywhere = np.ones(len(steps), bool)
            rows.append(Quantity(
                f"{key} (synced)", "history" if is_float else "exact", rule, jax_summary, torch_summary,
                largest("max_abs_err", everywhere), largest("max_rel_err", everywhere), rtol, atol,
                bool(numbers["direct_passed"][:, column].all()), largest("jax_ref_err"), largest("torch_ref_err"),
                largest("band_ratio"), largest("factor_needed"), int(failing[0]) if len(failing) else None,
                not len(failing), note))
        return rows


# A quantity of at most this many elements is short: its noise is found beside the others'.
_SHORT = 256
# What an exact quantity that agrees (a step count, num_batches_tracked) is judged, without the
# arithmetic of _compare_exact: its numbers are all zero.
_EXACT_AGREES = Quantity("", "exact", "exact", "", "", 0.0, 0.0, 0.0, 0.0, True, None, None, 0.0, None, None, True)
# The numbers the step judge keeps per step and quantity (with whether it passed).
_FIELDS = ("max_abs_err", "max_rel_err", "direct_passed", "jax_ref_err", "torch_ref_err", "band_ratio",
           "factor_needed")
