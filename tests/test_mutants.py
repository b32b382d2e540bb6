"""Deliberately broken ports (compare/mutants.py): the comparison fails every one, in both
dtypes, and names the quantity where it goes wrong (and, for a history, the step)."""

import functools

import numpy as np
import pytest

from compare.cases import CASES
from compare.mutants import MUTANTS, apply, failing, verdict
from compare.run import float64_reference
from tests.conftest import cpu_context

@functools.lru_cache(maxsize=None)
def reference(case: str, mnist_dir: str | None) -> dict:
    return float64_reference(case, cpu_context(np.float32, mnist_dir))


@functools.lru_cache(maxsize=None)
def torch_runs(case: str, mnist_dir: str | None) -> dict:
    """The case's PyTorch side per dtype, run once: a mutant changes only the JAX side."""
    return {}


def judge(name: str, dtype: str, mnist_dir: str | None) -> dict:
    mutant = MUTANTS[name]
    return verdict(mutant, dtype, cpu_context(np.float32, mnist_dir), reference=reference(mutant.case, mnist_dir),
                   torch_runs=torch_runs(mutant.case, mnist_dir))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", list(MUTANTS))
def test_every_mutant_is_caught(name, dtype, request):
    mutant = MUTANTS[name]
    mnist_dir = request.getfixturevalue("mnist_dir") if getattr(CASES[mutant.case], "READS_MNIST", False) else None
    report = judge(name, dtype, mnist_dir)
    assert not report["passed"], f"{name} ({mutant.description}) passed in {dtype}"
    assert mutant.caught_in in [q["name"] for q in report["quantities"] if not q["passed"]], failing(report)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_swapped_batch_is_found_at_its_step(dtype, request):
    report = judge("batches-swapped", dtype, request.getfixturevalue("mnist_dir"))
    assert report["first_divergence"] == {"step": 299, "quantity": "loss per batch"}


def test_mutants_leave_the_honest_port_untouched():
    from funcgrad.tutorials import iris_softmax

    honest = iris_softmax.train
    with apply(MUTANTS["lr-off"]):
        assert iris_softmax.train is not honest
    assert iris_softmax.train is honest
