"""Seed 000 §2: z = x^3 y^2 + sin(x) cos(y) at (1, 2), its value and both partials.

``z.backward()`` then ``x.grad``, ``y.grad`` becomes one call:
``jax.value_and_grad(f, argnums=(0, 1))``.
"""

import jax
import jax.numpy as jnp


def poly_trig(x: jax.Array, y: jax.Array) -> jax.Array:
    return x**3 * y**2 + jnp.sin(x) * jnp.cos(y)


def value_and_partials(x: jax.Array, y: jax.Array):
    """Return ``(z, (dz/dx, dz/dy))``."""
    return jax.value_and_grad(poly_trig, argnums=(0, 1))(x, y)


def main() -> None:
    z, (dz_dx, dz_dy) = value_and_partials(jnp.float32(1.0), jnp.float32(2.0))
    print("Value of z:", z.item())
    print("Gradient of x:", dz_dx.item())
    print("Gradient of y:", dz_dy.item())


if __name__ == "__main__":
    main()
