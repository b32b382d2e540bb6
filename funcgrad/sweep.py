"""Sweeps: train many models at once, ``vmap`` over initial params and learning rates.

The models of a sweep are stacked: every leaf of the params pytree gains a leading axis
of length ``num_models``. Each model takes the steps :func:`funcgrad.fit_full_batch`
takes alone; ``vmap`` turns the runs into one compiled loop over batched arrays.

    params, rates = sweep_grid(init_many(init_fn, jax.random.split(key, 10)), jnp.logspace(-3, 0, 100))
    params, losses = fit_full_batch_sweep(loss_fn, optax.sgd, params, rates, (x, y), 10_000)
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import optax

from funcgrad import _checks
from funcgrad.train import fit_full_batch
from funcgrad.types import Batch, LossFn, Params

OptimizerFactory = Callable[..., optax.GradientTransformation]


def init_many(init_fn: Callable[[jax.Array], Params], keys: jax.Array) -> Params:
    """Initial params of one model per key, stacked on a leading axis: ``vmap(init_fn)(keys)``.

    >>> params = init_many(lambda key: linear_init(key, 2, 3), jax.random.split(jax.random.key(0), 10))
    >>> params["weight"].shape
    (10, 3, 2)
    """
    if jnp.ndim(jax.random.key_data(keys)) < 2:
        raise ValueError(
            "init_many: keys is a single key; pass one key per model, "
            "e.g. jax.random.split(key, num_models)"
        )
    return jax.vmap(init_fn)(keys)


def sweep_grid(stacked_params: Params, learning_rates: jax.Array) -> tuple[Params, jax.Array]:
    """Pair every stacked model with every learning rate: ``S`` inits x ``R`` rates -> ``S * R``.

    Model ``s * R + r`` starts from init ``s`` and trains with ``learning_rates[r]``, so
    the sweep's results reshape to ``(S, R, ...)``.

    >>> params, rates = sweep_grid(init_many(init_fn, jax.random.split(key, 10)), jnp.logspace(-3, 0, 100))
    >>> rates.shape
    (1000,)
    """
    _checks.check_float_leaves("sweep_grid", stacked_params, "stacked_params")
    num_inits = _num_models("sweep_grid", stacked_params)
    rates = jnp.asarray(learning_rates)
    if rates.ndim != 1:
        raise ValueError(
            f"sweep_grid: learning_rates must be a vector of rates, got shape {rates.shape}"
        )
    params = jax.tree.map(lambda leaf: jnp.repeat(leaf, rates.size, axis=0), stacked_params)
    return params, jnp.tile(rates, num_inits)


@functools.partial(jax.jit, static_argnames=("loss_fn", "make_optimizer", "num_steps"))
def fit_full_batch_sweep(
    loss_fn: LossFn,
    make_optimizer: OptimizerFactory,
    stacked_params: Params,
    learning_rates: jax.Array | float,
    batch: Batch,
    num_steps: int,
) -> tuple[Params, jax.Array]:
    """Train every stacked model for ``num_steps`` full-batch steps, all in one compiled call.

    Model ``i`` runs :func:`funcgrad.fit_full_batch` from its own params with the
    optimizer ``make_optimizer(learning_rate=learning_rates[i])``: ``optax.sgd``,
    ``optax.adam``, or ``functools.partial(optax.sgd, momentum=0.9)`` to fix the other
    hyperparameters. The rate is held in the optimizer state by
    ``optax.inject_hyperparams``, in the params' dtype, which is what lets it differ
    between models. ``learning_rates`` is one rate per model, or a single rate for all.

    Returns the trained params, stacked, and every model's losses ``(num_models, num_steps)``.
    A loss that turns NaN or inf is returned, not raised: finding the rates at which
    training diverges is part of what a sweep is for (``jnp.isfinite(losses[:, -1])``).

    >>> params, rates = sweep_grid(init_many(init_fn, jax.random.split(key, 10)), jnp.logspace(-3, 0, 100))
    >>> params, losses = fit_full_batch_sweep(loss_fn, optax.sgd, params, rates, (x, y), 10_000)
    >>> losses.shape
    (1000, 10000)
    """
    _checks.check_float_leaves("fit_full_batch_sweep", stacked_params, "stacked_params")
    _checks.check_float_leaves("fit_full_batch_sweep", batch, "batch")
    num_models = _num_models("fit_full_batch_sweep", stacked_params)
    rates = _one_rate_per_model(learning_rates, num_models)

    def fit_one(params, learning_rate):
        optimizer = optax.inject_hyperparams(make_optimizer)(learning_rate=learning_rate)
        params, _, losses = fit_full_batch(
            loss_fn, optimizer, params, optimizer.init(params), batch, num_steps
        )
        return params, losses

    return jax.vmap(fit_one)(stacked_params, rates)


def _num_models(what: str, stacked_params: Params) -> int:
    """The length of the leading axis that every leaf shares."""
    leaves = jax.tree_util.tree_leaves_with_path(stacked_params)
    sizes = {
        jax.tree_util.keystr(path): jnp.shape(leaf)[0] if jnp.ndim(leaf) else "no axis"
        for path, leaf in leaves
    }
    if not sizes or len(set(sizes.values())) != 1 or "no axis" in sizes.values():
        found = ", ".join(f"{name}: {size}" for name, size in sizes.items())
        raise ValueError(
            f"{what}: every params leaf needs the same leading model axis, got leading "
            f"sizes {{{found}}}; stack models with init_many"
        )
    return next(iter(sizes.values()))


def _one_rate_per_model(learning_rates: jax.Array | float, num_models: int) -> jax.Array:
    rates = jnp.asarray(learning_rates)
    if rates.ndim > 1 or rates.size not in (1, num_models):
        raise ValueError(
            f"fit_full_batch_sweep: {rates.size} learning rates (shape {rates.shape}) for "
            f"{num_models} models; pass one rate per model or a single rate for all "
            f"(sweep_grid pairs every init with every rate)"
        )
    return jnp.broadcast_to(rates, (num_models,))
