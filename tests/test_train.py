"""Specification of funcgrad.train: torch's SGD loop as pure steps, compiled loops and explicit shuffles."""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import funcgrad as fg
from tests.helpers_torch import DTYPES, jax_precision, to_torch, torch_linear

# Over tens of steps float32 sums in another order drift by a few ulps; float64 must agree.
TRAJECTORY_TOLERANCES = {
    np.float32: {"rtol": 1e-6, "atol": 1e-6},
    np.float64: {"rtol": 1e-12, "atol": 1e-12},
}
LOOP_TOLERANCE = {"rtol": 0, "atol": 1e-6}  # the same steps in a Python loop

# One object each, so every compiled loop below is compiled once and shared between tests.
SGD = optax.sgd(0.1)
MOMENTUM = optax.sgd(0.05, momentum=0.9)
compiled_step = jax.jit(fg.train_step, static_argnums=(0, 1))


def loss_fn(params, batch):
    x, y = batch
    return fg.cross_entropy(fg.linear_apply(params, x), y)


def iris(dtype) -> tuple[np.ndarray, np.ndarray]:
    data = fg.iris_first_two_features(dtype)
    return data["x_train"], data["y_train"]


def initial_params(dtype):
    """Drawn in float32 so both dtypes start from the same numbers."""
    params = fg.linear_init(jax.random.key(0), 2, 3)
    return jax.tree.map(lambda leaf: jnp.asarray(np.asarray(leaf, dtype)), params)


def torch_sgd(params, x, y, batch_indices, lr: float, momentum: float = 0.0):
    """The seeds' loop: nn.Linear, CrossEntropyLoss, optim.SGD; one step per row of indices."""
    model = torch_linear(params)
    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    x, y = to_torch(x), to_torch(y)
    losses = []
    for indices in batch_indices:
        indices = torch.from_numpy(np.asarray(indices, np.int64))
        optimizer.zero_grad()
        loss = criterion(model(x[indices]), y[indices])
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    trained = {"weight": model.weight.detach().numpy(), "bias": model.bias.detach().numpy()}
    return trained, np.array(losses)


def full_batches(num_steps: int, num_examples: int) -> np.ndarray:
    return np.tile(np.arange(num_examples), (num_steps, 1))


def python_loop(optimizer, params, opt_state, batches):
    losses = []
    for batch in batches:
        params, opt_state, loss = compiled_step(loss_fn, optimizer, params, opt_state, batch)
        losses.append(loss)
    return params, opt_state, np.array(losses)


def assert_params_close(actual, expected, **tolerance):
    for name in ("weight", "bias"):
        np.testing.assert_allclose(actual[name], expected[name], **tolerance, err_msg=name)


@DTYPES
def test_train_step_equals_one_torch_sgd_step(dtype):
    x, y = iris(dtype)
    with jax_precision(dtype):
        params = initial_params(dtype)
        batch = (jnp.asarray(x), jnp.asarray(y))
        trained, _, loss = compiled_step(loss_fn, SGD, params, SGD.init(params), batch)
    expected, expected_losses = torch_sgd(params, x, y, full_batches(1, len(x)), lr=0.1)
    tolerance = TRAJECTORY_TOLERANCES[dtype]
    np.testing.assert_allclose(loss, expected_losses[0], **tolerance)  # the loss before the update
    assert_params_close(trained, expected, **tolerance)
    assert trained["weight"].dtype == dtype


def test_fit_full_batch_equals_a_python_loop_of_train_step():
    x, y = iris(np.float32)
    batch = (jnp.asarray(x), jnp.asarray(y))
    params = initial_params(np.float32)
    trained, _, losses = fg.fit_full_batch(loss_fn, SGD, params, SGD.init(params), batch, 50)
    expected, _, expected_losses = python_loop(SGD, params, SGD.init(params), [batch] * 50)
    assert losses.shape == (50,)
    np.testing.assert_allclose(losses, expected_losses, **LOOP_TOLERANCE)
    assert_params_close(trained, expected, **LOOP_TOLERANCE)


