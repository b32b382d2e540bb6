"""Gradient transformations torch's optimizers need and Optax lacks, each state type right
above the transformation that owns it (as ``optax/_src/transform.py`` lays them out).

    optimizer = optax.chain(dampened_trace(0.9, 0.1), optax.scale_by_learning_rate(0.1))
    optimizer = optax.chain(clip_grad_norm(1.0), fg.optim.adamw(1e-3))
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Union

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad import _checks

# A hyperparameter torch's schedulers rewrite every step (OneCycleLR's momentum): a number,
# or a schedule of the count, read at the count before the update (as the rate is).
Scalar = Union[float, Callable[[jax.Array], jax.Array]]


class DampenedTraceState(NamedTuple):
    """The momentum buffer, and the step count (the first step sets it, undamped)."""

    count: jax.Array
    trace: optax.Params


def dampened_trace(momentum: Scalar, dampening: float, nesterov: bool = False) -> optax.GradientTransformation:
    """torch's momentum buffer: ``buf = g`` on the first step, then
    ``buf = momentum * buf + (1 - dampening) * g``; the update is ``buf`` (or
    ``g + momentum * buf`` with Nesterov). With ``dampening=0`` and a number for
    ``momentum`` it is ``optax.trace``.

    ``momentum`` may be a schedule (:func:`~funcgrad.optim.one_cycle_momentum`: what
    ``OneCycleLR`` writes into SGD's ``group["momentum"]`` each step); update ``t`` uses
    ``momentum(t)``.

    >>> optimizer = optax.chain(dampened_trace(0.9, 0.1), optax.scale_by_learning_rate(0.1))
    """

    def init(params):
        return DampenedTraceState(jnp.zeros([], jnp.int32), jax.tree.map(jnp.zeros_like, params))

    def update(updates, state, params=None):
        del params
        first = state.count == 0
        beta = momentum(state.count) if callable(momentum) else momentum
        trace = jax.tree.map(
            lambda g, buf: jnp.where(first, g, _like(beta, g) * buf + (1 - dampening) * g), updates, state.trace)
        if nesterov:
            updates = jax.tree.map(lambda g, buf: g + _like(beta, g) * buf, updates, trace)
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
    b1: Scalar = 0.9, b2: float = 0.999, eps: float = 1e-8, *, amsgrad: bool = False
) -> optax.GradientTransformation:
    """Adam's direction as torch computes it: ``(m / (1 - β1^t)) / (sqrt(v) / sqrt(1 - β2^t) + eps)``,
    with ``v`` the running maximum of the raw second moment under ``amsgrad``.

    The bias corrections ``1 - β^t`` are ``-expm1(t log β)``: accurate in float32, where
    Optax's ``1 - β^t`` cancels (see the module doc).

    ``b1`` may be a schedule (:func:`~funcgrad.optim.one_cycle_momentum`: what
    ``OneCycleLR`` writes into ``group["betas"]`` each step). Update ``t`` (from 0) uses
    ``β1 = b1(t)`` as torch's step uses the current β1: in ``m = β1 m + (1 - β1) g`` and in
    ``1 - β1^(t+1)``, the current β1 to the power of the step (not the product of the
    past ``1 - β1``: with a changing β1 torch's bias correction is not exact, and this
    one is torch's).

    >>> optimizer = optax.chain(scale_by_torch_adam(amsgrad=True), optax.scale_by_learning_rate(1e-3))
    """
    for name, beta in (("b1", b1), ("b2", b2)):
        if callable(beta) and name == "b1":
            continue
        if not 0.0 <= _checks.real_number("scale_by_torch_adam", name, beta) < 1.0:
            raise ValueError(f"scale_by_torch_adam: {name} must lie in [0, 1), got {beta}")

    def init(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return TorchAdamState(jnp.zeros([], jnp.int32), zeros, zeros, zeros if amsgrad else None)

    def update(updates, state, params=None):
        del params
        count = optax.safe_int32_increment(state.count)
        beta1 = b1(state.count) if callable(b1) else b1
        mu = jax.tree.map(lambda g, m: _like(beta1, m) * m + _like(1 - beta1, g) * g, updates, state.mu)
        nu = jax.tree.map(lambda g, v: b2 * v + (1 - b2) * g * g, updates, state.nu)
        nu_max = jax.tree.map(jnp.maximum, state.nu_max, nu) if amsgrad else None

        def direction(m, v):
            t = count.astype(m.dtype)
            return (m / _one_minus_power(beta1, t)) / (jnp.sqrt(v) / jnp.sqrt(_one_minus_power(b2, t)) + eps)

        return jax.tree.map(direction, mu, nu_max if amsgrad else nu), TorchAdamState(count, mu, nu, nu_max)

    return optax.GradientTransformation(init, update)


def _one_minus_power(beta, t: jax.Array) -> jax.Array:
    """``1 - beta ** t`` without cancellation: ``-expm1(t * log(beta))``, the log in double
    for a number, in the schedule's float for a scheduled ``beta`` (``log 0 = -inf`` gives 1)."""
    if not isinstance(beta, jax.Array):
        return jnp.ones_like(t) if beta == 0 else -jnp.expm1(t * math.log(beta))
    return _like(-jnp.expm1(jnp.asarray(t, beta.dtype) * jnp.log(beta)), t)


def _like(value, x: jax.Array):
    """A scheduled hyperparameter (an array in the default float) in ``x``'s dtype, as
    ``optax.scale_by_schedule`` casts its rate; a Python number stays one."""
    return value.astype(x.dtype) if isinstance(value, jax.Array) else value


def clip_grad_norm(
    max_norm: float, norm_type: float = 2.0, error_if_nonfinite: bool = False
) -> optax.GradientTransformation:
    """``torch.nn.utils.clip_grad_norm_(parameters, max_norm, norm_type, error_if_nonfinite)``
    as a transformation, to chain before the optimizer (torch clips between ``backward()``
    and ``optimizer.step()``).

    As torch: the total norm is the ``norm_type``-norm of the per-tensor norms (each
    tensor's ``vector_norm``, then the norm of those, as torch's ``_foreach_norm`` and its
    per-tensor fallback compute it), and every gradient is multiplied by
    ``min(max_norm / (total + 1e-6), 1)``, also when under ``max_norm`` (a norm just under
    it scales by 0.99999...). ``optax.clip_by_global_norm`` has no epsilon, leaves the
    gradients as they are when under, and sums all squares at once (no per-tensor
    square roots). ``norm_type``: any p > 0, or ``inf`` (the largest ``|g|``).

    ``error_if_nonfinite``: a NaN or inf total norm raises torch's RuntimeError from a
    ``jax.debug.callback``, under ``jit`` too (a ``JaxRuntimeError``, a RuntimeError whose
    message ends in this one; on an accelerator when the step's result is awaited). It
    costs a host round trip each step. Without it, a non-finite norm scales the gradients
    by NaN or 0, as torch's does. torch returns the total norm; an Optax transformation
    returns updates only (``optax.global_norm`` computes it, without the per-tensor roots).

    >>> optimizer = optax.chain(clip_grad_norm(1.0), fg.optim.adamw(6e-4, betas=(0.9, 0.95)))
    >>> opt_state = optimizer.init(params)
    >>> updates, opt_state = optimizer.update(grads, opt_state, params)
    """
    what = "clip_grad_norm"
    _checks.check_non_negative(what, max_norm=_checks.real_number(what, "max_norm", max_norm))
    norm_type = _checks.real_number(what, "norm_type", math.inf if norm_type == "inf" else norm_type)
    if not norm_type > 0:
        raise ValueError(f"{what}: norm_type must be a p > 0 or inf (math.inf, 'inf'), got {norm_type!r}")
    if not isinstance(error_if_nonfinite, bool):
        raise TypeError(f"{what}: error_if_nonfinite must be a bool, got {error_if_nonfinite!r}")

    def init(params):
        del params
        return optax.EmptyState()

    def update(updates, state, params=None):
        del params
        grads = jax.tree.leaves(updates)
        if not grads:
            return updates, state
        norms = jnp.stack([jnp.linalg.vector_norm(g, ord=norm_type) for g in grads])
        total = jnp.linalg.vector_norm(norms, ord=norm_type)
        if error_if_nonfinite:
            jax.debug.callback(_raise_if_nonfinite, total, norm_type)
        coef = jnp.minimum(max_norm / (total + 1e-6), 1.0)
        return jax.tree.map(lambda g: g * coef.astype(g.dtype), updates), state

    return optax.GradientTransformation(init, update)


def _raise_if_nonfinite(total, norm_type: float) -> None:
    if not np.all(np.isfinite(total)):
        raise RuntimeError(
            f"clip_grad_norm: the total norm of order {norm_type} of the gradients is {total}, "
            f"so they cannot be clipped (torch's clip_grad_norm_ raises here). To scale them by "
            f"the non-finite norm anyway, set error_if_nonfinite=False")
