"""Specification of funcgrad.layers.pool: F.max_pool2d, F.avg_pool2d, F.adaptive_avg_pool2d
and torch.flatten, held against torch by the project's verdict.

Each drawn case computes, on both sides, the output and, for each of ``COTANGENTS`` random
cotangents g, the gradient of sum(y * g) for the input. Half the drawn inputs are
ReLU-like (zeros and small integers), so that max-pool windows hold ties, often all
zeros: there the gradient must go to the one element torch picks, the first largest, and
a port that shares it or picks another one is off by whole cotangents.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import assume, given, settings
from hypothesis import strategies as st

import funcgrad as fg
from funcgrad.layers.pool import adaptive_avg_pool2d, avg_pool2d, flatten, max_pool2d
from tests.helpers_torch import DTYPES, jax_precision, to_torch

COTANGENTS = 4
EXAMPLES = 12
POOLS = {"max": (max_pool2d, F.max_pool2d), "avg": (avg_pool2d, F.avg_pool2d),
         "adaptive": (adaptive_avg_pool2d, F.adaptive_avg_pool2d)}


def torch_pool(kind, x, cotangents, dtype, **options) -> dict:
    """torch's output, and for each cotangent g the input gradient of sum(y * g), in ``dtype``."""
    x = to_torch(x.astype(dtype), requires_grad=True)
    y = POOLS[kind][1](x, **options)
    grads = [torch.autograd.grad(y, x, to_torch(g.astype(dtype)), retain_graph=True)[0] for g in cotangents]
    return {"forward": y.detach().numpy(), "input grad": np.stack([grad.numpy() for grad in grads])}


def jax_pool(kind, x, cotangents, dtype, **options) -> dict:
    with jax_precision(dtype):
        pool = jax.jit(functools.partial(POOLS[kind][0], **options))
        y, vjp = jax.vjp(pool, jnp.asarray(x.astype(dtype)))
        grads = [vjp(jnp.asarray(g.astype(dtype)))[0] for g in cotangents]
    return {"forward": np.asarray(y), "input grad": np.stack(grads)}


def assert_parity(kind, x, dtype, rng, **options):
    """funcgrad's pool against torch's in ``dtype``, torch in float64 the reference."""
    y_shape = POOLS[kind][1](to_torch(x), **options).shape
    cotangents = rng.standard_normal((COTANGENTS, *y_shape))
    reference = torch_pool(kind, x, cotangents, np.float64, **options)
    rows = fg.parity.compare_results(jax_pool(kind, x, cotangents, dtype, **options),
                                     torch_pool(kind, x, cotangents, dtype, **options), dtype, reference=reference)
    assert all(row.passed for row in rows), fg.parity.format_failures(rows)


def draw_input(rng, shape, ties: bool) -> np.ndarray:
    """Normal values, or ReLU-like ones: about half zeros, the rest 1 or 2 (ties everywhere)."""
    return np.maximum(rng.integers(-2, 3, shape), 0).astype(np.float64) if ties else rng.standard_normal(shape)


