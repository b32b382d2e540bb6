"""Boundary checks shared by the public functions: shapes, dtypes and label ranges.

Shapes and dtypes are static, so they are checked even while tracing under ``jit``.
Values are only checked when they are concrete (outside ``jit``): inside a compiled
loop there is nothing to raise from, and the loop must stay free of checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a tracer inside ``jit``/``grad``)."""
    return not isinstance(x, jax.core.Tracer)


def check_same_shape(what: str, a, b, a_name: str, b_name: str) -> None:
    if jnp.shape(a) != jnp.shape(b):
        raise ValueError(
            f"{what}: {a_name} has shape {jnp.shape(a)} but {b_name} has shape "
            f"{jnp.shape(b)}; they must match (a (N,) target against an (N, 1) "
            f"prediction would broadcast to (N, N): reshape the target)"
        )


SUPPORTED_FLOATS = (jnp.float32, jnp.float64)


def check_float_input(what: str, x, name: str) -> None:
    """float32 or float64, and (when concrete) free of NaN and inf.

    Half precision is refused rather than silently computed: its losses and gradients
    drift from torch's far beyond float32 tolerances, so parity could not be promised.
    """
    dtype = jnp.result_type(x)
    if not any(dtype == supported for supported in SUPPORTED_FLOATS):
        raise TypeError(
            f"{what}: {name} has dtype {dtype}; funcgrad computes in float32 or float64 "
            f"(cast with x.astype(jnp.float32))"
        )
    check_finite(what, x, name)


def check_finite(what: str, x, name: str) -> None:
    """NaN or inf in a concrete array is an error naming how many and where the first is."""
    if not is_concrete(x):
        return
    values = np.asarray(x)
    bad = ~np.isfinite(values)
    if bad.any():
        first = np.unravel_index(np.argmax(bad), values.shape) if values.ndim else ()
        raise ValueError(
            f"{what}: {name} holds {int(bad.sum())} non-finite value(s); the first is "
            f"{values[first]} at index {tuple(int(i) for i in first)}"
        )


def check_in_unit_interval(what: str, x, name: str) -> None:
    if not is_concrete(x):
        return
    values = np.asarray(x)
    outside = values[(values < 0) | (values > 1) | np.isnan(values)]
    if outside.size:
        raise ValueError(f"{what}: {name} must lie in [0, 1], found {outside.flat[0]}")


def check_class_labels(what: str, labels, num_classes: int, ignore_index: int | None = None) -> None:
    """Integer labels in ``0..num_classes-1`` (or equal to ``ignore_index``, when given)."""
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(
            f"{what}: labels must be integer class indices, got dtype "
            f"{jnp.result_type(labels)} (use labels.astype(jnp.int32))"
        )
    if not is_concrete(labels):
        return
    values = np.asarray(labels)
    outside = values[((values < 0) | (values >= num_classes)) & (values != ignore_index)]
    if outside.size:
        ignored = "" if ignore_index is None else f", or ignore_index {ignore_index}"
        raise ValueError(
            f"{what}: label {outside.flat[0]} is out of range for {num_classes} classes "
            f"(valid: 0..{num_classes - 1}{ignored})"
        )
