"""``torch.nn.functional``'s activations with torch's names, defaults and derivatives at the kinks.

Where ``jax.nn`` has the same function its default or its gradient at a kink may differ:
``jax.nn.gelu`` defaults to the tanh approximation (torch's default is the exact erf form),
and ``jax.nn.leaky_relu``'s gradient at 0 is 1 (torch's is ``negative_slope``).

XLA's float32 ``tanh``, ``erf`` and ``expm1`` are a few ulps off where torch's are correctly
rounded; where a formula cancels (``1 + erf``, ``1 - tanh**2``), that would become many
times torch's error, so those forms are computed without the cancellation.

    y = gelu(linear_apply(params, x))                     # F.gelu(x), the exact form
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from funcgrad import _checks

_GELU_FORMS = ("none", "tanh")


def gelu(x: jax.Array, approximate: str = "none") -> jax.Array:
    """``F.gelu(x, approximate)``: ``x * Phi(x)``, exact (``"none"``, torch's default) or the
    ``"tanh"`` approximation ``0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))``.

    ``jax.nn.gelu`` defaults to ``approximate=True``, the tanh form, which is up to ~5e-4
    from torch's default; here the default is torch's, and ``approximate`` takes torch's
    strings, not JAX's booleans. torch's ``1 + erf(x / sqrt(2))`` and ``1 + tanh(z)`` are
    computed as ``erfc(-x / sqrt(2))`` and ``2 * sigmoid(2 z)``: equal, without cancelling
    for negative ``x``. Below about -7 torch's forms cancel to 0 even in float64; these keep
    ``x * Phi(x)`` (~1e-17 there).

    >>> gelu(jnp.array([-1.0, 0.0, 1.0]))
    Array([-0.15865527,  0.        ,  0.8413447 ], dtype=float32)
    """
    _checks.check_float_leaves("gelu", x, "x")
    if not isinstance(approximate, str) or approximate not in _GELU_FORMS:
        raise ValueError(
            f"gelu: approximate must be 'none' (exact, torch's default) or 'tanh', got {approximate!r}"
            + (" (jax.nn.gelu's approximate=True is 'tanh' here, False is 'none')"
               if isinstance(approximate, bool) else "")
        )
    if approximate == "tanh":
        inner = math.sqrt(2 / math.pi) * (x + 0.044715 * (x * x * x))
        return x * _sigmoid(2 * inner)
    return 0.5 * x * jax.lax.erfc(x * -(1 / math.sqrt(2)))


def relu(x: jax.Array) -> jax.Array:
    """``F.relu(x)``: ``max(x, 0)``; its gradient at 0 is 0, as torch's.

    >>> relu(jnp.array([-1.0, 0.0, 2.0]))
    Array([0., 0., 2.], dtype=float32)
    """
    _checks.check_float_leaves("relu", x, "x")
    return jax.nn.relu(x)


def leaky_relu(x: jax.Array, negative_slope: float = 0.01) -> jax.Array:
    """``F.leaky_relu(x, negative_slope)``: ``x`` where ``x > 0``, else ``negative_slope * x``.

    At 0 the gradient is ``negative_slope``, as torch's (``jax.nn.leaky_relu`` gives 1 there).

    >>> leaky_relu(jnp.array([-2.0, 0.0, 3.0]))
    Array([-0.02,  0.  ,  3.  ], dtype=float32)
    """
    _checks.check_float_leaves("leaky_relu", x, "x")
    return jnp.where(x > 0, x, x * negative_slope)


def elu(x: jax.Array, alpha: float = 1.0) -> jax.Array:
    """``F.elu(x, alpha)``: ``x`` where ``x > 0``, else ``alpha * expm1(x)``; the gradient at 0
    is ``alpha``, as torch's.

    >>> elu(jnp.array([-1.0, 0.0, 1.0]))
    Array([-0.63212055,  0.        ,  1.        ], dtype=float32)
    """
    _checks.check_float_leaves("elu", x, "x")
    positive = x > 0
    # The untaken branch must not overflow: its inf would make the gradient NaN.
    return jnp.where(positive, x, alpha * jnp.expm1(jnp.where(positive, 0, x)))


def silu(x: jax.Array) -> jax.Array:
    """``F.silu(x)``: ``x * sigmoid(x)``.

    >>> silu(jnp.array([-1.0, 0.0, 1.0]))
    Array([-0.26894143,  0.        ,  0.7310586 ], dtype=float32)
    """
    _checks.check_float_leaves("silu", x, "x")
    return x * _sigmoid(x)


def sigmoid(x: jax.Array) -> jax.Array:
    """``torch.sigmoid(x)``: ``1 / (1 + exp(-x))``, its derivative ``sigmoid(x) * sigmoid(-x)``.

    >>> sigmoid(jnp.array([0.0]))
    Array([0.5], dtype=float32)
    """
    _checks.check_float_leaves("sigmoid", x, "x")
    return _sigmoid(x)


@jax.custom_jvp
def _sigmoid(x):
    return jax.nn.sigmoid(x)


@_sigmoid.defjvp
def _sigmoid_jvp(primals, tangents):
    """``sigmoid(x) * sigmoid(-x)``: autodiff's ``s * (1 - s)`` cancels where ``s`` nears 1, and
    in gelu's tanh form, where torch differentiates a correctly rounded tanh, its error would
    be several times torch's."""
    (x,), (dx,) = primals, tangents
    return _sigmoid(x), dx * jax.nn.sigmoid(x) * jax.nn.sigmoid(-x)


