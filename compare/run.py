"""Run cases on both sides and collect a report: the library entry point behind the CLI."""

from __future__ import annotations

import dataclasses
import time

import jax
import numpy as np
import torch

from compare import harness
from compare.cases import CASES
from compare.runtime import Context


def run_case(name: str, ctx: Context) -> dict:
    """Run one case in ``ctx``'s dtype and device; return its report entry."""
    if name not in CASES:
        raise ValueError(f"unknown case {name!r}; known cases: {', '.join(CASES)}")
    module = CASES[name]
    start = time.perf_counter()
    with jax.enable_x64(ctx.dtype == np.float64), jax.default_device(ctx.jax_device):
        jax_results, torch_results, *info = module.run(ctx)
        jax_results = _to_numpy(jax_results)
    torch_results = _to_numpy(torch_results)
    quantities = harness.compare_results(jax_results, torch_results, ctx.dtype)
    return {
        "name": name,
        "source": module.SOURCE,
        "passed": all(q.passed for q in quantities),
        "seconds": round(time.perf_counter() - start, 3),
        "seed": ctx.seed,
        **(info[0] if info else {}),
        "quantities": [dataclasses.asdict(q) for q in quantities],
    }


def _to_numpy(results: dict) -> dict:
    def convert(value):
        if isinstance(value, (harness.Exact, harness.Logits)):
            return type(value)(convert(value.value))
        if isinstance(value, torch.Tensor):
            return value.detach().cpu().numpy()
        if isinstance(value, (int, float)):
            return value
        return np.asarray(value)

    return {name: convert(value) for name, value in results.items()}
