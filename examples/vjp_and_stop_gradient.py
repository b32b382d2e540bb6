"""Seed 000 §3: ``y.backward(v)`` as a vector-Jacobian product; ``no_grad`` and
``detach`` as ``jax.lax.stop_gradient``.

JAX tracks nothing outside a transformation, so ``torch.no_grad()`` has no twin: a value
computed outside ``jax.grad`` is just a value. Inside a differentiated function,
``stop_gradient`` marks a value that must not move the gradient, like ``x.detach()``.
"""

import jax.numpy as jnp

from funcgrad.tutorials.vjp_and_stop_gradient import (
    double,
    grad_of_x_times_stopped_x,
    grad_through_stopped,
    vjp_of_double,
)


def main() -> None:
    x = jnp.array([1.0, 2.0, 3.0])
    y, x_grad = vjp_of_double(x, jnp.array([1.0, 0.1, 0.01]))
    print("Vector-Jacobian product (y.backward(v)):")
    print(f"y: {y}")
    print(f"x.grad: {x_grad}")

    print("\nOutside any transformation (torch.no_grad()):")
    print(f"z = 2x: {double(x)}  (a plain value; nothing is tracked)")

    print("\nUsing stop_gradient (x.detach()):")
    print(f"grad of sum(2 * stop_gradient(x)): {grad_through_stopped(x)}")
    print(f"grad of sum(x * stop_gradient(x)): {grad_of_x_times_stopped_x(x)}")


if __name__ == "__main__":
    main()