def tanh(x: jax.Array) -> jax.Array:
    """``torch.tanh(x)``, its derivative ``sech(x)**2`` computed from ``x``.

    Autodiff's ``1 - tanh(x)**2`` carries XLA's float32 tanh error (up to 4 ulps; torch's is
    correctly rounded) divided by ``1 - |tanh(x)|``: near saturation, many times torch's.

    >>> tanh(jnp.array([0.0]))
    Array([0.], dtype=float32)
    """
    _checks.check_float_leaves("tanh", x, "x")
    return _tanh(x)


@jax.custom_jvp
def _tanh(x):
    return jnp.tanh(x)


@_tanh.defjvp
def _tanh_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    decay = jnp.exp(-2 * jnp.abs(x))  # sech(x)**2 = 4 u / (1 + u)**2, u = exp(-2|x|): no cancellation
    return _tanh(x), dx * (4 * decay / jnp.square(1 + decay))


def softplus(x: jax.Array, beta: float = 1.0, threshold: float = 20.0) -> jax.Array:
    """``F.softplus(x, beta, threshold)``: ``log1p(exp(beta * x)) / beta``, and ``x`` itself
    where ``beta * x > threshold`` (torch's switch to the linear function, gradient 1).

    >>> softplus(jnp.array([0.0, 30.0]))
    Array([ 0.6931472, 30.       ], dtype=float32)
    """
    _checks.check_float_leaves("softplus", x, "x")
    scaled = x * beta
    linear = scaled > threshold
    # exp of the linear side's input may overflow in the untaken branch, NaN in its gradient.
    return jnp.where(linear, x, jnp.log1p(jnp.exp(jnp.where(linear, 0, scaled))) / beta)


def hardtanh(x: jax.Array, min_val: float = -1.0, max_val: float = 1.0) -> jax.Array:
    """``F.hardtanh(x, min_val, max_val)``: ``x`` clipped to ``[min_val, max_val]``; the
    gradient is 1 strictly inside and 0 at the bounds and beyond, as torch's (``jnp.clip``'s
    is 0.5 at the bounds).

    >>> hardtanh(jnp.array([-2.0, 0.5, 2.0]))
    Array([-1. ,  0.5,  1. ], dtype=float32)
    """
    _checks.check_float_leaves("hardtanh", x, "x")
    if _checks.is_concrete(min_val) and _checks.is_concrete(max_val) and min_val > max_val:
        raise ValueError(f"hardtanh: min_val {min_val} is above max_val {max_val} (torch: min_val cannot be "
                         f"greater than max_val)")
    return jnp.where(x <= min_val, min_val, jnp.where(x >= max_val, max_val, x))


def relu6(x: jax.Array) -> jax.Array:
    """``F.relu6(x)``: ``hardtanh(x, 0, 6)``, gradient 0 at 0 and at 6, as torch's.

    >>> relu6(jnp.array([-1.0, 3.0, 7.0]))
    Array([0., 3., 6.], dtype=float32)
    """
    _checks.check_float_leaves("relu6", x, "x")
    return hardtanh(x, 0.0, 6.0)


def mish(x: jax.Array) -> jax.Array:
    """``F.mish(x)``: ``x * tanh(softplus(x))``, torch's softplus without its threshold.

    >>> mish(jnp.array([0.0, 1.0]))
    Array([0.       , 0.8650985], dtype=float32)
    """
    _checks.check_float_leaves("mish", x, "x")
    # jax.nn.softplus (log-add-exp) keeps the gradient finite where exp(x) overflows.
    return x * _tanh(jax.nn.softplus(x))
