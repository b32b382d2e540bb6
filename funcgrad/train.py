"""Training as pure functions: one SGD step, and whole runs compiled once with ``lax.scan``.

A loss function has the signature ``loss_fn(params, batch) -> scalar``; ``batch`` is any
pytree of arrays (for example ``(x, y)``). Gradients are return values, so there is no
``zero_grad``: nothing accumulates between steps.

A model with buffers (BatchNorm's running statistics, updated by its forward pass in train
mode) has a *stateful* loss, ``loss_fn(params, buffers, batch) -> (loss, new_buffers)``:
pass ``buffers=`` to any function here and it threads them through every step, returning
the new buffers last::

    params, opt_state, loss, buffers = train_step(loss_fn, optimizer, params, opt_state, batch, buffers=buffers)

The ``fit_*`` loops are compiled once per cache key: ``loss_fn`` and ``optimizer`` (static
arguments to ``jit``, keyed by hash and equality: a function by its identity), ``num_steps``
where there is one, and the shapes and dtypes of the arrays. A new loss function or
optimizer object compiles anew; ``funcgrad.optim``'s constructors return the same object
for the same arguments, so rebuilding one reuses the loop. What ``loss_fn`` reads besides
its arguments (a module global it calls, a closure's variable) is baked in when first
traced and NOT retraced when it changes: pass a new function, or ``jax.clear_caches()``.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad import _checks
from funcgrad._checks import NonFiniteLossError
from funcgrad.types import Batch, LossFn, Params

__all__ = ["EpochBatches", "NonFiniteLossError", "fit_epochs", "fit_full_batch", "fit_minibatches",
           "loader_batches", "shuffled_batch_indices", "train_step"]


def train_step(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    batch: Batch,
    *,
    buffers: Params | None = None,
) -> tuple:
    """One step of ``zero_grad(); loss.backward(); optimizer.step()``, as a pure function.

    Returns the new params and optimizer state, and the loss *before* the update (the
    value a torch loop prints); with ``buffers`` (a stateful loss, see the module doc), the
    new buffers too, last. Wrap it in ``jax.jit`` (with ``loss_fn`` and ``optimizer``
    bound) for a compiled step. Params and batch must be float32 or float64 (integer
    labels pass); that static check adds nothing to the compiled step.

    >>> opt = optax.sgd(0.1)
    >>> params, state, loss = train_step(loss_fn, opt, params, opt.init(params), (x, y))
    """
    _checks.check_float_leaves("train_step", params, "params")
    _checks.check_float_leaves("train_step", batch, "batch")
    if buffers is None:
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
    else:
        _checks.check_float_leaves("train_step", buffers, "buffers")
        (loss, buffers), grads = jax.value_and_grad(_stateful("train_step", loss_fn), has_aux=True)(
            params, buffers, batch)
    updates, opt_state = optimizer.update(grads, opt_state, params)
    params = optax.apply_updates(params, updates)
    return (params, opt_state, loss) if buffers is None else (params, opt_state, loss, buffers)


def _stateful(what: str, loss_fn):
    """``loss_fn``, checked to return ``(loss, new_buffers)`` as a stateful loss must."""
    def checked(params, buffers, batch):
        out = loss_fn(params, buffers, batch)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise TypeError(f"{what}: with buffers=, loss_fn(params, buffers, batch) must return (loss, new_buffers), "
                            f"got {type(out).__name__}")
        if jax.tree.structure(out[1]) != jax.tree.structure(buffers):
            raise ValueError(f"{what}: loss_fn returned buffers shaped {jax.tree.structure(out[1])}, "
                             f"but was given {jax.tree.structure(buffers)}")
        return out

    return checked


def fit_full_batch(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    batch: Batch,
    num_steps: int,
    *,
    buffers: Params | None = None,
) -> tuple:
    """Run ``num_steps`` full-batch steps in one compiled loop; return the state and every loss.

    Compiled once per (``loss_fn``, ``optimizer``, ``num_steps``, shapes and dtypes); a global
    that ``loss_fn`` reads is not retraced when it changes (see the module doc).

    Params and batch are checked before the loop (float32 or float64, no NaN/inf), and a
    loss that turns non-finite is reported with its step after it
    (:class:`NonFiniteLossError`); the compiled loop itself carries no checks.

    With ``buffers`` (a stateful loss) the new buffers come back last.

    >>> opt = optax.sgd(0.01)
    >>> params, opt_state, losses = fit_full_batch(loss_fn, opt, params, opt.init(params), (x, y), 10_000)
    >>> losses.shape
    (10000,)
    """
    _checks.check_num_steps("fit_full_batch", num_steps)
    _checks.check_params_and_data("fit_full_batch", params, batch, "batch")
    result = _fit_full_batch(loss_fn, optimizer, params, opt_state, batch, num_steps, buffers)
    _checks.check_losses("fit_full_batch", result[2])
    return _returned(result, buffers)


def _returned(result: tuple, buffers) -> tuple:
    """``(params, opt_state, losses)``, and the new buffers last for a stateful loss."""
    params, opt_state, losses, new_buffers = result
    return (params, opt_state, losses) if buffers is None else (params, opt_state, losses, new_buffers)


def _step(loss_fn, optimizer, carry, batch):
    """A scan body's step: ``carry`` is ``(params, opt_state, buffers)``, buffers None when stateless."""
    params, opt_state, buffers = carry
    if buffers is None:
        params, opt_state, loss = train_step(loss_fn, optimizer, params, opt_state, batch)
    else:
        params, opt_state, loss, buffers = train_step(loss_fn, optimizer, params, opt_state, batch, buffers=buffers)
    return (params, opt_state, buffers), loss


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer", "num_steps"))
def _fit_full_batch(loss_fn, optimizer, params, opt_state, batch, num_steps, buffers):
    """The compiled loop behind the public function of the same name (no checks)."""
    (params, opt_state, buffers), losses = jax.lax.scan(
        lambda carry, _: _step(loss_fn, optimizer, carry, batch), (params, opt_state, buffers), length=num_steps)
    return params, opt_state, losses, buffers


