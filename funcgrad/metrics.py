"""Predictions and accuracy from model outputs."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcgrad import _checks


def predict_classes(logits: jax.Array) -> jax.Array:
    """Index of the largest logit per row, as ``logits.argmax(dim=1)`` (first index on ties).

    >>> predict_classes(jnp.array([[0.1, 2.0, -1.0]]))
    Array([1], dtype=int32)
    """
    _checks.check_float_leaves("predict_classes", logits, "logits")
    return jnp.argmax(logits, axis=-1)


def accuracy(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """Fraction of rows whose predicted class equals the label.

    >>> accuracy(jnp.array([[0.1, 2.0], [3.0, 1.0]]), jnp.array([1, 1]))
    Array(0.5, dtype=float32)
    """
    _checks.check_float_leaves("accuracy", logits, "logits")
    _checks.check_labels_match_logits("accuracy", logits, labels)
    return jnp.mean(predict_classes(logits) == labels, dtype=jnp.result_type(float))
