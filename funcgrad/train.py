"""Training as pure functions: one SGD step, and whole runs compiled once with ``lax.scan``.

A loss function has the signature ``loss_fn(params, batch) -> scalar``; ``batch`` is any
pytree of arrays (for example ``(x, y)``). Gradients are return values, so there is no
``zero_grad``: nothing accumulates between steps.
"""

from __future__ import annotations

import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad import _checks

Params = Any
Batch = Any
LossFn = Callable[[Params, Batch], jax.Array]


def train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    batch: Batch,
) -> tuple[Params, optax.OptState, jax.Array]:
    """One step of ``zero_grad(); loss.backward(); optimizer.step()``, as a pure function.

    Returns the new params and optimizer state, and the loss *before* the update (the
    value a torch loop prints). Wrap it in ``jax.jit`` (with ``loss_fn`` and
    ``optimizer`` bound) for a compiled step.

    >>> opt = optax.sgd(0.1)
    >>> params, state, loss = train_step(loss_fn, opt, params, opt.init(params), (x, y))
    """
    loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    return optax.apply_updates(params, updates), opt_state, loss


def fit_full_batch(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    batch: Batch,
    num_steps: int,
) -> tuple[Params, optax.OptState, jax.Array]:
    """Run ``num_steps`` full-batch steps in one compiled loop; return the state and every loss.

    Params and batch are checked for NaN/inf before the loop, and a loss that turns
    non-finite is reported with its step after it (:class:`NonFiniteLossError`); the
    compiled loop itself carries no checks.

    >>> opt = optax.sgd(0.01)
    >>> params, opt_state, losses = fit_full_batch(loss_fn, opt, params, opt.init(params), (x, y), 10_000)
    >>> losses.shape
    (10000,)
    """
    _check_inputs("fit_full_batch", params, batch)
    result = _fit_full_batch(loss_fn, optimizer, params, opt_state, batch, num_steps)
    _check_losses("fit_full_batch", result[-1])
    return result


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer", "num_steps"))
def _fit_full_batch(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    batch: Batch,
    num_steps: int,
) -> tuple[Params, optax.OptState, jax.Array]:
    """The compiled loop behind the public function of the same name (no checks)."""

    def step(carry, _):
        params, opt_state = carry
        params, opt_state, loss = train_step(loss_fn, optimizer, params, opt_state, batch)
        return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), length=num_steps)
    return params, opt_state, losses


def fit_minibatches(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    data: Batch,
    batch_indices: jax.Array,
) -> tuple[Params, optax.OptState, jax.Array]:
    """Minibatch SGD in one compiled loop: step ``i`` trains on ``data[batch_indices[i]]``.

    ``data`` stays whole on the device; each batch is gathered inside the loop, so no
    shuffled copy of the dataset is ever made. ``batch_indices`` is
    ``(num_steps, batch_size)``, e.g. from :func:`shuffled_batch_indices`. Runs can be
    split into consecutive calls (to show progress, say): the state carries over.
    Checked like :func:`fit_full_batch`, plus indices within the data's length.

    >>> order = shuffled_batch_indices(jax.random.key(0), 60_000, 100)
    >>> opt = optax.sgd(0.1)
    >>> params, opt_state, losses = fit_minibatches(loss_fn, opt, params, opt.init(params), (images, labels), order)
    """
    _check_inputs("fit_minibatches", params, data)
    _check_batch_indices(data, batch_indices)
    result = _fit_minibatches(loss_fn, optimizer, params, opt_state, data, batch_indices)
    _check_losses("fit_minibatches", result[-1])
    return result


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer"))
def _fit_minibatches(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    data: Batch,
    batch_indices: jax.Array,
) -> tuple[Params, optax.OptState, jax.Array]:
    """The compiled loop behind the public function of the same name (no checks)."""

    def step(carry, indices):
        params, opt_state = carry
        batch = jax.tree.map(lambda leaf: leaf[indices], data)
        params, opt_state, loss = train_step(loss_fn, optimizer, params, opt_state, batch)
        return (params, opt_state), loss

    (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), batch_indices)
    return params, opt_state, losses


def shuffled_batch_indices(
    key: jax.Array, num_examples: int, batch_size: int, num_epochs: int = 1
) -> np.ndarray:
    """One fresh permutation per epoch, cut into batches: ``(num_epochs * n // bs, bs)``.

    The explicit twin of ``DataLoader(shuffle=True)``; hand the same array to torch to
    feed it the same batches. ``batch_size`` must divide ``num_examples`` so that every
    step has the same shape inside the compiled loop.

    >>> shuffled_batch_indices(jax.random.key(0), 6, 2).shape
    (3, 2)
    """
    if batch_size <= 0 or num_examples % batch_size:
        raise ValueError(
            f"shuffled_batch_indices: batch_size {batch_size} does not divide the "
            f"{num_examples} examples; pick a divisor or drop "
            f"{num_examples % batch_size if batch_size > 0 else num_examples} examples first"
        )
    epoch_keys = jax.random.split(key, num_epochs)
    orders = [np.asarray(jax.random.permutation(k, num_examples)) for k in epoch_keys]
    return np.concatenate(orders).astype(np.int32).reshape(-1, batch_size)


class NonFiniteLossError(FloatingPointError):
    """A training run's loss became NaN or inf; ``step`` is the first such step (0-based)."""

    def __init__(self, what: str, step: int, num_steps: int, loss: float, last_finite: float | None):
        self.step = step
        before = f"; the loss before it was {last_finite:.6g}" if last_finite is not None else ""
        super().__init__(
            f"{what}: the loss became {loss} at step {step} of {num_steps}{before}. The run "
            f"is reported, not continued: lower the learning rate or check the data"
        )


def _check_inputs(what: str, params: Params, data: Batch) -> None:
    for path, leaf in jax.tree_util.tree_leaves_with_path({"params": params, "batch": data}):
        if jnp.issubdtype(jnp.result_type(leaf), jnp.floating):
            _checks.check_finite(what, leaf, jax.tree_util.keystr(path))


def _check_batch_indices(data: Batch, batch_indices) -> None:
    num_examples = len(jax.tree.leaves(data)[0])
    if jnp.ndim(batch_indices) != 2:
        raise ValueError(
            f"fit_minibatches: batch_indices must be (num_steps, batch_size), got shape "
            f"{jnp.shape(batch_indices)}"
        )
    if _checks.is_concrete(batch_indices):
        indices = np.asarray(batch_indices)
        if indices.size and (indices.min() < 0 or indices.max() >= num_examples):
            bad = indices[(indices < 0) | (indices >= num_examples)].flat[0]
            raise ValueError(
                f"fit_minibatches: batch index {bad} is out of range for {num_examples} examples"
            )


def _check_losses(what: str, losses: jax.Array) -> None:
    if not _checks.is_concrete(losses):
        return
    values = np.asarray(losses)
    bad = ~np.isfinite(values)
    if bad.any():
        step = int(np.argmax(bad))
        last_finite = float(values[step - 1]) if step else None
        raise NonFiniteLossError(what, step, len(values), float(values[step]), last_finite)
