"""Seed 000 §3: ``y.backward(v)`` as a vector-Jacobian product; ``no_grad`` and"""

import jax
import jax.numpy as jnp


def double(x: jax.Array) -> jax.Array:
    return x * 2


def vjp_of_double(x: jax.Array, v: jax.Array):
    """``y = 2x`` and ``v^T dy/dx``: the ``x.grad`` that ``y.backward(v)`` leaves."""
    y, pullback = jax.vjp(double, x)
    (x_grad,) = pullback(v)
    return y, x_grad


def grad_through_stopped(x: jax.Array) -> jax.Array:
    """Gradient of sum(stop_gradient(x) * 2): zero, as ``x.grad`` stays after ``detach``."""
    return jax.grad(lambda x: jnp.sum(double(jax.lax.stop_gradient(x))))(x)


def grad_of_x_times_stopped_x(x: jax.Array) -> jax.Array:
    """Gradient of sum(x * stop_gradient(x)): x, not 2x; the stopped factor is a constant."""
    return jax.grad(lambda x: jnp.sum(x * jax.lax.stop_gradient(x)))(x)
