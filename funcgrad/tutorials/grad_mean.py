"""Seed 000 §1: the gradient of mean(2x), as ``z.backward(); x.grad``.

The section's settings and pure functions, read by ``examples/grad_mean.py`` (which
prints what the seed prints) and by the comparison case of the same section (both
of its sides).
"""

import jax
import jax.numpy as jnp


def mean_of_double(x: jax.Array) -> jax.Array:
    return jnp.mean(x * 2)


def grad_mean_of_double(x: jax.Array) -> jax.Array:
    """d/dx mean(2x) = 2/n for every element."""
    return jax.grad(mean_of_double)(x)
