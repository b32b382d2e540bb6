"""Specification of funcgrad.metrics: torch's argmax on ties, and accuracy as a fraction."""

import re

import jax.numpy as jnp
import numpy as np
import pytest
import torch

import funcgrad as fg

TIED_LOGITS = np.array([
    [1.0, 3.0, 3.0],    # tie between 1 and 2
    [2.0, 2.0, 2.0],    # all tied
    [0.0, -1.0, 0.0],   # tie between 0 and 2
    [-5.0, -4.0, -4.5],
], np.float32)


def test_predict_classes_takes_the_first_index_on_ties_like_torch_argmax():
    classes = fg.predict_classes(jnp.asarray(TIED_LOGITS))
    np.testing.assert_array_equal(classes, [1, 0, 0, 1])
    np.testing.assert_array_equal(classes, torch.from_numpy(TIED_LOGITS).argmax(dim=1).numpy())


def test_predict_classes_reduces_the_last_axis():
    assert fg.predict_classes(jnp.zeros((2, 5, 3))).shape == (2, 5)


@pytest.mark.parametrize("labels, expected", [
    ([1, 0, 0, 1], 1.0),
    ([2, 0, 2, 1], 0.5),    # the later index of a tie is not the prediction
    ([0, 1, 1, 0], 0.0),
])
def test_accuracy_is_the_fraction_of_rows_predicted_right(labels, expected):
    value = fg.accuracy(jnp.asarray(TIED_LOGITS), jnp.array(labels))
    assert value.dtype == jnp.float32
    assert float(value) == expected


@pytest.mark.parametrize("labels_shape", [(4, 1), (3,), ()], ids=["column", "too-few", "scalar"])
def test_accuracy_names_both_shapes_on_mismatch(labels_shape):
    pattern = re.escape("logits have shape (4, 3) and labels ") + re.escape(str(labels_shape))
    with pytest.raises(ValueError, match=pattern):
        fg.accuracy(jnp.asarray(TIED_LOGITS), jnp.zeros(labels_shape, jnp.int32))