@DTYPES
def test_fit_full_batch_matches_torch_over_50_steps(dtype):
    x, y = iris(dtype)
    with jax_precision(dtype):
        params = initial_params(dtype)
        batch = (jnp.asarray(x), jnp.asarray(y))
        trained, _, losses = fg.fit_full_batch(loss_fn, SGD, params, SGD.init(params), batch, 50)
    expected, expected_losses = torch_sgd(params, x, y, full_batches(50, len(x)), lr=0.1)
    assert expected_losses[-1] < expected_losses[0]  # the run actually trains
    np.testing.assert_allclose(losses, expected_losses, **TRAJECTORY_TOLERANCES[dtype])
    assert_params_close(trained, expected, **TRAJECTORY_TOLERANCES[dtype])


def test_fit_minibatches_equals_a_python_loop_over_the_same_batches():
    x, y = iris(np.float32)
    data = (jnp.asarray(x), jnp.asarray(y))
    order = fg.shuffled_batch_indices(jax.random.key(1), len(x), 30, num_epochs=5)
    params = initial_params(np.float32)
    trained, _, losses = fg.fit_minibatches(loss_fn, SGD, params, SGD.init(params), data, order)
    batches = [(data[0][indices], data[1][indices]) for indices in order]
    expected, _, expected_losses = python_loop(SGD, params, SGD.init(params), batches)
    assert losses.shape == (len(order),)
    np.testing.assert_allclose(losses, expected_losses, **LOOP_TOLERANCE)
    assert_params_close(trained, expected, **LOOP_TOLERANCE)


@pytest.mark.parametrize("optimizer", [SGD, MOMENTUM], ids=["sgd", "momentum"])
def test_fit_minibatches_split_into_two_calls_equals_one_call(optimizer):
    x, y = iris(np.float32)
    data = (jnp.asarray(x), jnp.asarray(y))
    order = fg.shuffled_batch_indices(jax.random.key(2), len(x), 30, num_epochs=5)  # 20 steps
    params = initial_params(np.float32)
    fit = functools.partial(fg.fit_minibatches, loss_fn, optimizer)
    whole, whole_state, whole_losses = fit(params, optimizer.init(params), data, order)
    half, half_state, first_losses = fit(params, optimizer.init(params), data, order[:10])
    split, split_state, second_losses = fit(half, half_state, data, order[10:])
    np.testing.assert_allclose(np.concatenate([first_losses, second_losses]), whole_losses, **LOOP_TOLERANCE)
    assert_params_close(split, whole, **LOOP_TOLERANCE)
    jax.tree.map(functools.partial(np.testing.assert_allclose, **LOOP_TOLERANCE), split_state, whole_state)


@DTYPES
def test_fit_minibatches_with_momentum_matches_torch_across_a_split(dtype):
    x, y = iris(dtype)
    order = fg.shuffled_batch_indices(jax.random.key(3), len(x), 30, num_epochs=5)  # 20 steps
    fit = functools.partial(fg.fit_minibatches, loss_fn, MOMENTUM)
    with jax_precision(dtype):
        data = (jnp.asarray(x), jnp.asarray(y))
        params = initial_params(dtype)
        half, opt_state, first_losses = fit(params, MOMENTUM.init(params), data, order[:10])
        trained, _, second_losses = fit(half, opt_state, data, order[10:])  # the momentum carries over
    expected, expected_losses = torch_sgd(params, x, y, order, lr=0.05, momentum=0.9)
    losses = np.concatenate([first_losses, second_losses])
    np.testing.assert_allclose(losses, expected_losses, **TRAJECTORY_TOLERANCES[dtype])
    assert_params_close(trained, expected, **TRAJECTORY_TOLERANCES[dtype])


def test_shuffled_batch_indices_cuts_epochs_into_equal_batches():
    order = fg.shuffled_batch_indices(jax.random.key(0), 12, 4, num_epochs=3)
    assert order.shape == (9, 4)
    assert order.dtype == np.int32


