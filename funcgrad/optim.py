"""``torch.optim`` and ``torch.optim.lr_scheduler`` in Optax terms.

Each function takes torch's arguments with torch's defaults and returns an
``optax.GradientTransformation``. Where plain Optax already computes what torch computes,
it *is* plain Optax (``optax.sgd``, ``optax.adam``, ``optax.adamw``); the rest is Optax's
building blocks chained in torch's order, plus what Optax lacks or computes otherwise:

- **dampening** of SGD's momentum buffer (``buf = momentum * buf + (1 - dampening) * g``,
  except on the first step, where torch sets ``buf = g``);
- **Adam's bias corrections in float32**: torch computes ``1 - β^t`` in Python floats
  (double); ``optax.scale_by_adam`` in the parameters' dtype, where ``1 - 0.999^t``
  cancels: at t = 1 it is off by 1.3e-5 relative in float32. In the torch-optimizers
  case that put ``optax.adam``'s parameters 14x further from the float64 run than torch's
  own float32 run (6.2e-6 against 4.6e-7), out of the error model's band from step 6. :func:`scale_by_torch_adam`
  computes ``-expm1(t log β)``, accurate to float32's last bits;
- **torch's AMSGrad**: torch keeps the running maximum of the *raw* second moment and
  bias-corrects after; ``optax.amsgrad`` bias-corrects first, ``max(v_t / (1 - β2^t))``,
  a different (larger) denominator from the second step on;
- **StepLR under x64**: ``optax.exponential_decay`` divides Optax's int32 step count
  into a float32 exponent even with x64 on, so its float64 rates are float32 values.

The constructors are memoized: the same arguments (of the same types) give the same
transformation object, so a loop compiled with one (``jit`` takes the optimizer as a static
argument, keyed by identity) is reused when a training function builds its optimizer
again, instead of compiled anew each call. A memoized transformation is the code as it was
when first built: after patching what a constructor calls, ``sgd.cache_clear()`` (and
``jax.clear_caches()`` for the loops compiled with it).

Every configuration is proven step by step against torch (``python -m compare --case
torch-optimizers``; tests/test_optim.py).

    optimizer = sgd(0.1, momentum=0.9, dampening=0.1, weight_decay=1e-4)
    optimizer = adamw(step_lr(1e-3, step_size=30, gamma=0.1))   # StepLR, one step per update
"""

from __future__ import annotations

import functools
import inspect
import math
from typing import NamedTuple, Union

import jax
import jax.numpy as jnp
import optax

LearningRate = Union[float, optax.Schedule]


def _memoized(constructor):
    """``constructor`` returning one transformation per distinct arguments, so that ``jit``,
    which keys a static optimizer on its identity, compiles a loop once for them.

    The key is the arguments as the signature binds them (defaults filled in), each leaf
    with its type: ``sgd(0.1)`` is ``sgd(learning_rate=0.1, momentum=0.0)``, but not
    ``sgd(np.float64(0.1))``, which computes its update in float64 under x64. A schedule
    is a leaf keyed by identity. An unhashable argument (a jax array) builds a fresh
    transformation each call. ``cache_clear()`` empties the cache, as ``functools``'.
    """
    signature = inspect.signature(constructor)
    built = {}

    @functools.wraps(constructor)
    def build(*args, **kwargs):
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        leaves, structure = jax.tree.flatten(bound.arguments)
        key = (structure, tuple((type(leaf), leaf) for leaf in leaves))
        try:
            return built[key]
        except TypeError:  # unhashable
            return constructor(*args, **kwargs)
        except KeyError:
            return built.setdefault(key, constructor(*args, **kwargs))

    build.cache_clear = built.clear
    return build


