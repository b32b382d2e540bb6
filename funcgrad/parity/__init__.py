"""The verdict engine: is a JAX result what its PyTorch original computes, up to rounding?

One room per idea:

- :mod:`~funcgrad.parity.values`: what a side reports (``History``, ``Exact``, ``Logits``,
  nested results flattened);
- :mod:`~funcgrad.parity.band`: the error model, each formula once (the direct rule, the
  float32 band, PyTorch's noise);
- :mod:`~funcgrad.parity.quantities`: the verdict on each quantity, :func:`compare_results`;
- :mod:`~funcgrad.parity.report`: the words of a verdict (tables, JSON, messages,
  ``ParityError``);
- :mod:`~funcgrad.parity.runs`: recorded runs and the assertions over two whole runs;
- :mod:`~funcgrad.parity.replay`: the steps a synced verdict runs (torch's, its float64 twin,
  JAX's from torch's state);
- :mod:`~funcgrad.parity.steps`: the step-synchronized verdict, every step judged from
  torch's exact state, the first failure named by step, stage and parameter.

    rows = fg.parity.compare_results(jax_results, torch_results, np.float32, reference=torch_float64_results)
    print(fg.parity.format_table(rows))

Nothing here imports torch at import time: the torch runs are the caller's, and the synced
verdict imports torch inside the functions that drive it.
"""

from funcgrad.parity.band import (
    BAND_FACTOR,
    FLOOR_ULPS,
    MIN_BAND_WINDOW,
    NOISE_QUANTILE,
    SYNCED_BAND_FACTOR,
    TOLERANCES,
)
from funcgrad.parity.quantities import Quantity, band_per_step, compare_results
from funcgrad.parity.report import (
    INFORMATION,
    TABLE_COLUMNS,
    ParityError,
    format_failures,
    format_ratio,
    format_table,
    markdown_table,
    to_json,
)
from funcgrad.parity.runs import assert_same_run, assert_same_training, record_jax_run, record_torch_run
from funcgrad.parity.steps import StepVerdict, assert_same_steps, compare_steps, with_trained_models
from funcgrad.parity.values import DTYPES, Exact, History, Logits, flatten, summarize, unwrap

__all__ = [
    "BAND_FACTOR", "FLOOR_ULPS", "MIN_BAND_WINDOW", "NOISE_QUANTILE", "SYNCED_BAND_FACTOR", "TOLERANCES",
    "Quantity", "band_per_step", "compare_results", "INFORMATION", "TABLE_COLUMNS", "ParityError",
    "format_failures", "format_ratio", "format_table", "markdown_table", "to_json", "assert_same_run",
    "assert_same_training", "record_jax_run", "record_torch_run", "StepVerdict", "assert_same_steps",
    "compare_steps", "with_trained_models", "DTYPES", "Exact", "History", "Logits", "flatten", "summarize",
    "unwrap",
]
