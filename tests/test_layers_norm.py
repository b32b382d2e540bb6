"""Specification of funcgrad.layers.norm: nn.BatchNorm1d/2d and nn.LayerNorm as pure functions.

Each drawn case runs torch's own module (loaded from funcgrad's params and state with
``load_state_dict(strict=True)``, which proves the names) in float64 and in the tested
dtype, and funcgrad in the tested dtype; the project's verdict judges the outputs, the
gradients of a random linear functional ``sum(y * g)`` and the running statistics (see
SHAPES for why the float32 BatchNorm examples are drawn derandomized).
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import funcgrad as fg
from funcgrad.layers.norm import batch_norm_apply, batch_norm_init, layer_norm_apply, layer_norm_init
from tests.helpers_torch import DTYPES, jax_precision

TORCH_DTYPES = {np.float32: torch.float32, np.float64: torch.float64}
EXAMPLES = 20
MOMENTA = st.one_of(st.just(0.1), st.none(), st.floats(0.01, 0.99))


def verdict(jax_results, torch_results, reference, dtype):
    return fg.parity.compare_results(jax_results, torch_results, dtype, reference=reference)


def assert_parity(jax_results, torch_results, reference, dtype):
    rows = verdict(jax_results, torch_results, reference, dtype)
    assert all(row.passed for row in rows), fg.parity.format_failures(rows)


def failing(rows) -> set[str]:
    return {row.name for row in rows if not row.passed}


def to_numpy(tree):
    """Nested dicts of JAX arrays or torch tensors as nested dicts of numpy copies."""
    def convert(value):
        return value.detach().numpy().copy() if isinstance(value, torch.Tensor) else np.array(value)
    return {name: to_numpy(value) if isinstance(value, dict) else convert(value) for name, value in tree.items()}


# ---------------------------------------------------------------- BatchNorm

# Each layer's input shapes, from a few (each compiles once per variant). float64 proves the
# algorithm (1e-10) down to two values per channel, one channel, a batch of one image.
# float32 is judged against torch's own float32 rounding (the band: 4x torch's distance to
# float64), and torch's CPU kernel sums each channel in double; JAX's reverse pass sums in
# float32 whatever the forward pass does. Each framework's error is the other's on median,
# but where a channel's sum cancels, torch's is the smaller: on a few channels 1-3 %
# of drawn cases failed, with 16 or 64 channels 0.2-0.3 % (ratios 1.0-1.5, the first step's
# gradients, whose band no earlier step widens). The float32 test draws its examples
# derandomized, so that its verdict does not depend on the run.
SHAPES = {
    np.float64: {"1d": [(2, 1), (5, 3)], "1d-sequence": [(3, 2, 4)], "2d": [(1, 3, 2, 2)]},
    np.float32: {"1d": [(6, 64)], "1d-sequence": [(2, 64, 3)], "2d": [(2, 64, 2, 2)]},
}
TRAIN_STEPS = 4


@st.composite
def batch_norm_cases(draw, dtype):
    """A layer, its initial params and state, a few training batches and an eval one."""
    layer = draw(st.sampled_from(sorted(SHAPES[dtype])))
    shape = draw(st.sampled_from(SHAPES[dtype][layer]))
    channels = shape[1]
    affine, track = draw(st.booleans()), draw(st.booleans())
    loc = draw(st.floats(-10, 10))
    # float32: a channel's mean at most 10 standard deviations from 0. Beyond that, torch's
    # double sums keep the normalized output to a few ulps while a float32 mean carries the
    # input's rounding times |mean| / std into it: CI drew a batch of mean 4.8 and spread 0.3
    # (16 deviations) whose output JAX held 1.26x the band (1.5x torch's error). float64
    # covers every ratio.
    scale = draw(st.floats(0.1 if dtype == np.float64 else max(0.1, abs(loc) / 10), 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = {"weight": rng.normal(1, 0.5, channels), "bias": rng.normal(0, 1, channels)} if affine else {}
    state = {
        "running_mean": rng.normal(0, 1, channels),
        "running_var": rng.uniform(0.5, 2, channels),
        "num_batches_tracked": np.int64(rng.integers(0, 4)),
    } if track else {}
    batches = [(loc + scale * rng.normal(size=shape), rng.normal(size=shape)) for _ in range(TRAIN_STEPS + 1)]
    return dict(layer=layer, params=params, state=state, batches=batches, momentum=draw(MOMENTA))


def cast(tree, dtype):
    """Float leaves in ``dtype``; integer ones (num_batches_tracked) as they are."""
    return {name: value.astype(dtype) if np.issubdtype(value.dtype, np.floating) else value
            for name, value in tree.items()}


@functools.partial(jax.jit, static_argnames=("cumulative", "spatial_dims", "eval_in_train_mode"))
def jax_batch_norm_steps(params, state, xs, gs, momentum, *, cumulative, spatial_dims, eval_in_train_mode):
    """Train mode over all batches but the last (a scan), then eval mode on the last.

    ``momentum`` is traced (one compilation serves every value), None when ``cumulative``."""
    momentum = None if cumulative else momentum

    def step(state, batch, train):
        def functional(x, params):
            y, new_state = batch_norm_apply(params, state, x, train=train, momentum=momentum,
                                            spatial_dims=spatial_dims)
            return jnp.sum(y * batch[1]), (y, new_state)

        (_, (y, state)), (grad_x, grad_params) = jax.value_and_grad(functional, (0, 1), has_aux=True)(
            batch[0], params)
        return state, {"y": y, "grad": {"x": grad_x} | grad_params, "state": state}

    state, train = jax.lax.scan(lambda state, batch: step(state, batch, True), state, (xs[:-1], gs[:-1]))
    return train, step(state, (xs[-1], gs[-1]), eval_in_train_mode)[1]


def jax_batch_norm_run(case, dtype):
    """funcgrad's steps in train mode, then one in eval mode: y, gradients and state after each."""
    xs, gs = (np.stack(arrays).astype(dtype) for arrays in zip(*case["batches"]))
    with jax_precision(dtype):
        train, last = jax_batch_norm_steps(
            cast(case["params"], dtype), cast(case["state"], dtype), xs, gs,
            0.0 if case["momentum"] is None else case["momentum"],
            cumulative=case["momentum"] is None, spatial_dims=2 if case["layer"] == "2d" else 1,
            # Without running stats torch's eval mode normalizes with the batch's statistics,
            # which funcgrad asks for as train=True (its refusal says so).
            eval_in_train_mode=not case["state"])
    return report(train, last)


