"""Seed 002: MNIST logistic regression from raw arrays, one epoch of minibatch SGD."""

import math

import jax
import jax.numpy as jnp
import numpy as np

import funcgrad as fg

BATCH_SIZE = 100
LEARNING_RATE = 0.1


def init_params(key: jax.Array, num_pixels: int = 784, num_classes: int = 10, dtype=jnp.float32):
    """The seed's ``W = torch.randn(784, 10) / np.sqrt(784)`` and ``b = torch.zeros(10)``."""
    weights = jax.random.normal(key, (num_pixels, num_classes), dtype) / math.sqrt(num_pixels)
    return {"W": weights, "b": jnp.zeros(num_classes, dtype)}


def pixels(images: jax.Array, dtype) -> jax.Array:
    """uint8 images as ``(N, pixels)`` floats in [0, 1]: ``ToTensor()`` then ``view(-1, 784)``."""
    return images.reshape(images.shape[0], -1).astype(dtype) / 255


def logits(params: dict, images: jax.Array) -> jax.Array:
    """``images.view(-1, 784) @ W + b`` on uint8 images scaled to [0, 1]."""
    return pixels(images, params["W"].dtype) @ params["W"] + params["b"]


def loss_fn(params: dict, batch) -> jax.Array:
    images, labels = batch
    return fg.cross_entropy(logits(params, images), labels)


def train_epoch(params: dict, images, labels, batch_indices, lr=LEARNING_RATE, num_chunks=1, on_chunk=None):
    """One epoch over ``batch_indices`` (``(num_batches, batch_size)``); params and the loss per batch.

    With ``num_chunks`` > 1 the epoch runs as consecutive compiled calls, ``on_chunk(n)``
    told after each of its ``n`` batches (a progress bar's ``update``); the result is the
    same as one compiled call.

    >>> params, losses = train_epoch(params, images, labels, fg.shuffled_batch_indices(key, 60_000, 100))
    """
    optimizer = fg.optim.sgd(lr)
    opt_state = optimizer.init(params)
    data = (jnp.asarray(images), jnp.asarray(labels, dtype=jnp.int32))
    losses = []
    for chunk in np.array_split(batch_indices, num_chunks):
        params, opt_state, chunk_losses = fg.fit_minibatches(loss_fn, optimizer, params, opt_state, data, chunk)
        losses.append(chunk_losses)
        if on_chunk is not None:
            on_chunk(len(chunk))
    return params, jnp.concatenate(losses)
