"""Property-based parity: every funcgrad loss, its gradient and one SGD step against PyTorch.

Hypothesis draws shapes, values (ordinary, huge, tiny and exactly-0/1 edges), dtypes and
reductions. Examples that once failed stay pinned with ``@example``. Tolerances are
torch.testing.assert_close's per-dtype defaults, element by element. A loss with the right
value and a doubled or sign-flipped gradient must fail the same check.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import funcgrad as fg
from funcgrad.parity import TOLERANCES

EXAMPLES = 260  # per test: 4 tests, over 1000 drawn cases in all


def floats(low, high, dtype):
    # No subnormals: XLA flushes them to zero on CPU (and GPU) while torch keeps them, so a
    # probability of 1e-40 is 0 to funcgrad. test_subnormal_probabilities_are_zero_to_xla
    # pins that documented difference.
    return st.floats(low, high, width=np.finfo(dtype).bits, allow_subnormal=False)
EXTREME = [1e4, -1e4, 88.0, -88.0, 1e-8, -1e-8, 0.0]
DTYPES = st.sampled_from([np.float32, np.float64])
REDUCTIONS = st.sampled_from(["mean", "sum", "none"])
SHAPES = [(1, 1), (3, 2), (8, 4)]
TORCH_LOSSES = {
    "mse": F.mse_loss,
    "bce": F.binary_cross_entropy,
    "bce_with_logits": F.binary_cross_entropy_with_logits,
}
FUNCGRAD_LOSSES = {"mse": fg.mse_loss, "bce": fg.binary_cross_entropy, "bce_with_logits": fg.bce_with_logits}


def assert_matches_torch(jax_value, torch_value, dtype, reference=None):
    """assert_close's tolerances, element by element; in float32 with a ``reference`` (torch
    in float64 from the same inputs), an element may match either of torch's two results.

    That is for where torch's float32 is the inaccurate side: BCEWithLogits at logit -1e4
    with target 6e-8 is 1e4 * 6e-8 = 5.96e-4; torch's (1 - y) * x rounds at 1e4's spacing
    and returns 9.77e-4, funcgrad (optax) 5.96e-4. Each element is held to its own
    tolerance, so a huge or infinite gradient at p = 0 or 1 loosens no other element; a
    non-finite element must be torch's, sign included."""
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    ours, theirs = np.asarray(jax_value), torch_value.detach().numpy()
    assert ours.shape == theirs.shape, f"shapes differ: jax {ours.shape}, torch {theirs.shape}"
    matches = np.isclose(ours, theirs, rtol=rtol, atol=atol, equal_nan=True)
    ref = None
    if reference is not None and dtype == np.float32:
        ref = reference.detach().numpy()
        matches |= np.isfinite(theirs) & np.isfinite(ref) & np.isclose(ours, ref, rtol=rtol, atol=atol)
    off = ~matches
    assert not off.any(), (
        f"{off.sum()} of {off.size} elements outside |jax - torch| <= {atol:g} + {rtol:g} |torch|"
        + ("" if ref is None else " (or of torch's float64)")
        + f": jax {ours[off]}, torch {theirs[off]}" + ("" if ref is None else f", float64 {ref[off]}")
    )


@functools.partial(jax.jit, static_argnames=("loss_fn", "reduction", "argnums"))
def value_and_grads(loss_fn, inputs, targets, reduction, argnums=(0, 1)):
    """Loss and its gradient w.r.t. ``argnums`` (summed first if unreduced).

    Compiled once per shape, dtype and reduction: the draws below come from a few shapes,
    so a thousand examples cost a few dozen compilations, not thousands of eager traces.
    """
    def total(*xs):
        return jnp.sum(loss_fn(*xs, reduction=reduction))
    return loss_fn(inputs, targets, reduction=reduction), jax.grad(total, argnums=argnums)(inputs, targets)


def torch_value_and_grads(loss_fn, *args, reduction):
    tensors = [torch.tensor(a, requires_grad=np.issubdtype(a.dtype, np.floating)) for a in args]
    value = loss_fn(*tensors, reduction=reduction)
    value.sum().backward()
    return value, tuple(t.grad for t in tensors if t.requires_grad)