def torch_batch_norm_run(case, dtype):
    """The same steps through torch's module, loaded strictly from the same params and state."""
    layer = torch.nn.BatchNorm2d if case["layer"] == "2d" else torch.nn.BatchNorm1d
    module = layer(len(case["batches"][0][0][0]), momentum=case["momentum"], affine=bool(case["params"]),
                   track_running_stats=bool(case["state"]), dtype=TORCH_DTYPES[dtype])
    module.load_state_dict({name: torch.tensor(value) for name, value in
                            (cast(case["params"], dtype) | cast(case["state"], dtype)).items()}, strict=True)
    steps = []
    for step, (x, g) in enumerate(case["batches"]):
        module.train(step < len(case["batches"]) - 1)
        module.zero_grad()
        x = torch.tensor(x.astype(dtype), requires_grad=True)
        y = module(x)
        (y * torch.tensor(g.astype(dtype))).sum().backward()
        steps.append(to_numpy({"y": y, "grad": {"x": x.grad} | {name: p.grad for name, p in module.named_parameters()},
                               "state": dict(module.named_buffers())}))
    *train, last = steps
    return report(jax.tree.map(lambda *values: np.stack(values), *train), last)


def report(train, last):
    """The train steps as histories (the verdict judges each step, its band drawn from torch's
    rounding over a window of steps), the eval step on its own; num_batches_tracked exact."""
    train, last = fg.parity.flatten(to_numpy(train)), fg.parity.flatten(to_numpy(last))
    exact = {name: name.endswith("num_batches_tracked") for name in last}
    return {"train": {name: (fg.parity.Exact if exact[name] else fg.parity.History)(value)
                      for name, value in train.items()},
            "eval": {name: fg.parity.Exact(value) if exact[name] else value for name, value in last.items()}}


