"""Deliberately broken ports: the comparison must fail each one, and say where.

A mutant swaps one function of a case's JAX side for a wrong one, as a porting bug
would: the PyTorch twin and the float64 reference stay the original. Each mutant has a
size (how wrong: a relative learning-rate error, an epsilon, a batch position) so that
``python -m compare.mutants`` can also report the smallest size still caught.

    with apply(MUTANTS["lr-off"], size=1e-3):
        report = run_case("iris-softmax", ctx)            # report["passed"] is False
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import functools
import sys
from typing import Callable
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np

import funcgrad as fg
from compare.cases import CASES
from compare.run import float64_reference, run_case
from compare.runtime import Context, select_devices, set_matmul_precision
from funcgrad.tutorials import iris_softmax, mnist_softmax, one_sample_logistic


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One porting bug: the case it breaks, how big by default, and the patches that make it."""

    name: str
    case: str
    description: str
    size: float
    patches: Callable[[float], dict]  # size -> {(module, attribute): replacement}
    caught_in: str  # the quantity the verdict must name
    sizes: tuple = ()  # smaller sizes to try in ``python -m compare.mutants``


@contextlib.contextmanager
def apply(mutant: Mutant, size: float | None = None):
    """Run the body with the mutant's patches in place; the originals come back after.

    Every compiled loop and memoized optimizer is dropped on the way in and on the way out,
    so the body traces the mutant at this size and the code after it the honest port. A
    patch can change what a compiled loop calls without changing its cache key:
    pixels-over-256 replaces ``logits``, which ``loss_fn`` (the same object, hence the same
    key to ``jit``) calls, and a loop compiled before would run on unbroken.
    """
    _forget_compiled()
    try:
        with contextlib.ExitStack() as stack:
            for (module, attribute), replacement in mutant.patches(mutant.size if size is None else size).items():
                stack.enter_context(mock.patch.object(module, attribute, replacement))
            yield
    finally:
        _forget_compiled()


def _forget_compiled():
    """Clear JAX's compilation caches and funcgrad.optim's memoized constructors."""
    jax.clear_caches()
    for constructor in vars(fg.optim).values():
        if hasattr(constructor, "cache_clear"):
            constructor.cache_clear()


def _learning_rate_off(size):
    return {(iris_softmax, "train"): functools.partial(
        iris_softmax.train, lr=iris_softmax.LEARNING_RATE * (1 + size))}


def _mnist_learning_rate_off(size):
    return {(mnist_softmax, "train_epoch"): functools.partial(
        mnist_softmax.train_epoch, lr=mnist_softmax.LEARNING_RATE * (1 + size))}


def _loss_summed(size):
    def summed(params, batch):
        x, y = batch
        return fg.cross_entropy(iris_softmax.logits(params, x), y, reduction="sum")
    return {(iris_softmax, "loss_fn"): summed}


def _bias_gradient_dropped(size):
    honest = iris_softmax.loss_fn

    def frozen_bias(params, batch):
        linear = params["linear"]
        return honest({"linear": {**linear, "bias": jax.lax.stop_gradient(linear["bias"])}}, batch)
    return {(iris_softmax, "loss_fn"): frozen_bias}


def _mnist_bias_gradient_dropped(size):
    honest = mnist_softmax.loss_fn

    def frozen_bias(params, batch):
        return honest({**params, "b": jax.lax.stop_gradient(params["b"])}, batch)
    return {(mnist_softmax, "loss_fn"): frozen_bias}


def _reordered(size, reorder):
    """MNIST's epoch with its batch order changed at batch ``size`` (negative: from the end)."""
    honest = mnist_softmax.train_epoch

    def train_epoch(params, images, labels, batch_indices, **kwargs):
        order = np.array(batch_indices)
        reorder(order, int(size) % len(order))
        return honest(params, images, labels, order, **kwargs)
    return {(mnist_softmax, "train_epoch"): train_epoch}


def _swap(order, k):
    order[[k - 1, k]] = order[[k, k - 1]]


def _skip(order, k):
    order[k] = order[k - 1]  # batch k - 1 seen twice, batch k never: a resumed loader's off-by-one


def _pixels_scaled(size):
    def logits(params, images):
        x = images.reshape(images.shape[0], -1).astype(params["W"].dtype) / (255 * (1 + size))
        return x @ params["W"] + params["b"]
    return {(mnist_softmax, "logits"): logits}


def _bce_epsilon(size):
    def loss(w, b, x, y):
        _, y_hat = one_sample_logistic.forward(w, b, x)
        return -jnp.mean(y * jnp.log(y_hat + size) + (1 - y) * jnp.log(1 - y_hat + size))
    return {(one_sample_logistic, "loss"): loss}


