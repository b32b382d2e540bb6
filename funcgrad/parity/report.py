"""The words of a verdict, in one place: tables, JSON, failure and separation messages, the
step-synchronized verdict's summaries, and rows shown as information rather than judged.

    print(format_table(rows))                         # one line per quantity
    json.dump(to_json(rows), f, default=float)
    raise ParityError(failure_message("float32", [row for row in rows if not row.passed]), rows)
"""

from __future__ import annotations

import dataclasses
from typing import Mapping

import numpy as np

from funcgrad.parity.quantities import Quantity

# Marks a row that left its band where the verdict says why that is no difference (every
# synced step agrees): shown, not failed.
INFORMATION = "(information)"
STAGES = ("forward", "gradient", "optimizer")
TABLE_COLUMNS = ("quantity", "rule", "JAX", "PyTorch", "|jax-torch|", "jax→f64", "torch→f64",
                 "× allowed", "first out", "pass")


class ParityError(AssertionError):
    """A port computes something else than its original; ``rows`` holds every verdict."""

    def __init__(self, message: str, rows: list[Quantity]):
        super().__init__(message)
        self.rows = rows


def format_failures(rows: list[Quantity]) -> str:
    """One line per failing quantity: what failed, by how much, and where it first diverged."""
    return "\n".join(
        f"{q.name}: {q.rule}, worst {q.band_ratio:.3g}x allowed, |jax - torch| max {q.max_abs_err:.3g}"
        + (f", jax/torch distance to float64 {q.jax_ref_err:.3g}/{q.torch_ref_err:.3g}"
           if q.jax_ref_err is not None else "")
        + (f"; {q.note}" if q.note else "")
        for q in rows if not q.passed
    )


def format_table(rows: list) -> str:
    """The verdicts side by side, one line per quantity: both values, ``|jax - torch|``, each
    side's distance to the float64 reference, the error as a multiple of what its rule
    allows, the first step out of band. ``rows``: :class:`Quantity` or their JSON dicts.

    >>> print(format_table(compare_results(jax_results, torch_results, np.float64)))
    """
    table = []
    for q in (row if isinstance(row, Mapping) else dataclasses.asdict(row) for row in rows):
        table.append((
            q["name"], q["rule"], q["jax"], q["torch"], f"{q['max_abs_err']:.2e}",
            _optional(q["jax_ref_err"]), _optional(q["torch_ref_err"]), format_ratio(q["band_ratio"]),
            "-" if q["first_divergence"] is None else str(q["first_divergence"]),
            "ok" if q["passed"] else "FAIL",
        ))
    return markdown_table(TABLE_COLUMNS, table)


def markdown_table(header, rows) -> str:
    """A Markdown table with padded columns, readable as text too.

    >>> print(markdown_table(("case", "s"), [("iris", "0.12")]))
    | case | s    |
    | ---- | ---- |
    | iris | 0.12 |
    """
    lines = [tuple(str(cell) for cell in line) for line in (header, *rows)]
    widths = [max(3, *(len(line[i]) for line in lines)) for i in range(len(header))]
    rendered = ["| " + " | ".join(cell.ljust(w) for cell, w in zip(line, widths)) + " |" for line in lines]
    rendered.insert(1, "| " + " | ".join("-" * w for w in widths) + " |")
    return "\n".join(rendered)


def to_json(rows: list[Quantity]) -> list[dict]:
    """The verdicts as JSON-ready dicts: ``json.dump(to_json(rows), f, default=float)``."""
    return [dataclasses.asdict(row) for row in rows]


def format_ratio(value: float) -> str:
    """A band ratio as ``0.27x`` (``inf`` when nothing was allowed)."""
    return "inf" if not np.isfinite(value) else f"{value:.2f}x"


def _optional(value) -> str:
    return "-" if value is None else f"{value:.2e}"


def is_information(row: Quantity) -> bool:
    """A row shown as information: out of band, and not failed for it."""
    return row.rule.endswith(INFORMATION)


def as_information(rows: list[Quantity], why: str) -> list[Quantity]:
    """The failing rows marked as information, each note saying ``why``."""
    return [row if row.passed else dataclasses.replace(
        row, rule=f"{row.rule} {INFORMATION}", note=why.format(note=row.note or "out of band")) for row in rows]


# ---- whole runs ----

def failure_message(dtype: str, failed: list[Quantity]) -> str:
    """``2 quantities differ in float32; first divergence: loss per step at step 4`` and a line each."""
    diverging = sorted((row.first_divergence, row.name) for row in failed if row.first_divergence is not None)
    first = f"; first divergence: {diverging[0][1]} at step {diverging[0][0]}" if diverging else ""
    count = "1 quantity differs" if len(failed) == 1 else f"{len(failed)} quantities differ"
    return f"{count} in {dtype}{first}\n" + format_failures(failed)


