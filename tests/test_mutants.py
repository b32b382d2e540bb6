"""Deliberately broken ports (compare/mutants.py): the comparison fails every one, in both
dtypes, and names the quantity where it goes wrong (and, for a history, the step)."""

import functools

import jax
import numpy as np
import pytest

import funcgrad as fg
from compare.cases import CASES
from compare.mutants import MUTANTS, apply, failing, verdict
from compare.run import float64_reference
from funcgrad.tutorials import mnist_softmax
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


def test_each_size_of_a_mutant_runs_on_a_fresh_trace_and_the_honest_port_after_it():
    """pixels-over-256 patches ``logits``, which ``loss_fn`` calls inside the compiled epoch:
    ``loss_fn`` stays the same object, so ``jit`` would reuse the loop compiled before."""
    rng = np.random.default_rng(0)
    images, labels = rng.integers(0, 256, (40, 8, 8), np.uint8), rng.integers(0, 10, 40)
    params = mnist_softmax.init_params(jax.random.key(0), num_pixels=64)

    def losses():
        return np.asarray(mnist_softmax.train_epoch(params, images, labels, np.arange(40).reshape(4, 10))[1])

    honest, optimizer = losses(), fg.optim.sgd(mnist_softmax.LEARNING_RATE)
    broken = {}
    for size in (1e-2, 1e-3):
        with apply(MUTANTS["pixels-over-256"], size=size):
            broken[size] = losses()
    assert not np.array_equal(broken[1e-2], honest)
    assert not np.array_equal(broken[1e-3], broken[1e-2])
    np.testing.assert_array_equal(losses(), honest)
    assert fg.optim.sgd(mnist_softmax.LEARNING_RATE) is not optimizer  # the memoized optimizers went too