def assert_batch_norm_matches_torch(case, dtype):
    assert_parity(jax_batch_norm_run(case, dtype), torch_batch_norm_run(case, dtype),
                  torch_batch_norm_run(case, np.float64), dtype)


@settings(max_examples=EXAMPLES, deadline=None)
@given(case=batch_norm_cases(np.float64))
def test_batch_norm_matches_torch_over_train_steps_then_eval_in_float64(case):
    assert_batch_norm_matches_torch(case, np.float64)


@settings(max_examples=EXAMPLES, deadline=None, derandomize=True)
@given(case=batch_norm_cases(np.float32))
def test_batch_norm_matches_torch_over_train_steps_then_eval_in_float32(case):
    assert_batch_norm_matches_torch(case, np.float32)


@pytest.mark.parametrize("layer, momentum", [("1d", 0.1), ("1d-sequence", None), ("2d", 0.3)],
                         ids=["1d-default", "1d-sequence-cumulative", "2d-custom"])
def test_batch_norm_from_torchs_init_follows_torch_in_float64(layer, momentum):
    """Running stats from torch's init (0 and 1, a count of 0), each momentum convention once."""
    rng = np.random.default_rng(0)
    shape = SHAPES[np.float64][layer][-1]
    params, state = (to_numpy(tree) for tree in batch_norm_init(shape[1]))
    case = dict(layer=layer, momentum=momentum, params=params, state=state,
                batches=[(2 + 3 * rng.normal(size=shape), rng.normal(size=shape)) for _ in range(TRAIN_STEPS + 1)])
    assert_parity(jax_batch_norm_run(case, np.float64), torch_batch_norm_run(case, np.float64), None, np.float64)


@DTYPES
def test_batch_norm_init_is_torch_state_dict(dtype):
    module = torch.nn.BatchNorm2d(5, dtype=TORCH_DTYPES[dtype])
    with jax_precision(dtype):
        params, state = batch_norm_init(5, dtype=dtype)
    ours = to_numpy(params | state)
    assert list(ours) == list(module.state_dict())
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(ours[name], value.numpy(), err_msg=name)
    assert all(ours[name].dtype == dtype for name in ("weight", "bias", "running_mean", "running_var"))
    # int32 without x64, int64 (torch's dtype) with it.
    assert ours["num_batches_tracked"].dtype == (np.int64 if dtype == np.float64 else np.int32)


@pytest.mark.parametrize("affine, track", [(False, True), (True, False), (False, False)])
def test_batch_norm_init_leaves_out_what_torch_leaves_out(affine, track):
    module = torch.nn.BatchNorm1d(3, affine=affine, track_running_stats=track)
    params, state = batch_norm_init(3, affine=affine, track_running_stats=track)
    assert list(params) + list(state) == list(module.state_dict())


def test_batch_norm_running_stats_carry_no_gradient():
    params, state = batch_norm_init(2)
    x = np.random.default_rng(0).normal(size=(4, 2)).astype(np.float32)

    @jax.jit
    def gradients(x, params, state):
        def running_stats_total(x, params):
            new_state = batch_norm_apply(params, state, x, train=True)[1]
            return jnp.sum(new_state["running_mean"]) + jnp.sum(new_state["running_var"])

        def eval_output(state):
            return jnp.sum(batch_norm_apply(params, state, x, train=False)[0])

        stats = {name: state[name] for name in ("running_mean", "running_var")}
        return (jax.grad(running_stats_total, (0, 1))(x, params),
                jax.grad(lambda stats: eval_output(state | stats))(stats))

    assert all(np.all(np.asarray(leaf) == 0) for leaf in jax.tree.leaves(gradients(x, params, state)))


def test_batch_norm_eval_returns_state_unchanged():
    params, state = batch_norm_init(2)
    _, new_state = batch_norm_apply(params, state, jnp.ones((1, 2)), train=False)
    assert new_state is state


