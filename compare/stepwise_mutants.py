"""Porting bugs the step-synchronized verdict (:func:`funcgrad.assert_same_steps`) must
catch in float64 and float32, each named by the stage and parameter where it first shows.

The original is one torch training: ``nn.Sequential(Linear(64, 32), ReLU(), Linear(32, 32),
ReLU(), Linear(32, 10))`` on scikit-learn's digits (pixels / 16), cross-entropy, batches
of 64, with the optimizer (and scheduler) each mutant needs. A mutant is its port with one
bug a porting engineer makes; the torch side stays the original. Each mutant has a size
(how wrong: an epsilon, a slope, a relative error) and smaller sizes to try, so that
``python -m compare.stepwise_mutants`` also reports the smallest size still caught.

Every mutant and size builds its own loss and optimizer: ``jit`` keys a compiled function
on its identity, so nothing is patched and nothing compiled for one is run for another.

    verdicts = judge(MUTANTS["eps-in-sqrt"], size=1e-8)   # {"float64": Verdict(caught=True, ...), ...}
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
from sklearn.datasets import load_digits

import funcgrad as fg
from funcgrad.parity import DTYPES

SIZES = (64, 32, 32, 10)
BATCH_SIZE = 64
LEARNING_RATE, MOMENTUM, ADAM_LEARNING_RATE = 0.05, 0.9, 1e-3
STEPS_PER_EPOCH = 1797 // BATCH_SIZE  # 28: the short last batch dropped, so every step has one shape
T_MAX = 2 * STEPS_PER_EPOCH
INITIAL = fg.to_state_dict(fg.mlp_init(jax.random.key(0), SIZES))  # drawn once, in float32


class Original(NamedTuple):
    """The torch training a port copies (its optimizer and scheduler over the model's
    parameters) and the honest port's optimizer."""

    torch_optimizer: Callable  # model.parameters() -> torch.optim.Optimizer
    torch_scheduler: Callable | None  # optimizer -> LRScheduler, stepped every batch
    optimizer: optax.GradientTransformation  # fg.optim's twin of the two


class Port(NamedTuple):
    """The JAX side: a loss and an optimizer."""

    loss_fn: fg.LossFn
    optimizer: optax.GradientTransformation


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One porting bug: how big by default, the original it ports wrong, and where the
    verdict must first see it (the step, the stage, the parameter its message names first)."""

    name: str
    description: str
    size: float
    build: Callable[[float], tuple[Original, Port]]  # size -> the original and the broken port
    step: int
    stage: str  # "forward", "gradient" or "optimizer"
    parameter: str  # "2.bias", "new value of 4.bias", "trace of 4.bias"; "" for the forward pass
    sizes: tuple[float, ...] = ()  # smaller sizes to try, largest first


class Verdict(NamedTuple):
    """One dtype's verdict on a port: failed (``caught``) or not, and what it said."""

    caught: bool
    message: str


@functools.cache
def batches(num_steps: int) -> tuple[tuple[np.ndarray, np.ndarray], ...]:
    """The first ``num_steps`` batches of a shuffled ``DataLoader(batch_size=64, drop_last=True)``."""
    digits = load_digits()
    x, y = digits.data / 16.0, digits.target
    epochs = -(-num_steps // STEPS_PER_EPOCH)
    order = fg.loader_batches(jax.random.key(1), len(y), BATCH_SIZE, epochs, drop_last=True)
    return tuple((x[i], y[i]) for i in order.in_order())[:num_steps]



def torch_setup(original: Original) -> Callable:
    """``dtype -> (model, optimizer[, scheduler])``: the original, fresh, from :data:`INITIAL`."""
    def setup(dtype):
        layers = [torch.nn.Linear(*SIZES[:2])]
        for fan_in, fan_out in zip(SIZES[1:-1], SIZES[2:]):
            layers += [torch.nn.ReLU(), torch.nn.Linear(fan_in, fan_out)]
        model = torch.nn.Sequential(*layers).to(torch.float64 if dtype == np.float64 else torch.float32)
        model.load_state_dict({name: torch.tensor(value.astype(dtype)) for name, value in INITIAL.items()})
        optimizer = original.torch_optimizer(model.parameters())
        return (model, optimizer) + ((original.torch_scheduler(optimizer),) if original.torch_scheduler else ())
    return setup


def torch_loss(model, batch):
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y)


def loss_fn(params, batch):
    """The honest port's loss."""
    x, y = batch
    return fg.cross_entropy(fg.mlp_apply(params, x), y)


# The originals.

