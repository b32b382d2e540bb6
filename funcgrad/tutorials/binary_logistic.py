"""Seed 001, second half: binary logistic regression on two 3-D Gaussian blobs.

The section's settings and pure functions, read by ``examples/binary_logistic.py`` (which
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
    return fg.bce_with_logits(fg.linear_apply(params, x), y)


def train(params: dict, x, y, num_steps: int = NUM_STEPS, lr: float = LEARNING_RATE):
    """Full-batch SGD; return the trained params and the loss of every step."""
    optimizer = fg.optim.sgd(lr)
    batch = (jnp.asarray(x), jnp.asarray(y))
    params, _, losses = fg.fit_full_batch(
        loss_fn, optimizer, params, optimizer.init(params), batch, num_steps
    )
    return params, losses


def predict_probabilities(params: dict, x) -> jax.Array:
    return jax.nn.sigmoid(fg.linear_apply(params, x))
