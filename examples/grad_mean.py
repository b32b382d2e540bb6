"""Seed 000 §1: the gradient of mean(2x), as ``z.backward(); x.grad``.

PyTorch records operations on ``x`` and fills ``x.grad``; JAX differentiates the
function itself: ``jax.grad(f)(x)`` is the value of ``x.grad`` after ``f(x).backward()``.
"""

import jax
import jax.numpy as jnp


def mean_of_double(x: jax.Array) -> jax.Array:
    return jnp.mean(x * 2)


def grad_mean_of_double(x: jax.Array) -> jax.Array:
    """d/dx mean(2x) = 2/n for every element."""
    return jax.grad(mean_of_double)(x)


def main() -> None:
    x = jax.random.normal(jax.random.key(0), (3,))
    print(x)
    print(grad_mean_of_double(x))


if __name__ == "__main__":
    main()
