"""Parity verdicts: is a JAX result what its PyTorch original computes, up to rounding?

Both sides report flat dicts of the same keys (nested dicts are flattened to ``a/b``).
Plain arrays are floats; wrap a value to say how else to compare it:
:class:`History` (one entry per training step: the report names the first step that
leaves the allowed band), :class:`Exact` (identical or wrong: an accuracy, a count) and
:class:`Logits` (compared through their argmax, a flip allowed only at a near-tie).

    rows = compare_results(jax_results, torch_results, np.float32, reference=torch_float64_results)
    assert all(row.passed for row in rows), format_failures(rows)

How float values are judged (the error model; README's "How parity is judged"):

- **float64**: directly, ``|jax - torch| <= 1e-10 + 1e-10 |torch|`` elementwise. Runs of
  the same algorithm agree to ~1e-13 there, so this is what proves the algorithm equal.
- **float32 with a float64 reference** (the PyTorch side run again in float64 from the
  same inputs): JAX's distance to the reference must be within ``BAND_FACTOR`` times
  PyTorch's own distance to it, plus ``FLOOR_ULPS`` float32 ulps of the value's
  magnitude (for values PyTorch happens to round exactly). float32 runs of the same
  algorithm differ in the last bits because the two frameworks sum in different orders,
  on different kernels per machine, and a long run amplifies that. The band scales with
  that amplification as PyTorch itself exhibits it, so the same verdict holds on every
  machine, where a fixed tolerance holds only where it was tuned. For a history the band
  at step ``t`` uses PyTorch's largest distance over the steps just before ``t``.
- **float32 without a reference**: ``torch.testing.assert_close``'s rule and defaults,
  ``|jax - torch| <= 1e-5 + 1.3e-6 |torch|``.

Every row also keeps the direct ``|jax - torch|`` and assert_close's float32 verdict, as
information.
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
    jax_results: Mapping, torch_results: Mapping, dtype, reference: Mapping | None = None
) -> list[Quantity]:
    """One :class:`Quantity` per key; both sides must report the same keys.

    ``reference``: the PyTorch side's results in float64 from the same inputs. With it,
    float32 values are judged by the error model; without it, by assert_close's rule.

    >>> rows = compare_results({"loss": np.float32(0.5)}, {"loss": np.float32(0.5)}, np.float32)
    >>> rows[0].passed
    True
    """
    jax_results, torch_results = flatten(jax_results), flatten(torch_results)
    if jax_results.keys() != torch_results.keys():
        raise ValueError(
            f"the two sides report different quantities: jax {sorted(jax_results)}, "
            f"torch {sorted(torch_results)}"
        )
    dtype = np.dtype(dtype)
    if dtype not in TOLERANCES:
        raise ValueError(f"compare_results: no parity rule for {dtype}; use float32 or float64")
    reference = flatten(reference) if reference is not None and dtype == np.float32 else {}
    return [
        _compare(name, jax_value, torch_results[name], dtype, reference.get(name))
        for name, jax_value in jax_results.items()
    ]


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


def _compare(name, jax_value, torch_value, dtype, reference) -> Quantity:
    a, b = np.asarray(unwrap(jax_value)), np.asarray(unwrap(torch_value))
    ref = None if reference is None else np.asarray(unwrap(reference), np.float64)
    if isinstance(jax_value, Exact) or isinstance(torch_value, Exact):
        return _compare_exact(name, a, b)
    if isinstance(jax_value, Logits):
        return _compare_classes(name, a, b, ref, dtype)
    kind = "history" if isinstance(jax_value, History) else "float"
    step_axis = jax_value.step_axis if kind == "history" else None
    return _compare_floats(name, kind, a, b, ref, dtype, step_axis)


def _row(name, kind, rule, a, b, dtype, **fields) -> Quantity:
    rtol, atol = TOLERANCES[dtype]
    values = dict(jax=summarize(a), torch=summarize(b), max_abs_err=np.inf, max_rel_err=np.inf,
                  rtol=rtol, atol=atol, direct_passed=False, jax_ref_err=None,
                  torch_ref_err=None, band_ratio=np.inf, factor_needed=None, first_divergence=None,
                  passed=False)
    return Quantity(name, kind, rule, **(values | fields))


def _compare_floats(name, kind, a, b, ref, dtype, step_axis) -> Quantity:
    rule = "float32 band" if ref is not None else f"{dtype.name} direct"
    if a.shape != b.shape or (ref is not None and ref.shape != b.shape):
        shapes = f"jax {a.shape}, torch {b.shape}" + ("" if ref is None else f", reference {ref.shape}")
        return _row(name, kind, rule, a, b, dtype, note=f"shapes differ: {shapes}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    nonfinite = _nonfinite_mismatch(a64, b64, ref)
    if nonfinite:
        return _row(name, kind, rule, a, b, dtype, note=nonfinite)
    rtol, atol = TOLERANCES[dtype]
    diff = _abs_diff(a64, b64)
    direct_excess = diff / (atol + rtol * np.abs(np.nan_to_num(b64)))
    fields = dict(max_abs_err=_max(diff), max_rel_err=_max_relative(diff, b64),
                  direct_passed=bool(np.all(direct_excess <= 1)))
    if ref is None:
        excess = _per_step(direct_excess, step_axis)
    else:
        jax_err, torch_err = _abs_diff(a64, ref), _abs_diff(b64, ref)
        band = _band(_per_step(jax_err, step_axis), _per_step(torch_err, step_axis),
                     _per_step(np.abs(np.nan_to_num(ref)), step_axis), step_axis is not None)
        excess = band["excess"]
        fields |= dict(jax_ref_err=_max(jax_err), torch_ref_err=_max(torch_err),
                       factor_needed=band["factor_needed"])
    outside = np.flatnonzero(np.atleast_1d(excess) > 1)
    first = int(outside[0]) if step_axis is not None and outside.size else None
    note = "" if first is None else f"leaves the band at step {first:,}".replace(",", " ")
    return _row(name, kind, rule, a, b, dtype, band_ratio=_max(excess), first_divergence=first,
                passed=outside.size == 0, note=note, **fields)


def band_per_step(jax_history, torch_history, reference, step_axis: int = 0) -> dict[str, np.ndarray]:
    """A float32 history under the error model, step by step (the largest over other axes):
    ``jax_err`` and ``torch_err``, each side's distance to the float64 ``reference``;
    ``allowed``, the band ``jax_err`` must stay in; ``jax_vs_torch``, ``|jax - torch|``.

    >>> band = band_per_step(jax_losses, torch_losses, torch_float64_losses)
    >>> first_out = np.flatnonzero(band["jax_err"] > band["allowed"])[:1]
    """
    a, b, ref = (np.asarray(unwrap(v), np.float64) for v in (jax_history, torch_history, reference))
    band = _band(_per_step(_abs_diff(a, ref), step_axis), _per_step(_abs_diff(b, ref), step_axis),
                 _per_step(np.abs(np.nan_to_num(ref)), step_axis), is_history=True)
    return {key: band[key] for key in ("jax_err", "torch_err", "allowed")} | {
        "jax_vs_torch": _per_step(_abs_diff(a, b), step_axis)}


def _band(jax_err, torch_err, magnitude, is_history) -> dict:
    """JAX's distance to float64 against the float32 band (see the module doc): the band,
    the excess (error over band), and the least factor that would have passed."""
    envelope = _trailing_max(torch_err, _band_window(len(torch_err))) if is_history else torch_err
    floor = FLOOR_ULPS * np.finfo(np.float32).eps * magnitude
    allowed = BAND_FACTOR * envelope + floor
    over_floor = np.maximum(jax_err - floor, 0.0)
    factor_needed = np.divide(over_floor, envelope, out=np.where(over_floor > 0, np.inf, 0.0),
                              where=envelope > 0)
    excess = np.divide(jax_err, allowed, out=np.where(jax_err > 0, np.inf, 0.0), where=allowed > 0)
    return {"jax_err": jax_err, "torch_err": torch_err, "allowed": allowed, "excess": excess,
            "factor_needed": _max(factor_needed)}


def _band_window(num_steps: int) -> int:
    return max(MIN_BAND_WINDOW, num_steps // 100)


def _trailing_max(values: np.ndarray, window: int) -> np.ndarray:
    """``out[t] = max(values[t - window + 1 : t + 1])``."""
    padded = np.concatenate([np.zeros(window - 1), values])
    return np.lib.stride_tricks.sliding_window_view(padded, window).max(axis=1)


def _per_step(values: np.ndarray, step_axis: int | None) -> np.ndarray:
    """The largest value per step for a history (steps along ``step_axis``), else over all."""
    if step_axis is None:
        return np.asarray(_max(values))
    steps = np.moveaxis(np.atleast_1d(values), step_axis, 0)
    return steps.reshape(len(steps), -1).max(axis=1, initial=0.0)


def _abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    # Non-finite values sit at the same places on both sides (checked before): they agree.
    both_nonfinite = ~np.isfinite(a) & ~np.isfinite(b)
    return np.where(both_nonfinite, 0.0, np.abs(np.nan_to_num(a) - np.nan_to_num(b)))


def _nonfinite_mismatch(a, b, ref) -> str:
    def same_pattern(x, y):
        return np.array_equal(np.isnan(x), np.isnan(y)) and np.array_equal(np.isinf(x) & (x > 0), np.isinf(y) & (y > 0))

    if not same_pattern(a, b):
        return "non-finite values differ"
    if ref is not None and not same_pattern(b, ref):
        return "non-finite values differ from the float64 reference"
    return ""


def _max(values) -> float:
    return float(np.max(values, initial=0.0))


def _max_relative(diff: np.ndarray, b: np.ndarray) -> float:
    scale = np.abs(np.nan_to_num(b))
    rel = np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0)
    return _max(rel)


def _compare_exact(name, a, b) -> Quantity:
    same = a.shape == b.shape and bool(np.all(a == b))
    fields = dict(rtol=0.0, atol=0.0, direct_passed=same, band_ratio=0.0 if same else np.inf, passed=same)
    if a.shape == b.shape and a.dtype.kind in "biuf" and b.dtype.kind in "biuf":
        diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        fields |= dict(max_abs_err=_max(diff), max_rel_err=_max_relative(diff, b.astype(np.float64)))
    elif a.shape != b.shape:
        fields["note"] = f"shapes differ: jax {a.shape}, torch {b.shape}"
    return _row(name, "exact", "exact", a, b, np.dtype(np.float64), **fields)


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
    if jax_logits.shape != torch_logits.shape or jax_logits.ndim != 2:
        return _row(name, "classes", rule, jax_logits, torch_logits, dtype,
                    note=f"logits must be (N, C) on both sides: jax {jax_logits.shape}, torch {torch_logits.shape}")
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