def test_shuffled_batch_indices_makes_a_fresh_permutation_per_epoch():
    epochs = fg.shuffled_batch_indices(jax.random.key(0), 50, 10, num_epochs=4).reshape(4, 50)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(50))
    assert len({tuple(epoch) for epoch in epochs}) == 4
    assert not any(np.array_equal(epoch, np.arange(50)) for epoch in epochs)


def test_shuffled_batch_indices_is_a_function_of_its_key():
    first = fg.shuffled_batch_indices(jax.random.key(5), 50, 10, num_epochs=2)
    np.testing.assert_array_equal(first, fg.shuffled_batch_indices(jax.random.key(5), 50, 10, num_epochs=2))
    assert not np.array_equal(first, fg.shuffled_batch_indices(jax.random.key(6), 50, 10, num_epochs=2))


@pytest.mark.parametrize("batch_size", [3, 4])
def test_shuffled_batch_indices_names_both_numbers_when_batches_would_be_ragged(batch_size):
    message = f"batch_size {batch_size} does not divide the 10 examples"
    with pytest.raises(ValueError, match=re.escape(message)):
        fg.shuffled_batch_indices(jax.random.key(0), 10, batch_size)


def test_shuffled_batch_indices_refuses_a_batch_of_zero():
    with pytest.raises(ValueError, match="must be positive, got 10, 0, 1"):
        fg.shuffled_batch_indices(jax.random.key(0), 10, 0)


def test_a_loss_that_becomes_nan_stops_the_run_with_its_step():
    x = jnp.array([[1e30], [2e30]], jnp.float32)
    y = jnp.array([[1.0], [0.0]], jnp.float32)
    params = {"weight": jnp.ones((1, 1)), "bias": jnp.zeros(1)}

    def squared_error(p, batch):
        return fg.mse_loss(fg.linear_apply(p, batch[0]), batch[1])

    optimizer = optax.sgd(1.0)
    with pytest.raises(fg.NonFiniteLossError, match=r"loss became inf at step 0 of 5") as error:
        fg.fit_full_batch(squared_error, optimizer, params, optimizer.init(params), (x, y), 5)
    assert error.value.step == 0


def test_nan_in_params_or_data_is_refused_before_training():
    params = {"weight": jnp.array([[jnp.nan]]), "bias": jnp.zeros(1)}
    optimizer = optax.sgd(0.1)
    batch = (jnp.ones((2, 1)), jnp.ones((2, 1)))
    with pytest.raises(ValueError, match=r"fit_full_batch: params\['weight'\] holds 1 non-finite"):
        fg.fit_full_batch(lambda p, b: jnp.sum(p["weight"]), optimizer, params, optimizer.init(params), batch, 3)


@pytest.mark.parametrize("num_steps", [-1, 0, 2.5])
def test_a_number_of_steps_that_is_not_positive_is_refused_by_name(num_steps):
    params = {"weight": jnp.ones((1, 1)), "bias": jnp.zeros(1)}
    optimizer = optax.sgd(0.1)
    with pytest.raises(ValueError, match=rf"fit_full_batch: num_steps must be a positive integer, got {num_steps}"):
        fg.fit_full_batch(lambda p, b: jnp.sum(p["weight"]), optimizer, params, optimizer.init(params),
                          jnp.ones((2, 1)), num_steps)


def test_batch_indices_out_of_range_are_refused():
    params = {"weight": jnp.ones((1, 1)), "bias": jnp.zeros(1)}
    optimizer = optax.sgd(0.1)
    data = (jnp.ones((4, 1)), jnp.ones((4, 1)))
    with pytest.raises(ValueError, match="batch index 4 is out of range for 4 examples"):
        fg.fit_minibatches(lambda p, b: jnp.sum(p["weight"]), optimizer, params, optimizer.init(params),
                           data, np.array([[0, 4]]))
