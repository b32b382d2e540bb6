"""Seed 000 §2: z = x^3 y^2 + sin(x) cos(y) at (1, 2), its value and both partials."""

import jax
import jax.numpy as jnp


def poly_trig(x: jax.Array, y: jax.Array) -> jax.Array:
    return x**3 * y**2 + jnp.sin(x) * jnp.cos(y)


def value_and_partials(x: jax.Array, y: jax.Array):
    """Return ``(z, (dz/dx, dz/dy))``."""
    return jax.value_and_grad(poly_trig, argnums=(0, 1))(x, y)