def check_loss(name, inputs, targets, dtype, reduction, losses=FUNCGRAD_LOSSES):
    with jax.enable_x64(dtype == np.float64):
        value, grads = value_and_grads(losses[name], inputs, targets, reduction)
        torch_value, torch_grads = torch_value_and_grads(TORCH_LOSSES[name], inputs, targets, reduction=reduction)
        ref_value, ref_grads = torch_value_and_grads(TORCH_LOSSES[name], inputs.astype(np.float64),
                                                     targets.astype(np.float64), reduction=reduction)
        assert_matches_torch(value, torch_value, dtype, ref_value)
        for grad, torch_grad, ref_grad in zip(grads, torch_grads, ref_grads):
            assert_matches_torch(grad, torch_grad, dtype, ref_grad)


@st.composite
def elementwise_loss_inputs(draw):
    dtype = draw(DTYPES)
    shape = draw(st.sampled_from(SHAPES))
    name = draw(st.sampled_from(list(FUNCGRAD_LOSSES)))
    if name == "bce":
        edges = st.sampled_from([0.0, 1.0, 1e-7, 1 - 1e-7])
        values = st.one_of(floats(0.0, 1.0, dtype), edges)
    elif name == "mse":
        values = floats(-1e3, 1e3, dtype)
    else:
        values = st.one_of(floats(-100.0, 100.0, dtype), st.sampled_from(EXTREME))
    inputs = draw(arrays(dtype, shape, elements=values))
    targets = draw(arrays(dtype, shape, elements=floats(-1e3, 1e3, dtype) if name == "mse" else floats(0.0, 1.0, dtype)))
    return name, inputs, targets, dtype, draw(REDUCTIONS)


# BCE at its edges: dL/dp is (p - y) / 1e-12 at p = 0 or 1 (+-1e12, or 0 where y = p), dL/dy
# is log1p(-p) - log(p) (+-inf), beside ordinary elements that must still match on their own.
BCE_EDGES = ("bce", np.array([[0.0, 1.0], [0.5, 0.25], [1e-7, 1.0]], np.float32),
             np.array([[1.0, 0.0], [0.25, 1.0], [0.0, 0.5]], np.float32), np.float32, "sum")
# p = y: dL/dp is 0 throughout, so dL/dy alone can show a wrong gradient, and its +-inf at
# p = 0 and 1 must not loosen its finite elements (log(3) / 6 at p = 0.25).
P_IS_Y = np.array([[0.0, 1.0], [0.25, 0.75], [0.1, 0.9]], np.float32)
BCE_EDGES_WHERE_P_IS_Y = ("bce", P_IS_Y, P_IS_Y, np.float32, "mean")


@settings(max_examples=EXAMPLES, deadline=None)
@given(elementwise_loss_inputs())
# torch's BCE gradient at p = 0 divides by a float32 EPSILON even in float64.
@example(("bce", np.array([[0.0]]), np.array([[1.0]]), np.float64, "mean"))
@example(BCE_EDGES)
@example(BCE_EDGES_WHERE_P_IS_Y)
# torch's float32 rounds (1 - y) * x at 1e4's spacing: 9.77e-4 where the loss is 5.96e-4.
@example(("bce_with_logits", np.array([[-1e4]], np.float32), np.array([[5.9604645e-08]], np.float32), np.float32, "mean"))
def test_elementwise_losses_and_gradients_match_torch(case):
    check_loss(*case)


# Wrong gradients with the right value: factor * f + (1 - factor) * stop_gradient(f) is f
# (2f - f and -f + 2f round to f exactly), and its gradient is factor times f's.
GRADIENT_FACTORS = {"doubled": 2.0, "sign-flipped": -1.0}


def with_gradient_times(loss_fn, factor):
    def loss(*args, reduction):
        value = loss_fn(*args, reduction=reduction)
        return factor * value + (1 - factor) * jax.lax.stop_gradient(value)
    return loss


