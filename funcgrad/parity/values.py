"""What a side reports, and how it says how a value is to be compared.

Both sides report flat dicts of the same keys (nested dicts are flattened to ``a/b``).
Plain arrays are floats; wrap a value to say how else to compare it: :class:`History`
(one entry per training step: the report names the first step that leaves its band),
:class:`Exact` (identical or wrong: an accuracy, a count) and :class:`Logits` (compared
through their argmax, a flip allowed only at a near-tie).

    results = {"loss per step": History(losses), "test accuracy": Exact(0.9161), "trained W": w}
"""

from __future__ import annotations

import dataclasses
from typing import Any, Mapping

import numpy as np

DTYPES = ("float64", "float32")


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


def flatten(results: Mapping, prefix: str = "") -> dict:
    """Nested dicts of results as one flat dict, keys joined by ``/``.

    >>> flatten({"final parameters": {"0.weight": w}})
    {'final parameters/0.weight': w}
    """
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


def wrapper_name(value) -> str:
    """How a value is wrapped, as a report names it: ``Exact``, ``History(step_axis=0)``..."""
    if isinstance(value, History):
        return f"History(step_axis={value.step_axis})"
    return type(value).__name__ if isinstance(value, (Exact, Logits)) else "a plain array"


def judged_dtype(what: str, dtype) -> np.dtype:
    """``dtype`` as a numpy dtype with a parity rule (float32 or float64), else a ValueError."""
    try:
        judged = np.dtype(dtype)
    except TypeError:
        judged = None
    if judged not in (np.dtype(np.float32), np.dtype(np.float64)):
        raise ValueError(f"{what}: no parity rule for {dtype}; use float32 or float64")
    return judged


def dtype_names(what: str, dtypes) -> list[str]:
    """``dtypes`` (one name, or several) as a list of checked names, at least one.

    >>> dtype_names("compare_steps", "float64")
    ['float64']
    """
    names = [dtypes] if isinstance(dtypes, (str, np.dtype, type)) else list(dtypes)
    if not names:
        raise ValueError(f"{what}: no dtype to train in; give some of {DTYPES}")
    names = [judged_dtype(what, name).name for name in names]
    if len(set(names)) < len(names):
        raise ValueError(f"{what}: dtypes repeats a dtype: {names}")
    return names


def summarize(value) -> str:
    """A short, readable rendering of a value for the side-by-side table.

    >>> summarize(np.zeros((100, 10)))
    '(100, 10) last=0'
    """
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        return str(a)[:40]
    if a.size == 1:
        return f"{a.item():.10g}"
    if a.size <= 3:
        return "[" + ", ".join(f"{v:.6g}" for v in a.ravel()) + "]"
    return f"{a.shape} last={a.ravel()[-1]:.6g}"
