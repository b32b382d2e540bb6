"""Seed 001, second half: binary logistic regression on two 3-D Gaussian blobs.

``nn.Linear(3, 1)`` + ``BCEWithLogitsLoss`` + ``SGD(lr=0.1)``, 300 steps; predictions
are ``sigmoid(linear(x))``.
"""

import jax
import jax.numpy as jnp
import numpy as np

import funcgrad as fg
from funcgrad.tutorials.binary_logistic import NUM_STEPS, predict_probabilities, train


def main() -> None:
    x, y = fg.gaussian_blobs(seed=1)
    params = fg.linear_init(jax.random.key(1), 3, 1)
    print("initial params:", {k: v.tolist() for k, v in params.items()})
    params, losses = train(params, x, y)
    print(f"loss after {NUM_STEPS} steps: {losses[-1]:.6f}")
    print("learned params:", {k: v.tolist() for k, v in params.items()})
    probabilities = predict_probabilities(params, x)
    print("predictions (first 15 are positives):")
    print(np.array2string(np.asarray(probabilities).ravel(), precision=4, suppress_small=True))
    print(f"training accuracy: {float(jnp.mean((probabilities > 0.5) == (y > 0.5))):.4f}")


if __name__ == "__main__":
    main()
