"""Seed 000 §1: the gradient of mean(2x), as ``z.backward(); x.grad``."""

import jax
import jax.numpy as jnp


def mean_of_double(x: jax.Array) -> jax.Array:
    return jnp.mean(x * 2)


def grad_mean_of_double(x: jax.Array) -> jax.Array:
    """d/dx mean(2x) = 2/n for every element."""
    return jax.grad(mean_of_double)(x)
