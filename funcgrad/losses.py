"""Losses with PyTorch's semantics: ``reduction`` is ``"mean"`` (torch's default), ``"sum"`` or ``"none"``.

Each checks shapes and dtypes (always, also while tracing) and values (NaN/inf, label and
probability ranges: only when called outside ``jit``, where values are concrete) at the
boundary, so a compiled training loop carries no checks. float16/bfloat16 are refused.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.custom_derivatives import SymbolicZero

from funcgrad import _checks

# torch clamps each log term of binary_cross_entropy at -100 and the denominator of its
# gradient at 1e-12, so probabilities of exactly 0 or 1 still give finite numbers.
_BCE_LOG_CLAMP = -100.0
# torch's EPSILON is a C++ float: in float64 it is 9.99999996e-13, not 1e-12, which moves the
# edge gradient (p - y) / EPSILON by 4e-9 relative. Use the same float32-rounded constant.
_BCE_GRAD_EPSILON = float(np.float32(1e-12))
_REDUCTIONS = {"mean": jnp.mean, "sum": jnp.sum, "none": lambda values: values}


def _check_reduction(what: str, reduction: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{what}: reduction must be one of {list(_REDUCTIONS)}, got {reduction!r}")


def _reduce(what: str, values: jax.Array, reduction: str) -> jax.Array:
    _check_reduction(what, reduction)
    return _REDUCTIONS[reduction](values)


def mse_loss(predictions: jax.Array, targets: jax.Array, reduction: str = "mean") -> jax.Array:
    """Mean squared error, as ``nn.MSELoss()``.

    Unlike torch (which warns and broadcasts), differing shapes are an error.

    >>> mse_loss(jnp.array([[1.0], [2.0]]), jnp.array([[1.0], [4.0]]))
    Array(2., dtype=float32)
    """
    what = "mse_loss"
    _checks.check_float_pair(what, predictions, targets, "predictions")
    return _reduce(what, optax.squared_error(predictions, targets), reduction)


@jax.custom_jvp
def _binary_cross_entropy_elementwise(probs, targets):
    log_p = jnp.maximum(jnp.log(probs), _BCE_LOG_CLAMP)
    log_not_p = jnp.maximum(jnp.log1p(-probs), _BCE_LOG_CLAMP)
    return (targets - 1) * log_not_p - targets * log_p


def _binary_cross_entropy_jvp(primals, tangents):
    # torch's backward formula, not the derivative of the clamped expression: at p = 0
    # or 1 the clamp has zero slope, while torch returns (p - y) / EPSILON.
    probs, targets = primals
    probs_dot, targets_dot = tangents
    loss = _binary_cross_entropy_elementwise(probs, targets)
    tangent = jnp.zeros_like(loss)
    if not isinstance(probs_dot, SymbolicZero):
        tangent += (probs - targets) / jnp.maximum((1 - probs) * probs, _BCE_GRAD_EPSILON) * probs_dot
    # At p = 0 or 1 the targets' derivative is ±inf: a target that does not move must add
    # nothing (not inf * 0 = NaN), so its term is left out when its tangent is a symbolic zero.
    if not isinstance(targets_dot, SymbolicZero):
        tangent += (jnp.log1p(-probs) - jnp.log(probs)) * targets_dot
    return loss, tangent


_binary_cross_entropy_elementwise.defjvp(_binary_cross_entropy_jvp, symbolic_zeros=True)


def binary_cross_entropy(probs: jax.Array, targets: jax.Array, reduction: str = "mean") -> jax.Array:
    """Binary cross-entropy on probabilities, as ``F.binary_cross_entropy`` / ``nn.BCELoss()``.

    Reproduces torch's clamp of each log term at -100 (so p = 0 with y = 1 costs 100.0,
    not inf) and torch's gradient formula at the edges.

    >>> binary_cross_entropy(jnp.array([0.9569]), jnp.array([1.0]))
    Array(0.04404..., dtype=float32)
    """
    what = "binary_cross_entropy"
    _checks.check_float_pair(what, probs, targets, "probs")
    _checks.check_in_unit_interval(what, probs, "probs")
    _checks.check_in_unit_interval(what, targets, "targets")
    return _reduce(what, _binary_cross_entropy_elementwise(probs, targets), reduction)


def bce_with_logits(logits: jax.Array, targets: jax.Array, reduction: str = "mean") -> jax.Array:
    """Sigmoid + binary cross-entropy in one stable step, as ``nn.BCEWithLogitsLoss()``.

    Stricter than torch, which accepts any real target: targets must lie in [0, 1].

    >>> bce_with_logits(jnp.array([[3.1]]), jnp.array([[1.0]]))
    Array(0.04406..., dtype=float32)
    """
    what = "bce_with_logits"
    _checks.check_float_pair(what, logits, targets, "logits")
    _checks.check_in_unit_interval(what, targets, "targets")
    return _reduce(what, optax.sigmoid_binary_cross_entropy(logits, targets), reduction)


def cross_entropy(
    logits: jax.Array,
    labels: jax.Array,
    reduction: str = "mean",
    *,
    weight: jax.Array | None = None,
    ignore_index: int = -100,
    label_smoothing: float = 0.0,
) -> jax.Array:
    """Softmax cross-entropy with integer class labels, as ``nn.CrossEntropyLoss()``.

    ``logits`` is ``(N, C)``, ``labels`` is ``(N,)`` of ints in ``0..C-1`` or
    ``ignore_index``. torch's keyword arguments mean what they mean there:

    - ``weight`` ``(C,)``: sample ``i`` counts ``weight[labels[i]]`` times, and ``"mean"``
      divides by the summed weights of the kept labels, not by N;
    - ``ignore_index`` (default -100): those samples add 0 and leave the mean's
      denominator (all ignored gives NaN, 0/0, as in torch);
    - ``label_smoothing`` ε in [0, 1]: ``(1 - ε) * nll + ε / C * smooth``, where ``smooth``
      is ``-Σ_c weight[c] log p_c``, reduced over the kept samples the same way.

    Any other label out of range raises (torch raises too; a plain gather would clamp it
    silently). Probability targets (torch's float ``target``) are not supported.

    >>> cross_entropy(jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0]))
    Array(0.16984..., dtype=float32)
    >>> cross_entropy(logits, labels, weight=jnp.array([1.0, 2.0, 0.5]), label_smoothing=0.1)
    """
    what = "cross_entropy"
    _checks.check_labels_match_logits(what, logits, labels)
    num_classes = jnp.shape(logits)[-1]
    _checks.check_float_input(what, logits, "logits")
    _checks.check_class_labels(what, labels, num_classes, ignore_index)
    _check_reduction(what, reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"{what}: label_smoothing must lie in [0, 1], got {label_smoothing}")
    if weight is not None:
        if jnp.shape(weight) != (num_classes,):
            raise ValueError(
                f"{what}: weight has shape {jnp.shape(weight)}; it needs one entry per class, "
                f"({num_classes},)"
            )
        _checks.check_float_input(what, weight, "weight")
    # torch's form: pick the label from log_softmax, which stays shifted by the max logit.
    # optax (0.2.8) returns logsumexp(logits) - logits[label]: at logits (1e4, 1e4) the
    # normaliser 1e4 + log 2 is rounded to float32's spacing at 1e4 (1e-3) before the
    # subtraction, giving 0.69336 for log 2 = 0.69315.
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    kept = labels != ignore_index
    safe_labels = jnp.where(kept, labels, 0)
    picked = jnp.squeeze(jnp.take_along_axis(log_probs, jnp.expand_dims(safe_labels, -1), axis=-1), -1)
    class_weight = None if weight is None else jnp.asarray(weight, log_probs.dtype)
    sample_weight = None if weight is None else jnp.where(kept, class_weight[safe_labels], 0.0)
    # Masked with where, not a product: an ignored sample passes no gradient at all (torch's
    # backward skips it), not 0 * inf = NaN when every sample is ignored.
    nll = jnp.where(kept, -picked if weight is None else -picked * sample_weight, 0.0)
    loss = _reduce_as_torch(nll, kept, sample_weight, reduction)
    if label_smoothing == 0.0:
        return loss
    class_weighted = log_probs if weight is None else log_probs * class_weight
    smooth = jnp.where(kept, -jnp.sum(class_weighted, axis=-1), 0.0)
    smooth = _reduce_as_torch(smooth, kept, sample_weight, reduction)
    return (1 - label_smoothing) * loss + smooth * (label_smoothing / num_classes)


def _reduce_as_torch(values, kept, sample_weight, reduction):
    """``nll_loss``'s reductions: ``"mean"`` divides by the kept samples' summed weights
    (their count when ``sample_weight`` is None: no class weights). With nothing kept it is 0/0, NaN as in torch; the gradient
    stays 0 there, as torch's, since ignored samples are masked with ``where``."""
    if reduction == "none":
        return values
    if reduction == "sum":
        return jnp.sum(values)
    if sample_weight is None:
        # jnp.mean times N / kept: exactly jnp.mean (value and gradient) when nothing is ignored.
        return jnp.mean(values) * (values.size / jnp.sum(kept))
    return jnp.sum(values) / jnp.sum(sample_weight)
