"""Losses with PyTorch's semantics and its default ``reduction="mean"``.

Each checks shapes (always) and value ranges (when called outside ``jit``) at the
boundary, so a compiled training loop carries no checks.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax

from funcgrad import _checks

# torch clamps each log term of binary_cross_entropy at -100 and the denominator of its
# gradient at 1e-12, so probabilities of exactly 0 or 1 still give finite numbers.
_BCE_LOG_CLAMP = -100.0
_BCE_GRAD_EPSILON = 1e-12


def mse_loss(predictions: jax.Array, targets: jax.Array) -> jax.Array:
    """Mean squared error, as ``nn.MSELoss()``.

    Unlike torch (which warns and broadcasts), differing shapes are an error.

    >>> mse_loss(jnp.array([[1.0], [2.0]]), jnp.array([[1.0], [4.0]]))
    Array(2., dtype=float32)
    """
    _checks.check_same_shape("mse_loss", predictions, targets, "predictions", "targets")
    return jnp.mean(optax.squared_error(predictions, targets))


@jax.custom_jvp
def _binary_cross_entropy_elementwise(probs, targets):
    log_p = jnp.maximum(jnp.log(probs), _BCE_LOG_CLAMP)
    log_not_p = jnp.maximum(jnp.log1p(-probs), _BCE_LOG_CLAMP)
    return (targets - 1) * log_not_p - targets * log_p


@_binary_cross_entropy_elementwise.defjvp
def _binary_cross_entropy_jvp(primals, tangents):
    # torch's backward formula, not the derivative of the clamped expression: at p = 0
    # or 1 the clamp has zero slope, while torch returns (p - y) / 1e-12.
    probs, targets = primals
    probs_dot, targets_dot = tangents
    d_probs = (probs - targets) / jnp.maximum((1 - probs) * probs, _BCE_GRAD_EPSILON)
    d_targets = jnp.log1p(-probs) - jnp.log(probs)
    loss = _binary_cross_entropy_elementwise(probs, targets)
    return loss, d_probs * probs_dot + d_targets * targets_dot


def binary_cross_entropy(probs: jax.Array, targets: jax.Array) -> jax.Array:
    """Binary cross-entropy on probabilities, as ``F.binary_cross_entropy`` / ``nn.BCELoss()``.

    Reproduces torch's clamp of each log term at -100 (so p = 0 with y = 1 costs 100.0,
    not inf) and torch's gradient formula at the edges.

    >>> binary_cross_entropy(jnp.array([0.9569]), jnp.array([1.0]))
    Array(0.04404..., dtype=float32)
    """
    what = "binary_cross_entropy"
    _checks.check_same_shape(what, probs, targets, "probs", "targets")
    _checks.check_in_unit_interval(what, probs, "probs")
    _checks.check_in_unit_interval(what, targets, "targets")
    return jnp.mean(_binary_cross_entropy_elementwise(probs, targets))


def bce_with_logits(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Sigmoid + binary cross-entropy in one stable step, as ``nn.BCEWithLogitsLoss()``.

    >>> bce_with_logits(jnp.array([[3.1]]), jnp.array([[1.0]]))
    Array(0.04406..., dtype=float32)
    """
    what = "bce_with_logits"
    _checks.check_same_shape(what, logits, targets, "logits", "targets")
    _checks.check_in_unit_interval(what, targets, "targets")
    return jnp.mean(optax.sigmoid_binary_cross_entropy(logits, targets))


def cross_entropy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Softmax cross-entropy with integer class labels, as ``nn.CrossEntropyLoss()``.

    ``logits`` is ``(N, C)``, ``labels`` is ``(N,)`` of ints in ``0..C-1``. A label out
    of range raises (torch raises too; optax alone would return NaN for that row).

    >>> cross_entropy(jnp.array([[2.0, 0.0, -1.0]]), jnp.array([0]))
    Array(0.16984..., dtype=float32)
    """
    what = "cross_entropy"
    if jnp.ndim(logits) < 1 or jnp.shape(labels) != jnp.shape(logits)[:-1]:
        raise ValueError(
            f"{what}: logits have shape {jnp.shape(logits)} and labels {jnp.shape(labels)}; "
            f"labels must have the logits' shape without the class axis, "
            f"{jnp.shape(logits)[:-1]}"
        )
    _checks.check_class_labels(what, labels, jnp.shape(logits)[-1])
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))
