"""Specification of funcgrad.layers.activations: torch.nn.functional's activations, their
defaults and their derivatives at the kinks.

Each drawn case runs torch in float64 and in the tested dtype and funcgrad in the tested
dtype on the same inputs, with and without options (the defaults compared as they are);
the project's verdict judges the output and the input gradient of ``sum(y * g)``.
"""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import funcgrad as fg
from funcgrad.layers import activations as act
from tests.helpers_torch import DTYPES, jax_precision

SIZE = 16  # one shape for every draw: JAX compiles each operation once per shape


def floats32(low, high):
    # Nothing within 1e-30 of 0 but 0 itself: its products (leaky_relu's slope, elu's alpha)
    # would be subnormal, which XLA flushes to zero on CPU and torch keeps (a documented
    # difference of the whole library, pinned in test_fuzz_parity).
    return st.floats(low, high, width=32, allow_subnormal=False).filter(lambda v: v == 0 or abs(v) > 1e-30)


def options(**strategies):
    """No options (both sides' defaults) or every option drawn."""
    return st.one_of(st.just({}), st.fixed_dictionaries(strategies))


# name: (funcgrad, torch, options, the kinks: inputs where the derivative switches)
ACTIVATIONS = {
    "gelu": (act.gelu, F.gelu, options(approximate=st.sampled_from(["none", "tanh"])), lambda o: [0.0]),
    "relu": (act.relu, F.relu, st.just({}), lambda o: [0.0]),
    "leaky_relu": (act.leaky_relu, F.leaky_relu, options(negative_slope=floats32(2**-10, 0.5)), lambda o: [0.0]),
    "elu": (act.elu, F.elu, options(alpha=floats32(0.125, 3.0)), lambda o: [0.0]),
    "silu": (act.silu, F.silu, st.just({}), lambda o: [0.0]),
    "sigmoid": (act.sigmoid, torch.sigmoid, st.just({}), lambda o: [0.0]),
    "tanh": (act.tanh, torch.tanh, st.just({}), lambda o: [0.0]),
    "softplus": (act.softplus, F.softplus, options(beta=st.sampled_from([0.5, 1.0, 2.0, 4.0]),
                                                   threshold=st.sampled_from([1.0, 5.0, 20.0])),
                 lambda o: [o.get("threshold", 20.0) / o.get("beta", 1.0)]),
    "hardtanh": (act.hardtanh, F.hardtanh, options(min_val=floats32(-3.0, 0.0), max_val=floats32(0.0, 3.0)),
                 lambda o: [o.get("min_val", -1.0), o.get("max_val", 1.0)]),
    "relu6": (act.relu6, F.relu6, st.just({}), lambda o: [0.0, 6.0]),
    "mish": (act.mish, F.mish, st.just({}), lambda o: [0.0]),
}


def verdict(jax_results, torch_results, reference, dtype):
    return fg.parity.compare_results(jax_results, torch_results, dtype, reference=reference)


def assert_parity(jax_results, torch_results, reference, dtype):
    rows = verdict(jax_results, torch_results, reference, dtype)
    assert all(row.passed for row in rows), fg.parity.format_failures(rows)


@functools.partial(jax.jit, static_argnames=("fn", "static"))
def value_and_input_grad(fn, x, g, options, static=()):
    """``fn(x, **options)`` and the gradient of ``sum(fn(x) * g)``; compiled once per function,
    option names and shape, the option values traced (as Python floats they are weakly
    typed, and so are these)."""
    y, vjp = jax.vjp(lambda x: fn(x, **options, **dict(static)), x)
    return y, vjp(g)[0]


def jax_results(fn, x, g, dtype, **kwargs):
    static = tuple((name, value) for name, value in kwargs.items() if isinstance(value, str))
    options = {name: value for name, value in kwargs.items() if not isinstance(value, str)}
    with jax_precision(dtype):
        y, grad = value_and_input_grad(fn, x.astype(dtype), g.astype(dtype), options, static)
    return {"y": np.asarray(y), "grad/x": np.asarray(grad)}


def torch_results(fn, x, g, dtype, **kwargs):
    x = torch.tensor(x.astype(dtype), requires_grad=True)
    y = fn(x, **kwargs)
    (y * torch.tensor(g.astype(dtype))).sum().backward()
    return {"y": y.detach().numpy(), "grad/x": x.grad.numpy()}