# Built once: value_and_grads compiles per loss function, as for funcgrad's own.
WRONG_GRADIENT_LOSSES = {mutation: {name: with_gradient_times(loss_fn, factor) for name, loss_fn in FUNCGRAD_LOSSES.items()}
                         for mutation, factor in GRADIENT_FACTORS.items()}


@settings(max_examples=100, deadline=None)
@given(elementwise_loss_inputs(), st.sampled_from(list(GRADIENT_FACTORS)))
@example(("bce", np.array([[0.0]]), np.array([[1.0]]), np.float64, "mean"), "doubled")
@example(("bce", np.array([[1.0]], np.float32), np.array([[0.0]], np.float32), np.float32, "none"), "sign-flipped")
@example(BCE_EDGES, "doubled")
@example(BCE_EDGES, "sign-flipped")
@example(BCE_EDGES_WHERE_P_IS_Y, "doubled")
@example(BCE_EDGES_WHERE_P_IS_Y, "sign-flipped")
def test_the_check_fails_a_loss_whose_gradient_is_doubled_or_sign_flipped(case, mutation):
    name, inputs, targets, dtype, reduction = case
    factor = GRADIENT_FACTORS[mutation]
    rtol, atol = TOLERANCES[np.dtype(dtype)]
    _, torch_grads = torch_value_and_grads(TORCH_LOSSES[name], inputs, targets, reduction=reduction)
    # No check can see every wrong gradient: +-inf doubled is +-inf, 0 doubled or flipped is
    # 0, and an element within the tolerance's absolute term (sigmoid(-20) = 2e-9 < 1e-5)
    # moves by less than the tolerance. Wherever the wrong gradient moves a finite element
    # by more than the tolerance at it, the check must fail.
    assume(any(np.any(np.isfinite(g) & ~np.isclose(factor * g, g, rtol=rtol, atol=atol))
               for g in (grad.numpy() for grad in torch_grads)))
    with pytest.raises(AssertionError):
        check_loss(*case, losses=WRONG_GRADIENT_LOSSES[mutation])


@st.composite
def cross_entropy_inputs(draw):
    """Logits, labels (some at torch's ignore_index -100), and nn.CrossEntropyLoss's options."""
    dtype = draw(DTYPES)
    num_examples, num_classes = draw(st.sampled_from([(1, 2), (4, 3), (8, 6)]))
    values = st.one_of(floats(-100.0, 100.0, dtype), st.sampled_from(EXTREME))
    logits = draw(arrays(dtype, (num_examples, num_classes), elements=values))
    label_values = st.integers(0, num_classes - 1)
    if draw(st.booleans()):
        label_values = st.one_of(label_values, st.just(-100))
    labels = draw(arrays(np.int64, (num_examples,), elements=label_values))
    weight = draw(st.one_of(st.none(), arrays(dtype, (num_classes,), elements=floats(0.125, 8.0, dtype))))
    label_smoothing = draw(st.sampled_from([0.0, 0.0, 0.1, 0.5, 1.0]))
    return logits, labels, dtype, draw(REDUCTIONS), weight, label_smoothing


@functools.partial(jax.jit, static_argnames=("reduction", "label_smoothing"))
def cross_entropy_value_and_grad(logits, labels, weight, reduction, label_smoothing):
    def loss(logits):
        return fg.cross_entropy(logits, labels, reduction, weight=weight, label_smoothing=label_smoothing)
    return loss(logits), jax.grad(lambda x: jnp.sum(loss(x)))(logits)


@settings(max_examples=EXAMPLES, deadline=None)
@given(cross_entropy_inputs())
# Equal huge logits: optax's logsumexp - logit form loses log 2 to float32 rounding at 1e4.
@example((np.array([[1e4, 1e4]], np.float32), np.array([0]), np.float32, "mean", None, 0.0))
# Every label ignored: the mean is 0/0, NaN in both, as are its gradients.
@example((np.array([[1.0, 2.0]], np.float64), np.array([-100]), np.float64, "mean", None, 0.1))
def test_cross_entropy_and_gradient_match_torch(case):
    logits, labels, dtype, reduction, weight, label_smoothing = case
    with jax.enable_x64(dtype == np.float64):
        value, grad = cross_entropy_value_and_grad(logits, labels, weight, reduction, label_smoothing)
    torch_logits = torch.tensor(logits, requires_grad=True)
    torch_value = F.cross_entropy(torch_logits, torch.tensor(labels), reduction=reduction, label_smoothing=label_smoothing,
                                  weight=None if weight is None else torch.tensor(weight))
    torch_value.sum().backward()
    assert_matches_torch(value, torch_value, dtype)
    assert_matches_torch(grad, torch_logits.grad, dtype)


