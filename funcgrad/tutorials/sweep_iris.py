"""Seed 000 afternoon, swept: 1000 Iris models (10 seeds x 100 learning rates) in one call."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcgrad as fg
from funcgrad.tutorials import iris_softmax as port

NUM_SEEDS = 10
LEARNING_RATES = np.logspace(-3, 0, 100)


def compile_and_train(keys, learning_rates, x_train, y_train, num_epochs: int):
    """Every seed with every rate; return flat params and losses and the compile/run seconds."""
    params, rates = fg.sweep_grid(fg.init_many(port.init_params, keys), learning_rates)
    batch = (jnp.asarray(x_train), jnp.asarray(y_train, jnp.int32))
    start = time.perf_counter()
    train = fg.fit_full_batch_sweep.lower(port.loss_fn, optax.sgd, params, rates, batch, num_epochs).compile()
    compiled = time.perf_counter()
    params, losses = jax.block_until_ready(train(params, rates, batch))
    return params, losses, compiled - start, time.perf_counter() - compiled


def accuracy_of_each_model(stacked_params, x, y) -> jax.Array:
    """Accuracy of every stacked model on ``(x, y)``."""
    return jax.vmap(lambda params: fg.accuracy(port.logits(params, x), y))(stacked_params)
