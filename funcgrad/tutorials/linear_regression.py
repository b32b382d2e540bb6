"""Seed 001, first half: linear regression on N = 30 points of y = 2 x1 - 1.5 x2 + 5."""

import jax
import jax.numpy as jnp

import funcgrad as fg
from funcgrad.tutorials._sgd import full_batch_sgd

NUM_STEPS = 300
LEARNING_RATE = 0.1


def loss_fn(params: dict, batch) -> jax.Array:
    x, y = batch
    return fg.mse_loss(fg.linear_apply(params, x), y)


def train(params: dict, x, y, num_steps: int = NUM_STEPS, lr: float = LEARNING_RATE):
    """Full-batch SGD; return the trained params and the loss of every step."""
    return full_batch_sgd(loss_fn, params, (jnp.asarray(x), jnp.asarray(y)), num_steps, lr)