def separation_message(error: ParityError) -> str:
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


def nonfinite_note(steps: dict[str, int]) -> str:
    """``; the runs' losses turn non-finite at step 12 (jax) and 12 (torch)``, or ''."""
    if not steps:
        return ""
    return "; the runs' losses turn non-finite at " + " and ".join(f"step {t} ({side})" for side, t in steps.items())


# ---- the step-synchronized verdict ----

def first_failure(dtype: str, t: int, keys: list[str], failed: set[str], names: Mapping[str, str] = {}) -> str:
    """The first failing stage of synced step ``t`` in words, its parameters nearest the output
    first (torch registers parameters input to output, and backprop carries an error to every
    earlier layer): ``float64, step 0: the gradient of 2.bias differs (also 2.weight) (loss
    agrees; 0.bias, 0.weight agree)``. ``names`` gives a quantity's name in the port's own
    framework, shown beside torch's."""
    def short(key: str) -> str:
        name = key.split("/", 1)[1]
        return f"{name} / {names[key]}" if key in names and not name.endswith(names[key]) else name

    by_stage = {stage: [key for key in keys if key.startswith(stage + "/")] for stage in STAGES}
    where = f"{dtype}, step {t}"
    if "forward/loss" in failed:
        return f"{where}: the loss differs at the same weights (the forward pass)"
    wrong = [short(key) for key in by_stage["forward"] if key in failed]
    if wrong:
        return (f"{where}: the forward pass's {', '.join(wrong)} {'differs' if len(wrong) == 1 else 'differ'} "
                "(the loss agrees)")
    gradients = list(reversed(by_stage["gradient"]))
    wrong = [short(key) for key in gradients if key in failed]
    if wrong:
        right = [short(key) for key in gradients if key not in failed]
        return (f"{where}: the gradient of {wrong[0]} differs"
                + (f" (also {', '.join(wrong[1:])})" if wrong[1:] else "")
                + " (loss agrees" + (f"; {', '.join(right)} agree" if len(right) > 1 else
                                     f"; {right[0]} agrees" if right else "") + ")")
    wrong = [short(key) for key in reversed(by_stage["optimizer"]) if key in failed]
    return f"{where}: the optimizer's {wrong[0]} differs" + (
        f" (also {', '.join(wrong[1:])})" if wrong[1:] else "") + " (loss and gradients agree)"


def steps_agree(dtype: str, steps: int) -> str:
    return f"{dtype}: every synced step agrees ({steps} steps), and so do the whole runs"


def whole_runs_separate(dtype: str, separation: int | None, steps: int) -> str:
    where = f"after step {separation}" if separation is not None else "at the end"
    return (f"{dtype}: whole runs separate {where}: rounding amplified by the model; "
            f"every step agrees from the same state ({steps} synced steps)")


def final_values_part(dtype: str, differing: list[str], idle: list[str], steps: int) -> str:
    """float64 whole runs whose final values part while every step and every loss agree."""
    return (f"{dtype}: the whole runs' final {', '.join(differing)} differ while every synced step agrees "
            f"({steps} steps) and so does every step's loss: rounding amplified by the model"
            + (f"; the gradient of {', '.join(idle)} is zero but for rounding at every synced step, so the loss "
               "does not depend on it and an adaptive optimizer's steps follow the rounding (a bias before a "
               "BatchNorm is such a parameter: torch's tuning guide advises bias=False there)" if idle else ""))


def whole_runs_differ(dtype: str, whole_run: list[Quantity]) -> str:
    return f"{dtype}: every synced step agrees, but the whole runs differ: " + format_failures(whole_run).replace(
        "\n", "; ")


def trained_models_differ(dtype: str, failing: list[Quantity]) -> str:
    return f"{dtype}: every synced step agrees, but the trained models differ: " + format_failures(failing).replace(
        "\n", "; ")


def discontinuities(steps: list[int]) -> str:
    """What a verdict adds when float32 steps at a discontinuity were reported, not failed."""
    shown = ", ".join(map(str, steps[:5])) + (", ..." if len(steps) > 5 else "")
    return (f"; at {len(steps)} synced step(s) ({shown}) only a gradient left its band while JAX's "
            "float64 step from the same state equals torch's: float32 rounding on either side of a "
            "discontinuity (a max-pool near-tie, a ReLU at 0), information")


SEPARATE = "whole runs separate: {note}; every synced step agrees"
TRAINED_AS_RUNS = "the trained models differ as their runs do: {note}"
