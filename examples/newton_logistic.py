"""Seed 001's binary logistic regression by Newton's method, beside its 300 steps of SGD.

Each step solves ``H(θ) d = ∇f(θ)`` and moves ``θ ← θ − d``, with ``jax.hessian`` on the
params flattened into one vector θ by ``ravel_pytree``.

The two blobs are linearly separable, so the plain cross-entropy has no minimiser: it
keeps falling as the weights grow without bound, and Newton's steps would chase an
optimum at infinity while the Hessian fades towards singular. A small ridge on the
weight, ``(RIDGE / 2) * ||weight||²`` with ``RIDGE = 1e-2`` (the bias unpenalised),
makes the optimum finite and the objective strongly convex; Newton then converges
quadratically: from the random initial weights, in float64, the gradient norm is 4e-6
after six steps, 4e-10 after seven and 1e-17 (rounding) after eight.

    python examples/newton_logistic.py
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import funcgrad as fg
from examples import binary_logistic

RIDGE = 1e-2
NUM_NEWTON_STEPS = 8


def objective(params: dict, batch) -> jax.Array:
    """``BCEWithLogitsLoss`` plus the ridge ``(RIDGE / 2) * ||weight||²``."""
    return binary_logistic.loss_fn(params, batch) + 0.5 * RIDGE * jnp.sum(params["weight"] ** 2)


@functools.partial(jax.jit, static_argnames="num_steps")
def fit_newton(params: dict, x, y, num_steps: int = NUM_NEWTON_STEPS):
    """``num_steps`` Newton steps on :func:`objective`, in one compiled loop.

    Returns the final params, the objective before each step (what a torch loop would
    print) and the norm of the gradient at the final params.

    >>> params, objectives, gradient_norm = fit_newton(fg.linear_init(jax.random.key(1), 3, 1), x, y)
    >>> objectives.shape
    (8,)
    """
    theta, unravel = ravel_pytree(params)

    def flat_objective(theta):
        return objective(unravel(theta), (x, y))

    def newton_step(theta, _):
        value, gradient = jax.value_and_grad(flat_objective)(theta)
        hessian = jax.hessian(flat_objective)(theta)
        return theta - jnp.linalg.solve(hessian, gradient), value

    theta, objectives = jax.lax.scan(newton_step, theta, length=num_steps)
    return unravel(theta), objectives, jnp.linalg.norm(jax.grad(flat_objective)(theta))


def accuracy(params: dict, x, y) -> float:
    return float(jnp.mean((fg.linear_apply(params, x) > 0) == (y > 0.5)))


def main() -> None:
    x, y = fg.gaussian_blobs(seed=1)
    initial = fg.linear_init(jax.random.key(1), 3, 1)

    newton, objectives, gradient_norm = fit_newton(initial, x, y)
    print(f"Newton's method on BCE with logits + ({RIDGE} / 2) ||weight||^2:")
    for step, value in enumerate(objectives):
        print(f"  before step {step + 1}: objective {value:.8f}")
    print(f"  after {NUM_NEWTON_STEPS} steps: objective {objective(newton, (x, y)):.8f}, "
          f"gradient norm {gradient_norm:.2e}, training accuracy {accuracy(newton, x, y):.4f}")

    sgd, losses = binary_logistic.train(initial, x, y)
    print(f"SGD (lr {binary_logistic.LEARNING_RATE}) on BCE with logits alone:")
    print(f"  after {binary_logistic.NUM_STEPS} steps: loss {losses[-1]:.8f}, objective with the "
          f"ridge {objective(sgd, (x, y)):.8f}, training accuracy {accuracy(sgd, x, y):.4f}")
    for name, params in (("Newton", newton), ("SGD", sgd)):
        print(f"{name} params: weight {np.asarray(params['weight']).ravel().round(4)}, "
              f"bias {np.asarray(params['bias']).round(4)}")


if __name__ == "__main__":
    main()
