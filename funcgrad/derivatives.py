"""Hessian-vector products: the one higher-order derivative of ``torch.autograd.functional``
that JAX has no single function for.

Its other functions map onto JAX directly: ``jacobian`` is ``jax.jacrev`` (or
``jax.jacfwd``, its ``strategy="forward-mode"``), ``hessian`` is ``jax.hessian``,
``vjp`` and ``jvp`` are ``jax.vjp`` and ``jax.jvp``.
"""

from __future__ import annotations

from typing import Callable

import jax

from funcgrad import _checks
from funcgrad.types import Params


def hvp(f: Callable[[Params], jax.Array], params: Params, vector: Params) -> Params:
    """The Hessian of scalar ``f`` at ``params`` times ``vector``, without forming the Hessian.

    Forward-over-reverse: the ``jvp`` of ``grad(f)`` along ``vector``, for the cost of
    about two gradients. ``params`` and ``vector`` are pytrees of the same structure
    and shapes; so is the result. The twin of ``torch.autograd.functional.hvp(f, params,
    vector)[1]``, which computes it reverse-over-reverse and also returns ``f(params)``.

    >>> f = lambda x: jnp.sum(x ** 3)                # Hessian: diag(6 x)
    >>> hvp(f, jnp.array([1.0, 2.0]), jnp.array([1.0, 1.0]))
    Array([ 6., 12.], dtype=float32)
    """
    _checks.check_float_leaves("hvp", params, "params")
    _checks.check_float_leaves("hvp", vector, "vector")
    _checks.check_like_params("hvp", params, vector)
    return jax.jvp(jax.grad(f), (params,), (vector,))[1]