def flax_running_stats(batches, momentum):
    """flax.linen.BatchNorm's update of its running statistics: ``momentum`` weighs the old
    statistic, and the variance it tracks is the biased one."""
    mean, var, history = np.zeros(batches[0].shape[1]), np.ones(batches[0].shape[1]), []
    for x in batches:
        mean = momentum * mean + (1 - momentum) * x.mean(axis=0)
        var = momentum * var + (1 - momentum) * x.var(axis=0)
        history.append((mean, var))
    means, variances = (fg.parity.History(np.stack(stat)) for stat in zip(*history))
    return {"state/running_mean": means, "state/running_var": variances}


@pytest.mark.parametrize("flax_momentum, wrong", [
    (0.1, {"state/running_mean", "state/running_var"}),  # torch's number passed to Flax: the weights swap
    (0.9, {"state/running_var"}),  # the converted number: the mean is right, the variance still biased
], ids=["torch-number", "converted-number"])
def test_verdict_rejects_flax_batch_norm_running_stats(flax_momentum, wrong):
    rng = np.random.default_rng(1)
    case = dict(layer="1d", momentum=0.1, params={"weight": np.ones(3), "bias": np.zeros(3)},
                state={"running_mean": np.zeros(3), "running_var": np.ones(3), "num_batches_tracked": np.int64(0)},
                batches=[(rng.normal(size=(8, 3)), rng.normal(size=(8, 3))) for _ in range(4)])
    torch_train = torch_batch_norm_run(case, np.float64)["train"]
    flax = flax_running_stats([x for x, _ in case["batches"][:-1]], flax_momentum)
    rows = verdict(flax, {name: torch_train[name] for name in flax}, None, np.float64)
    assert failing(rows) == wrong
    assert all(row.first_divergence == 0 for row in rows if not row.passed)


def test_batch_norm_differentiates_twice_as_torch_does():
    """fg.hvp is forward-over-reverse: it runs through the custom derivative rule (a custom
    VJP would refuse it). torch computes it reverse-over-reverse through its double backward."""
    rng = np.random.default_rng(2)
    x, g, v = (rng.normal(size=(4, 3, 2)) for _ in range(3))
    weight = rng.normal(1, 0.5, 3)

    def loss(x):
        y, _ = batch_norm_apply({"weight": jnp.asarray(weight), "bias": jnp.zeros(3)}, {}, x, train=True)
        return jnp.sum(jnp.tanh(y) * g)

    def torch_loss(x):
        y = torch.nn.functional.batch_norm(x, None, None, torch.tensor(weight), torch.zeros(3, dtype=x.dtype),
                                           training=True)
        return (torch.tanh(y) * torch.tensor(g)).sum()

    with jax_precision(np.float64):
        ours = np.asarray(jax.jit(functools.partial(fg.hvp, loss))(x, v))
    theirs = torch.autograd.functional.hvp(torch_loss, torch.tensor(x), torch.tensor(v))[1].numpy()
    assert_parity({"hvp": ours}, {"hvp": theirs}, None, np.float64)


def jit_or_not(compile, fn):
    return jax.jit(fn) if compile else fn


COMPILE = pytest.mark.parametrize("compile", [False, True], ids=["eager", "jit"])


@COMPILE
def test_batch_norm_eval_refuses_missing_running_stats(compile):
    params, state = batch_norm_init(3, track_running_stats=False)
    apply = jit_or_not(compile, lambda x: batch_norm_apply(params, state, x, train=False))
    with pytest.raises(ValueError, match=r"eval mode \(train=False\) normalizes with the running statistics, "
                                         r"but state is empty.*pass train=True"):
        apply(jnp.zeros((4, 3)))


@COMPILE
@pytest.mark.parametrize("shape, hint", [
    ((4, 5), ""),
    ((2, 5, 7), ""),
    ((2, 8, 8, 3), "looks like NHWC (channels last), but torch's BatchNorm2d takes NCHW"),
], ids=["1d", "1d-sequence", "nhwc"])
def test_batch_norm_refuses_another_channel_count(compile, shape, hint):
    params, state = batch_norm_init(3)
    apply = jit_or_not(compile, lambda x: batch_norm_apply(params, state, x, train=True))
    pattern = re.escape(f"x of shape {shape} has {shape[1]} channels on axis 1 but the layer has num_features=3")
    with pytest.raises(ValueError, match=pattern + ".*" + re.escape(hint)):
        apply(jnp.zeros(shape))


