"""What a case hands ``python -m compare.bench``: its sides set up once (:class:`Timed`), and
its torch loop on a model compiled as a torch user first compiles it (:func:`torch_compiled`).
Both the cases and the bench import this module; it imports neither.

    compiled = torch_compiled(torch_model(ctx, initial))
    return Timed(steps, {"funcgrad": jax_run, "torch-eager": eager_run, TORCH_COMPILE: compiled_run})
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch


class Timed(NamedTuple):
    """A case's sides set up once, for ``python -m compare.bench``: each run is a call of
    one side's own code (``"funcgrad"``, ``"torch-eager"``, ...), ``steps`` training steps
    long, returning what that side returns; ``notes`` say anything a row needs said."""

    steps: int
    runs: dict[str, Callable[[], object]]
    notes: dict[str, str] = {}


TORCH_COMPILE = "torch.compile"
COMPILED = ("torch.compile(model), default mode (inductor): the model's forward and backward compiled; "
            "the loop, the loss, zero_grad and the optimizer's step eager")


class CompileRefused(torch.nn.Module):
    """What :func:`torch_compiled` returns where ``torch.compile(model)`` itself raised (an
    unsupported Python, say): the model's parameters, and a forward that raises that error,
    so the loop fails on its first step and the row says why."""

    def __init__(self, model: torch.nn.Module, error: Exception):
        super().__init__()
        self.model, self.error = model, error

    def forward(self, *args, **kwargs):
        raise self.error


def torch_compiled(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` compiled as every torch.compile row compiles it: ``torch.compile(model)``,
    default mode, inductor, the torch loop around it unchanged (what a torch user first
    writes). Build it once in ``timed(ctx)``, on a model of its own, and let every call of
    the run reuse it: its first call compiles (the warm-up, timed apart as funcgrad's
    compile), later calls run what it compiled, the parameters trained in place.

        compiled = torch_compiled(torch_model(ctx, initial))
        runs[TORCH_COMPILE] = lambda: torch_train(compiled, x, y)
    """
    try:
        return torch.compile(model)
    except Exception as error:  # noqa: BLE001 - whatever it is, the row reports it
        return CompileRefused(model, error)
