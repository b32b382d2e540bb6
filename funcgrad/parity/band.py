"""The error model: what a JAX value may differ from its PyTorch twin by, each formula once.

- **The direct rule** (float64, and float32 without a reference):
  ``|jax - torch| <= atol + rtol |torch|`` elementwise (:data:`TOLERANCES`). Runs of the
  same algorithm agree to ~1e-13 in float64, so this is what proves the algorithm equal.
- **The band** (float32, against the PyTorch side run again in float64 from the same
  inputs): element ``i``'s distance to the reference within ``factor`` times the noise
  PyTorch shows at that element's scale, plus ``FLOOR_ULPS`` float32 ulps of ``|ref_i|``
  (for values PyTorch happens to round exactly)::

      |jax_i - ref_i| <= factor * noise_i + FLOOR_ULPS * eps32 * |ref_i|

  The noise is the larger of PyTorch's largest distance on any element no larger than
  ``|ref_i|`` and the ``NOISE_QUANTILE`` (99th percentile) of PyTorch's distances over the
  quantity's nonzero elements: an error cannot hide behind a larger element's rounding
  unless 1 % of the quantity shows that much noise, and an element where PyTorch happened
  to land exactly is not held to PyTorch's luck (a gradient element near zero is often the
  cancellation of terms as large as its neighbours', and carries their noise). PyTorch's
  distance is its *envelope*: for a history, its largest over a trailing window of steps
  (:func:`window`); for a synced step, its largest over the last synced steps.

float32 runs of the same algorithm differ in the last bits because the two frameworks sum
in different orders, on different kernels per machine, and a long run amplifies that. The
band scales with that amplification as PyTorch itself exhibits it, so the same verdict
holds on every machine, where a fixed tolerance holds only where it was tuned.

Arrays here are ``(rows, elements)``: a history's steps are its rows; anything else is
one row. Non-finite values agree on both sides (checked before, :func:`nonfinite_mismatch`)
and count as no distance; they never widen a band.
"""

from __future__ import annotations

import numpy as np

# (rtol, atol) of the direct rule. float32: torch.testing.assert_close's defaults;
# float64: far tighter than its default (1e-7), since same-algorithm runs agree to ~1e-13.
TOLERANCES = {
    np.dtype(np.float32): (1.3e-6, 1e-5),
    np.dtype(np.float64): (1e-10, 1e-10),
}

# The float32 band's factor over a whole run. Over the portability matrix (every case on the
# SSE4.2 / AVX2 / AVX-512 corners of XLA and ATen, all cores and one thread), JAX's distance
# to float64 was at most ~1.5x PyTorch's (compare/results/*-matrix.md); 4 leaves room for
# machines not in it while staying orders of magnitude below any porting bug (README: "What
# the verdict catches").
BAND_FACTOR = 4.0
# The factor for one step from a shared state. The whole-run factor was measured where
# amplification dominates; one step shows each kernel's own rounding. On XLA's SSE4.2 corner
# and the AVX2+avx2 corner, the output layer's gradients and momentum buffers of
# digits-mlp-synced needed 5.0x and 5.4x, and no other: XLA's float32 step was that much
# further from float64 than torch's at a few elements, while JAX's own float64 step equals
# torch's (to 1e-10), so the algorithm is the same. 8 leaves that margin the whole-run factor
# leaves over its worst (4 over 2.5); every stepwise mutant is caught by orders of magnitude
# more (compare/stepwise_mutants.py).
SYNCED_BAND_FACTOR = 8.0
# Rounding of one or two operations that PyTorch happens to land exactly.
FLOOR_ULPS = 4.0
EPS32 = float(np.finfo(np.float32).eps)
# A history's band at step t follows PyTorch's largest distance over the last
# max(MIN_BAND_WINDOW, steps / 100) steps: it grows with a drift that grows and shrinks with
# one that dies out (a converging loss), where a running maximum would stay wide. A synced
# step's envelope covers the last MIN_BAND_WINDOW synced steps.
MIN_BAND_WINDOW = 10
# An element's noise is at least this quantile (taken at an element, never between two) of
# PyTorch's distances over the quantity's nonzero elements. The ratio of two independent
# roundings of one element has a heavy tail (a quarter of draws beyond 2.5x), so an element
# judged by PyTorch's distance there alone fails correct ports. The least factor that
# passes, by this quantile: the median left torch-optimizers' Adam parameters needing 3.6x
# and the 870 synced steps of digits-mlp-synced 4.2x; the 90th percentile 2.4x and 3.7x; the
# 99th 2.4x and 2.2x. Of two elements it takes the smaller, of three the middle.
NOISE_QUANTILE = 0.99