@COMPILE
@pytest.mark.parametrize("shape", [(1, 3), (1, 3, 1), (1, 3, 1, 1)])
def test_batch_norm_refuses_one_value_per_channel_in_train_mode(compile, shape):
    params, state = batch_norm_init(3)
    apply = jit_or_not(compile, lambda x: batch_norm_apply(params, state, x, train=True))
    with pytest.raises(ValueError, match=re.escape("Expected more than 1 value per channel when training, "
                                                   f"got input size {shape}")):
        apply(jnp.zeros(shape))
    with pytest.raises(ValueError, match="Expected more than 1 value per channel when training"):
        torch.nn.BatchNorm2d(3)(torch.zeros(shape)) if len(shape) == 4 else torch.nn.BatchNorm1d(3)(torch.zeros(shape))
    batch_norm_apply(params, state, jnp.zeros(shape), train=False)  # eval mode has the running stats


@COMPILE
@pytest.mark.parametrize("spatial_dims, shape, expected", [
    (1, (2, 3, 4, 4), "BatchNorm1d expects a 2-D (N, C) or 3-D (N, C, L) input, got a 4-D input"),
    (2, (2, 3, 4), "BatchNorm2d expects a 4-D (N, C, H, W) input, got a 3-D input"),
    (None, (2, 3, 4, 4, 4), "BatchNorm1d or BatchNorm2d expects a 2-D (N, C) or 3-D (N, C, L) or 4-D"),
    (None, (3,), "got a 1-D input of shape (3,)"),
])
def test_batch_norm_refuses_the_wrong_rank_for_the_layer(compile, spatial_dims, shape, expected):
    params, state = batch_norm_init(3)
    apply = jit_or_not(compile, lambda x: batch_norm_apply(params, state, x, train=True, spatial_dims=spatial_dims))
    with pytest.raises(ValueError, match=re.escape(expected)):
        apply(jnp.zeros(shape))


def test_batch_norm_refuses_an_unknown_spatial_dims():
    params, state = batch_norm_init(3)
    with pytest.raises(ValueError, match=r"spatial_dims must be 1 \(BatchNorm1d\), 2 \(BatchNorm2d\) or None"):
        batch_norm_apply(params, state, jnp.zeros((2, 3, 4, 4, 4)), train=True, spatial_dims=3)


def test_batch_norm_refuses_half_precision():
    params, state = batch_norm_init(3)
    with pytest.raises(TypeError, match="batch_norm_apply: x has dtype float16"):
        batch_norm_apply(params, state, jnp.zeros((2, 3), jnp.float16), train=True)
    with pytest.raises(TypeError, match="batch_norm_init: dtype float16 is not supported"):
        batch_norm_init(3, dtype=jnp.float16)


# ---------------------------------------------------------------- LayerNorm

# (leading shape, normalized_shape): float64 down to a single normalized element; float32
# wide enough for the band (see the BatchNorm note above).
LAYER_NORM_SHAPES = {
    np.float64: [((3,), (4,)), ((2, 3), (2, 3)), ((), (1,)), ((5,), (2,))],
    np.float32: [((8,), (24,)), ((2, 4), (4, 6))],
}
LAYER_NORM_OPTIONS = [dict(elementwise_affine=True, bias=True), dict(elementwise_affine=True, bias=False),
                      dict(elementwise_affine=False, bias=True)]


@st.composite
def layer_norm_cases(draw, dtype):
    leading, normalized_shape = draw(st.sampled_from(LAYER_NORM_SHAPES[dtype]))
    options = draw(st.sampled_from(LAYER_NORM_OPTIONS))
    loc, scale = draw(st.floats(-10, 10)), draw(st.floats(0.01, 10))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    params = {}
    if options["elementwise_affine"]:
        params["weight"] = rng.normal(1, 0.5, normalized_shape)
        if options["bias"]:
            params["bias"] = rng.normal(0, 1, normalized_shape)
    x = loc + scale * rng.normal(size=(*leading, *normalized_shape))
    return params, x, rng.normal(size=x.shape), normalized_shape, options


