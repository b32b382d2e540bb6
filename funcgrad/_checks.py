"""Every boundary check of the public functions, in one place: shapes, dtypes, label and
index ranges, non-finite values, and the error a run raises when its loss turns NaN.

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


def is_supported_float(dtype) -> bool:
    """float32 or float64, the precisions funcgrad computes in.

    Half precision (float16, bfloat16) is refused rather than silently computed: its
    losses and gradients drift from torch's far beyond float32 tolerances, so parity
    could not be promised.
    """
    return any(np.dtype(dtype) == supported for supported in SUPPORTED_FLOATS)


def check_dtype_argument(what: str, dtype) -> None:
    """A ``dtype=`` argument asks for float32 or float64."""
    if not is_supported_float(dtype):
        raise TypeError(
            f"{what}: dtype {np.dtype(dtype)} is not supported; funcgrad computes in float32 "
            f"or float64 (pass dtype=jnp.float32 or jnp.float64)"
        )


def check_float_dtype(what: str, dtype, name: str) -> None:
    """``name``'s ``dtype`` is float32 or float64."""
    if not is_supported_float(dtype):
        raise TypeError(
            f"{what}: {name} has dtype {np.dtype(dtype)}; funcgrad computes in float32 or "
            f"float64 (cast it with .astype(jnp.float32))"
        )


def check_float_leaves(what: str, tree, name: str) -> None:
    """Every floating-point leaf of ``tree`` is float32 or float64; integer leaves pass.

    Dtypes are static: this raises while tracing too, and adds nothing to compiled code.
    """
    for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
        # An array's own dtype is read in 1 µs, jnp.result_type in 7: this runs on every
        # eager layer call. Python scalars and lists have none and take JAX's.
        dtype = leaf.dtype if hasattr(leaf, "dtype") else jnp.result_type(leaf)
        if jnp.issubdtype(dtype, jnp.floating):
            check_float_dtype(what, dtype, name + jax.tree_util.keystr(path))


def check_float_input(what: str, x, name: str) -> None:
    """float32 or float64 (not an integer), and (when concrete) free of NaN and inf."""
    check_float_dtype(what, jnp.result_type(x), name)
    check_finite(what, x, name)


def first_nonfinite(values: np.ndarray) -> int | None:
    """The flat index of the first NaN or inf in ``values``, or None."""
    bad = ~np.isfinite(values)
    return int(np.argmax(bad)) if bad.any() else None


def check_float_pair(what: str, inputs, targets, inputs_name: str) -> None:
    """An elementwise loss's two arguments: the same shape, both float32/float64 and finite."""
    check_same_shape(what, inputs, targets, inputs_name, "targets")
    check_float_input(what, inputs, inputs_name)
    check_float_input(what, targets, "targets")


def check_finite(what: str, x, name: str) -> None:
    """NaN or inf in a concrete array is an error naming how many and where the first is."""
    if not is_concrete(x):
        return
    values = np.asarray(x)
    index = first_nonfinite(values)
    if index is not None:
        bad = ~np.isfinite(values)
        first = np.unravel_index(index, values.shape) if values.ndim else ()
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


def check_labels_match_logits(what: str, logits, labels) -> None:
    """``labels`` has the shape of ``logits`` without its last (class) axis."""
    if jnp.ndim(logits) < 1 or jnp.shape(labels) != jnp.shape(logits)[:-1]:
        raise ValueError(
            f"{what}: logits have shape {jnp.shape(logits)} and labels {jnp.shape(labels)}; "
            f"labels must have the logits' shape without the class axis, "
            f"{jnp.shape(logits)[:-1]}"
        )


def check_params_and_data(what: str, params, data, data_name: str) -> None:
    """Every float leaf of the params and the data (the argument ``data_name``) is float32
    or float64 and, when concrete, free of NaN and inf."""
    for name, tree in (("params", params), (data_name, data)):
        check_float_leaves(what, tree, name)
        for path, leaf in jax.tree_util.tree_leaves_with_path(tree):
            if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
                check_finite(what, leaf, name + jax.tree_util.keystr(path))


def check_batch_indices(what: str, data, batch_indices) -> None:
    """``(num_steps, batch_size)`` indices, each within the data's length."""
    if jnp.ndim(batch_indices) != 2:
        raise ValueError(
            f"{what}: batch_indices must be (num_steps, batch_size), got shape "
            f"{jnp.shape(batch_indices)}"
        )
    check_index_range(what, data, batch_indices)


def check_index_range(what: str, data, batch_indices) -> None:
    """Every leaf of the data is as long as the first (a gather would clamp the shorter's
    indices silently), and every (concrete) index lies within that length."""
    leaves = jax.tree_util.tree_leaves_with_path(data)
    if not leaves:
        raise ValueError(f"{what}: data holds no arrays")
    lengths = {"data" + jax.tree_util.keystr(path): (jnp.shape(leaf) or (None,))[0] for path, leaf in leaves}
    num_examples = next(iter(lengths.values()))
    if len(set(lengths.values())) > 1 or num_examples is None:
        raise ValueError(f"{what}: every array of the data must hold one row per example, but their lengths "
                         f"differ: " + ", ".join(f"{name} {length}" for name, length in lengths.items()))
    if is_concrete(batch_indices):
        indices = np.asarray(batch_indices)
        if indices.size and (indices.min() < 0 or indices.max() >= num_examples):
            bad = indices[(indices < 0) | (indices >= num_examples)].flat[0]
            raise ValueError(f"{what}: batch index {bad} is out of range for {num_examples} examples")


