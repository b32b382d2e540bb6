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


def check_floating(what: str, x, name: str) -> None:
    if not jnp.issubdtype(jnp.result_type(x), jnp.floating):
        raise TypeError(f"{what}: {name} must be floating point, got dtype {jnp.result_type(x)}")


def check_finite(what: str, x, name: str) -> None:
    if is_concrete(x) and not bool(np.all(np.isfinite(np.asarray(x)))):
        bad = np.asarray(x)[~np.isfinite(np.asarray(x))]
        raise ValueError(f"{what}: {name} holds {bad.size} non-finite value(s), e.g. {bad.flat[0]}")


def check_in_unit_interval(what: str, x, name: str) -> None:
    if not is_concrete(x):
        return
    values = np.asarray(x)
    outside = values[(values < 0) | (values > 1) | np.isnan(values)]
    if outside.size:
        raise ValueError(f"{what}: {name} must lie in [0, 1], found {outside.flat[0]}")


def check_class_labels(what: str, labels, num_classes: int) -> None:
    if not jnp.issubdtype(jnp.result_type(labels), jnp.integer):
        raise TypeError(
            f"{what}: labels must be integer class indices, got dtype "
            f"{jnp.result_type(labels)} (use labels.astype(jnp.int32))"
        )
    if not is_concrete(labels):
        return
    values = np.asarray(labels)
    outside = values[(values < 0) | (values >= num_classes)]
    if outside.size:
        raise ValueError(
            f"{what}: label {outside.flat[0]} is out of range for {num_classes} classes "
            f"(valid: 0..{num_classes - 1})"
        )