MUTANTS = {mutant.name: mutant for mutant in (
    Mutant("lr-off", "iris-softmax", "learning rate 0.1 % too large", 1e-3, _learning_rate_off,
           "loss per epoch", sizes=(1e-4, 1e-5, 1e-6, 1e-7)),
    Mutant("mnist-lr-off", "mnist-softmax", "learning rate 0.1 % too large", 1e-3, _mnist_learning_rate_off,
           "loss per batch", sizes=(1e-4, 1e-5, 1e-6, 1e-7)),
    Mutant("loss-summed", "iris-softmax", "cross-entropy summed over the batch, not averaged", 0,
           _loss_summed, "loss per epoch"),
    Mutant("bias-grad-dropped", "iris-softmax", "stop_gradient on the bias: it never trains", 0,
           _bias_gradient_dropped, "bias grad at init"),
    Mutant("mnist-bias-grad-dropped", "mnist-softmax", "stop_gradient on b: it never trains", 0,
           _mnist_bias_gradient_dropped, "b grad on first batch"),
    Mutant("batch-skipped", "mnist-softmax", "batch 300 never seen, batch 299 seen twice", 300,
           functools.partial(_reordered, reorder=_skip), "loss per batch", sizes=(-1,)),
    Mutant("batches-swapped", "mnist-softmax", "batches 299 and 300 swapped", 300,
           functools.partial(_reordered, reorder=_swap), "loss per batch", sizes=(-1,)),
    Mutant("pixels-over-256", "mnist-softmax", "pixels divided by 256, not 255 (0.39 % off)", 1 / 255,
           _pixels_scaled, "W grad on first batch", sizes=(1e-3, 1e-4, 1e-5, 1e-6, 1e-7)),
    Mutant("bce-epsilon", "one-sample-logistic", "BCE as -y log(p + eps) - (1 - y) log(1 - p + eps), eps 1e-7",
           1e-7, _bce_epsilon, "loss", sizes=(1e-8, 1e-9, 1e-10, 1e-11, 1e-12)),
)}


def verdict(mutant: Mutant, dtype: str, ctx, size: float | None = None, reference=None,
            torch_runs: dict | None = None) -> dict:
    """The comparison's report on ``mutant`` in ``dtype``; ``reference`` is the float64 torch run.

    ``torch_runs``: a dict in which the case's PyTorch side is kept per dtype and reused, since
    a mutant changes only the JAX side.
    """
    case = CASES[mutant.case]
    with contextlib.ExitStack() as stack:
        if torch_runs is not None:
            stack.enter_context(mock.patch.object(case, "torch_side", _run_once(case.torch_side, torch_runs, dtype)))
        stack.enter_context(apply(mutant, size))
        return run_case(mutant.case, dataclasses.replace(ctx, dtype=np.dtype(dtype)), reference)


def _run_once(torch_side, runs: dict, key):
    def torch_side_once(*args, **kwargs):
        if key not in runs:
            runs[key] = torch_side(*args, **kwargs)
        return runs[key]
    return torch_side_once


def failing(report: dict) -> list[str]:
    """The failing quantities of a report, with the first step out of band where there is one."""
    return [q["name"] + ("" if q["first_divergence"] is None else f" @ step {q['first_divergence']}")
            for q in report["quantities"] if not q["passed"]]


def smallest_caught(mutant: Mutant, dtype: str, ctx, reference, torch_runs) -> str:
    """The smallest of the mutant's sizes still caught, trying them largest first."""
    smallest = mutant.size
    for size in mutant.sizes:
        if verdict(mutant, dtype, ctx, size, reference, torch_runs)["passed"]:
            return _size(mutant, smallest)
        smallest = size
    if smallest == -1:
        return "the last batch"
    return f"<= {_size(mutant, smallest)} (smallest tried)"


def _size(mutant: Mutant, size: float) -> str:
    return "the last batch" if size == -1 else f"{size:.3g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.mutants", description=__doc__.splitlines()[0])
    parser.add_argument("--mutant", action="append", choices=list(MUTANTS), metavar="NAME")
    parser.add_argument("--mnist-dir", metavar="DIR")
    args = parser.parse_args(argv)
    jax_device, torch_device = select_devices("cpu")
    set_matmul_precision()
    ctx = Context(np.dtype(np.float32), jax_device, torch_device, mnist_dir=args.mnist_dir)

    print("| mutant | case | what is wrong | float64: first failing quantity | float32: first failing quantity "
          "| smallest size caught in float32 / float64 |")
    print("| --- | --- | --- | --- | --- | --- |")
    mutants = [MUTANTS[name] for name in args.mutant or MUTANTS]
    missed, references, torch_runs = 0, {}, {}
    for mutant in mutants:
        if mutant.case not in references:
            references[mutant.case] = float64_reference(mutant.case, ctx)
        runs = torch_runs.setdefault(mutant.case, {})
        reports = {dtype: verdict(mutant, dtype, ctx, reference=references[mutant.case], torch_runs=runs)
                   for dtype in ("float64", "float32")}
        missed += sum(report["passed"] for report in reports.values())
        cells = [mutant.name, mutant.case, mutant.description]
        cells += [", ".join(failing(reports[d])[:2]) or "NOT CAUGHT" for d in ("float64", "float32")]
        cells.append(" / ".join(smallest_caught(mutant, dtype, ctx, references[mutant.case], runs)
                                for dtype in ("float32", "float64")) if mutant.sizes else "-")
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"{len(mutants) * 2 - missed} caught, {missed} missed")
    return 0 if missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