def linear_cross_entropy(params, batch):
    return fg.cross_entropy(fg.linear_apply(params, batch[0]), batch[1])


@functools.partial(jax.jit, static_argnames="momentum")
def two_sgd_steps(params, x, labels, lr, momentum):
    """Two steps, so that the second one uses the momentum buffer; lr is traced, not static."""
    optimizer = optax.sgd(lr, momentum=momentum or None)
    opt_state = optimizer.init(params)
    for _ in range(2):
        params, opt_state, _ = fg.train_step(linear_cross_entropy, optimizer, params, opt_state, (x, labels))
    return params


@st.composite
def sgd_step_inputs(draw):
    dtype = draw(DTYPES)
    num_examples, in_features, num_classes = draw(st.sampled_from([(1, 1, 2), (5, 3, 4), (16, 6, 3)]))
    x = draw(arrays(dtype, (num_examples, in_features), elements=floats(-10.0, 10.0, dtype)))
    labels = draw(arrays(np.int64, (num_examples,), elements=st.integers(0, num_classes - 1)))
    seed = draw(st.integers(0, 2**31 - 1))
    lr = draw(st.sampled_from([1e-3, 0.01, 0.1, 1.0]))
    momentum = draw(st.sampled_from([0.0, 0.9]))
    return x, labels, num_classes, seed, lr, momentum, dtype


@settings(max_examples=EXAMPLES, deadline=None)
@given(sgd_step_inputs())
def test_two_sgd_steps_match_torch(case):
    x, labels, num_classes, seed, lr, momentum, dtype = case
    initial = {k: v.astype(dtype) for k, v in fg.to_state_dict(
        fg.linear_init(jax.random.key(seed), x.shape[1], num_classes)).items()}

    with jax.enable_x64(dtype == np.float64):
        params = two_sgd_steps(fg.from_state_dict(initial), x, labels, jnp.asarray(lr, dtype), momentum)

    model = torch.nn.Linear(x.shape[1], num_classes).to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.tensor(v) for k, v in initial.items()})
    torch_optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    for _ in range(2):
        torch_optimizer.zero_grad()
        F.cross_entropy(model(torch.tensor(x)), torch.tensor(labels)).backward()
        torch_optimizer.step()
    assert_matches_torch(params["weight"], model.weight, dtype)
    assert_matches_torch(params["bias"], model.bias, dtype)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.integers(1, 6), st.integers(2, 5), st.integers(-3, 10), DTYPES)
def test_a_label_out_of_range_is_refused_like_torch(num_examples, num_classes, offset, dtype):
    bad_label = num_classes + offset if offset >= 0 else offset
    labels = np.zeros(num_examples, np.int64)
    labels[-1] = bad_label
    logits = np.zeros((num_examples, num_classes), dtype)
    with pytest.raises(ValueError, match=f"label {bad_label} is out of range for {num_classes} classes"):
        fg.cross_entropy(logits, labels)
    with pytest.raises((IndexError, RuntimeError)):
        F.cross_entropy(torch.tensor(logits), torch.tensor(labels))


def test_subnormal_probabilities_are_zero_to_xla():
    subnormal = np.float32(1e-40)  # below float32's smallest normal, 1.18e-38
    assert fg.binary_cross_entropy(np.array([subnormal]), np.array([1.0], np.float32)) == 100.0
    torch_loss = F.binary_cross_entropy(torch.tensor([subnormal]), torch.tensor([1.0]))
    assert torch_loss.item() == pytest.approx(92.1, abs=0.1)  # torch keeps the subnormal
