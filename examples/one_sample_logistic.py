"""Seed 003: one-sample logistic regression, z = w x + b, sigmoid, binary cross-entropy.

``torch.autograd.grad(loss, w, retain_graph=True)`` and ``loss.backward()`` are both
``jax.grad``: there is no graph to retain, so asking twice costs nothing special.
"""

import jax.numpy as jnp

from funcgrad.tutorials.one_sample_logistic import forward, loss, partials_one_at_a_time, partials_together


def main() -> None:
    y, x, w, b = jnp.array([1.0]), jnp.array([1.3]), jnp.array([2.0]), jnp.array([0.5])
    z, y_hat = forward(w, b, x)
    print(f"Weighted sum (z1): {z}")
    print(f"Predicted value (y_hat): {y_hat}")
    print(f"Loss: {loss(w, b, x, y).item()}\n")

    grad_w, grad_b = partials_one_at_a_time(w, b, x, y)
    print(f"Partial gradient of loss with respect to w1: {grad_w}")
    print(f"Partial gradient of loss with respect to b1: {grad_b}")

    _, (grad_w, grad_b) = partials_together(w, b, x, y)
    print(f"Gradient of loss with respect to w1 in one pass: {grad_w}")
    print(f"Gradient of loss with respect to b1 in one pass: {grad_b}")


if __name__ == "__main__":
    main()
