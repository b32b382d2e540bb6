"""Run cases on both sides and judge them: the library entry point behind the CLI.

A float32 verdict needs the case's float64 twin: the PyTorch side run again in float64,
from the same inputs, is the reference of the error model (``funcgrad.parity``).
``run_case`` runs that twin itself; ``run_in_dtypes`` shares it with the float64 verdict.

    entry = run_in_dtypes("iris-softmax", ctx)       # {"float64": {...}, "float32": {...}, "passed": ...}
    assert entry["passed"]
"""

from __future__ import annotations

import dataclasses
import time
from typing import NamedTuple

import jax
import numpy as np
import torch

from compare.cases import CASES
from compare.runtime import Context
from funcgrad import parity
from funcgrad.parity import report, steps


class Sides(NamedTuple):
    """One run of a case: what each side reported, the case's notes, and the seconds it took."""

    jax: dict
    torch: dict
    info: dict
    seconds: float


def run_sides(name: str, ctx: Context) -> Sides:
    """Run case ``name`` on both frameworks in ``ctx``'s dtype and device."""
    if name not in CASES:
        raise ValueError(f"unknown case {name!r}; known cases: {', '.join(CASES)}")
    start = time.perf_counter()
    with jax.enable_x64(ctx.dtype == np.float64), jax.default_device(ctx.jax_device):
        jax_results, torch_results, *info = run_case_module(CASES[name], ctx)
        jax_results = to_numpy(jax_results)
    return Sides(jax_results, to_numpy(torch_results), info[0] if info else {},
                 time.perf_counter() - start)


def run_case_module(case, ctx) -> tuple:
    """A case's ``run(ctx)``, or, for a case without one, ``jax_side(*args)`` and
    ``torch_side(ctx, *args)`` of ``args = setup(ctx)``."""
    if hasattr(case, "run"):
        return case.run(ctx)
    args = case.setup(ctx)
    return case.jax_side(*args), case.torch_side(ctx, *args)


def judge(name: str, ctx: Context, sides: Sides, reference: dict | None = None) -> dict:
    """The report entry of one run: every quantity's verdict, and the case's."""
    quantities = parity.compare_results(sides.jax, sides.torch, ctx.dtype, reference)
    divergences = [(q.first_divergence, q.name) for q in quantities if q.first_divergence is not None]
    return {
        **sides.info,
        "name": name,
        "source": CASES[name].SOURCE,
        "dtype": ctx.dtype.name,
        "seed": ctx.seed,
        "passed": all(q.passed for q in quantities),
        "seconds": round(sides.seconds, 3),
        "worst_band_ratio": max((q.band_ratio for q in quantities), default=0.0),
        "first_divergence": (
            {"step": min(divergences)[0], "quantity": min(divergences)[1]} if divergences else None
        ),
        "quantities": parity.to_json(quantities),
    }


def run_case(name: str, ctx: Context, reference: dict | None = None) -> dict:
    """Run and judge case ``name`` in ``ctx``'s dtype.

    float32 is judged against ``reference``, the PyTorch side's float64 results; when it
    is not given, the float64 twin is run here to make it.
    """
    if hasattr(CASES.get(name), "synced"):
        return run_synced(name, ctx, (ctx.dtype.name,))[ctx.dtype.name]
    if ctx.dtype == np.float32 and reference is None:
        reference = float64_reference(name, ctx)
    return judge(name, ctx, run_sides(name, ctx), reference)


def float64_reference(name: str, ctx: Context) -> dict:
    """The PyTorch side's results of case ``name`` in float64, from the same inputs."""
    return run_sides(name, dataclasses.replace(ctx, dtype=np.dtype(np.float64))).torch