def fit_minibatches(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    data: Batch,
    batch_indices: jax.Array,
    *,
    buffers: Params | None = None,
) -> tuple:
    """Minibatch SGD in one compiled loop: step ``i`` trains on ``data[batch_indices[i]]``.

    Compiled once per (``loss_fn``, ``optimizer``, shapes and dtypes); a global that
    ``loss_fn`` reads is not retraced when it changes (see the module doc).

    ``data`` stays whole on the device; each batch is gathered inside the loop, so no
    shuffled copy of the dataset is ever made. ``batch_indices`` is
    ``(num_steps, batch_size)``, e.g. from :func:`shuffled_batch_indices`. Runs can be
    split into consecutive calls (to show progress, say): the state carries over.
    Checked like :func:`fit_full_batch`, plus indices within the data's length and every
    leaf of the data as long as the first. With ``buffers`` (a stateful loss) the new
    buffers come back last.

    >>> order = shuffled_batch_indices(jax.random.key(0), 60_000, 100)
    >>> opt = optax.sgd(0.1)
    >>> params, opt_state, losses = fit_minibatches(loss_fn, opt, params, opt.init(params), (images, labels), order)
    """
    _checks.check_params_and_data("fit_minibatches", params, data, "data")
    _checks.check_batch_indices("fit_minibatches", data, batch_indices)
    result = _fit_minibatches(loss_fn, optimizer, params, opt_state, data, batch_indices, buffers)
    _checks.check_losses("fit_minibatches", result[2])
    return _returned(result, buffers)


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer"))
def _fit_minibatches(loss_fn, optimizer, params, opt_state, data, batch_indices, buffers):
    """The compiled loop behind the public function of the same name (no checks)."""
    step = _minibatch_step(loss_fn, optimizer, data)
    (params, opt_state, buffers), losses = jax.lax.scan(step, (params, opt_state, buffers), batch_indices)
    return params, opt_state, losses, buffers


def _minibatch_step(loss_fn, optimizer, data):
    """A scan body: one :func:`train_step` on the rows ``indices`` of ``data``, gathered in the loop."""

    def step(carry, indices):
        return _step(loss_fn, optimizer, carry, jax.tree.map(lambda leaf: leaf[indices], data))

    return step


def shuffled_batch_indices(
    key: jax.Array, num_examples: int, batch_size: int, num_epochs: int = 1, drop_last: bool = False
) -> np.ndarray:
    """One fresh permutation per epoch, cut into batches: ``(num_epochs * n // bs, bs)``.

    The explicit twin of ``DataLoader(shuffle=True)`` when every batch is full; hand the
    same array to torch to feed it the same batches. When ``batch_size`` does not divide
    ``num_examples``, torch's ``drop_last=True`` is ``drop_last=True`` here; its default
    (keep the short batch) is :func:`loader_batches` with :func:`fit_epochs`.

    >>> shuffled_batch_indices(jax.random.key(0), 6, 2).shape
    (3, 2)
    """
    batches = loader_batches(key, num_examples, batch_size, num_epochs, drop_last=drop_last)
    if batches.last.shape[1]:
        raise ValueError(
            f"shuffled_batch_indices: batch_size {batch_size} does not divide the "
            f"{num_examples} examples, so every epoch ends with a short batch of "
            f"{batches.last.shape[1]}: pass drop_last=True to drop it, or keep it with "
            f"loader_batches(...) and fit_epochs(...) (DataLoader's default)"
        )
    return batches.full.reshape(-1, batch_size)


