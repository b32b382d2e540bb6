"""Seed 001, first half: linear regression on N = 30 points of y = 2 x1 - 1.5 x2 + 5.

``nn.Linear(2, 1)`` + ``MSELoss`` + ``SGD(lr=0.1)``, 300 steps. ``loss.backward()`` then
``param.grad`` becomes ``jax.grad(loss_fn)(params, batch)``: the gradient is returned.
"""

import jax

import funcgrad as fg
from funcgrad.tutorials.linear_regression import NUM_STEPS, loss_fn, train


def main() -> None:
    x, y = fg.linear_regression_data(seed=1)
    params = fg.linear_init(jax.random.key(1), 2, 1)
    print("initial params:", {k: v.tolist() for k, v in params.items()})
    loss, grads = jax.value_and_grad(loss_fn)(params, (x, y))
    print(f"initial loss: {loss:.4f}")
    print("initial gradient:", {k: v.tolist() for k, v in grads.items()})

    params, losses = train(params, x, y)
    print(f"loss after {NUM_STEPS} steps: {losses[-1]:.6f}")
    print("learned weight (true [2, -1.5]):", params["weight"].tolist())
    print("learned bias (true 5):", params["bias"].tolist())


if __name__ == "__main__":
    main()
