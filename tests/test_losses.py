"""Specification of funcgrad.losses: torch's values and gradients, edges included, and clear errors."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch.nn.functional as F
from jax.test_util import check_grads

import funcgrad as fg
from tests.helpers_torch import DTYPES, TOLERANCES, jax_precision, to_torch

# name: (funcgrad loss, torch twin, the arguments both differentiate)
LOSSES = {
    "mse_loss": (fg.mse_loss, F.mse_loss, (0, 1)),
    "binary_cross_entropy": (fg.binary_cross_entropy, F.binary_cross_entropy, (0, 1)),
    "bce_with_logits": (fg.bce_with_logits, F.binary_cross_entropy_with_logits, (0, 1)),
    "cross_entropy": (fg.cross_entropy, F.cross_entropy, (0,)),
}
ELEMENTWISE_LOSSES = ["mse_loss", "binary_cross_entropy", "bce_with_logits"]
EAGER_AND_JIT = pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])


def interior_inputs(name: str, dtype, seed: int = 0, low: float = 0.05, high: float = 0.95):
    """Random arguments away from any edge: probabilities and targets inside [low, high]."""
    rng = np.random.default_rng(seed)
    if name == "mse_loss":
        return rng.standard_normal((16, 3)).astype(dtype), rng.standard_normal((16, 3)).astype(dtype)
    targets = rng.uniform(low, high, (16, 1)).astype(dtype)
    if name == "binary_cross_entropy":
        return rng.uniform(low, high, (16, 1)).astype(dtype), targets
    if name == "bce_with_logits":
        return (3 * rng.standard_normal((16, 1))).astype(dtype), targets
    return (3 * rng.standard_normal((16, 5))).astype(dtype), rng.integers(0, 5, 16)


def jax_value_and_grads(name: str, first: np.ndarray, second: np.ndarray):
    loss, _, argnums = LOSSES[name]
    return jax.value_and_grad(loss, argnums)(jnp.asarray(first), jnp.asarray(second))


def torch_value_and_grads(name: str, first: np.ndarray, second: np.ndarray):
    _, twin, argnums = LOSSES[name]
    tensors = [to_torch(arg, requires_grad=i in argnums) for i, arg in enumerate((first, second))]
    value = twin(*tensors)
    value.backward()
    return value.detach().numpy(), tuple(tensors[i].grad.numpy() for i in argnums)


def assert_matches_torch(name: str, first: np.ndarray, second: np.ndarray, dtype):
    value, grads = jax_value_and_grads(name, first, second)
    expected_value, expected_grads = torch_value_and_grads(name, first, second)
    assert value.dtype == dtype
    np.testing.assert_allclose(value, expected_value, **TOLERANCES[dtype], err_msg=f"{name} value")
    for argnum, grad, expected in zip(LOSSES[name][2], grads, expected_grads):
        assert grad.dtype == dtype
        np.testing.assert_allclose(grad, expected, **TOLERANCES[dtype], err_msg=f"{name} grad of arg {argnum}")


@DTYPES
@pytest.mark.parametrize("name", LOSSES)
def test_loss_value_and_gradients_match_torch(name, dtype):
    with jax_precision(dtype):
        assert_matches_torch(name, *interior_inputs(name, dtype), dtype)


@pytest.mark.parametrize("name", LOSSES)
def test_loss_gradients_pass_check_grads_to_second_order(name):
    """Finite differences need float64: in float32 they sit at check_grads' tolerance. Jitted,
    as eager dispatch would compile every primitive of every derivative separately."""
    first, second = interior_inputs(name, np.float64, low=0.2, high=0.8)
    with jax.enable_x64(True):
        if name == "cross_entropy":  # integer labels have no derivative
            loss = functools.partial(fg.cross_entropy, labels=jnp.asarray(second))
            args = (jnp.asarray(first),)
        else:
            loss, args = LOSSES[name][0], (jnp.asarray(first), jnp.asarray(second))
        check_grads(jax.jit(loss), args, order=2, modes=["fwd", "rev"])


# Probabilities of exactly 0 and 1, with either target and with one in between.
SATURATED_PROBS = np.array([0.0, 0.0, 1.0, 1.0, 0.0, 1.0])
SATURATED_TARGETS = np.array([1.0, 0.0, 0.0, 1.0, 0.3, 0.7])


@DTYPES
@pytest.mark.parametrize("probs, targets", [(0.0, 1.0), (1.0, 0.0)])
def test_binary_cross_entropy_clamps_each_log_at_minus_100_like_torch(probs, targets, dtype):
    probs, targets = np.array([probs], dtype), np.array([targets], dtype)
    with jax_precision(dtype):
        loss = fg.binary_cross_entropy(jnp.asarray(probs), jnp.asarray(targets))
    assert float(loss) == 100.0
    assert float(loss) == F.binary_cross_entropy(to_torch(probs), to_torch(targets)).item()


@DTYPES
def test_binary_cross_entropy_matches_torch_at_saturated_probabilities(dtype):
    probs, targets = SATURATED_PROBS.astype(dtype), SATURATED_TARGETS.astype(dtype)
    with jax_precision(dtype):
        value, _ = jax_value_and_grads("binary_cross_entropy", probs, targets)
    expected, _ = torch_value_and_grads("binary_cross_entropy", probs, targets)
    assert np.isfinite(value)
    np.testing.assert_allclose(value, expected, **TOLERANCES[dtype])


@DTYPES
def test_binary_cross_entropy_gradient_matches_torch_at_saturated_probabilities(dtype):
    """torch's gradient there is (p - y) / EPSILON, not the clamp's slope of zero, with EPSILON
    a C++ float (9.99999996e-13 in float64 too); the targets' gradient, log(1 - p) - log(p),
    is infinite in both frameworks."""
    probs, targets = SATURATED_PROBS.astype(dtype), SATURATED_TARGETS.astype(dtype)
    with jax_precision(dtype):
        assert_matches_torch("binary_cross_entropy", probs, targets, dtype)


def test_binary_cross_entropy_forward_mode_gradient_matches_torch_at_saturated_probabilities():
    probs, targets = SATURATED_PROBS.astype(np.float32), SATURATED_TARGETS.astype(np.float32)
    jacobian = jax.jacfwd(fg.binary_cross_entropy)(jnp.asarray(probs), jnp.asarray(targets))
    _, (expected, _) = torch_value_and_grads("binary_cross_entropy", probs, targets)
    np.testing.assert_allclose(jacobian, expected, **TOLERANCES[np.float32])


EXTREME_LOGITS = [1e4, -1e4, 88.0, -88.0]


@DTYPES
def test_bce_with_logits_matches_torch_on_extreme_logits(dtype):
    logits = np.repeat(EXTREME_LOGITS, 3).astype(dtype)
    targets = np.tile([0.0, 1.0, 0.3], len(EXTREME_LOGITS)).astype(dtype)
    with jax_precision(dtype):
        value, grads = jax_value_and_grads("bce_with_logits", logits, targets)
        assert np.isfinite(value) and all(np.all(np.isfinite(grad)) for grad in grads)
        assert_matches_torch("bce_with_logits", logits, targets, dtype)


@DTYPES
@pytest.mark.parametrize("scale", [1e4, 88.0])
def test_cross_entropy_matches_torch_on_extreme_logits(scale, dtype):
    directions = np.array([[1.0, -1.0, 0.0], [-1.0, 1.0, 0.0], [1.0, -1.0, 0.0], [-1.0, -1.0, 1.0]])
    logits, labels = (scale * directions).astype(dtype), np.array([1, 1, 0, 2])
    with jax_precision(dtype):
        value, (grad,) = jax_value_and_grads("cross_entropy", logits, labels)
        assert np.isfinite(value) and np.all(np.isfinite(grad))
        assert_matches_torch("cross_entropy", logits, labels, dtype)


@EAGER_AND_JIT
@pytest.mark.parametrize("name", ELEMENTWISE_LOSSES)
def test_loss_names_both_shapes_when_a_flat_target_would_broadcast(name, transform):
    loss = transform(LOSSES[name][0])
    with pytest.raises(ValueError, match=re.escape("(4, 1)") + ".*" + re.escape("(4,)")):
        loss(jnp.full((4, 1), 0.5), jnp.full((4,), 0.5))


@EAGER_AND_JIT
def test_cross_entropy_names_both_shapes_when_labels_keep_a_class_axis(transform):
    with pytest.raises(ValueError, match=re.escape("(4, 3)") + ".*" + re.escape("(4, 1)")):
        transform(fg.cross_entropy)(jnp.zeros((4, 3)), jnp.zeros((4, 1), jnp.int32))


@pytest.mark.parametrize("bad_label", [3, -1])
def test_cross_entropy_names_the_label_out_of_range(bad_label):
    with pytest.raises(ValueError, match=rf"label {bad_label} is out of range for 3 classes"):
        fg.cross_entropy(jnp.zeros((2, 3)), jnp.array([0, bad_label]))


@EAGER_AND_JIT
def test_cross_entropy_rejects_float_labels(transform):
    with pytest.raises(TypeError, match="labels must be integer class indices, got dtype float32"):
        transform(fg.cross_entropy)(jnp.zeros((2, 3)), jnp.array([0.0, 1.0]))


@pytest.mark.parametrize("name, first, targets, found", [
    ("binary_cross_entropy", [0.5, 1.5], [0.0, 1.0], "1.5"),
    ("binary_cross_entropy", [-0.25, 0.5], [0.0, 1.0], "-0.25"),
    ("binary_cross_entropy", [0.5, 0.5], [0.0, 2.0], "2.0"),
    ("bce_with_logits", [3.0, -3.0], [0.0, -0.5], "-0.5"),
], ids=["prob-above-one", "prob-below-zero", "target-above-one", "logits-target-below-zero"])
def test_loss_names_the_value_outside_the_unit_interval(name, first, targets, found):
    with pytest.raises(ValueError, match=rf"must lie in \[0, 1\], found {found}$"):
        LOSSES[name][0](jnp.array(first), jnp.array(targets))


@EAGER_AND_JIT
@pytest.mark.parametrize("name", LOSSES)
def test_loss_computes_the_same_value_under_jit(name, transform):
    first, second = interior_inputs(name, np.float32, seed=1)
    expected, _ = torch_value_and_grads(name, first, second)
    value = transform(LOSSES[name][0])(jnp.asarray(first), jnp.asarray(second))
    np.testing.assert_allclose(value, expected, **TOLERANCES[np.float32])


@pytest.mark.parametrize("name, first, second", [
    ("binary_cross_entropy", jnp.array([0.5, 1.5]), jnp.array([0.0, 1.0])),
    ("cross_entropy", jnp.zeros((2, 3)), jnp.array([0, 3])),
], ids=["prob-above-one", "label-out-of-range"])
def test_value_checks_are_skipped_under_jit(name, first, second):
    """Values are tracers inside jit: only shapes and dtypes can be checked there."""
    value = jax.jit(LOSSES[name][0])(first, second)
    assert value.shape == ()


@pytest.mark.parametrize("half", [jnp.float16, jnp.bfloat16], ids=["float16", "bfloat16"])
def test_half_precision_is_refused_with_the_dtype_named(half):
    logits = jnp.zeros((2, 3), half)
    with pytest.raises(TypeError, match=f"logits has dtype {jnp.dtype(half).name}; funcgrad computes in float32 or float64"):
        fg.cross_entropy(logits, jnp.array([0, 1]))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_loss_input_is_refused_with_its_index(bad):
    predictions = np.ones((3, 1), np.float32)
    predictions[1, 0] = bad
    with pytest.raises(ValueError, match=rf"mse_loss: predictions holds 1 non-finite value\(s\); the first is {bad} at index \(1, 0\)"):
        fg.mse_loss(predictions, np.ones((3, 1), np.float32))


def test_unknown_reduction_is_refused():
    with pytest.raises(ValueError, match=r"reduction must be one of \['mean', 'sum', 'none'\], got 'avg'"):
        fg.bce_with_logits(jnp.zeros(2), jnp.zeros(2), reduction="avg")


@pytest.mark.parametrize("reduction", ["sum", "none"])
def test_reductions_match_torch(reduction):
    logits = np.array([[2.0, -1.0, 0.5], [1e4, -1e4, 3.0]], np.float32)
    labels = np.array([2, 0])
    expected = F.cross_entropy(to_torch(logits), to_torch(labels), reduction=reduction)
    np.testing.assert_allclose(fg.cross_entropy(logits, labels, reduction=reduction), expected.numpy(), rtol=1.3e-6, atol=1e-5)