class EpochBatches(NamedTuple):
    """A ``DataLoader``'s batches as index arrays: ``full`` is ``(epochs, num_full, batch_size)``,
    ``last`` the short final batch of each epoch, ``(epochs, remainder)`` (``remainder`` is
    0 when the batch size divides the data or with ``drop_last``)."""

    full: np.ndarray
    last: np.ndarray

    @property
    def steps_per_epoch(self) -> int:
        return self.full.shape[1] + (self.last.shape[1] > 0)

    @property
    def num_steps(self) -> int:
        return len(self.full) * self.steps_per_epoch

    def epoch(self, index: int) -> list[np.ndarray]:
        """Epoch ``index``'s batches in order, as a torch loop meets them."""
        return list(self.full[index]) + ([self.last[index]] if self.last.shape[1] else [])

    def in_order(self) -> list[np.ndarray]:
        """Every step's batch over all the epochs, in the order a torch loop meets them.

        >>> batches = [(x[i], y[i]) for i in loader_batches(key, len(y), 64, num_epochs=30).in_order()]
        """
        return [indices for epoch in range(len(self.full)) for indices in self.epoch(epoch)]

    def permutation(self, index: int) -> np.ndarray:
        """Epoch ``index``'s order of examples (a ``DataLoader``'s ``sampler``), without any
        dropped tail."""
        return np.concatenate([self.full[index].ravel(), self.last[index]])


def loader_batches(
    key: jax.Array, num_examples: int, batch_size: int, num_epochs: int = 1, drop_last: bool = False
) -> EpochBatches:
    """``DataLoader(dataset, batch_size, shuffle=True, drop_last)`` over ``num_epochs``: a fresh
    permutation each epoch, cut into ``batch_size`` batches, the short tail kept (torch's
    default) or dropped. Train on them with :func:`fit_epochs`; feed torch the same order
    with ``DataLoader(dataset, batch_size, sampler=batches.permutation(epoch).tolist(),
    drop_last=drop_last)`` each epoch.

    >>> batches = loader_batches(jax.random.key(0), 60_000, 64, num_epochs=2)
    >>> batches.full.shape, batches.last.shape, batches.steps_per_epoch
    ((2, 937, 64), (2, 32), 938)
    """
    if batch_size <= 0 or num_epochs <= 0 or num_examples <= 0:
        raise ValueError(
            f"loader_batches: num_examples, batch_size and num_epochs must be positive, got "
            f"{num_examples}, {batch_size}, {num_epochs}"
        )
    epoch_keys = jax.random.split(key, num_epochs)
    orders = np.stack([np.asarray(jax.random.permutation(k, num_examples)) for k in epoch_keys])
    orders = orders.astype(np.int32)
    num_full = num_examples // batch_size
    cut = num_full * batch_size
    full = orders[:, :cut].reshape(num_epochs, num_full, batch_size)
    last = orders[:, cut:cut] if drop_last else orders[:, cut:]
    return EpochBatches(full, last)


def fit_epochs(
    loss_fn: LossFn,
    optimizer: optax.GradientTransformation,
    params: Params,
    opt_state: optax.OptState,
    data: Batch,
    batches: EpochBatches,
    *,
    buffers: Params | None = None,
) -> tuple:
    """Every epoch of :func:`loader_batches` in one compiled loop; the loss of every step, in
    the order a torch loop prints them (each epoch's full batches, then its short one).

    One compilation serves all the epochs: the full batches and the short one each keep
    their shape from epoch to epoch. Compiled once per (``loss_fn``, ``optimizer``, shapes
    and dtypes), like :func:`fit_minibatches`, and checked like it. With ``buffers`` (a
    stateful loss) the new buffers come back last.

    >>> batches = loader_batches(jax.random.key(0), len(labels), 64, num_epochs=2)
    >>> params, opt_state, losses = fit_epochs(loss_fn, opt, params, opt.init(params), (images, labels), batches)
    >>> losses.shape
    (1876,)
    """
    _checks.check_params_and_data("fit_epochs", params, data, "data")
    if batches.full.ndim != 3 or batches.last.ndim != 2:
        raise ValueError(
            f"fit_epochs: batches must be loader_batches(...)'s (epochs, steps, batch) and "
            f"(epochs, remainder) arrays, got shapes {batches.full.shape} and {batches.last.shape}"
        )
    _checks.check_index_range("fit_epochs", data, np.concatenate([batches.full.ravel(), batches.last.ravel()]))
    result = _fit_epochs(loss_fn, optimizer, params, opt_state, data, batches.full, batches.last, buffers)
    _checks.check_losses("fit_epochs", result[2])
    return _returned(result, buffers)


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer"))
def _fit_epochs(loss_fn, optimizer, params, opt_state, data, full, last, buffers):
    """The compiled loop behind :func:`fit_epochs` (no checks): a scan over epochs, each a
    scan over its full batches and then one step on its short batch, when there is one."""
    step = _minibatch_step(loss_fn, optimizer, data)

    def epoch(carry, epoch_batches):
        epoch_full, epoch_last = epoch_batches
        carry, losses = jax.lax.scan(step, carry, epoch_full)
        if epoch_last.shape[0]:
            carry, last_loss = step(carry, epoch_last)
            losses = jnp.concatenate([losses, last_loss[None]])
        return carry, losses

    (params, opt_state, buffers), losses = jax.lax.scan(epoch, (params, opt_state, buffers), (full, last))
    return params, opt_state, losses.reshape(-1), buffers
