"""Seed 000 afternoon: multinomial logistic regression on Iris's first two features."""

import jax
import jax.numpy as jnp

import funcgrad as fg
from funcgrad.tutorials._sgd import full_batch_sgd

NUM_EPOCHS = 10_000
LEARNING_RATE = 0.01


def init_params(key: jax.Array) -> dict:
    """The seed's ``LogisticRegression(2, 3)``: one ``linear`` layer, keys as its state_dict."""
    return {"linear": fg.linear_init(key, 2, 3)}


def logits(params: dict, x: jax.Array) -> jax.Array:
    return fg.linear_apply(params["linear"], x)


def loss_fn(params: dict, batch) -> jax.Array:
    x, y = batch
    return fg.cross_entropy(logits(params, x), y)


def train(params: dict, x_train, y_train, num_epochs: int = NUM_EPOCHS, lr: float = LEARNING_RATE):
    """Full-batch SGD; return the trained params and the loss of every epoch."""
    batch = (jnp.asarray(x_train), jnp.asarray(y_train, dtype=jnp.int32))
    return full_batch_sgd(loss_fn, params, batch, num_epochs, lr)
