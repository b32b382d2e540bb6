"""Seed 000 §2: z = x^3 y^2 + sin(x) cos(y) at (1, 2), its value and both partials.

``z.backward()`` then ``x.grad``, ``y.grad`` becomes one call:
``jax.value_and_grad(f, argnums=(0, 1))``.
"""

import jax.numpy as jnp

from funcgrad.tutorials.grad_poly_trig import value_and_partials


def main() -> None:
    z, (dz_dx, dz_dy) = value_and_partials(jnp.float32(1.0), jnp.float32(2.0))
    print("Value of z:", z.item())
    print("Gradient of x:", dz_dx.item())
    print("Gradient of y:", dz_dy.item())


if __name__ == "__main__":
    main()
