"""Gradient transformations torch's optimizers need and Optax lacks, each state type right
above the transformation that owns it (as ``optax/_src/transform.py`` lays them out).

    optimizer = optax.chain(dampened_trace(0.9, 0.1), optax.scale_by_learning_rate(0.1))
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax


class DampenedTraceState(NamedTuple):
    """The momentum buffer, and the step count (the first step sets it, undamped)."""

    count: jax.Array
    trace: optax.Params


def dampened_trace(momentum: float, dampening: float, nesterov: bool = False) -> optax.GradientTransformation:
    """torch's momentum buffer: ``buf = g`` on the first step, then
    ``buf = momentum * buf + (1 - dampening) * g``; the update is ``buf`` (or
    ``g + momentum * buf`` with Nesterov). With ``dampening=0`` it is ``optax.trace``.

    >>> optimizer = optax.chain(dampened_trace(0.9, 0.1), optax.scale_by_learning_rate(0.1))
    """

    def init(params):
        return DampenedTraceState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        first = state.count == 0
        trace = jax.tree.map(
            lambda g, buf: jnp.where(first, g, momentum * buf + (1 - dampening) * g), updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, buf: g + momentum * buf, updates, trace)
        else:
            updates = trace
        return updates, DampenedTraceState(optax.safe_int32_increment(state.count), trace)

    return optax.GradientTransformation(init, update)


class TorchAdamState(NamedTuple):
    """Step count, first and second moments, and (AMSGrad) the running maximum of the raw second moment."""

    count: jax.Array
    mu: optax.Params
    nu: optax.Params
    nu_max: optax.Params


def scale_by_torch_adam(
    b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, *, amsgrad: bool = False
) -> optax.GradientTransformation:
    """Adam's direction as torch computes it: ``(m / (1 - β1^t)) / (sqrt(v) / sqrt(1 - β2^t) + eps)``,
    with ``v`` the running maximum of the raw second moment under ``amsgrad``.

    The bias corrections ``1 - β^t`` are ``-expm1(t log β)``: accurate in float32, where
    Optax's ``1 - β^t`` cancels (see the module doc).

    >>> optimizer = optax.chain(scale_by_torch_adam(amsgrad=True), optax.scale_by_learning_rate(1e-3))
    """
    for name, beta in (("b1", b1), ("b2", b2)):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"scale_by_torch_adam: {name} must lie in [0, 1), got {beta}")

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return TorchAdamState(jnp.zeros([], jnp.int32), zeros, zeros, zeros if amsgrad else None)

    def update(updates, state, params=None):
        del params
        count = optax.safe_int32_increment(state.count)
        mu = jax.tree.map(lambda g, m: b1 * m + (1 - b1) * g, updates, state.mu)
        nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsgrad else None

        def direction(m, v):
            t = count.astype(m.dtype)
            return (m / _one_minus_power(b1, t)) / (jnp.sqrt(v) / jnp.sqrt(_one_minus_power(b2, t)) + eps)

        return jax.tree.map(direction, mu, nu_max if amsgrad else nu), TorchAdamState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


def _one_minus_power(beta: float, t: jax.Array) -> jax.Array:
    """``1 - beta ** t`` without cancellation: ``-expm1(t * log(beta))``, the log in double."""
    return jnp.ones_like(t) if beta == 0 else -jnp.expm1(t * math.log(beta))