def sgd(weight_decay: float = 0.0) -> Original:
    return Original(
        lambda parameters: torch.optim.SGD(parameters, lr=LEARNING_RATE, momentum=MOMENTUM, weight_decay=weight_decay),
        None, fg.optim.sgd(LEARNING_RATE, momentum=MOMENTUM, weight_decay=weight_decay))


def sgd_cosine() -> Original:
    return Original(
        lambda parameters: torch.optim.SGD(parameters, lr=LEARNING_RATE, momentum=MOMENTUM),
        lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=T_MAX),
        fg.optim.sgd(fg.optim.cosine_annealing_lr(LEARNING_RATE, T_MAX), momentum=MOMENTUM))


def adam(eps: float) -> Original:
    return Original(lambda parameters: torch.optim.Adam(parameters, lr=ADAM_LEARNING_RATE, eps=eps), None,
                    fg.optim.adam(ADAM_LEARNING_RATE, eps=eps))


# The mutants: each builds its original and, fresh, its broken port.

def _layer_gradient_dropped(size):
    def frozen_middle(params, batch):
        return loss_fn({**params, "2": jax.lax.stop_gradient(params["2"])}, batch)
    original = sgd()
    return original, Port(frozen_middle, original.optimizer)


def scale_by_adam_eps_in_sqrt(b1: float, b2: float, eps: float) -> optax.GradientTransformation:
    """Adam's direction with eps inside the square root, ``m̂ / sqrt(v̂ + eps)``, where torch
    computes ``m̂ / (sqrt(v̂) + eps)``; the moments (and so the state) are torch's."""
    honest = fg.optim.scale_by_torch_adam(b1, b2, eps)

    def update(updates, state, params=None):
        _, state = honest.update(updates, state, params)

        def direction(m, v):
            t = state.count.astype(m.dtype)
            return (m / -jnp.expm1(t * math.log(b1))) / jnp.sqrt(v / -jnp.expm1(t * math.log(b2)) + eps)

        return jax.tree.map(direction, state.mu, state.nu), state

    return optax.GradientTransformation(honest.init, update)


def _eps_in_sqrt(size):
    return adam(size), Port(loss_fn, optax.chain(scale_by_adam_eps_in_sqrt(0.9, 0.999, size),
                                                  optax.scale_by_learning_rate(ADAM_LEARNING_RATE)))


def _decay_after_momentum(size):
    return sgd(weight_decay=size), Port(loss_fn, optax.chain(
        optax.trace(MOMENTUM), optax.add_decayed_weights(size), optax.scale_by_learning_rate(LEARNING_RATE)))