def only_padding_in_a_window(size, kernel, stride, padding, dilation, ceil_mode) -> bool:
    """Whether some window of torch's max pool covers padding alone (possible with a dilation):
    torch returns -inf there and its backward pass then crashes (double free), so such cases
    have no gradient to compare."""
    for n, k, s, p, d in zip(size, kernel, stride, padding, dilation):
        out = -(-(n + 2 * p - d * (k - 1) - 1) // s) + 1 if ceil_mode else (n + 2 * p - d * (k - 1) - 1) // s + 1
        if ceil_mode and (out - 1) * s >= n + p:
            out -= 1
        if any(all(not 0 <= o * s - p + j * d < n for j in range(k)) for o in range(out)):
            return True
    return False


@st.composite
def pool_cases(draw, kind):
    kernel = (draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 3), st.integers(1, 3))))
    padding = tuple(draw(st.integers(0, k // 2)) for k in kernel)
    dilation = (draw(st.integers(1, 2)), draw(st.integers(1, 2))) if kind == "max" else (1, 1)
    size = tuple(draw(st.integers(max(1, d * (k - 1) + 1 - 2 * p), 12)) for k, d, p in zip(kernel, dilation, padding))
    options = dict(kernel_size=kernel, stride=stride, padding=padding, ceil_mode=draw(st.booleans()))
    if kind == "max":
        options["dilation"] = dilation
    else:
        options["count_include_pad"] = draw(st.booleans())
        options["divisor_override"] = draw(st.one_of(st.none(), st.integers(-3, 5).filter(bool)))
    batch = draw(st.sampled_from([(), (1,), (2,)]))  # () is torch's unbatched (C, H, W)
    return dict(x_shape=(*batch, draw(st.integers(1, 3)), *size), options=options,
                ties=draw(st.booleans()), seed=draw(st.integers(0, 2**32 - 1)))


@DTYPES
@settings(max_examples=EXAMPLES, deadline=None)
@given(case=pool_cases("max"))
def test_max_pool2d_matches_torch_forward_and_gradient(dtype, case):
    options = case["options"]
    stride = options["stride"] or options["kernel_size"]
    assume(not only_padding_in_a_window(case["x_shape"][-2:], options["kernel_size"], stride, options["padding"],
                                        options["dilation"], options["ceil_mode"]))
    rng = np.random.default_rng(case["seed"])
    assert_parity("max", draw_input(rng, case["x_shape"], case["ties"]), dtype, rng, **options)


@DTYPES
@settings(max_examples=EXAMPLES, deadline=None)
@given(case=pool_cases("avg"))
def test_avg_pool2d_matches_torch_forward_and_gradient(dtype, case):
    rng = np.random.default_rng(case["seed"])
    assert_parity("avg", draw_input(rng, case["x_shape"], case["ties"]), dtype, rng, **case["options"])


@DTYPES
@pytest.mark.parametrize("x_shape, output_size", [
    ((2, 3, 7, 7), 1), ((2, 3, 7, 7), (3, 3)), ((1, 2, 10, 5), (4, 3)), ((2, 5, 6), (None, 4)), ((1, 1, 3, 2), 5),
], ids=["global", "overlapping", "uneven", "unbatched-none", "larger"])
def test_adaptive_avg_pool2d_matches_torch_forward_and_gradient(dtype, x_shape, output_size):
    rng = np.random.default_rng(0)
    assert_parity("adaptive", rng.standard_normal(x_shape), dtype, rng, output_size=output_size)


# Ties: every window of zeros, where reduce_window's forward-mode derivative and jnp.max's
# gradient part from torch. Integer cotangents make every sum exact, so the gradients must
# equal torch's to the bit, in both precisions.

# torch.func.jvp scripts part of itself with torch.jit.script, which warns that it is deprecated.
TORCH_JVP_WARNS = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")
TIE_OPTIONS = [dict(kernel_size=2), dict(kernel_size=3, stride=2, padding=1, ceil_mode=True),
               dict(kernel_size=(2, 3), stride=1, padding=(1, 0), dilation=2)]


@TORCH_JVP_WARNS
@DTYPES
@pytest.mark.parametrize("options", TIE_OPTIONS, ids=["2x2", "3x3-s2-p1-ceil", "dilated"])
def test_max_pool2d_sends_each_windows_gradient_to_torchs_element_on_ties(dtype, options):
    rng = np.random.default_rng(3)
    x = draw_input(rng, (2, 2, 7, 8), ties=True)
    x[:, 0] = 0  # a channel the ReLU zeroed entirely
    y_shape = F.max_pool2d(to_torch(x), **options).shape
    cotangent, tangent = rng.integers(-9, 10, y_shape).astype(dtype), rng.integers(-9, 10, x.shape).astype(dtype)
    torch_x = to_torch(x.astype(dtype), requires_grad=True)
    torch_y = F.max_pool2d(torch_x, **options)
    torch_y.backward(to_torch(cotangent))
    _, torch_tangent = torch.func.jvp(lambda x: F.max_pool2d(x, **options), (to_torch(x.astype(dtype)),),
                                      (to_torch(tangent),))
    with jax_precision(dtype):
        pool = jax.jit(functools.partial(max_pool2d, **options))
        y, vjp = jax.vjp(pool, jnp.asarray(x.astype(dtype)))
        _, jax_tangent = jax.jvp(pool, (jnp.asarray(x.astype(dtype)),), (jnp.asarray(tangent),))
        np.testing.assert_array_equal(y, torch_y.detach().numpy())
        np.testing.assert_array_equal(vjp(jnp.asarray(cotangent))[0], torch_x.grad.numpy())
        np.testing.assert_array_equal(jax_tangent, torch_tangent.numpy())  # forward mode too: hvp runs through it


def test_max_pool2d_hessian_vector_product_through_relu_ties_matches_torch():
    rng = np.random.default_rng(4)
    x, w = rng.standard_normal((1, 2, 6, 6)), rng.standard_normal((2, 2, 3, 3))
    v = rng.standard_normal(x.shape)

    def torch_loss(x):
        return (F.max_pool2d(torch.relu(F.conv2d(x, to_torch(w), padding=1)), 2) ** 2).sum()

    def jax_loss(x):
        return jnp.sum(max_pool2d(jax.nn.relu(jax.lax.conv_general_dilated(
            x, jnp.asarray(w), (1, 1), ((1, 1), (1, 1)), dimension_numbers=("NCHW", "OIHW", "NCHW"))), 2) ** 2)

    expected = torch.autograd.functional.hvp(torch_loss, to_torch(x), to_torch(v))[1].numpy()
    with jax_precision(np.float64):
        ours = fg.hvp(jax_loss, jnp.asarray(x), jnp.asarray(v))
    assert (F.relu(F.conv2d(to_torch(x), to_torch(w), padding=1)) == 0).float().mean() > 0.3  # ties do occur
    rows = fg.parity.compare_results({"hvp": np.asarray(ours)}, {"hvp": expected}, np.float64)
    assert all(row.passed for row in rows), fg.parity.format_failures(rows)


def test_avg_pool2d_counts_padding_but_not_ceil_modes_overhang_as_torch_does():
    # Rows 0..5 with one row of padding each side; ceil_mode adds a fourth window at padded
    # rows 6..8: input row 5, the bottom padding, and one row past it that is not counted.
    x = np.ones((1, 1, 6, 6))
    with jax_precision(np.float64):
        y = np.asarray(avg_pool2d(jnp.asarray(x), 3, stride=2, padding=1, ceil_mode=True))
    expected = F.avg_pool2d(to_torch(x), 3, stride=2, padding=1, ceil_mode=True).numpy()
    np.testing.assert_array_equal(y, expected)
    per_axis = np.array([2 / 3, 1, 1, 1 / 2])  # first window: one padding row in 3; last: one in 2
    np.testing.assert_allclose(y[0, 0], np.outer(per_axis, per_axis), rtol=1e-15)


@pytest.mark.parametrize("size, kernel, stride, padding, ceil_mode, out", [
    (5, 2, 2, 0, False, 2), (5, 2, 2, 0, True, 3), (6, 3, 3, 1, True, 3), (5, 3, 3, 1, True, 2),
], ids=["floor", "ceil", "ceil-into-padding", "ceil-dropped"])
def test_pool_output_size_follows_torchs_rule(size, kernel, stride, padding, ceil_mode, out):
    # ceil_mode keeps a last window only if it starts inside the input or the left padding:
    # for 5 rows, padding 1, stride 3, the third would start at padded row 6, past both.
    for kind in ("max", "avg"):
        y = jax.eval_shape(lambda x: POOLS[kind][0](x, kernel, stride, padding, ceil_mode=ceil_mode),
                           jnp.zeros((1, 1, size, size)))
        expected = POOLS[kind][1](torch.zeros(1, 1, size, size), kernel, stride, padding, ceil_mode=ceil_mode)
        assert y.shape == tuple(expected.shape) == (1, 1, out, out), kind


# The traps: what a JAX port writes by habit, shown to compute something else than torch,
# by more than the verdict allows (so the tests above could fail).

def test_jnp_max_shares_the_gradient_of_a_window_of_zeros_where_torch_picks_one():
    x = np.zeros((1, 1, 4, 4))
    torch_x = to_torch(x, requires_grad=True)
    F.max_pool2d(torch_x, 2).sum().backward()
    with jax_precision(np.float64):
        blocks_max = jax.grad(lambda x: x.reshape(1, 1, 2, 2, 2, 2).max(axis=(3, 5)).sum())(jnp.asarray(x))
        ours = jax.jit(jax.grad(lambda x: max_pool2d(x, 2).sum()))(jnp.asarray(x))
    expected = {"input grad": torch_x.grad.numpy()}
    assert not fg.parity.compare_results({"input grad": np.asarray(blocks_max)}, expected, np.float64)[0].passed
    assert fg.parity.compare_results({"input grad": np.asarray(ours)}, expected, np.float64)[0].passed


@TORCH_JVP_WARNS
def test_reduce_window_max_forward_mode_picks_another_tie_than_torch():
    # jaxlib 0.10.2 on CPU: reduce_window max's reverse-mode gradient goes to the first
    # largest element, as torch's, but its forward-mode derivative (jvp, and so hvp) does
    # not always; here the 2x2 window in the middle, [[0, 1], [1, 1]], takes the tangent
    # of its bottom-left 1 where torch takes the top-right one. If this starts failing,
    # JAX agrees with torch there now, and max_pool2d could use reduce_window.
    x, tangent = np.array([[[[0.0, 1.0], [1.0, 1.0]]]]), np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    _, expected = torch.func.jvp(lambda x: F.max_pool2d(x, 2, 1, 1), (to_torch(x),), (to_torch(tangent),))
    with jax_precision(np.float64):
        def reduce_window(x):
            return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 1, 1),
                                         ((0, 0), (0, 0), (1, 1), (1, 1)))
        _, lax_tangent = jax.jvp(reduce_window, (jnp.asarray(x),), (jnp.asarray(tangent),))
        _, ours = jax.jvp(lambda x: max_pool2d(x, 2, 1, 1), (jnp.asarray(x),), (jnp.asarray(tangent),))
    expected = {"tangent": expected.numpy()}
    assert not fg.parity.compare_results({"tangent": np.asarray(lax_tangent)}, expected, np.float64)[0].passed
    assert fg.parity.compare_results({"tangent": np.asarray(ours)}, expected, np.float64)[0].passed


def test_flax_style_pool_stride_of_one_is_not_torchs_default_stride():
    x = np.random.default_rng(5).standard_normal((1, 2, 6, 6))
    with jax_precision(np.float64):  # flax.linen.max_pool(x, (2, 2)) strides by 1 unless told
        stride_one = jax.lax.reduce_window(jnp.asarray(x), -jnp.inf, jax.lax.max, (1, 1, 2, 2), (1, 1, 1, 1), "VALID")
        ours = max_pool2d(jnp.asarray(x), 2)
    expected = {"forward": F.max_pool2d(to_torch(x), 2).numpy()}
    row = fg.parity.compare_results({"forward": np.asarray(stride_one)}, expected, np.float64)[0]
    assert not row.passed and "shapes differ" in row.note
    assert fg.parity.compare_results({"forward": np.asarray(ours)}, expected, np.float64)[0].passed


def test_excluding_the_padding_from_the_average_is_not_torchs_default():
    x = np.random.default_rng(6).standard_normal((1, 2, 6, 6))
    with jax_precision(np.float64):  # TF and Keras 'SAME' average pools divide by the input elements only
        excluded = avg_pool2d(jnp.asarray(x), 3, stride=2, padding=1, count_include_pad=False)
        ours = avg_pool2d(jnp.asarray(x), 3, stride=2, padding=1)
    expected = {"forward": F.avg_pool2d(to_torch(x), 3, stride=2, padding=1).numpy()}
    assert not fg.parity.compare_results({"forward": np.asarray(excluded)}, expected, np.float64)[0].passed
    assert fg.parity.compare_results({"forward": np.asarray(ours)}, expected, np.float64)[0].passed


def test_nhwc_flattened_features_are_not_the_order_torchs_linear_expects():
    rng = np.random.default_rng(7)
    x, weight = rng.standard_normal((2, 3, 4, 5)), rng.standard_normal((10, 60))
    expected = {"logits": (torch.flatten(to_torch(x), 1) @ to_torch(weight).T).numpy()}
    with jax_precision(np.float64):
        nhwc = jnp.asarray(x).transpose(0, 2, 3, 1).reshape(2, -1) @ weight.T  # a port computing in NHWC
        ours = flatten(jnp.asarray(x)) @ weight.T
    assert not fg.parity.compare_results({"logits": np.asarray(nhwc)}, expected, np.float64)[0].passed
    assert fg.parity.compare_results({"logits": np.asarray(ours)}, expected, np.float64)[0].passed


# flatten

@pytest.mark.parametrize("shape, start_dim, end_dim", [
    ((2, 3, 4, 5), 1, -1), ((2, 3, 4, 5), 0, -1), ((2, 3, 4, 5), 1, 2), ((2, 3, 4, 5), -3, -2),
    ((2, 3, 4, 5), 2, 2), ((7,), 0, 0), ((), 0, -1), ((2, 0, 3), 1, -1),
])
def test_flatten_matches_torch_flatten(shape, start_dim, end_dim):
    x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    expected = torch.flatten(to_torch(x), start_dim, end_dim).numpy()
    np.testing.assert_array_equal(flatten(jnp.asarray(x), start_dim, end_dim), expected)


def test_flatten_defaults_to_nn_flattens_start_dim_of_one():
    assert flatten(jnp.zeros((2, 3, 4, 5))).shape == tuple(torch.nn.Flatten()(torch.zeros(2, 3, 4, 5)).shape)


@pytest.mark.parametrize("shape, start_dim, end_dim, error, pattern", [
    ((2, 3, 4), 2, 1, ValueError, r"start_dim \(2\) comes after end_dim \(1\) for x of shape \(2, 3, 4\)"),
    ((2, 3), 0, 2, IndexError, r"end_dim=2 is out of range for x of shape \(2, 3\) \(valid: -2..1\)"),
    ((), 1, -1, IndexError, r"start_dim=1 is out of range for x of shape \(\)"),
], ids=["start-after-end", "end-out-of-range", "scalar"])
def test_flatten_names_bad_dims(shape, start_dim, end_dim, error, pattern):
    with pytest.raises(error, match=pattern):
        flatten(jnp.zeros(shape), start_dim, end_dim)


# Bad input: refused with the shapes or values named, also while tracing under jit.

JIT_OR_NOT = pytest.mark.parametrize("transform", [lambda f: f, jax.jit], ids=["eager", "jit"])


@JIT_OR_NOT
@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("x_shape, kernel_size, pattern", [
    ((1, 1, 4, 6), 5, r"window \(5 x 5, dilation counted\) is larger than the padded input \(4 x 6\)"),
    ((4, 4), 2, r"non-empty \(N, C, H, W\) or unbatched \(C, H, W\), got shape \(4, 4\)"),
    ((1, 1, 1, 4, 4), 2, r"got shape \(1, 1, 1, 4, 4\)"),
    ((1, 0, 4, 4), 2, r"non-empty.*got shape \(1, 0, 4, 4\)"),
], ids=["kernel-larger", "2-d", "5-d", "empty"])
def test_pools_name_the_shape_problem(transform, kind, x_shape, kernel_size, pattern):
    with pytest.raises(ValueError, match=pattern):
        transform(lambda x: POOLS[kind][0](x, kernel_size))(jnp.zeros(x_shape))


@JIT_OR_NOT
def test_max_pool2d_counts_dilation_and_padding_in_the_window(transform):
    pool = transform(lambda x: max_pool2d(x, 3, padding=1, dilation=3))
    with pytest.raises(ValueError, match=r"window \(7 x 7, dilation counted\).*padded input \(6 x 9\)"):
        pool(jnp.zeros((1, 1, 4, 7)))
    assert pool(jnp.zeros((1, 1, 5, 5))).shape == (1, 1, 1, 1)


@pytest.mark.parametrize("kind", ["max", "avg"])
@pytest.mark.parametrize("options, error, pattern", [
    (dict(kernel_size=3, padding=2), ValueError, r"padding \(2, 2\) must be between 0 and half the kernel size \(3, 3\)"),
    (dict(kernel_size=(3, 1), padding=1), ValueError, r"padding \(1, 1\) must be between 0 and half the kernel size \(3, 1\)"),
    (dict(kernel_size=2, padding=-1), ValueError, r"padding \(-1, -1\) must be between 0"),
    (dict(kernel_size=0), ValueError, r"kernel_size must be a positive int, got \(0, 0\)"),
    (dict(kernel_size=2, stride=(1, 0)), ValueError, r"stride must be a positive int, got \(1, 0\)"),
    (dict(kernel_size=2.0), TypeError, r"kernel_size must be an int or a pair of ints, got 2.0"),
], ids=["padding-over-half", "padding-over-half-of-1", "padding-negative", "kernel-0", "stride-0", "kernel-float"])
def test_pools_refuse_bad_options(kind, options, error, pattern):
    with pytest.raises(error, match=pattern):
        POOLS[kind][0](jnp.zeros((1, 1, 8, 8)), **options)


@pytest.mark.parametrize("pool, options, error, pattern", [
    (max_pool2d, dict(kernel_size=2, dilation=0), ValueError, r"dilation must be a positive int, got \(0, 0\)"),
    (avg_pool2d, dict(kernel_size=2, divisor_override=0), ValueError, r"divisor_override must be a nonzero int"),
    (avg_pool2d, dict(kernel_size=2, divisor_override=2.5), ValueError, r"divisor_override must be a nonzero int"),
    (adaptive_avg_pool2d, dict(output_size=0), ValueError, r"output_size must be a positive int, got \(0, 0\)"),
    (adaptive_avg_pool2d, dict(output_size=(2, 3, 4)), TypeError, r"output_size must be an int or a pair of ints"),
], ids=["max-dilation-0", "avg-divisor-0", "avg-divisor-float", "adaptive-0", "adaptive-triple"])
def test_each_pool_refuses_its_own_bad_options(pool, options, error, pattern):
    with pytest.raises(error, match=pattern):
        pool(jnp.zeros((1, 1, 8, 8)), **options)


@pytest.mark.parametrize("kind", ["max", "avg", "adaptive"])
def test_pools_refuse_half_precision(kind):
    with pytest.raises(TypeError, match=r"x has dtype float16; funcgrad computes in float32 or float64"):
        POOLS[kind][0](jnp.zeros((1, 1, 8, 8), jnp.float16), 2)
