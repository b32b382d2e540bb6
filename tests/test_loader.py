"""DataLoader semantics: batch sizes that do not divide the data, drop_last, a fresh
permutation per epoch, and every epoch in one compilation."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

import funcgrad as fg


def test_batch_64_of_60000_keeps_a_short_batch_of_32():
    batches = fg.loader_batches(jax.random.key(0), 60_000, 64, num_epochs=2)
    assert batches.full.shape == (2, 937, 64) and batches.last.shape == (2, 32)
    assert batches.steps_per_epoch == 938
    for epoch in range(2):
        assert sorted(batches.permutation(epoch)) == list(range(60_000))
    assert not np.array_equal(batches.permutation(0), batches.permutation(1))


def test_drop_last_drops_the_short_batch():
    batches = fg.loader_batches(jax.random.key(0), 10, 4, num_epochs=3, drop_last=True)
    assert batches.full.shape == (3, 2, 4) and batches.last.shape == (3, 0)
    assert batches.steps_per_epoch == 2
    np.testing.assert_array_equal(fg.shuffled_batch_indices(jax.random.key(0), 10, 4, 3, drop_last=True),
                                  batches.full.reshape(-1, 4))


def test_shuffled_batch_indices_names_the_way_to_keep_a_short_batch():
    with pytest.raises(ValueError, match="short batch of 32.*drop_last=True.*loader_batches"):
        fg.shuffled_batch_indices(jax.random.key(0), 60_000, 64)


@pytest.mark.parametrize("bad", [dict(batch_size=0), dict(num_epochs=0), dict(num_examples=0)])
def test_non_positive_sizes_are_refused(bad):
    with pytest.raises(ValueError, match="must be positive"):
        fg.loader_batches(jax.random.key(0), **({"num_examples": 10, "batch_size": 3} | bad))


@pytest.mark.parametrize("drop_last", [False, True])
def test_torch_dataloader_meets_the_same_batches(drop_last):
    batches = fg.loader_batches(jax.random.key(3), 23, 5, num_epochs=2, drop_last=drop_last)
    dataset = TensorDataset(torch.arange(23))
    for epoch in range(2):
        loader = DataLoader(dataset, batch_size=5, sampler=batches.permutation(epoch).tolist(), drop_last=drop_last)
        torch_batches = [indices.numpy() for (indices,) in loader]
        assert len(torch_batches) == batches.steps_per_epoch
        for ours, theirs in zip(batches.epoch(epoch), torch_batches):
            np.testing.assert_array_equal(ours, theirs)


def test_in_order_is_every_epochs_batches_one_after_another():
    batches = fg.loader_batches(jax.random.key(3), 23, 5, num_epochs=2)
    in_order = batches.in_order()
    assert len(in_order) == batches.num_steps == 10
    for ours, theirs in zip(in_order, batches.epoch(0) + batches.epoch(1)):
        np.testing.assert_array_equal(ours, theirs)


def mean_squared(params, batch):
    x, y = batch
    return jnp.mean((x @ params["w"] - y) ** 2)


def test_fit_epochs_is_the_step_by_step_loop_compiled_once():
    rng = np.random.default_rng(0)
    data = (rng.standard_normal((23, 3)), rng.standard_normal(23))
    batches = fg.loader_batches(jax.random.key(1), 23, 5, num_epochs=3)
    optimizer = optax.sgd(0.1)
    with jax.enable_x64(True):
        params = {"w": jnp.zeros(3)}
        compiled_before = fg.train._fit_epochs._cache_size()
        trained, _, losses = fg.fit_epochs(mean_squared, optimizer, params, optimizer.init(params), data, batches)
        assert fg.train._fit_epochs._cache_size() == compiled_before + 1
        fg.fit_epochs(mean_squared, optimizer, params, optimizer.init(params), (data[0] + 1, data[1]), batches)
        assert fg.train._fit_epochs._cache_size() == compiled_before + 1

        state, expected = optimizer.init(params), []
        for epoch in range(3):
            for indices in batches.epoch(epoch):
                params, state, loss = fg.train_step(mean_squared, optimizer, params, state,
                                                    (data[0][indices], data[1][indices]))
                expected.append(loss)
    assert losses.shape == (3 * 5,)
    np.testing.assert_allclose(losses, expected, rtol=1e-13)
    np.testing.assert_allclose(trained["w"], params["w"], rtol=1e-13)


def test_fit_epochs_refuses_an_index_past_the_data():
    batches = fg.loader_batches(jax.random.key(0), 30, 4)
    with pytest.raises(ValueError, match="fit_epochs: batch index .* out of range for 20 examples"):
        fg.fit_epochs(mean_squared, optax.sgd(0.1), {"w": jnp.zeros(3)}, optax.sgd(0.1).init({"w": jnp.zeros(3)}),
                      (np.zeros((20, 3), np.float32), np.zeros(20, np.float32)), batches)
