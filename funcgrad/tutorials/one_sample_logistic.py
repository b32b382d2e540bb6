"""Seed 003: one-sample logistic regression, z = w x + b, sigmoid, binary cross-entropy."""

import jax

import funcgrad as fg


def forward(w, b, x):
    """Return the weighted sum ``z`` and the prediction ``sigmoid(z)``."""
    z = w * x + b
    return z, jax.nn.sigmoid(z)


def loss(w, b, x, y):
    _, y_hat = forward(w, b, x)
    return fg.binary_cross_entropy(y_hat, y)


def partials_one_at_a_time(w, b, x, y):
    """``grad(loss, w)`` then ``grad(loss, b)``, as the seed's ``torch.autograd.grad`` calls."""
    return jax.grad(loss, argnums=0)(w, b, x, y), jax.grad(loss, argnums=1)(w, b, x, y)


def partials_together(w, b, x, y):
    """Loss and both partials in one pass, as ``loss.backward()`` filling ``w.grad``, ``b.grad``."""
    return jax.value_and_grad(loss, argnums=(0, 1))(w, b, x, y)