def judge(name, x, g, dtype, **kwargs):
    ours, theirs, _, _ = ACTIVATIONS[name]
    assert_parity(jax_results(ours, x, g, dtype, **kwargs), torch_results(theirs, x, g, dtype, **kwargs),
                  torch_results(theirs, x, g, np.float64, **kwargs), dtype)


# Below about -7, 1 + erf(x / sqrt(2)) and 1 + tanh(...) cancel to 0 even in float64: torch's
# gelu and its float64 reference return 0 where funcgrad's forms keep x * Phi(x) (~1e-17),
# and a float32 band measured from that 0 allows nothing. The tail is pinned on its own
# (test_gelu_keeps_the_tail_torch_rounds_to_zero).
LOWEST = {"gelu": -7.0}


@st.composite
def activation_cases(draw):
    """An activation, its options, and inputs that include its kinks exactly."""
    name = draw(st.sampled_from(sorted(ACTIVATIONS)))
    kwargs = draw(ACTIVATIONS[name][2])
    if kwargs.get("min_val", 0.0) > kwargs.get("max_val", 0.0):
        kwargs["min_val"], kwargs["max_val"] = kwargs["max_val"], kwargs["min_val"]
    kinks = ACTIVATIONS[name][3](kwargs)
    values = st.one_of(floats32(LOWEST.get(name, -10.0), 10.0), st.sampled_from(kinks))
    x = np.array(draw(st.lists(values, min_size=SIZE, max_size=SIZE)), np.float64)
    x[: len(kinks)] = kinks
    g = np.random.default_rng(draw(st.integers(0, 2**32 - 1))).normal(size=SIZE)
    return name, kwargs, x, g


@DTYPES
@settings(max_examples=60, deadline=None)
@given(case=activation_cases())
def test_activation_matches_torch_functional(dtype, case):
    name, kwargs, x, g = case
    judge(name, x, g, dtype, **kwargs)


# The derivative at each kink, as torch defines it: 0 for relu at 0 and for hardtanh/relu6
# at their bounds (the flat side), the negative side's slope for leaky_relu and elu.
KINK_GRADIENTS = [
    ("relu", {}, [0.0], [0.0]),
    ("leaky_relu", {}, [0.0], [0.01]),
    ("leaky_relu", {"negative_slope": 0.2}, [0.0], [0.2]),
    ("elu", {"alpha": 2.0}, [0.0], [2.0]),
    ("hardtanh", {}, [-1.0, 1.0], [0.0, 0.0]),
    ("hardtanh", {"min_val": -2.0, "max_val": 0.5}, [-2.0, 0.5], [0.0, 0.0]),
    ("relu6", {}, [0.0, 6.0], [0.0, 0.0]),
    ("gelu", {}, [0.0], [0.5]),
    ("gelu", {"approximate": "tanh"}, [0.0], [0.5]),
    ("silu", {}, [0.0], [0.5]),
    ("mish", {}, [0.0], [0.6]),
    ("softplus", {"beta": 2.0}, [10.0, 10.5], [1 - 1 / (1 + np.exp(20.0)), 1.0]),  # beta*x at and past threshold
]


@DTYPES
@pytest.mark.parametrize("name, kwargs, kinks, expected", KINK_GRADIENTS,
                         ids=[f"{name}{kwargs or ''}" for name, kwargs, *_ in KINK_GRADIENTS])
def test_gradient_at_kinks_is_torchs(dtype, name, kwargs, kinks, expected):
    x = np.linspace(-8, 8, SIZE)  # the drawn cases' shape: their compilations serve here too
    x[: len(kinks)] = kinks
    ones = np.ones(SIZE)
    ours = jax_results(ACTIVATIONS[name][0], x, ones, dtype, **kwargs)
    theirs = torch_results(ACTIVATIONS[name][1], x, ones, dtype, **kwargs)
    np.testing.assert_allclose(theirs["grad/x"][: len(kinks)], expected, rtol=1e-7, atol=0)  # torch's convention
    np.testing.assert_allclose(ours["grad/x"][: len(kinks)], expected, rtol=1e-7, atol=0)
    assert_parity(ours, theirs, torch_results(ACTIVATIONS[name][1], x, ones, np.float64, **kwargs), dtype)


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu_keeps_the_tail_torch_rounds_to_zero(approximate):
    x = np.linspace(-9.5, -8.5, SIZE)
    if approximate == "none":
        exact = [v * 0.5 * math.erfc(-v / math.sqrt(2)) for v in x]
    else:
        exact = [v / (1 + math.exp(-2 * math.sqrt(2 / math.pi) * (v + 0.044715 * v**3))) for v in x]
    ours = jax_results(act.gelu, x, np.ones(SIZE), np.float64, approximate=approximate)
    np.testing.assert_allclose(ours["y"], exact, rtol=1e-12)  # ~ -1e-17 and below
    theirs = torch_results(F.gelu, x, np.ones(SIZE), np.float64, approximate=approximate)
    assert not np.any(theirs["y"])  # torch: 0, from the cancellation
    assert_parity(ours, theirs, None, np.float64)  # within the float64 rule all the same


