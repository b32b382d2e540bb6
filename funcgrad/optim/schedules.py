"""torch's learning-rate schedulers as Optax schedules: plain functions of the update count.

torch steps its scheduler after the optimizer, so update ``t`` (from 0) uses the rate after
``t`` scheduler steps: ``schedule(t)``, as ``optax.scale_by_schedule`` reads it. A schedule
computes its rate in the default float (float64 under x64), as torch computes it in
Python's double.

    optimizer = fg.optim.sgd(step_lr(0.1, step_size=30, gamma=0.5), momentum=0.9)
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax

from funcgrad import _checks


def step_lr(learning_rate: float, step_size: int, gamma: float = 0.1) -> optax.Schedule:
    """``StepLR(optimizer, step_size, gamma)`` with ``scheduler.step()`` after every update:
    ``lr * gamma ** (t // step_size)``. Stepped once an epoch instead, pass
    ``step_size * steps_per_epoch``. In float32 this is
    ``optax.exponential_decay(lr, step_size, gamma, staircase=True)``; that one stays
    float32 under x64 (Optax divides its int32 count into a float32 exponent), this one
    follows the default float.

    >>> optimizer = fg.optim.sgd(step_lr(0.1, step_size=30, gamma=0.5), momentum=0.9)
    """
    _checks.check_non_negative("step_lr", learning_rate=learning_rate, gamma=gamma)
    _checks.check_positive_int("step_lr", "step_size", step_size)

    def schedule(count):
        decays = jnp.asarray(jnp.floor_divide(count, step_size), default_float())
        return learning_rate * gamma**decays

    return schedule


def cosine_annealing_lr(learning_rate: float, t_max: int, eta_min: float = 0.0) -> optax.Schedule:
    """``CosineAnnealingLR(optimizer, T_max, eta_min)``, stepped after every update:
    ``eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    Up to ``t_max`` this equals ``optax.cosine_decay_schedule(lr, t_max, eta_min / lr)``;
    after it, torch's rate climbs back along the cosine (period ``2 * t_max``) while
    Optax's stays at ``eta_min``. This schedule follows torch on both sides of ``t_max``.

    >>> optimizer = fg.optim.adam(cosine_annealing_lr(1e-3, t_max=100))
    """
    _checks.check_non_negative("cosine_annealing_lr", learning_rate=learning_rate, eta_min=eta_min)
    _checks.check_positive_int("cosine_annealing_lr", "t_max", t_max)

    def schedule(count):
        # (1 + cos(pi t / T)) / 2 = sin^2(pi (T - t mod 2T) / 2T): near the minimum the sine
        # of a small exact angle keeps float32's relative precision, where 1 + cos cancels.
        distance = t_max - jnp.remainder(count, 2 * t_max)
        angle = (math.pi / (2 * t_max)) * jnp.asarray(distance, default_float())
        return eta_min + (learning_rate - eta_min) * jnp.sin(angle) ** 2

    return schedule


def default_float():
    """float64 with x64 on, else float32: the dtype a schedule computes its rate in."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)
