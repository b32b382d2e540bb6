"""Prove your own port over whole training runs: a recorded run per side, and the assertion.

A *run* is a dict of what a training run produced; :func:`record_torch_run` and
:func:`record_jax_run` make the usual one, in one layout: the loss of every step
(``"loss per step"``), the final parameters (``"final parameters"``, torch's names) and,
for a model with buffers, the final buffers (``"final buffers"``: BatchNorm's running
statistics, its ``num_batches_tracked`` compared exactly, whatever its int width)::

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
the same) and in float32 (judged by the band against the torch run in float64: proves the
port stays within what rounding explains). It fails naming the quantity, the dtype and the
first step that leaves its band; a float32 run that leaves while float64 agrees is named
as a separation (a long non-convex run amplifies rounding), and
:func:`funcgrad.parity.steps.assert_same_steps` judges it step by step. Nothing here
imports torch: the torch run is yours.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Mapping

import jax
import numpy as np

from funcgrad.parity import report
from funcgrad.parity.quantities import Quantity, compare_results
from funcgrad.parity.values import DTYPES, Exact, History, dtype_names, flatten, unwrap
from funcgrad.state_dict import host_array, to_state_dict

Run = Mapping[str, Any]
LOSSES, PARAMETERS, BUFFERS = "loss per step", "final parameters", "final buffers"


def recorded_run(losses, parameters: Mapping, buffers: Mapping | None = None, **extra) -> dict:
    """A run in the one layout: ``{"loss per step": History, "final parameters": {...},
    "final buffers": {...}}`` (no buffers key when there are none), numpy arrays keyed by
    torch's names; integer buffers (a count) as :class:`Exact` int64.

    >>> run = recorded_run(losses, {"0.weight": w}, {"1.num_batches_tracked": np.int64(5)})
    """
    run = {LOSSES: History(np.asarray(losses)), PARAMETERS: {name: np.asarray(v) for name, v in parameters.items()}}
    if buffers:
        run[BUFFERS] = {name: Exact(np.asarray(value).astype(np.int64)) if np.asarray(value).dtype.kind in "biu"
                        else np.asarray(value) for name, value in buffers.items()}
    return run | extra


def final_weights(run: Run) -> dict[str, np.ndarray]:
    """A recorded run's final parameters and buffers as one state_dict of numpy arrays."""
    return dict(run[PARAMETERS]) | {name: np.asarray(unwrap(value)) for name, value in run.get(BUFFERS, {}).items()}


def record_torch_run(model, loop: Iterable, **extra) -> dict:
    """Run a PyTorch training loop to its end; return its per-step losses, final parameters
    and final buffers (:func:`recorded_run`'s layout).

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
    losses = [host_array("record_torch_run", "a loss", loss) for loss in loop]
    if not losses:
        raise ValueError("record_torch_run: the loop yielded no loss; yield each step's loss")
    if any(np.shape(loss) != () for loss in losses):
        raise ValueError(f"record_torch_run: the loop must yield each step's scalar loss, got a loss of shape "
                         f"{next(np.shape(loss) for loss in losses if np.shape(loss) != ())}")
    parameter_names = {name for name, _ in model.named_parameters(remove_duplicate=False)}
    state = {name: host_array("record_torch_run", name, value) for name, value in model.state_dict().items()}
    parameters = {name: host_array("record_torch_run", name, p) for name, p in model.named_parameters()}
    buffers = {name: value for name, value in state.items() if name not in parameter_names}
    return recorded_run(np.stack(losses), parameters, buffers, **extra)


def record_jax_run(losses, params, buffers=None, **extra) -> dict:
    """A JAX run in :func:`record_torch_run`'s layout: per-step ``losses``, ``params`` (and a
    model's ``buffers``) as ``state_dict`` names (nested dicts joined with dots, as
    :func:`funcgrad.to_state_dict`).

    >>> params, opt_state, losses, buffers = fg.fit_epochs(loss_fn, opt, params, opt_state, data, batches,
    ...                                                     buffers=buffers)
    >>> run = record_jax_run(losses, params, buffers)
    """
    return recorded_run(losses, to_state_dict(params), None if buffers is None else to_state_dict(buffers), **extra)


def assert_same_run(jax_run: Run, torch_run: Run, reference: Run | None = None, dtype=None) -> list[Quantity]:
    """Assert two recorded runs agree; return every quantity's verdict.

    ``dtype`` (default: the torch run's floats) picks the rule. A float32 run is judged by
    the band when ``reference``, the torch run in float64 from the same inputs, is given,
    else by ``torch.testing.assert_close``'s tolerances.

    >>> rows = assert_same_run(jax_run, torch_run)
    >>> print(fg.parity.format_table(rows))
    """
    dtype = np.dtype(dtype) if dtype is not None else _float_dtype(torch_run)
    rows = compare_results(jax_run, torch_run, dtype, reference)
    failed = [row for row in rows if not row.passed]
    if failed:
        raise report.ParityError(report.failure_message(dtype.name, failed), rows)
    return rows


def assert_same_training(
    jax_train: Callable[[np.dtype], Run],
    torch_train: Callable[[np.dtype], Run],
    dtypes: Iterable[str] = DTYPES,
) -> dict[str, list[Quantity]]:
    """Run both training functions in each dtype and assert their runs agree.

    Each function takes a numpy dtype and returns a run (:func:`record_torch_run`,
    :func:`record_jax_run`); both must start from the same initial weights and see the
    same batches in the same order, in float32 and in float64 (draw the weights once,
    in float32, and cast them). The JAX function runs with x64 enabled for float64. The
    float32 verdict uses the float64 torch run as its reference, run here if float64 is
    not among ``dtypes``. Returns ``{dtype: rows}``.

    >>> rows = assert_same_training(jax_train, torch_train)
    >>> print(fg.parity.format_table(rows["float32"]))
    """
    names = dtype_names("assert_same_training", dtypes)
    verdicts, reference = {}, None
    for name in names:
        dtype = np.dtype(name)
        torch_run = torch_train(dtype)
        if dtype == np.float64:
            reference = torch_run
        elif reference is None:
            reference = torch_train(np.dtype(np.float64))
        with jax.enable_x64(dtype == np.float64):
            jax_run = jax_train(dtype)
        try:
            verdicts[name] = assert_same_run(jax_run, torch_run, reference if dtype == np.float32 else None, dtype)
        except report.ParityError as error:
            if dtype == np.float32 and "float64" in verdicts:
                raise report.ParityError(report.separation_message(error), error.rows) from None
            raise
    return verdicts


def _float_dtype(run: Run) -> np.dtype:
    """The one float dtype of a run's values (Exact values aside: an accuracy is a Python float)."""
    found = {np.asarray(unwrap(value)).dtype for value in flatten(run).values()
             if not isinstance(value, Exact)} & {np.dtype(np.float32), np.dtype(np.float64)}
    if len(found) != 1:
        what = "no float values" if not found else "float32 and float64 values"
        raise ValueError(f"assert_same_run: the torch run holds {what}, so its dtype is unclear; pass dtype=")
    return found.pop()
