"""Specification of funcgrad.layers.linear and funcgrad.state_dict: nn.Linear's init, forward pass and state_dict, as pure functions."""

import functools
import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import funcgrad as fg
from tests.helpers_torch import DTYPES, TOLERANCES, jax_precision, to_torch


@pytest.mark.parametrize("in_features, out_features", [(2, 3), (784, 10), (1, 1)])
def test_linear_init_has_torch_layout(in_features, out_features):
    init = functools.partial(fg.linear_init, in_features=in_features, out_features=out_features)
    params = jax.eval_shape(init, jax.random.key(0))  # shapes only, nothing drawn
    assert set(params) == {"weight", "bias"}
    assert params["weight"].shape == (out_features, in_features)
    assert params["bias"].shape == (out_features,)


@pytest.mark.parametrize("in_features", [1, 784])
def test_linear_init_stays_within_one_over_sqrt_fan_in(in_features):
    params = fg.linear_init(jax.random.key(1), in_features, 3)
    bound = 1 / math.sqrt(in_features)
    for name, value in params.items():
        assert np.all(np.abs(np.asarray(value)) <= bound), name


@pytest.mark.parametrize("name", ["weight", "bias"])
def test_linear_init_is_uniform_over_the_whole_interval(name):
    values = np.asarray(fg.linear_init(jax.random.key(2), 4, 1000)[name]).ravel()  # bound 0.5
    assert -0.5 <= values.min() < -0.49 and 0.49 < values.max() <= 0.5
    assert abs(values.mean()) < 0.03
    np.testing.assert_allclose(np.quantile(values, [0.25, 0.5, 0.75]), [-0.25, 0.0, 0.25], atol=0.04)
    np.testing.assert_allclose(values.std(), 1 / math.sqrt(12), rtol=0.05)  # U(-a, a): a / sqrt(3)


@DTYPES
def test_linear_init_draws_in_the_requested_dtype(dtype):
    with jax_precision(dtype):
        params = fg.linear_init(jax.random.key(0), 2, 3, dtype=dtype)
    assert params["weight"].dtype == dtype
    assert params["bias"].dtype == dtype


def test_linear_init_is_a_function_of_its_key():
    first = fg.linear_init(jax.random.key(7), 2, 3)
    again = fg.linear_init(jax.random.key(7), 2, 3)
    other = fg.linear_init(jax.random.key(8), 2, 3)
    for name in ("weight", "bias"):
        np.testing.assert_array_equal(first[name], again[name])
        assert not np.any(np.asarray(first[name]) == np.asarray(other[name])), name


def test_linear_init_draws_weight_and_bias_independently():
    params = fg.linear_init(jax.random.key(3), 1, 3)  # weight (3, 1), bias (3,)
    assert not np.any(np.asarray(params["weight"][:, 0]) == np.asarray(params["bias"]))


@DTYPES
@pytest.mark.parametrize("batch_shape", [(), (5,), (2, 5)], ids=["single", "batch", "nested-batch"])
def test_linear_apply_equals_torch_functional_linear(dtype, batch_shape):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((*batch_shape, 2)).astype(dtype)
    with jax_precision(dtype):
        params = fg.linear_init(jax.random.key(0), 2, 3, dtype=dtype)
        y = fg.linear_apply(params, jnp.asarray(x))
    expected = F.linear(to_torch(x), to_torch(params["weight"]), to_torch(params["bias"])).numpy()
    assert y.dtype == dtype and y.shape == (*batch_shape, 3)
    np.testing.assert_allclose(y, expected, **TOLERANCES[dtype])
    weight, bias = np.asarray(params["weight"]), np.asarray(params["bias"])
    np.testing.assert_allclose(y, x @ weight.T + bias, **TOLERANCES[dtype])


@pytest.mark.parametrize("x_shape", [(5, 3), (3,), ()], ids=["wrong-features", "wrong-vector", "scalar"])
def test_linear_apply_names_both_shapes_on_mismatch(x_shape):
    params = fg.linear_init(jax.random.key(0), 2, 3)
    pattern = re.escape(f"input has shape {x_shape}") + r".*" + re.escape("weight has shape (3, 2)")
    with pytest.raises(ValueError, match=pattern):
        fg.linear_apply(params, jnp.zeros(x_shape))


def nested_params() -> dict:
    keys = jax.random.split(jax.random.key(0), 2)
    return {
        "encoder": {"linear": fg.linear_init(keys[0], 2, 3)},
        "head": fg.linear_init(keys[1], 3, 2),
    }