def _schedule_per_epoch(size):
    schedule = fg.optim.cosine_annealing_lr(LEARNING_RATE, T_MAX)
    return sgd_cosine(), Port(loss_fn, fg.optim.sgd(lambda count: schedule(count // int(size)), momentum=MOMENTUM))


def _leaky_relu(size):
    def leaky(params, batch):
        x, y = batch
        return fg.cross_entropy(fg.mlp_apply(params, x, functools.partial(jax.nn.leaky_relu, negative_slope=size)), y)
    original = sgd()
    return original, Port(leaky, original.optimizer)


def _learning_rate_off(size):
    return sgd(), Port(loss_fn, fg.optim.sgd(LEARNING_RATE * (1 + size), momentum=MOMENTUM))


def _decades(first: float, last: float) -> tuple[float, ...]:
    return tuple(10.0**k for k in range(round(math.log10(first)), round(math.log10(last)) - 1, -1))


MUTANTS = {mutant.name: mutant for mutant in (
    Mutant("layer-gradient-dropped", "stop_gradient on the middle layer's parameters: it never trains", 0,
           _layer_gradient_dropped, 0, "gradient", "2.bias"),
    Mutant("eps-in-sqrt", "Adam's eps inside the square root: m̂ / sqrt(v̂ + eps), eps 1e-8", 1e-8,
           _eps_in_sqrt, 0, "optimizer", "new value of 4.bias", _decades(1e-9, 1e-24)),
    Mutant("decay-after-momentum", "SGD's weight decay (5e-4) added after the momentum buffer, not to the gradient",
           5e-4, _decay_after_momentum, 0, "optimizer", "trace of 4.bias", _decades(1e-4, 1e-14)),
    Mutant("schedule-per-epoch", f"CosineAnnealingLR stepped once an epoch ({STEPS_PER_EPOCH} batches), "
           "not every batch", STEPS_PER_EPOCH, _schedule_per_epoch, 1, "optimizer", "new value of 4.bias"),
    Mutant("leaky-relu", "ReLU ported as leaky ReLU, slope 0.01", 1e-2, _leaky_relu, 0, "forward", "",
           _decades(1e-3, 1e-14)),
    Mutant("lr-off", "learning rate 0.01 % too large", 1e-4, _learning_rate_off, 0, "optimizer",
           "new value of 4.bias", _decades(1e-5, 1e-14)),
)}


def expected(mutant: Mutant) -> str:
    """What the failure message must say: ``step 0: the gradient of 2.bias differs``."""
    what = {"forward": "the loss differs at the same weights",
            "gradient": f"the gradient of {mutant.parameter} differs",
            "optimizer": f"the optimizer's {mutant.parameter} differs"}[mutant.stage]
    return f"step {mutant.step}: {what}"


def judge_port(original: Original, port: Port, dtypes=DTYPES, num_steps: int = STEPS_PER_EPOCH,
               every: int = 1) -> dict[str, Verdict]:
    """The step-synchronized verdict on ``port`` of ``original``, per dtype, each judged alone."""
    verdicts = {}
    for dtype in dtypes:
        try:
            passed = fg.assert_same_steps(port.loss_fn, port.optimizer, torch_setup(original), torch_loss,
                                          batches(num_steps), dtypes=[dtype], every=every)
            verdicts[dtype] = Verdict(False, passed[dtype].summary)
        except fg.ParityError as error:
            verdicts[dtype] = Verdict(True, str(error))
    return verdicts


def judge(mutant: Mutant, size: float | None = None, dtypes=DTYPES, num_steps: int = STEPS_PER_EPOCH,
          every: int = 1) -> dict[str, Verdict]:
    """The verdict on ``mutant`` at ``size`` (its default if None), per dtype."""
    return judge_port(*mutant.build(mutant.size if size is None else size), dtypes, num_steps, every)


def control(mutant: Mutant, dtypes=DTYPES, num_steps: int = STEPS_PER_EPOCH, every: int = 1) -> dict[str, Verdict]:
    """The verdict on the honest port of the mutant's original, at its default size."""
    original, _ = mutant.build(mutant.size)
    return judge_port(original, Port(loss_fn, original.optimizer), dtypes, num_steps, every)


def smallest_caught(mutant: Mutant, dtype: str, num_steps: int = STEPS_PER_EPOCH) -> str:
    """The smallest of the mutant's sizes still caught in ``dtype``, trying them largest first."""
    smallest = mutant.size
    for size in mutant.sizes:
        if not judge(mutant, size, [dtype], num_steps)[dtype].caught:
            return f"{smallest:.3g}"
        smallest = size
    return f"<= {smallest:.3g} (smallest tried)"


def where(message: str) -> str:
    """A failure message cut to its step, stage and parameters, a long list of the others
    failing counted: ``step 0: the gradient of 2.bias differs (also 2.weight)``."""
    if ", step " not in message:
        return message
    first, _, others = message.split(", ", 1)[1].split(" (loss")[0].partition(" (also ")
    others = others.rstrip(")").split(", ") if others else []
    if len(others) > 2:
        return f"{first} (and {len(others)} more)"
    return first + (f" (also {', '.join(others)})" if others else "")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m compare.stepwise_mutants",
        description="Porting bugs in a non-convex model and its optimizer: each must fail the "
                    "step-synchronized verdict in both dtypes, named by step, stage and parameter.")
    parser.add_argument("--mutant", action="append", choices=list(MUTANTS), metavar="NAME",
                        help=f"run only this mutant (repeatable): {', '.join(MUTANTS)}")
    parser.add_argument("--steps", type=int, default=STEPS_PER_EPOCH,
                        help=f"steps of the run (default: one epoch, {STEPS_PER_EPOCH})")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    print("| mutant | what is wrong | float64: first failing stage and parameter "
          "| float32: first failing stage and parameter | smallest size caught in float32 / float64 |")
    print("| --- | --- | --- | --- | --- |")
    mutants = [MUTANTS[name] for name in args.mutant or MUTANTS]
    missed = 0
    for mutant in mutants:
        verdicts = judge(mutant, num_steps=args.steps)
        missed += sum(not verdict.caught for verdict in verdicts.values())
        cells = [mutant.name, mutant.description]
        cells += [where(verdicts[dtype].message) if verdicts[dtype].caught else "NOT CAUGHT" for dtype in DTYPES]
        cells.append(" / ".join(smallest_caught(mutant, dtype, args.steps) for dtype in ("float32", "float64"))
                     if mutant.sizes else "-")
        print("| " + " | ".join(cells) + " |", flush=True)
    print(f"{len(mutants) * 2 - missed} caught, {missed} missed, in {time.perf_counter() - start:.0f} s")
    return 0 if missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
