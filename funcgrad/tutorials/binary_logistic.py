"""Seed 001, second half: binary logistic regression on two 3-D Gaussian blobs."""

import jax
import jax.numpy as jnp

import funcgrad as fg
from funcgrad.tutorials._sgd import full_batch_sgd
from funcgrad.tutorials.linear_regression import LEARNING_RATE, NUM_STEPS  # both halves of seed 001 alike


def loss_fn(params: dict, batch) -> jax.Array:
    x, y = batch
    return fg.bce_with_logits(fg.linear_apply(params, x), y)


def train(params: dict, x, y, num_steps: int = NUM_STEPS, lr: float = LEARNING_RATE):
    """Full-batch SGD; return the trained params and the loss of every step."""
    return full_batch_sgd(loss_fn, params, (jnp.asarray(x), jnp.asarray(y)), num_steps, lr)


def predict_probabilities(params: dict, x) -> jax.Array:
    return jax.nn.sigmoid(fg.linear_apply(params, x))
