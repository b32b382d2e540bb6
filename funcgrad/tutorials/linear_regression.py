"""Seed 001, first half: linear regression on N = 30 points of y = 2 x1 - 1.5 x2 + 5.

The section's settings and pure functions, read by ``examples/linear_regression.py`` (which
prints what the seed prints) and by the comparison case of the same section (both
of its sides).
"""

import jax
import jax.numpy as jnp

import funcgrad as fg

NUM_STEPS = 300
LEARNING_RATE = 0.1


def loss_fn(params: dict, batch) -> jax.Array:
    x, y = batch
    return fg.mse_loss(fg.linear_apply(params, x), y)


def train(params: dict, x, y, num_steps: int = NUM_STEPS, lr: float = LEARNING_RATE):
    """Full-batch SGD; return the trained params and the loss of every step."""
    optimizer = fg.optim.sgd(lr)
    batch = (jnp.asarray(x), jnp.asarray(y))
    params, _, losses = fg.fit_full_batch(
        loss_fn, optimizer, params, optimizer.init(params), batch, num_steps
    )
    return params, losses