@functools.partial(jax.jit, static_argnames=("normalized_shape", "eps"))
def layer_norm_and_grads(params, x, g, normalized_shape, eps=1e-5):
    y, vjp = jax.vjp(lambda x, params: layer_norm_apply(params, x, normalized_shape, eps=eps), x, params)
    grad_x, grad_params = vjp(g)
    return {"y": y, "grad": {"x": grad_x} | grad_params}


def jax_layer_norm(params, x, g, normalized_shape, dtype, eps=1e-5):
    with jax_precision(dtype):
        return to_numpy(layer_norm_and_grads(cast(params, dtype), x.astype(dtype), g.astype(dtype),
                                             normalized_shape, eps))


def torch_layer_norm(params, x, g, normalized_shape, options, dtype):
    module = torch.nn.LayerNorm(normalized_shape, **options, dtype=TORCH_DTYPES[dtype])
    module.load_state_dict({name: torch.tensor(value.astype(dtype)) for name, value in params.items()}, strict=True)
    x = torch.tensor(x.astype(dtype), requires_grad=True)
    y = module(x)
    (y * torch.tensor(g.astype(dtype))).sum().backward()
    return to_numpy({"y": y, "grad": {"x": x.grad} | {name: p.grad for name, p in module.named_parameters()}})


@DTYPES
@settings(max_examples=20, deadline=None)
@given(data=st.data())
def test_layer_norm_matches_torch(dtype, data):
    params, x, g, normalized_shape, options = data.draw(layer_norm_cases(dtype), label="case")
    assert_parity(jax_layer_norm(params, x, g, normalized_shape, dtype),
                  torch_layer_norm(params, x, g, normalized_shape, options, dtype),
                  torch_layer_norm(params, x, g, normalized_shape, options, np.float64), dtype)


@pytest.mark.parametrize("options", LAYER_NORM_OPTIONS, ids=["affine", "no-bias", "no-affine"])
@pytest.mark.parametrize("normalized_shape", [5, (2, 3)])
def test_layer_norm_init_is_torch_state_dict(options, normalized_shape):
    module = torch.nn.LayerNorm(normalized_shape, **options)
    params = to_numpy(layer_norm_init(normalized_shape, **options))
    assert list(params) == list(module.state_dict())
    for name, value in module.state_dict().items():
        np.testing.assert_array_equal(params[name], value.numpy(), err_msg=name)
        assert params[name].dtype == np.float32


def test_verdict_rejects_flax_layer_norm_epsilon():
    """Flax's LayerNorm defaults to eps=1e-6; on features whose variance is near 1e-5 the two
    epsilons normalize visibly differently, and the verdict says so."""
    rng = np.random.default_rng(3)
    x = 1 + 3e-3 * rng.normal(size=(4, 16))  # variance ~1e-5
    g = rng.normal(size=x.shape)
    options = LAYER_NORM_OPTIONS[0]
    params = {"weight": np.ones(16), "bias": np.zeros(16)}
    reference = torch_layer_norm(params, x, g, (16,), options, np.float64)
    theirs = torch_layer_norm(params, x, g, (16,), options, np.float32)
    assert_parity(jax_layer_norm(params, x, g, (16,), np.float32), theirs, reference, np.float32)
    rows = verdict(jax_layer_norm(params, x, g, (16,), np.float32, eps=1e-6), theirs, reference, np.float32)
    assert {"y", "grad/x"} <= failing(rows)


@COMPILE
@pytest.mark.parametrize("x_shape", [(4, 6), (4, 2, 6), (5,)])
def test_layer_norm_refuses_other_trailing_dims(compile, x_shape):
    params = layer_norm_init((2, 5))
    apply = jit_or_not(compile, lambda x: layer_norm_apply(params, x, (2, 5)))
    with pytest.raises(ValueError, match=re.escape(f"x has shape {x_shape}, whose trailing dims must be "
                                                   "normalized_shape (2, 5)")):
        apply(jnp.zeros(x_shape))


def test_layer_norm_refuses_params_of_another_shape():
    with pytest.raises(ValueError, match=re.escape("params['weight'] has shape (4,) but normalized_shape is (5,)")):
        layer_norm_apply(layer_norm_init(4), jnp.zeros((2, 5)), 5)