@_memoized
def sgd(
    learning_rate: LearningRate,
    momentum: float = 0.0,
    dampening: float = 0.0,
    weight_decay: float = 0.0,
    nesterov: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.SGD(params, lr, momentum, dampening, weight_decay, nesterov, maximize=...)``.

    Without dampening, weight decay or maximize this is ``optax.sgd`` itself.

    >>> optimizer = sgd(0.1, momentum=0.9, nesterov=True)
    >>> opt_state = optimizer.init(params)
    """
    if nesterov and (momentum <= 0 or dampening != 0):
        raise ValueError("sgd: Nesterov momentum requires a momentum and zero dampening (as in torch)")
    _check_non_negative("sgd", learning_rate=learning_rate, momentum=momentum, dampening=dampening,
                        weight_decay=weight_decay)
    if not (dampening or weight_decay or maximize):
        return optax.sgd(learning_rate, momentum or None, nesterov)
    return optax.chain(
        *_torch_gradient_prelude(maximize, weight_decay),
        *([dampened_trace(momentum, dampening, nesterov)] if momentum else []),
        optax.scale_by_learning_rate(learning_rate),
    )


@_memoized
def adam(
    learning_rate: LearningRate = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.Adam``: ``weight_decay`` is L2, added to the gradient before the moments.

    The direction is :func:`scale_by_torch_adam`, not ``optax.scale_by_adam`` (see the
    module doc: Optax's float32 bias corrections).

    >>> optimizer = adam(1e-3, weight_decay=1e-2, amsgrad=True)
    """
    return _adam("adam", learning_rate, betas, eps, weight_decay, amsgrad, maximize, decoupled=False)


@_memoized
def adamw(
    learning_rate: LearningRate = 1e-3,
    betas: tuple[float, float] = (0.9, 0.999),
    eps: float = 1e-8,
    weight_decay: float = 1e-2,
    amsgrad: bool = False,
    *,
    maximize: bool = False,
) -> optax.GradientTransformation:
    """``torch.optim.AdamW``: decoupled decay, ``p -= lr * weight_decay * p`` beside the Adam step.

    torch's default ``weight_decay`` is 1e-2, Optax's 1e-4: this follows torch. The chain
    is ``optax.adamw``'s, with :func:`scale_by_torch_adam` for its direction.

    >>> optimizer = adamw(1e-3)
    """
    return _adam("adamw", learning_rate, betas, eps, weight_decay, amsgrad, maximize, decoupled=True)


def _adam(what, learning_rate, betas, eps, weight_decay, amsgrad, maximize, decoupled) -> optax.GradientTransformation:
    """Adam's chain in torch's order: the L2 term joins the gradient (Adam) or the decay
    joins the step beside the Adam direction (AdamW, as ``optax.adamw`` chains it)."""
    _check_non_negative(what, learning_rate=learning_rate, eps=eps, weight_decay=weight_decay)
    return optax.chain(
        *_torch_gradient_prelude(maximize, 0.0 if decoupled else weight_decay),
        scale_by_torch_adam(*betas, eps, amsgrad=amsgrad),
        *([optax.add_decayed_weights(weight_decay)] if decoupled else []),
        optax.scale_by_learning_rate(learning_rate),
    )


def step_lr(learning_rate: float, step_size: int, gamma: float = 0.1) -> optax.Schedule:
    """``StepLR(optimizer, step_size, gamma)`` with ``scheduler.step()`` after every update:
    ``lr * gamma ** (t // step_size)``. Stepped once an epoch instead, pass
    ``step_size * steps_per_epoch``. In float32 this is
    ``optax.exponential_decay(lr, step_size, gamma, staircase=True)``; that one stays
    float32 under x64 (see the module doc), this one follows the default float.

    >>> optimizer = sgd(step_lr(0.1, step_size=30, gamma=0.5), momentum=0.9)
    """
    if step_size <= 0:
        raise ValueError(f"step_lr: step_size must be positive, got {step_size}")

    def schedule(count):
        decays = jnp.asarray(jnp.floor_divide(count, step_size), _default_float())
        return learning_rate * gamma**decays

    return schedule


def cosine_annealing_lr(learning_rate: float, t_max: int, eta_min: float = 0.0) -> optax.Schedule:
    """``CosineAnnealingLR(optimizer, T_max, eta_min)``, stepped after every update:
    ``eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    Up to ``t_max`` this equals ``optax.cosine_decay_schedule(lr, t_max, eta_min / lr)``;
    after it, torch's rate climbs back along the cosine (period ``2 * t_max``) while
    Optax's stays at ``eta_min``. This schedule follows torch on both sides of ``t_max``.

    >>> optimizer = adam(cosine_annealing_lr(1e-3, t_max=100))
    """
    if t_max <= 0:
        raise ValueError(f"cosine_annealing_lr: t_max must be positive, got {t_max}")

    def schedule(count):
        # (1 + cos(pi t / T)) / 2 = sin^2(pi (T - t mod 2T) / 2T): near the minimum the sine
        # of a small exact angle keeps float32's relative precision, where 1 + cos cancels.
        distance = t_max - jnp.remainder(count, 2 * t_max)
        angle = (math.pi / (2 * t_max)) * jnp.asarray(distance, _default_float())
        return eta_min + (learning_rate - eta_min) * jnp.sin(angle) ** 2

    return schedule


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


def _torch_gradient_prelude(maximize: bool, weight_decay: float) -> list[optax.GradientTransformation]:
    """What torch does to a gradient first: negate it (maximize), then add ``weight_decay * p``."""
    return ([optax.scale(-1.0)] if maximize else []) + (
        [optax.add_decayed_weights(weight_decay)] if weight_decay else [])


def _default_float():
    """float64 with x64 on, else float32: the dtype a schedule computes its rate in."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def _check_non_negative(what: str, **values) -> None:
    for name, value in values.items():
        if isinstance(value, (int, float)) and value < 0:
            raise ValueError(f"{what}: {name} must be >= 0, got {value}")


# The torch bridge for these states (optimizer.state_dict() to and from them) lives in its own
# module, imported last: it imports the state types above.
from funcgrad.optim_state import state_from_torch, state_to_torch  # noqa: E402