def test_to_state_dict_joins_nested_names_with_dots_as_torch_does():
    state = fg.to_state_dict(nested_params())
    assert list(state) == ["encoder.linear.weight", "encoder.linear.bias", "head.weight", "head.bias"]
    assert all(isinstance(value, np.ndarray) for value in state.values())
    assert state["encoder.linear.weight"].shape == (3, 2)
    assert state["head.bias"].dtype == np.float32


def test_state_dict_round_trip_restores_nested_params():
    params = nested_params()
    restored = fg.from_state_dict(fg.to_state_dict(params))
    assert jax.tree.structure(restored) == jax.tree.structure(params)
    jax.tree.map(np.testing.assert_array_equal, restored, params)


def test_state_dict_round_trip_restores_state_dict():
    state = {"linear.weight": np.arange(6.0).reshape(3, 2), "linear.bias": np.array([1.0, 2.0, 3.0])}
    with jax.enable_x64(True):
        round_trip = fg.to_state_dict(fg.from_state_dict(state))
    assert list(round_trip) == list(state)
    for name in state:
        np.testing.assert_array_equal(round_trip[name], state[name])
        assert round_trip[name].dtype == state[name].dtype


class TorchLogisticRegression(torch.nn.Module):
    """The seeds' model: a module whose ``linear`` attribute holds the layer."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.linear = torch.nn.Linear(in_features, out_features)

    def forward(self, x):
        return self.linear(x)


def test_to_state_dict_loads_into_a_torch_module_strictly():
    params = {"linear": fg.linear_init(jax.random.key(5), 2, 3)}
    model = TorchLogisticRegression(2, 3)
    state_dict = {name: to_torch(value) for name, value in fg.to_state_dict(params).items()}
    result = model.load_state_dict(state_dict)
    assert not result.missing_keys and not result.unexpected_keys
    x = np.random.default_rng(0).standard_normal((4, 2)).astype(np.float32)
    np.testing.assert_allclose(
        model(torch.from_numpy(x)).detach().numpy(),
        fg.linear_apply(params["linear"], jnp.asarray(x)),
        **TOLERANCES[np.float32],
    )


def test_from_state_dict_reads_a_torch_modules_state_dict():
    torch.manual_seed(0)
    model = TorchLogisticRegression(2, 3)
    params = fg.from_state_dict({name: value.numpy() for name, value in model.state_dict().items()})
    np.testing.assert_array_equal(params["linear"]["weight"], model.linear.weight.detach().numpy())
    np.testing.assert_array_equal(params["linear"]["bias"], model.linear.bias.detach().numpy())


def torch_mlp(sizes, dtype):
    layers = []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        layers += [torch.nn.Linear(fan_in, fan_out), torch.nn.ReLU()]
    return torch.nn.Sequential(*layers[:-1]).to(to_torch(np.zeros(1, dtype)).dtype)


def test_mlp_init_has_sequentials_keys_shapes_and_bounds():
    params = fg.mlp_init(jax.random.key(0), (784, 128, 10))
    theirs = torch_mlp((784, 128, 10), np.float32).state_dict()
    ours = fg.to_state_dict(params)
    assert {k: v.shape for k, v in ours.items()} == {k: tuple(v.shape) for k, v in theirs.items()}
    for layer, fan_in in (("0", 784), ("2", 128)):
        assert np.abs(ours[f"{layer}.weight"]).max() <= 1 / math.sqrt(fan_in)


@DTYPES
def test_mlp_state_dict_round_trip_through_torch_keeps_the_function(dtype):
    with jax_precision(dtype):
        params = jax.tree.map(lambda p: p.astype(dtype), fg.mlp_init(jax.random.key(1), (6, 5, 4, 3)))
        x = np.random.default_rng(0).standard_normal((8, 6)).astype(dtype)
        model = torch_mlp((6, 5, 4, 3), dtype)
        model.load_state_dict({k: to_torch(v) for k, v in fg.to_state_dict(params).items()}, strict=True)
        back = fg.from_state_dict({k: v.detach().numpy() for k, v in model.state_dict().items()})
        np.testing.assert_allclose(fg.mlp_apply(params, x), model(to_torch(x)).detach().numpy(), **TOLERANCES[dtype])
        chex_equal = jax.tree.map(lambda a, b: np.array_equal(a, b), params, back)
    assert all(jax.tree.leaves(chex_equal))


def test_mlp_init_refuses_a_single_size():
    with pytest.raises(ValueError, match="at least an input and an output size"):
        fg.mlp_init(jax.random.key(0), (784,))
