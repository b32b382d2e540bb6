"""Compare a JAX result tree with a PyTorch one, leaf by leaf, and say how far apart they are.

A case returns two flat dicts of the same keys. Plain arrays are compared with a
dtype-aware tolerance, ``|jax - torch| <= atol + rtol * |torch|`` elementwise (the rule
of ``torch.testing.assert_close``). :class:`Exact` values must be identical.
:class:`Logits` are compared as predicted classes: identical, except for a sample whose
two top logits lie within the float tolerance of each other, which the report names.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

# (rtol, atol). float32 is torch.testing.assert_close's default; float64 is held far
# tighter than its default (1e-7): same-algorithm runs agree to ~1e-13 there.
TOLERANCES = {
    np.dtype(np.float32): (1.3e-6, 1e-5),
    np.dtype(np.float64): (1e-10, 1e-10),
}


@dataclasses.dataclass(frozen=True)
class Exact:
    """A value both sides must produce identically (an accuracy, a count)."""

    value: Any


@dataclasses.dataclass(frozen=True)
class Logits:
    """Class scores ``(N, C)``; compared through their argmax. ``(N, 1)`` means binary."""

    value: Any


@dataclasses.dataclass
class Quantity:
    name: str
    kind: str
    jax: str
    torch: str
    max_abs_err: float
    max_rel_err: float
    rtol: float
    atol: float
    passed: bool
    note: str = ""


def compare_results(jax_results: dict, torch_results: dict, dtype) -> list[Quantity]:
    """One :class:`Quantity` per key; the keys of both sides must be the same."""
    if jax_results.keys() != torch_results.keys():
        raise ValueError(
            f"the two sides report different quantities: jax {sorted(jax_results)}, "
            f"torch {sorted(torch_results)}"
        )
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    rows = []
    for name, jax_value in jax_results.items():
        torch_value = torch_results[name]
        if isinstance(jax_value, Exact):
            rows.append(_compare_exact(name, jax_value.value, torch_value.value))
        elif isinstance(jax_value, Logits):
            rows.append(_compare_classes(name, jax_value.value, torch_value.value, rtol, atol))
        else:
            rows.append(_compare_floats(name, jax_value, torch_value, rtol, atol))
    return rows


def _errors(a: np.ndarray, b: np.ndarray) -> tuple[float, float, np.ndarray]:
    diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
    scale = np.abs(b.astype(np.float64))
    rel = np.divide(diff, scale, out=np.where(diff > 0, np.inf, 0.0), where=scale > 0)
    return float(diff.max(initial=0.0)), float(rel.max(initial=0.0)), diff


def _compare_floats(name, jax_value, torch_value, rtol, atol) -> Quantity:
    a, b = np.asarray(jax_value), np.asarray(torch_value)
    if a.shape != b.shape:
        return Quantity(name, "float", summarize(a), summarize(b), np.inf, np.inf, rtol, atol,
                        False, f"shapes differ: jax {a.shape}, torch {b.shape}")
    max_abs, max_rel, diff = _errors(a, b)
    finite_match = np.array_equal(np.isfinite(a), np.isfinite(b))
    within = bool(np.all(diff <= atol + rtol * np.abs(b))) if finite_match else False
    note = "" if finite_match else "non-finite values differ"
    return Quantity(name, "float", summarize(a), summarize(b), max_abs, max_rel, rtol, atol,
                    within, note)


def _compare_exact(name, jax_value, torch_value) -> Quantity:
    a, b = np.asarray(jax_value), np.asarray(torch_value)
    same = a.shape == b.shape and bool(np.all(a == b))
    max_abs, max_rel, _ = _errors(a, b) if a.shape == b.shape else (np.inf, np.inf, None)
    return Quantity(name, "exact", summarize(a), summarize(b), max_abs, max_rel, 0.0, 0.0, same)


def _as_class_scores(logits: np.ndarray) -> np.ndarray:
    # A binary model's single logit z is the two-class score pair (0, z).
    return np.concatenate([np.zeros_like(logits), logits], axis=1) if logits.shape[1] == 1 else logits


def _top_two_margin(scores: np.ndarray) -> np.ndarray:
    top_two = np.sort(scores, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def _compare_classes(name, jax_logits, torch_logits, rtol, atol) -> Quantity:
    a = _as_class_scores(np.asarray(jax_logits, dtype=np.float64))
    b = _as_class_scores(np.asarray(torch_logits, dtype=np.float64))
    jax_classes, torch_classes = a.argmax(axis=1), b.argmax(axis=1)
    differing = np.flatnonzero(jax_classes != torch_classes)
    margins = np.minimum(_top_two_margin(a), _top_two_margin(b))[differing]
    allowed = margins <= atol + rtol * np.abs(b[differing]).max(axis=1)
    note = "; ".join(
        f"sample {i}: jax {jax_classes[i]}, torch {torch_classes[i]}, top-2 margin {m:.3g}"
        + ("" if ok else " (not a near-tie)")
        for i, m, ok in zip(differing, margins, allowed)
    )
    return Quantity(
        name, "classes",
        f"{len(jax_classes)} classes", f"{len(differing)} differ",
        float(len(differing)), float(len(differing)) / max(len(jax_classes), 1),
        rtol, atol, bool(np.all(allowed)), note,
    )


def summarize(value) -> str:
    """A short, readable rendering of a value for the side-by-side table."""
    a = np.asarray(value)
    if a.size == 1:
        return f"{a.item():.10g}"
    if a.size <= 3:
        return "[" + ", ".join(f"{v:.6g}" for v in a.ravel()) + "]"
    return f"{a.shape} last={a.ravel()[-1]:.6g}"
