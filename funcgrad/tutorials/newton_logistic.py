"""Seed 001's binary logistic regression by Newton's method, beside its 300 steps of SGD."""

import functools

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

import funcgrad as fg
from funcgrad.tutorials import binary_logistic

RIDGE = 1e-2
NUM_NEWTON_STEPS = 8


def objective(params: dict, batch) -> jax.Array:
    """``BCEWithLogitsLoss`` plus the ridge ``(RIDGE / 2) * ||weight||²``."""
    return binary_logistic.loss_fn(params, batch) + 0.5 * RIDGE * jnp.sum(params["weight"] ** 2)


@functools.partial(jax.jit, static_argnames="num_steps")
def fit_newton(params: dict, x, y, num_steps: int = NUM_NEWTON_STEPS):
    """``num_steps`` Newton steps on :func:`objective`, in one compiled loop.

    Returns the final params, the objective before each step (what a torch loop would
    print) and the norm of the gradient at the final params. Compiled once per
    (``num_steps``, shapes and dtypes): :func:`objective` and what it calls are looked up
    when first traced, and a patched one is not retraced without ``jax.clear_caches()``.

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