def direct_allowed(torch_magnitude: np.ndarray, dtype) -> np.ndarray:
    """What the direct rule allows each element: ``atol + rtol |torch|`` (given ``|torch|``,
    finite)."""
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    return atol + rtol * torch_magnitude


def floor(magnitude: np.ndarray) -> np.ndarray:
    """``FLOOR_ULPS`` float32 ulps of each element's magnitude."""
    return (FLOOR_ULPS * EPS32) * magnitude


def allowed(noise_level: np.ndarray, magnitude: np.ndarray, factor: float = BAND_FACTOR) -> np.ndarray:
    """The band: ``factor * noise + FLOOR_ULPS * eps32 * |ref|``."""
    return factor * noise_level + floor(magnitude)


def ratio(numerator: np.ndarray, denominator: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``numerator / denominator``, 0 where both are 0 and inf where only the denominator is
    (the numerators are distances, never negative); into ``out`` if given."""
    with np.errstate(divide="ignore", invalid="ignore"):
        result = np.divide(numerator, denominator, out=out)
    if np.isfinite(result).all():
        return result
    fixed = np.where(denominator == 0, np.where(numerator > 0, np.inf, 0.0), result)
    if out is None:
        return fixed
    out[...] = fixed
    return out


def abs_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``|a - b|``, 0 where both are non-finite (they sit at the same places, checked before)."""
    if np.isfinite(a).all() and np.isfinite(b).all():
        return np.abs(a - b)
    both_nonfinite = ~np.isfinite(a) & ~np.isfinite(b)
    return np.where(both_nonfinite, 0.0, np.abs(np.nan_to_num(a) - np.nan_to_num(b)))


def magnitude(reference: np.ndarray) -> np.ndarray:
    """``|ref|``, 0 where the reference is not finite."""
    values = np.abs(reference)
    return values if np.isfinite(values).all() else np.where(np.isfinite(values), values, 0.0)


def window(num_steps: int) -> int:
    """A history's trailing window: ``max(MIN_BAND_WINDOW, num_steps // 100)`` steps."""
    return max(MIN_BAND_WINDOW, num_steps // 100)


class RunningMaximum:
    """The largest of the last ``width`` rows pushed, element by element, in a few passes a
    row whatever the width (van Herk and Gil-Werman's blocks: the running maximum of the
    current block against the suffix maxima of the block before, computed once a block).

        window = RunningMaximum(10, n)
        envelope = window.push(torch_err)          # max over this row and the 9 before
    """

    def __init__(self, width: int, size: int):
        self.width, self.position, self.suffixes = width, 0, None
        self.block, self.prefix = np.empty((width, size)), np.empty(size)

    def push(self, row: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        p = self.position
        self.block[p] = row
        if p == 0:
            self.prefix[...] = row
        else:
            np.maximum(self.prefix, row, out=self.prefix)
        # The window is this block's rows 0..p and the block before's p+1.. (all of it is this block's at its end).
        out = np.empty_like(self.prefix) if out is None else out
        if self.suffixes is None or p == self.width - 1:
            out[...] = self.prefix
        else:
            np.maximum(self.prefix, self.suffixes[p + 1], out=out)
        self.position = (p + 1) % self.width
        if self.position == 0:  # the block is full: its suffix maxima serve the next one
            self.suffixes = self.block.copy() if self.suffixes is None else self.suffixes
            self.suffixes[-1] = self.block[-1]
            for j in range(self.width - 2, -1, -1):
                np.maximum(self.block[j], self.suffixes[j + 1], out=self.suffixes[j])
        return out


def trailing_max(values: np.ndarray, steps: int) -> np.ndarray:
    """``out[t] = max(values[t - steps + 1 : t + 1])`` along the first axis."""
    out = values.copy()
    for lag in range(1, min(steps, len(values))):
        np.maximum(out[lag:], values[:-lag], out=out[lag:])
    return out


def _row_level(values: np.ndarray, mask: np.ndarray) -> float:
    """The ``NOISE_QUANTILE`` ("lower") of ``values[mask]``: the element with ``k`` below it.

    A selection near the top of thousands of elements is slow in numpy (~90 us for 8 192), so
    the elements are first cut at a lower quantile of a sample: if at least the ``size - k``
    largest lie above the cut, the answer is the least of those, selected among the few; else
    (a sample that missed) the whole selection runs. Either way the same element."""
    picked = values if mask.all() else values[mask]  # a view where every element counts: no copy
    if not picked.size:
        return 0.0
    k = int(np.floor((picked.size - 1) * NOISE_QUANTILE))
    above = picked.size - k  # the answer and every element after it in sorted order
    if picked.size >= 2048:
        sample = picked[::29]  # a prime stride: no row or column of a weight's layout repeats in it
        position = int(len(sample) * 0.97)
        top = picked[picked > np.partition(sample, position)[position]]
        if len(top) >= above:
            return float(np.partition(top, len(top) - above)[len(top) - above])
    return float(np.partition(picked, k)[k])


def noise(envelope: np.ndarray, magnitude_: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Each element's noise: the larger of the quantile level of ``envelope`` (PyTorch's
    distances) over the nonzero elements and its largest ``envelope`` over the elements whose
    magnitude is at most the element's own (itself and equal magnitudes included), row by row
    of ``(rows, elements)`` arrays; ``valid`` marks the elements of a padded row.

    Rows are judged together, each sorted by magnitude: a history's steps, or a synced step's
    short quantities laid side by side. One long row is :func:`row_noise`'s, which sorts only
    the few elements above the level (the same noise, ``tests/test_parity_rules.py``).
    """
    valid = np.ones(envelope.shape, bool) if valid is None else valid
    counted = valid & (magnitude_ > 0)
    ranked = np.sort(np.where(counted, envelope, -np.inf), axis=1)
    count = counted.sum(axis=1)
    below = np.floor((count - 1) * NOISE_QUANTILE).astype(int)  # the "lower" quantile's rank, as _row_level's
    level = np.where(count > 0, ranked[np.arange(len(ranked)), np.maximum(envelope.shape[1] - count + below, 0)], 0.0)
    return np.maximum(_largest_at_or_below(np.where(valid, envelope, 0.0), np.where(valid, magnitude_, np.inf)),
                      level[:, None])


def _largest_at_or_below(values: np.ndarray, magnitude_: np.ndarray) -> np.ndarray:
    """Per row, each element's largest ``values`` over the elements whose magnitude is at
    most its own (itself and every equal magnitude included)."""
    order = np.argsort(magnitude_, axis=1, kind="stable")
    sorted_magnitude = np.take_along_axis(magnitude_, order, axis=1)
    running = np.maximum.accumulate(np.take_along_axis(values, order, axis=1), axis=1)
    columns = np.arange(magnitude_.shape[1])
    last_of_equals = np.ones(magnitude_.shape, bool)
    last_of_equals[:, :-1] = sorted_magnitude[:, 1:] != sorted_magnitude[:, :-1]
    group_end = np.minimum.accumulate(np.where(last_of_equals, columns, columns[-1])[:, ::-1], axis=1)[:, ::-1]
    out = np.empty_like(running)
    np.put_along_axis(out, order, np.take_along_axis(running, group_end, axis=1), axis=1)
    return out


def row_noise(envelope: np.ndarray, magnitude_: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """:func:`noise` of one long row (1-D arrays), in ``O(n log k)``: only the elements above
    the level can raise a noise above it, and by the level's definition they are at most 1 %
    of the nonzero elements, so only those are sorted by magnitude; their running maximum is
    taken, and every element finds its own by a binary search among the few places where it
    rises."""
    level = _row_level(envelope, magnitude_ > 0)
    out = np.empty(envelope.shape) if out is None else out
    out[...] = level
    sources = np.flatnonzero(envelope > level)
    if not sources.size:
        return out
    order = np.argsort(magnitude_[sources], kind="stable")
    sorted_magnitude = magnitude_[sources][order]
    running = np.maximum.accumulate(envelope[sources][order])  # the largest over the sources of least magnitude
    # Only where the running maximum rises does the noise change: search those few records.
    records = np.flatnonzero(np.concatenate([[True], running[1:] > running[:-1]]))
    levels, thresholds = np.concatenate([[level], running[records]]), sorted_magnitude[records]
    # An element below every source in magnitude keeps the level; only the others are searched
    # (the sources, torch's largest distances, tend to be its largest elements).
    for start in range(0, len(magnitude_), _BLOCK):  # in blocks: no temporary large enough to fault its pages in
        block = magnitude_[start:start + _BLOCK]
        searched = np.flatnonzero(block >= thresholds[0])
        out[start + searched] = levels[np.searchsorted(thresholds, block[searched], side="right")]
    return out


# Elements searched at a time: a block's temporaries (~64 KB) come from memory the process
# holds, where a large model's whole row would be fresh pages, faulted in at every step.
_BLOCK = 8192


def judge(jax_err: np.ndarray, envelope: np.ndarray, magnitude_: np.ndarray, factor: float = BAND_FACTOR) -> dict:
    """JAX's distances against the band that PyTorch's ``envelope`` sets: the band
    (``allowed``), each element's ``excess`` (distance over band: passes at <= 1), and the
    least factor that would have passed (``factor_needed``)."""
    level = noise(envelope, magnitude_)
    base = floor(magnitude_)
    limit = factor * level + base
    needed = ratio(np.maximum(jax_err - base, 0.0), level)
    return {"allowed": limit, "excess": ratio(jax_err, limit), "factor_needed": largest(needed)}


def largest(values) -> float:
    """The largest value, 0 for none."""
    return float(np.max(values, initial=0.0))


def largest_relative(diff: np.ndarray, reference: np.ndarray) -> float:
    """The largest ``diff / |reference|``."""
    return largest(ratio(diff, np.abs(np.nan_to_num(reference))))


def nonfinite_mismatch(a: np.ndarray, b: np.ndarray, reference: np.ndarray | None = None) -> str:
    """What differs in the non-finite values (NaN, +inf, -inf: place and sign) of the two
    sides and the reference, or ''."""
    arrays = [x for x in (a, b, reference) if x is not None]
    if all(np.isfinite(x).all() for x in arrays):
        return ""

    def pattern(x):
        return np.isnan(x), np.isposinf(x), np.isneginf(x)

    def differs(x, y):
        return [what for what, p, q in zip(("NaN", "+inf", "-inf"), pattern(x), pattern(y)) if not np.array_equal(p, q)]

    if differs(a, b):
        return f"non-finite values differ between jax and torch ({', '.join(differs(a, b))} at different places)"
    if reference is not None and differs(b, reference):
        return (f"non-finite values differ from the float64 reference "
                f"({', '.join(differs(b, reference))} at different places)")
    return ""
