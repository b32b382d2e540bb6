"""A sweep trains every model as it would train alone, all in one call (its torch.func twin: tests/test_parity.py)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import funcgrad as fg
from funcgrad.tutorials import iris_softmax as tutorial

# Below Iris's edge of stability (near 0.16): above it the loss oscillates and last-bit
# differences between any two float32 runs grow instead of dying out.
STABLE_RATES = (0.01, 0.1)

# float32: vmap compiles the loss's mean and the weight gradient's sum over the 120
# examples as batched reductions, summed in another order than the single model's, so
# the first step already differs in the last bit; torch.testing.assert_close's float32
# tolerance bounds the drift over 10 000 steps. float64 shows the steps are the same.
TOLERANCES = {np.float32: dict(rtol=1.3e-6, atol=1e-5), np.float64: dict(rtol=1e-12, atol=1e-12)}


def iris_batch(dtype):
    iris = fg.iris_first_two_features(dtype)
    return (jnp.asarray(iris["x_train"]), jnp.asarray(iris["y_train"], jnp.int32))


def model(stacked_params, i: int):
    return jax.tree.map(lambda leaf: leaf[i], stacked_params)


def two_seeds(dtype):
    inits = fg.init_many(tutorial.init_params, jax.random.split(jax.random.key(0), 2))
    return jax.tree.map(lambda leaf: leaf.astype(dtype), inits)


@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["float32", "float64"])
def test_each_sweep_member_trains_as_it_would_alone(dtype):
    with jax.enable_x64(dtype == np.float64):
        params, rates = fg.sweep_grid(two_seeds(dtype), np.asarray(STABLE_RATES, dtype))
        x, y = iris_batch(dtype)
        swept, swept_losses = fg.fit_full_batch_sweep(
            tutorial.loss_fn, optax.sgd, params, rates, (x, y), tutorial.NUM_EPOCHS
        )
        for i, rate in enumerate(np.asarray(rates)):
            alone, losses = tutorial.train(model(params, i), x, y, lr=float(rate))
            np.testing.assert_allclose(swept_losses[i], losses, **TOLERANCES[dtype])
            for swept_leaf, alone_leaf in zip(jax.tree.leaves(model(swept, i)), jax.tree.leaves(alone)):
                np.testing.assert_allclose(swept_leaf, alone_leaf, **TOLERANCES[dtype])


def test_sweep_grid_pairs_every_init_with_every_rate_init_major():
    params, rates = fg.sweep_grid(two_seeds(np.float32), jnp.array([0.1, 0.2, 0.3]))
    np.testing.assert_array_equal(rates, np.float32([0.1, 0.2, 0.3, 0.1, 0.2, 0.3]))
    inits = two_seeds(np.float32)
    for i in range(6):
        assert jax.tree.all(jax.tree.map(jnp.array_equal, model(params, i), model(inits, i // 3)))


@pytest.mark.parametrize("one_rate", [0.05, [0.05]], ids=["scalar", "length-1"])
def test_a_single_learning_rate_applies_to_every_model(one_rate):
    params, batch = two_seeds(np.float32), iris_batch(np.float32)
    shared = fg.fit_full_batch_sweep(tutorial.loss_fn, optax.sgd, params, one_rate, batch, 100)
    per_model = fg.fit_full_batch_sweep(tutorial.loss_fn, optax.sgd, params, jnp.full(2, 0.05), batch, 100)
    assert jax.tree.all(jax.tree.map(jnp.array_equal, shared, per_model))


def test_learning_rates_of_another_count_than_the_models_are_refused():
    params, batch = two_seeds(np.float32), iris_batch(np.float32)
    with pytest.raises(ValueError, match="3 learning rates .* for 2 models"):
        fg.fit_full_batch_sweep(tutorial.loss_fn, optax.sgd, params, jnp.ones(3), batch, 10)


def test_params_without_a_shared_model_axis_are_refused():
    params = {"weight": jnp.zeros((2, 3, 2)), "bias": jnp.zeros((3, 3))}
    with pytest.raises(ValueError, match=r"leading sizes \{\['bias'\]: 3, \['weight'\]: 2\}"):
        fg.sweep_grid(params, jnp.ones(4))


def test_init_many_wants_one_key_per_model():
    with pytest.raises(ValueError, match="single key.*jax.random.split"):
        fg.init_many(tutorial.init_params, jax.random.key(0))