def check_like_params(what: str, params, vector) -> None:
    """``vector`` is a pytree of the structure and leaf shapes of ``params``."""
    if jax.tree.structure(params) != jax.tree.structure(vector):
        raise ValueError(
            f"{what}: vector has structure {jax.tree.structure(vector)} but params has "
            f"{jax.tree.structure(params)}; give vector the structure of params"
        )
    for (path, p), v in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(vector)):
        if jnp.shape(p) != jnp.shape(v):
            leaf = jax.tree_util.keystr(path)
            raise ValueError(
                f"{what}: vector{leaf} has shape {jnp.shape(v)} but params{leaf} has shape "
                f"{jnp.shape(p)}; each leaf of vector must have its param's shape"
            )


class NonFiniteLossError(FloatingPointError):
    """A training run's loss became NaN or inf; ``step`` is the first such step (0-based)."""

    def __init__(self, what: str, step: int, num_steps: int, loss: float, last_finite: float | None):
        self.step = step
        before = f"; the loss before it was {last_finite:.6g}" if last_finite is not None else ""
        super().__init__(
            f"{what}: the loss became {loss} at step {step} of {num_steps}{before}. The run "
            f"is reported, not continued: lower the learning rate or check the data"
        )


def check_losses(what: str, losses) -> None:
    """A run's losses (when concrete) are finite; else :class:`NonFiniteLossError` at the first bad step."""
    if not is_concrete(losses):
        return
    values = np.asarray(losses)
    step = first_nonfinite(values)
    if step is not None:
        last_finite = float(values[step - 1]) if step else None
        raise NonFiniteLossError(what, step, len(values), float(values[step]), last_finite)


def check_num_steps(what: str, num_steps) -> None:
    """A positive whole number of steps (a loop of none or fewer has nothing to return)."""
    if isinstance(num_steps, bool) or not isinstance(num_steps, (int, np.integer)) or num_steps < 1:
        raise ValueError(f"{what}: num_steps must be a positive integer, got {num_steps!r}")


# ---- arguments: hyperparameters and layer sizes, read as torch reads them ----

def real_number(what: str, name: str, value) -> float:
    """``value`` as a float: a Python, numpy or concrete 0-d JAX real number (not a bool)."""
    dtype = getattr(value, "dtype", None)
    is_real = (isinstance(value, (int, float)) and not isinstance(value, bool)) or (
        dtype is not None and np.ndim(value) == 0 and np.issubdtype(dtype, np.number)
        and not np.issubdtype(dtype, np.complexfloating))
    if not is_real:
        raise TypeError(f"{what}: {name} must be a real number, got {value!r}")
    return float(value)


def check_non_negative(what: str, **values) -> None:
    """Each value is a real number >= 0 (NaN refused), as torch's optimizers require. A
    schedule (a function of the step) and a traced value pass: neither has a number yet."""
    for name, value in values.items():
        if callable(value) or not is_concrete(value):
            continue
        number = real_number(what, name, value)
        if not number >= 0:
            raise ValueError(f"{what}: {name} must be >= 0, got {value!r}")


def check_betas(what: str, betas) -> tuple[float, float]:
    """Adam's ``betas``: a pair of numbers in [0, 1), as torch requires."""
    if not isinstance(betas, (tuple, list)) or len(betas) != 2:
        raise ValueError(f"{what}: betas must be a pair (beta1, beta2), got {betas!r}")
    pair = tuple(real_number(what, f"betas[{i}]", beta) for i, beta in enumerate(betas))
    for i, beta in enumerate(pair):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"{what}: betas[{i}] must lie in [0, 1), got {betas[i]!r}")
    return pair


def is_int(value) -> bool:
    """A Python or numpy integer, not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def check_positive_int(what: str, name: str, value) -> None:
    """An int > 0, or a tuple of them (a kernel size, a stride...)."""
    values = value if isinstance(value, tuple) else (value,)
    if not values or not all(is_int(v) and v > 0 for v in values):
        raise ValueError(f"{what}: {name} must be a positive int, got {value!r}")


def int_pair(what: str, name: str, value) -> tuple[int, int]:
    """An int or a pair of ints, as torch's ``_pair`` reads ``kernel_size``, ``stride``..."""
    pair = tuple(value) if isinstance(value, (tuple, list)) else (value, value)
    if len(pair) != 2 or not all(is_int(v) for v in pair):
        raise TypeError(f"{what}: {name} must be an int or a pair of ints, got {value!r}")
    return tuple(int(v) for v in pair)


def check_probability(what: str, p) -> None:
    """A dropout probability in [0, 1], as torch requires."""
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{what}: dropout probability has to be between 0 and 1, but got {p}")