def run_synced(name: str, ctx: Context, dtypes=("float64", "float32")) -> dict:
    """A case with ``synced(ctx)`` (the arguments of :func:`funcgrad.compare_steps`) judged
    step by step from torch's state, in :func:`run_in_dtypes`' layout. A case with
    ``evaluate(ctx, weights, side, follow)`` (``side`` "jax" or "torch", ``weights`` a trained
    state_dict in ``ctx``'s dtype, ``follow`` torch's results or None) has each whole run's trained model tested too, float32
    against torch's float64 model (:func:`funcgrad.parity.with_trained_models`)."""
    case = CASES[name]
    start = time.perf_counter()
    with jax.default_device(ctx.jax_device):
        verdicts = steps.compare_steps(**case.synced(ctx), dtypes=dtypes)
    entry = {"name": name, "source": case.SOURCE}
    data = {"data": case.data_name(ctx)} if hasattr(case, "data_name") else {}
    for dtype, verdict in verdicts.items():
        if hasattr(case, "evaluate"):
            verdict = trained_models(case, ctx, verdict)
        rows = verdict.synced + verdict.whole_run
        judged = [row for row in rows if not report.is_information(row)]
        entry[dtype] = {
            "name": name, "source": case.SOURCE, "dtype": dtype, "seed": ctx.seed,
            "passed": verdict.passed, "seconds": 0.0, "summary": verdict.summary,
            "synced_steps": verdict.synced_steps,
            "worst_band_ratio": max((row.band_ratio for row in judged), default=0.0),
            "first_divergence": None if verdict.separation is None else
            {"step": verdict.separation, "quantity": "whole runs part (every synced step agrees)"},
            "quantities": parity.to_json(rows), **data,
        }
    seconds = round((time.perf_counter() - start) / len(dtypes), 3)
    for dtype in dtypes:
        entry[dtype]["seconds"] = seconds
    entry["passed"] = all(entry[dtype]["passed"] for dtype in dtypes)
    return entry


def trained_models(case, ctx: Context, verdict: steps.StepVerdict) -> steps.StepVerdict:
    """``verdict`` with the case's ``evaluate`` of each whole run's trained model judged beside
    it. torch's model is evaluated first; the JAX model and torch's float64 reference are
    handed its results (``follow``), for a case whose evaluation reads what torch's model chose
    (char-gpt's greedy continuation)."""
    dtype = np.dtype(verdict.dtype)

    def evaluate(side: str, in_dtype, follow=None) -> dict:
        side_ctx = dataclasses.replace(ctx, dtype=np.dtype(in_dtype))
        framework = "torch" if side != "jax" else "jax"
        with jax.enable_x64(side_ctx.dtype == np.float64), jax.default_device(ctx.jax_device):
            return to_numpy(case.evaluate(side_ctx, verdict.final_weights[side], framework, follow))

    torch_results = evaluate("torch", dtype)
    reference = evaluate("reference", np.float64, torch_results) if dtype == np.float32 else None
    return steps.with_trained_models(verdict, evaluate("jax", dtype, torch_results), torch_results, reference)


def run_in_dtypes(name: str, ctx: Context, dtypes=("float64", "float32"), keep_sides: bool = False) -> dict:
    """Case ``name`` judged in each of ``dtypes``: ``{"name", "source", "passed", dtype: report}``.

    The float64 run, when asked for, is also the float32 verdict's reference. With
    ``keep_sides``, ``entry["sides"]`` holds each dtype's :class:`Sides` and the
    ``"reference"`` (for plots; not JSON).
    """
    if hasattr(CASES[name], "synced"):
        return run_synced(name, ctx, dtypes)
    entry, sides = {"name": name, "source": CASES[name].SOURCE}, {}
    if "float64" in dtypes:
        ctx64 = dataclasses.replace(ctx, dtype=np.dtype(np.float64))
        sides["float64"] = run_sides(name, ctx64)
        sides["reference"] = sides["float64"].torch
        entry["float64"] = judge(name, ctx64, sides["float64"])
    if "float32" in dtypes:
        ctx32 = dataclasses.replace(ctx, dtype=np.dtype(np.float32))
        if "reference" not in sides:
            sides["reference"] = float64_reference(name, ctx)
        sides["float32"] = run_sides(name, ctx32)
        entry["float32"] = judge(name, ctx32, sides["float32"], sides["reference"])
    entry["passed"] = all(entry[dtype]["passed"] for dtype in dtypes)
    if keep_sides:
        entry["sides"] = sides
    return entry


def to_numpy(results: dict) -> dict:
    """A side's results as numpy (tensors detached, JAX arrays fetched: both synchronised)."""
    def convert(value):
        if isinstance(value, (parity.Exact, parity.Logits, parity.History)):
            return dataclasses.replace(value, value=convert(value.value))
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        if isinstance(value, (int, float)):
            return value
        return np.asarray(value)

    return {name: convert(value) for name, value in results.items()}
