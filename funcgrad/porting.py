"""Prove your own port: the parity verdict as a pytest assertion over two training runs.

A *run* is a dict of what a training run produced; :func:`record_torch_run` and
:func:`record_jax_run` make the usual one, the loss of every step and the final weights
in ``state_dict`` form, so the two sides line up key by key::

    def torch_train(dtype):                       # your loop, in float32 or float64
        model = make_model().to(torch.float64 if dtype == np.float64 else torch.float32)
        ...
        return record_torch_run(model, loop())    # loop() yields each step's loss

    def jax_train(dtype):                         # your port
        params, opt_state, losses = fg.fit_epochs(...)
        return record_jax_run(losses, params)

    def test_port_matches_torch():
        assert_same_training(jax_train, torch_train)

:func:`assert_same_training` runs both in float64 (held to 1e-10: proves the algorithm is
the same) and in float32 (judged by the error model against the torch run in float64:
proves the port stays within what rounding explains). It fails naming the quantity, the
dtype and the first step that leaves its band; a float32 run that leaves while float64
agrees is named as a separation (a long non-convex run amplifies rounding), and
:func:`funcgrad.stepwise.assert_same_steps` judges it step by step.
Nothing here imports torch: the torch run
is yours.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import jax
import numpy as np

from funcgrad import parity
from funcgrad.nn import to_state_dict

Run = Mapping[str, Any]
DTYPES = ("float64", "float32")


class ParityError(AssertionError):
    """A port computes something else than its original; ``rows`` holds every verdict."""

    def __init__(self, message: str, rows: list[parity.Quantity]):
        super().__init__(message)
        self.rows = rows


def record_torch_run(model, loop: Iterable, **extra) -> dict:
    """Run a PyTorch training loop to its end; return its per-step losses and final ``state_dict``.

    ``loop`` yields each step's loss tensor (a generator around your loop, with ``yield
    loss`` after ``optimizer.step()``). ``extra`` adds quantities of your own (arrays,
    or :class:`~funcgrad.parity.Exact` for an accuracy).

    >>> def loop():
    ...     for x, y in loader:
    ...         optimizer.zero_grad()
    ...         loss = criterion(model(x), y)
    ...         loss.backward()
    ...         optimizer.step()
    ...         yield loss
    >>> run = record_torch_run(model, loop())
    >>> run["loss per step"].value.shape
    (1876,)
    """
    losses = [np.asarray(loss.detach().cpu()) for loss in loop]
    if not losses:
        raise ValueError("record_torch_run: the loop yielded no loss; yield each step's loss")
    state = {name: np.asarray(value.detach().cpu()) for name, value in model.state_dict().items()}
    return {"loss per step": parity.History(np.stack(losses)), "final state_dict": state, **extra}


def record_jax_run(losses, params, **extra) -> dict:
    """A JAX run in :func:`record_torch_run`'s layout: per-step ``losses``, ``params`` as a
    ``state_dict`` (nested dicts joined with dots, as :func:`funcgrad.to_state_dict`).

    >>> params, opt_state, losses = fg.fit_epochs(loss_fn, opt, params, opt_state, data, batches)
    >>> run = record_jax_run(losses, params)
    """
    return {"loss per step": parity.History(np.asarray(losses)),
            "final state_dict": to_state_dict(params), **extra}


def assert_same_run(jax_run: Run, torch_run: Run, reference: Run | None = None, dtype=None) -> list[parity.Quantity]:
    """Assert two recorded runs agree; return every quantity's verdict.

    ``dtype`` (default: the torch run's floats) picks the rule. A float32 run is judged by
    the error model when ``reference``, the torch run in float64 from the same inputs,
    is given, else by ``torch.testing.assert_close``'s tolerances.

    >>> rows = assert_same_run(jax_run, torch_run)
    >>> print(parity.format_table(rows))
    """
    dtype = np.dtype(dtype) if dtype is not None else _float_dtype(torch_run)
    rows = parity.compare_results(jax_run, torch_run, dtype, reference)
    failed = [row for row in rows if not row.passed]
    if failed:
        raise ParityError(_failure_message(dtype.name, failed), rows)
    return rows


def assert_same_training(
    jax_train: Callable[[np.dtype], Run],
    torch_train: Callable[[np.dtype], Run],
    dtypes: Iterable[str] = DTYPES,
) -> dict[str, list[parity.Quantity]]:
    """Run both training functions in each dtype and assert their runs agree.

    Each function takes a numpy dtype and returns a run (:func:`record_torch_run`,
    :func:`record_jax_run`); both must start from the same initial weights and see the
    same batches in the same order, in float32 and in float64 (draw the weights once,
    in float32, and cast them). The JAX function runs with x64 enabled for float64. The
    float32 verdict uses the float64 torch run as its reference, run here if float64 is
    not among ``dtypes``. Returns ``{dtype: rows}``.

    >>> rows = assert_same_training(jax_train, torch_train)
    >>> print(parity.format_table(rows["float32"]))
    """
    dtypes = list(dtypes)
    if not dtypes:
        raise ValueError(f"assert_same_training: no dtype to train in; give some of {DTYPES}")
    verdicts, reference = {}, None
    for name in dtypes:
        dtype = np.dtype(name)
        if dtype not in parity.TOLERANCES:
            raise ValueError(f"assert_same_training: no parity rule for {name}; use float32 or float64")
        torch_run = torch_train(dtype)
        if dtype == np.float64:
            reference = torch_run
        elif reference is None:
            reference = torch_train(np.dtype(np.float64))
        with jax.enable_x64(dtype == np.float64):
            jax_run = jax_train(dtype)
        try:
            verdicts[name] = assert_same_run(jax_run, torch_run, reference if dtype == np.float32 else None, dtype)
        except ParityError as error:
            if dtype == np.float32 and "float64" in verdicts:
                raise ParityError(_separation_message(error), error.rows) from None
            raise
    return verdicts


def _separation_message(error: ParityError) -> str:
    """float64 agrees and float32 does not: the whole runs cannot tell amplified rounding
    (a long non-convex run parts at a ReLU kink even when every step is right) from a bug
    that only float32 shows; say so, and what tells them apart."""
    diverging = sorted((row.first_divergence, row.name) for row in error.rows
                       if not row.passed and row.first_divergence is not None)
    where = f"from step {diverging[0][0]} ({diverging[0][1]})" if diverging else "at the end"
    return (f"float32 whole runs separate {where} while float64 agrees: rounding amplified by "
            "the model, or a bug only float32 shows; whole runs cannot tell which. Judge every "
            "step from torch's own state: fg.assert_same_steps(loss_fn, optimizer, torch_setup, "
            "torch_loss, batches) (examples/port_your_model_stepwise.py)\n" + str(error))


def _failure_message(dtype: str, failed: list[parity.Quantity]) -> str:
    diverging = sorted((row.first_divergence, row.name) for row in failed if row.first_divergence is not None)
    first = f"; first divergence: {diverging[0][1]} at step {diverging[0][0]}" if diverging else ""
    count = "1 quantity differs" if len(failed) == 1 else f"{len(failed)} quantities differ"
    return (f"{count} in {dtype}{first}\n"
            + parity.format_failures(failed))


def _float_dtype(run: Run) -> np.dtype:
    """The one float dtype of a run's values (Exact values aside: an accuracy is a Python float)."""
    found = {np.asarray(parity.unwrap(value)).dtype for value in parity.flatten(run).values()
             if not isinstance(value, parity.Exact)} & {np.dtype(np.float32), np.dtype(np.float64)}
    if len(found) != 1:
        what = "no float values" if not found else "float32 and float64 values"
        raise ValueError(f"assert_same_run: the torch run holds {what}, so its dtype is unclear; pass dtype=")
    return found.pop()
