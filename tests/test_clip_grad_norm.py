"""clip_grad_norm against torch.nn.utils.clip_grad_norm_: the same gradient trees clipped on
both sides, in float64 and float32, for each norm type, under, just under and over
max_norm; chained before AdamW for a run; and torch's error on a non-finite norm."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import funcgrad as fg
from funcgrad.optim.transforms import clip_grad_norm
from funcgrad.parity import TOLERANCES
from tests.helpers_torch import DTYPES, jax_precision

SHAPES = {"0.weight": (16, 8), "0.bias": (16,), "1.weight": (4, 16), "1.bias": (4,)}
NORM_TYPES = [2.0, math.inf, 1.0, 3.0]
NUM_STEPS = 120


def gradient_tree(dtype, total, norm_type, seed=0):
    """Random gradients scaled so that their total norm (per-tensor norms, then the norm of those) is ``total``."""
    rng = np.random.default_rng(seed)
    grads = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    norms = [np.linalg.norm(g.ravel(), norm_type) for g in grads.values()]
    scale = total / np.linalg.norm(norms, norm_type)
    return {name: (g * scale).astype(dtype) for name, g in grads.items()}


def torch_clipped(grads, max_norm, norm_type, error_if_nonfinite=False):
    params = []
    for grad in grads.values():
        param = torch.nn.Parameter(torch.zeros(grad.shape, dtype=torch.from_numpy(grad).dtype))
        param.grad = torch.tensor(grad)
        params.append(param)
    torch.nn.utils.clip_grad_norm_(params, max_norm, norm_type, error_if_nonfinite)
    return {name: param.grad.numpy() for name, param in zip(grads, params)}


@functools.cache
def clipping(max_norm, norm_type, compile, error_if_nonfinite=False):
    """One transformation (and its compiled update, reused across tests) per setting."""
    transform = clip_grad_norm(max_norm, norm_type, error_if_nonfinite)
    return transform, jax.jit(transform.update) if compile else transform.update


def our_clipped(grads, max_norm, norm_type, compile=True, **kwargs):
    transform, update = clipping(max_norm, norm_type, compile, **kwargs)
    updates, state = update(jax.tree.map(jnp.asarray, grads), transform.init(grads))
    assert state == optax.EmptyState()
    return jax.tree.map(np.asarray, updates)


@DTYPES
@pytest.mark.parametrize("norm_type", NORM_TYPES, ids=["l2", "inf", "l1", "l3"])
@pytest.mark.parametrize("ratio", [5.0, 1 - 2e-7, 0.5], ids=["over", "just-under", "under"])
def test_clip_grad_norm_matches_torch(ratio, norm_type, dtype):
    grads = gradient_tree(dtype, total=2.0 * ratio, norm_type=norm_type)
    expected = torch_clipped(grads, 2.0, norm_type)
    with jax_precision(dtype):
        got = our_clipped(grads, 2.0, norm_type)
    # Mostly equal; the per-tensor sums in another order (l1) move the coefficient by an ulp or two.
    rtol = 4 * np.finfo(dtype).eps
    for name in SHAPES:
        assert got[name].dtype == dtype
        np.testing.assert_allclose(got[name], expected[name], rtol=rtol, atol=0, err_msg=name)
        if ratio == 0.5:  # coef clamped to 1.0: the gradients as they were
            np.testing.assert_array_equal(got[name], grads[name])
    if ratio < 1 and ratio > 0.5:  # within 1e-6 of max_norm: scaled by max_norm / (total + 1e-6) < 1
        assert np.any(got["0.weight"] != grads["0.weight"])


def test_just_under_max_norm_torch_scales_and_optax_does_not():
    # max_norm / (total + 1e-6) < 1 for a total within 1e-6 of max_norm: torch (and this)
    # multiply by it; optax.clip_by_global_norm has no epsilon and leaves the gradients.
    grads = gradient_tree(np.float32, total=1 - 3e-7, norm_type=2.0)
    ours = our_clipped(grads, 1.0, 2.0)
    optax_updates, _ = jax.jit(optax.clip_by_global_norm(1.0).update)(grads, optax.EmptyState())
    weight = grads["0.weight"]
    assert np.all(np.abs(ours["0.weight"]) <= np.abs(weight)) and np.any(ours["0.weight"] != weight)
    np.testing.assert_array_equal(np.asarray(optax_updates["0.weight"]), weight)


@pytest.mark.parametrize("norm_type", [2.0, math.inf])
def test_compiled_equals_eager(norm_type):
    grads = gradient_tree(np.float32, total=7.0, norm_type=norm_type)
    compiled, eager = our_clipped(grads, 1.0, norm_type), our_clipped(grads, 1.0, norm_type, compile=False)
    for name in SHAPES:
        np.testing.assert_allclose(compiled[name], eager[name], rtol=2 * np.finfo(np.float32).eps)


def gradient_stream(dtype):
    """One gradient tree per step, its norm from 5 down to 0.05: clipped at first, not at the end."""
    totals = np.geomspace(5.0, 0.05, NUM_STEPS)
    return [gradient_tree(dtype, total, 2.0, seed=step) for step, total in enumerate(totals)]


@DTYPES
def test_clip_then_adamw_matches_torch_clip_grad_norm_then_step(dtype):
    rng = np.random.default_rng(1)
    initial = {name: rng.standard_normal(shape).astype(dtype) for name, shape in SHAPES.items()}
    stream = gradient_stream(dtype)

    params = {name: torch.nn.Parameter(torch.tensor(value)) for name, value in initial.items()}
    optimizer = torch.optim.AdamW(params.values(), lr=1e-2)
    expected = []
    for grads in stream:
        for name, param in params.items():
            param.grad = torch.tensor(grads[name])
        torch.nn.utils.clip_grad_norm_(params.values(), 1.0)
        optimizer.step()
        expected.append({name: param.detach().numpy().copy() for name, param in params.items()})

    with jax_precision(dtype):
        chain = optax.chain(clip_grad_norm(1.0), fg.optim.adamw(1e-2))

        def update(carry, grads):
            ours, state = carry
            updates, state = chain.update(grads, state, ours)
            ours = optax.apply_updates(ours, updates)
            return (ours, state), ours

        ours = jax.tree.map(jnp.asarray, initial)
        stacked = {name: np.stack([grads[name] for grads in stream]) for name in SHAPES}
        got = jax.jit(lambda p, g: jax.lax.scan(update, (p, chain.init(p)), g)[1])(ours, stacked)
    rtol, atol = TOLERANCES[np.dtype(dtype)] if dtype == np.float32 else (1e-12, 1e-12)
    for name in SHAPES:
        np.testing.assert_allclose(np.asarray(got[name]), np.stack([step[name] for step in expected]),
                                   rtol=rtol, atol=atol, err_msg=name)


def test_its_empty_state_passes_through_the_torch_state_bridge():
    rng = np.random.default_rng(2)
    initial = {name: rng.standard_normal(shape) for name, shape in SHAPES.items()}
    names = list(SHAPES)
    params = [torch.nn.Parameter(torch.tensor(initial[name])) for name in names]
    optimizer = torch.optim.AdamW(params, lr=1e-2)
    for grads in gradient_stream(np.float64)[:3]:
        for name, param in zip(names, params):
            param.grad = torch.tensor(grads[name])
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
    with jax.enable_x64(True):
        chain = optax.chain(clip_grad_norm(1.0), fg.optim.adamw(1e-2))
        state = fg.optim.state_from_torch(chain.init(jax.tree.map(jnp.asarray, initial)), optimizer.state_dict(),
                                          names, step=3)
    assert state[0] == optax.EmptyState()
    np.testing.assert_array_equal(np.asarray(state[1][0].count), 3)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
@pytest.mark.parametrize("compile", [True, False], ids=["jit", "eager"])
def test_error_if_nonfinite_raises_as_torch_does(bad, compile):
    grads = gradient_tree(np.float32, total=3.0, norm_type=2.0)
    grads["0.bias"][3] = bad
    with pytest.raises(RuntimeError, match="non-finite"):
        torch_clipped(grads, 1.0, 2.0, error_if_nonfinite=True)
    # Under jit a JaxRuntimeError, a RuntimeError whose message ends in ours.
    message = rf"total norm of order 2.0 of the gradients is {bad}.*error_if_nonfinite=False"
    with pytest.raises(RuntimeError, match=message):
        our_clipped(grads, 1.0, 2.0, compile=compile, error_if_nonfinite=True)


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_nonfinite_norm_without_the_error_scales_as_torch_does(bad):
    grads = gradient_tree(np.float32, total=3.0, norm_type=2.0)
    grads["0.bias"][3] = bad
    expected, got = torch_clipped(grads, 1.0, 2.0), our_clipped(grads, 1.0, 2.0)
    for name in SHAPES:  # NaN everywhere (nan norm), or 0 with a NaN where the inf was (inf norm)
        np.testing.assert_array_equal(got[name], expected[name])


def test_empty_tree_is_left_as_torch_leaves_no_gradients():
    transform = clip_grad_norm(1.0, error_if_nonfinite=True)
    assert transform.update({}, transform.init({})) == ({}, optax.EmptyState())


@pytest.mark.parametrize("make, error, message", [
    (lambda: clip_grad_norm(-1.0), ValueError, "max_norm must be >= 0"),
    (lambda: clip_grad_norm("1.0"), TypeError, "max_norm must be a real number"),
    (lambda: clip_grad_norm(1.0, norm_type=0), ValueError, "norm_type must be a p > 0 or inf"),
    (lambda: clip_grad_norm(1.0, norm_type=-math.inf), ValueError, "norm_type must be a p > 0 or inf"),
    (lambda: clip_grad_norm(1.0, error_if_nonfinite=1), TypeError, "error_if_nonfinite must be a bool"),
])
def test_bad_arguments_are_refused_by_name(make, error, message):
    with pytest.raises(error, match=message):
        make()


def test_norm_type_inf_may_be_spelled_as_torch_spells_it():
    grads = gradient_tree(np.float32, total=3.0, norm_type=math.inf)
    spelled, number = our_clipped(grads, 1.0, "inf"), our_clipped(grads, 1.0, math.inf)
    np.testing.assert_array_equal(spelled["0.weight"], number["0.weight"])