# The traps: a port that reaches for jax.nn's version is caught by the verdict.
TRAPS = {
    # jax.nn.gelu's default is the tanh approximation, up to 4.7e-4 from torch's exact default.
    "jax.nn.gelu": (jax.nn.gelu, F.gelu, "y"),
    # jax.nn.leaky_relu takes the positive side at 0: gradient 1 where torch's is 0.01.
    "jax.nn.leaky_relu": (jax.nn.leaky_relu, F.leaky_relu, "grad/x"),
    # jnp.clip splits the gradient at a bound (0.5, a tie of max and min); torch's hardtanh has 0.
    "jnp.clip": (lambda x: jnp.clip(x, -1.0, 1.0), F.hardtanh, "grad/x"),
}


@pytest.mark.parametrize("trap", sorted(TRAPS))
def test_verdict_rejects_jax_nn_defaults(trap):
    ours, theirs, wrong = TRAPS[trap]
    x = np.concatenate([np.linspace(-3, 3, SIZE - 3), [0.0, -1.0, 1.0]])
    g = np.ones(SIZE)
    rows = verdict(jax_results(ours, x, g, np.float32), torch_results(theirs, x, g, np.float32),
                   torch_results(theirs, x, g, np.float64), np.float32)
    assert wrong in {row.name for row in rows if not row.passed}


@pytest.mark.parametrize("compile", [False, True], ids=["eager", "jit"])
@pytest.mark.parametrize("approximate, pattern", [
    ("exact", "approximate must be 'none' .* or 'tanh', got 'exact'"),
    (True, re.escape("jax.nn.gelu's approximate=True is 'tanh' here")),
])
def test_gelu_refuses_other_approximations(compile, approximate, pattern):
    fn = lambda x: act.gelu(x, approximate=approximate)  # noqa: E731
    with pytest.raises(ValueError, match=pattern):
        (jax.jit(fn) if compile else fn)(jnp.zeros(3))


def test_hardtanh_refuses_crossed_bounds():
    with pytest.raises(ValueError, match="min_val 1.0 is above max_val -1.0"):
        act.hardtanh(jnp.zeros(3), 1.0, -1.0)


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activations_refuse_half_precision(name):
    with pytest.raises(TypeError, match=f"{name}: x has dtype float16"):
        ACTIVATIONS[name][0](jnp.zeros(3, jnp.float16))


def test_softplus_and_mish_gradients_stay_finite_where_exp_overflows():
    x = np.full(SIZE, 1000.0)
    for fn in (act.softplus, act.mish):
        np.testing.assert_array_equal(jax_results(fn, x, np.ones(SIZE), np.float32)["grad/x"], 1.0)


@pytest.mark.parametrize("name, kwargs", [("tanh", {}), ("sigmoid", {}), ("silu", {}), ("mish", {}),
                                          ("gelu", {"approximate": "tanh"})])
def test_custom_derivatives_differentiate_twice_as_torchs(name, kwargs):
    """tanh's and sigmoid's derivatives are written by hand (see their docstrings): the second
    derivative through them, forward-over-reverse as fg.hvp takes it, is torch's double backward."""
    ours, theirs, _, _ = ACTIVATIONS[name]
    x = np.linspace(-6, 6, SIZE)
    with jax_precision(np.float64):
        second = jax.jit(jax.vmap(jax.jacfwd(jax.grad(lambda v: ours(v, **kwargs)))))(x)
    x_torch = torch.tensor(x, requires_grad=True)
    (first,) = torch.autograd.grad(theirs(x_torch, **kwargs).sum(), x_torch, create_graph=True)
    assert_parity({"second derivative": np.asarray(second)},
                  {"second derivative": torch.autograd.grad(first.sum(), x_torch)[0].numpy()}, None, np.float64)
