"""Seed 001, second half: binary logistic regression on two 3-D Gaussian blobs.

``nn.Linear(3, 1)`` + ``BCEWithLogitsLoss`` + ``SGD(lr=0.1)``, 300 steps; predictions
are ``sigmoid(linear(x))``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax

import funcgrad as fg

NUM_STEPS = 300
LEARNING_RATE = 0.1


def loss_fn(params: dict, batch) -> jax.Array:
    x, y = batch
    return fg.bce_with_logits(fg.linear_apply(params, x), y)


def train(params: dict, x, y, num_steps: int = NUM_STEPS, lr: float = LEARNING_RATE):
    """Full-batch SGD; return the trained params and the loss of every step."""
    optimizer = optax.sgd(lr)
    batch = (jnp.asarray(x), jnp.asarray(y))
    params, _, losses = fg.fit_full_batch(
        loss_fn, optimizer, params, optimizer.init(params), batch, num_steps
    )
    return params, losses


def predict_probabilities(params: dict, x) -> jax.Array:
    return jax.nn.sigmoid(fg.linear_apply(params, x))


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
