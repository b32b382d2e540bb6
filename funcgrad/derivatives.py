"""Hessian-vector products: the one higher-order derivative of ``torch.autograd.functional``
that JAX has no single function for.

Its other functions map onto JAX directly: ``jacobian`` is ``jax.jacrev`` (or
``jax.jacfwd``, its ``strategy="forward-mode"``), ``hessian`` is ``jax.hessian``,
``vjp`` and ``jvp`` are ``jax.vjp`` and ``jax.jvp``.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp

Params = Any


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
    _check_like_params(params, vector)
    return jax.jvp(jax.grad(f), (params,), (vector,))[1]


def _check_like_params(params: Params, vector: Params) -> None:
    if jax.tree.structure(params) != jax.tree.structure(vector):
        raise ValueError(
            f"hvp: vector has structure {jax.tree.structure(vector)} but params has "
            f"{jax.tree.structure(params)}; give vector the structure of params"
        )
    for (path, p), v in zip(jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(vector)):
        if jnp.shape(p) != jnp.shape(v):
            leaf = jax.tree_util.keystr(path)
            raise ValueError(
                f"hvp: vector{leaf} has shape {jnp.shape(v)} but params{leaf} has shape "
                f"{jnp.shape(p)}; each leaf of vector must have its param's shape"
            )
