"""Seed 000 §1: the gradient of mean(2x), as ``z.backward(); x.grad``.

PyTorch records operations on ``x`` and fills ``x.grad``; JAX differentiates the
function itself: ``jax.grad(f)(x)`` is the value of ``x.grad`` after ``f(x).backward()``.
"""

import jax

from funcgrad.tutorials.grad_mean import grad_mean_of_double


def main() -> None:
    x = jax.random.normal(jax.random.key(0), (3,))
    print(x)
    print(grad_mean_of_double(x))


if __name__ == "__main__":
    main()
