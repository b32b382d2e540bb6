"""``python -m compare.bench``: how fast each training case runs, side by side, in one process.

    python -m compare.bench --json bench.json            # every case
    python -m compare.bench --skip-torch-compile         # skip torch.compile's long compiles
    python -m compare.bench --case per-example-grads --min-time 0.2   # one row, quickly

For every training case: funcgrad (the whole run compiled once; compile and steady-state
run timed apart), PyTorch eager (the seed's zero_grad/backward/step loop), torch.compile
of the same step, and for MNIST the floor, the one forward + weight-gradient matmul over
all 60 000 rows that a full epoch cannot avoid. Every timed region ends with
``block_until_ready`` (JAX) or ``torch.cuda.synchronize`` (GPU). Each row is one warm-up
call, then at least ``--repeats`` timed repeats and ``--min-time`` seconds of timed work;
calls shorter than ``MIN_REGION_S`` are timed in batches of N calls and divided by N, as
``timeit``'s autorange does. Rows report min / median / max per call; ratios use medians.
The table prints as Markdown, ready for README. Both frameworks use the same number of threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import math
import os
import statistics
import sys
import time
from typing import Callable

# torch runs with its defaults: its OpenMP threads spin while they wait for work. On an
# idle machine that is its fastest setting (OMP_WAIT_POLICY=PASSIVE made Iris's eager loop
# 3x slower); beside other jobs a spinning thread holds the core its partner needs, and
# one per-example-gradients call went from 2 ms to 40-56 ms, which explains an old 46.7x.
# So time on an idle machine: warn_if_busy says when it is not, and the min / median / max
# show it. libgomp reads OMP_WAIT_POLICY once, when torch loads; the JSON records it.
TORCH_LOADED_BEFORE = "torch" in sys.modules

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.func import grad, vmap

import funcgrad as fg
from compare.runtime import Context, describe_environment, select_devices, set_matmul_precision
from compare.cases import iris_softmax as iris_softmax_case
from compare.cases import per_example_grads as per_example_case
from compare.cases import sweep_iris as sweep_iris_case
from funcgrad.tutorials import binary_logistic, iris_softmax, linear_regression, mnist_softmax
from funcgrad.tutorials import sweep_iris as sweep_iris_example


# The public functions check their inputs and losses outside the compiled loop; under jit
# those checks see tracers and fall away, leaving exactly the loop a user's call runs.
COMPILED_FIT_FULL_BATCH = jax.jit(fg.fit_full_batch, static_argnames=("loss_fn", "optimizer", "num_steps"))
COMPILED_FIT_MINIBATCHES = jax.jit(fg.fit_minibatches, static_argnames=("loss_fn", "optimizer"))


@dataclasses.dataclass
class Row:
    case: str
    framework: str
    steps: int
    compile_s: float
    run_s: float                    # median seconds per call over the repeats
    note: str = ""
    ratio_to_funcgrad: float | None = None
    ratio_to_floor: float | None = None
    run_min_s: float = 0.0
    run_max_s: float = 0.0
    repeats: int = 0                # timed repeats (regions) behind min / median / max
    calls_per_repeat: int = 1       # calls in one timed region; its time is divided by this

    @property
    def per_step_us(self) -> float:
        return 1e6 * self.run_s / self.steps

    def scale(self, factor: float) -> None:
        """Multiply every run time by ``factor`` (extrapolating a sample)."""
        self.run_s, self.run_min_s, self.run_max_s = (
            factor * self.run_s, factor * self.run_min_s, factor * self.run_max_s)


# Repeats: at least this many timed regions and this much timed work per row, after one
# warm-up call (the CLI's --repeats and --min-time). A region shorter than MIN_REGION_S
# holds several calls: a 1 ms call timed alone shows the scheduler's and the thread
# pools' wake-up noise more than its own time (seen: 0.6 to 4.8 ms for one 0.7 ms call).
MIN_REPEATS = 5
MIN_TIME_S = 1.0
MIN_REGION_S = 0.05


@dataclasses.dataclass(frozen=True)
class Repeats:
    """How long to measure one row: ``Repeats(minimum=5, min_time_s=1.0)``."""

    minimum: int = MIN_REPEATS
    min_time_s: float = MIN_TIME_S


@dataclasses.dataclass(frozen=True)
class Timing:
    """Seconds per call of each timed region, and the warm-up call's own time."""

    per_call_s: tuple[float, ...]
    calls_per_repeat: int
    first_call_s: float

    @property
    def median_s(self) -> float:
        return statistics.median(self.per_call_s)


def seconds_for(run: Callable[[], object], calls: int) -> float:
    """Wall time of ``calls`` back-to-back calls of ``run`` (which synchronises itself)."""
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return time.perf_counter() - start


def first_region(run: Callable[[], object]) -> tuple[int, float]:
    """How many calls make one region at least ``MIN_REGION_S`` long, and that region's time.

    Tries 1, 2, 5, 10, 20, ... calls, as ``timeit.Timer.autorange`` does; the shorter
    trials warm ``run`` up further, and the last one is the first timed repeat, so a
    30 s run is not run once more to find out that one call is enough.
    """
    calls = 1
    while True:
        for multiple in (1, 2, 5):
            seconds = seconds_for(run, calls * multiple)
            if seconds >= MIN_REGION_S:
                return calls * multiple, seconds
        calls *= 10


def measure(run: Callable[[], object], repeats: Repeats, warm_ups: int = 1) -> Timing:
    """Time ``run`` (which must synchronise itself) after ``warm_ups`` untimed calls.

        timing = measure(lambda: jax.block_until_ready(f(x)), Repeats())

    Repeats regions until there are ``repeats.minimum`` of them and together they took
    ``repeats.min_time_s``; a row of sub-millisecond calls thus gets thousands of calls.
    """
    warm_up_s = [seconds_for(run, 1) for _ in range(warm_ups)]
    calls, seconds = first_region(run)
    per_call = [seconds / calls]
    while len(per_call) < repeats.minimum or sum(per_call) * calls < repeats.min_time_s:
        per_call.append(seconds_for(run, calls) / calls)
    return Timing(tuple(per_call), calls, warm_up_s[0])


def row_from(case: str, framework: str, steps: int, compile_s: float, timing: Timing) -> Row:
    return Row(case, framework, steps, compile_s, timing.median_s,
               run_min_s=min(timing.per_call_s), run_max_s=max(timing.per_call_s),
               repeats=len(timing.per_call_s), calls_per_repeat=timing.calls_per_repeat)


def sync_torch(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_funcgrad(case: str, steps: int, compile_run: Callable, dynamic: tuple, repeats: Repeats) -> Row:
    """Compile ahead of time (timed apart), then time the compiled call alone.

    ``compile_run()`` returns the compiled executable, e.g.
    ``lambda: fg.fit_full_batch.lower(loss_fn, opt, params, state, batch, n).compile()``;
    it is then called with ``dynamic`` (the non-static arguments).
    """
    start = time.perf_counter()
    compiled = compile_run()
    compile_s = time.perf_counter() - start
    timing = measure(lambda: jax.block_until_ready(compiled(*dynamic)), repeats)
    return row_from(case, "funcgrad", steps, compile_s, timing)


def time_torch(case: str, framework: str, steps: int, run: Callable[[], None], repeats: Repeats) -> Row:
    """Time a torch run; the first call's extra time is reported as torch.compile's compile time."""
    # torch.compile gets a second warm-up: a guard that fails on the second call (state the
    # first call created) would recompile inside the first timed region.
    timing = measure(run, repeats, warm_ups=2 if framework == "torch-compile" else 1)
    compile_s = max(timing.first_call_s - timing.median_s, 0.0) if framework == "torch-compile" else 0.0
    return row_from(case, framework, steps, compile_s, timing)


# ---- full-batch cases: Iris, linear regression, binary logistic regression ----------------

@dataclasses.dataclass(frozen=True)
class FullBatchCase:
    name: str
    port: object            # the example module: loss_fn, LEARNING_RATE
    steps: int
    data: Callable          # () -> (x, y) numpy
    init: Callable          # key -> params (flat nn.Linear state_dict keys)
    criterion: Callable     # () -> torch loss module
    class_labels: bool


FULL_BATCH_CASES = (
    FullBatchCase(
        "iris-softmax", iris_softmax, iris_softmax.NUM_EPOCHS,
        lambda: (lambda d: (d["x_train"], d["y_train"]))(fg.iris_first_two_features()),
        lambda key: iris_softmax.init_params(key), nn.CrossEntropyLoss, True,
    ),
    FullBatchCase(
        "linear-regression", linear_regression, linear_regression.NUM_STEPS,
        lambda: fg.linear_regression_data(seed=1),
        lambda key: fg.linear_init(key, 2, 1), nn.MSELoss, False,
    ),
    FullBatchCase(
        "binary-logistic", binary_logistic, binary_logistic.NUM_STEPS,
        lambda: fg.gaussian_blobs(seed=1),
        lambda key: fg.linear_init(key, 3, 1), nn.BCEWithLogitsLoss, False,
    ),
)


def torch_linear_from(params, device) -> nn.Linear:
    """An ``nn.Linear`` holding the same initial weights as the funcgrad params."""
    state = {name.rsplit(".", 1)[-1]: torch.tensor(np.asarray(value), device=device)
             for name, value in fg.to_state_dict(params).items()}
    model = nn.Linear(state["weight"].shape[1], state["weight"].shape[0]).to(device)
    model.load_state_dict(state)
    return model


def bench_full_batch(case: FullBatchCase, ctx: Context, repeats: Repeats, with_compile: bool) -> list[Row]:
    x, y = case.data()
    params = case.init(ctx.key(0))
    optimizer = optax.sgd(case.port.LEARNING_RATE)
    opt_state = optimizer.init(params)
    batch = jax.device_put((jnp.asarray(x), jnp.asarray(y, jnp.int32 if case.class_labels else None)),
                           ctx.jax_device)
    rows = [time_funcgrad(
        case.name, case.steps,
        lambda: COMPILED_FIT_FULL_BATCH.lower(case.port.loss_fn, optimizer, params, opt_state,
                                              batch, case.steps).compile(),
        (params, opt_state, batch), repeats,
    )]

    x_t, y_t = ctx.to_torch(x), ctx.to_torch(y.astype(np.int64) if case.class_labels else y)
    criterion = case.criterion()

    def torch_run(loss_of: Callable, optimizer: torch.optim.Optimizer, step: Callable):
        def run():
            for _ in range(case.steps):
                loss = loss_of(x_t, y_t)
                optimizer.zero_grad()
                loss.backward()
                step()
            sync_torch(ctx.torch_device)
        return run

    model = torch_linear_from(params, ctx.torch_device)
    eager_optimizer = torch.optim.SGD(model.parameters(), lr=case.port.LEARNING_RATE)
    rows.append(time_torch(case.name, "torch-eager", case.steps, torch_run(
        lambda a, b: criterion(model(a), b), eager_optimizer, eager_optimizer.step), repeats))
    if with_compile:
        compiled_model = torch_linear_from(params, ctx.torch_device)
        compiled_optimizer = torch.optim.SGD(compiled_model.parameters(), lr=case.port.LEARNING_RATE)
        rows.append(time_torch(case.name, "torch-compile", case.steps, torch_run(
            torch.compile(lambda a, b: criterion(compiled_model(a), b)),
            compiled_optimizer, torch.compile(compiled_optimizer.step)), repeats))
    return rows


# ---- MNIST: one epoch of minibatch SGD, and the matmul floor ------------------------------

def bench_mnist(ctx: Context, repeats: Repeats, with_compile: bool) -> list[Row]:
    data_name, data = ctx.mnist()
    case = "mnist-softmax"
    init_key, order_key = jax.random.split(ctx.key(0))
    num_pixels = data["train_images"][0].size
    params = mnist_softmax.init_params(init_key, num_pixels)
    order = fg.shuffled_batch_indices(order_key, len(data["train_labels"]), mnist_softmax.BATCH_SIZE)
    steps = len(order)
    optimizer = optax.sgd(mnist_softmax.LEARNING_RATE)
    opt_state = optimizer.init(params)
    train = jax.device_put(
        (jnp.asarray(data["train_images"]), jnp.asarray(data["train_labels"], jnp.int32)), ctx.jax_device)
    order_on_device = jax.device_put(order, ctx.jax_device)

    funcgrad_row = time_funcgrad(
        case, steps,
        lambda: COMPILED_FIT_MINIBATCHES.lower(mnist_softmax.loss_fn, optimizer, params, opt_state,
                                               train, order_on_device).compile(),
        (params, opt_state, train, order_on_device), repeats,
    )
    funcgrad_row.note = data_name
    rows = [funcgrad_row, bench_floor(case, ctx, data["train_images"], params, steps, repeats)]

    images = ctx.to_torch(data["train_images"]).float().div(255).view(-1, num_pixels)
    labels = ctx.to_torch(data["train_labels"].astype(np.int64))
    batches = [torch.tensor(indices, device=ctx.torch_device, dtype=torch.int64) for indices in order]

    def epoch_runner(compiled: bool) -> Callable[[], None]:
        W = ctx.to_torch(params["W"]).requires_grad_()
        b = ctx.to_torch(params["b"]).requires_grad_()
        optimizer_t = torch.optim.SGD([W, b], lr=mnist_softmax.LEARNING_RATE)

        def loss_of(x, y):
            return F.cross_entropy(torch.matmul(x, W) + b, y)

        loss_fn = torch.compile(loss_of) if compiled else loss_of
        step = torch.compile(optimizer_t.step) if compiled else optimizer_t.step

        def run():
            for indices in batches:
                optimizer_t.zero_grad()
                loss_fn(images[indices], labels[indices]).backward()
                step()
            sync_torch(ctx.torch_device)
        return run

    rows.append(time_torch(case, "torch-eager", steps, epoch_runner(False), repeats))
    if with_compile:
        rows.append(time_torch(case, "torch-compile", steps, epoch_runner(True), repeats))
    return rows


def bench_floor(case: str, ctx: Context, images: np.ndarray, params: dict, steps: int, repeats: Repeats) -> Row:
    """One forward matmul and one weight-gradient matmul over the whole training set."""
    x = jax.device_put(jnp.asarray(images.reshape(len(images), -1), jnp.float32) / 255, ctx.jax_device)

    @jax.jit
    def forward_and_weight_gradient(x, weights):
        return x.T @ (x @ weights)

    row = time_funcgrad(case, steps, lambda: forward_and_weight_gradient.lower(x, params["W"]).compile(),
                        (x, params["W"]), repeats)
    row.framework = "floor"
    row.note = "x @ W and x.T @ g over all rows, float32"
    return row


# ---- sweep: 1000 Iris models (10 seeds x 100 learning rates) --------------------------------

def bench_sweep(ctx: Context, repeats: Repeats) -> list[Row]:
    """funcgrad's one vmapped call against torch.func's vmap(grad) and a loop over models.

    The torch rows are extrapolated from a sample, stated in their notes: torch.func from
    ``TORCH_FUNC_SAMPLE_STEPS`` steps of all 1000 models, the loop from
    ``TORCH_LOOP_SAMPLE_MODELS`` whole models trained as the seed trains one.
    """
    case, steps = "sweep-iris", iris_softmax.NUM_EPOCHS
    # One funcgrad run takes about 30 s on 2 cores: five of them would double the whole
    # benchmark, so every sweep row takes at most SWEEP_MIN_REPEATS repeats.
    repeats = Repeats(min(repeats.minimum, SWEEP_MIN_REPEATS), repeats.min_time_s)
    iris = fg.iris_first_two_features()
    keys = jax.random.split(ctx.key(9), sweep_iris_example.NUM_SEEDS)
    params, rates = fg.sweep_grid(fg.init_many(iris_softmax.init_params, keys),
                                  jnp.asarray(sweep_iris_example.LEARNING_RATES, jnp.float32))
    num_models = len(rates)
    batch = jax.device_put((jnp.asarray(iris["x_train"]), jnp.asarray(iris["y_train"], jnp.int32)),
                           ctx.jax_device)
    funcgrad_row = time_funcgrad(
        case, steps,
        lambda: fg.fit_full_batch_sweep.lower(iris_softmax.loss_fn, optax.sgd, params, rates, batch,
                                              steps).compile(),
        (params, rates, batch), repeats,
    )
    funcgrad_row.note = f"{num_models} models in one call"
    initial, learning_rates = fg.to_state_dict(params), np.asarray(rates)

    def torch_func_run(num_steps: int) -> Callable[[], None]:
        def run():
            sweep_iris_case.torch_side(ctx, iris, initial, learning_rates, num_epochs=num_steps)
            sync_torch(ctx.torch_device)
        return run

    # torch_side builds and stacks 1000 modules before its first step (about 0.5 s): timed
    # once with one step and counted once, not extrapolated with the steps.
    one_step = time_torch(case, "torch-func", 1, torch_func_run(1), repeats)
    torch_func = time_torch(case, "torch-func", TORCH_FUNC_SAMPLE_STEPS,
                            torch_func_run(TORCH_FUNC_SAMPLE_STEPS), repeats)
    extrapolate_steps(torch_func, one_step.run_s, steps)
    torch_func.note = (f"extrapolated from {TORCH_FUNC_SAMPLE_STEPS} steps of all {num_models} models,"
                       " set-up counted once")

    def torch_loop_sample():
        for model in range(TORCH_LOOP_SAMPLE_MODELS):
            one = {name: value[model] for name, value in initial.items()}
            iris_softmax_case.torch_side(ctx, iris, one)
        sync_torch(ctx.torch_device)

    torch_loop = time_torch(case, "torch-loop", steps, torch_loop_sample, repeats)
    torch_loop.scale(num_models / TORCH_LOOP_SAMPLE_MODELS)
    torch_loop.note = f"extrapolated from {TORCH_LOOP_SAMPLE_MODELS} of {num_models} models, eager, one after another"
    return [funcgrad_row, torch_func, torch_loop]


def extrapolate_steps(sample: Row, one_step_s: float, steps: int) -> None:
    """Stretch a ``sample.steps``-step row to ``steps``, its one-step time (set-up) kept once.

    Each of min / median / max: ``one_step_s + (t - one_step_s) * (steps - 1) / (sample.steps - 1)``.
    """
    factor = (steps - 1) / (sample.steps - 1)
    sample.run_s, sample.run_min_s, sample.run_max_s = (
        one_step_s + (t - one_step_s) * factor for t in (sample.run_s, sample.run_min_s, sample.run_max_s))
    sample.steps = steps


def bench_per_example_grads(ctx: Context, repeats: Repeats) -> list[Row]:
    """``vmap(grad)`` over one batch of 100 MNIST examples, against torch.func's recipe.

    Both sides time the same work: 100 uint8 images already in memory, scaled to [0, 1],
    and one (W, b) gradient per example, 100 x (784 x 10 + 10) floats out. funcgrad times
    one call of the compiled ``vmap(grad)``, ended with ``block_until_ready``; torch times
    one call of ``vmap(grad(compute_loss))`` built beforehand. Neither side's timing holds
    a numpy-to-tensor conversion, a first call, or the batch backward that the parity case
    (``compare.cases.per_example_grads``) adds to check the mean of the gradients.
    """
    case = "per-example-grads"
    data_name, data = ctx.mnist()
    count = per_example_case.NUM_EXAMPLES
    images, labels = data["train_images"][:count], data["train_labels"][:count]
    params = mnist_softmax.init_params(ctx.key(12), images[0].size)
    per_example = jax.jit(jax.vmap(jax.grad(per_example_case.loss_of_one_example), in_axes=(None, 0, 0)))
    inputs = jax.device_put((params, jnp.asarray(images), jnp.asarray(labels, jnp.int32)), ctx.jax_device)
    funcgrad_row = time_funcgrad(case, 1, lambda: per_example.lower(*inputs).compile(), inputs, repeats)
    funcgrad_row.note = f"{count} examples of {data_name}, one call"

    torch_per_example = torch_per_example_grads(ctx, fg.to_state_dict(params))
    images_t, labels_t = ctx.to_torch(images), ctx.to_torch(labels.astype(np.int64))

    def torch_func():
        torch_per_example(images_t, labels_t)
        sync_torch(ctx.torch_device)

    torch_row = time_torch(case, "torch-func", 1, torch_func, repeats)
    torch_row.note = "vmap(grad) as torch.func's per-sample-gradients recipe, one call"
    return [funcgrad_row, torch_row]


def torch_per_example_grads(ctx: Context, initial: dict) -> Callable:
    """torch.func's per-sample-gradients recipe, as ``compare.cases.per_example_grads`` runs it.

        grads = torch_per_example_grads(ctx, fg.to_state_dict(params))(uint8_images, labels)

    Returns ``{"W": (n, 784, 10), "b": (n, 10)}``; the images are scaled to [0, 1] inside,
    as funcgrad's loss scales them.
    """
    params = {"W": ctx.to_torch(initial["W"]), "b": ctx.to_torch(initial["b"])}
    num_pixels = params["W"].shape[0]

    def compute_loss(params, image, label):
        x = image.view(-1, num_pixels)
        y = torch.matmul(x, params["W"]) + params["b"]
        return F.cross_entropy(y, label.unsqueeze(0))

    per_sample_grads = vmap(grad(compute_loss), in_dims=(None, 0, 0))

    def run(images: torch.Tensor, labels: torch.Tensor) -> dict:
        return per_sample_grads(params, images.to(params["W"].dtype).div(255), labels)
    return run


TORCH_FUNC_SAMPLE_STEPS = 200
TORCH_LOOP_SAMPLE_MODELS = 2
SWEEP_MIN_REPEATS = 3


# ---- report ----------------------------------------------------------------------------

def add_ratios(rows: list[Row]) -> None:
    by_case = {}
    for row in rows:
        by_case.setdefault(row.case, {})[row.framework] = row
    for row in rows:
        reference = by_case[row.case]
        if "funcgrad" in reference:
            row.ratio_to_funcgrad = row.run_s / reference["funcgrad"].run_s
        if "floor" in reference:
            row.ratio_to_floor = row.run_s / reference["floor"].run_s


def format_table(rows: list[Row]) -> str:
    """The rows as a Markdown table, as README's Speed section shows them, then their notes.

        print(format_table(rows))
    """
    lines = ["| case | framework | compile s | run s (min / median / max) | µs / step | × funcgrad | × floor |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    notes, previous_case = [], None
    for r in rows:
        title = case_title(r) if r.case != previous_case else ""
        previous_case = r.case
        spread = " / ".join(significant(t) for t in (r.run_min_s, r.run_s, r.run_max_s))
        lines.append("| " + " | ".join((
            title, r.framework, significant(r.compile_s) if r.compile_s else "", spread,
            significant(r.per_step_us),
            ratio_cell(r.ratio_to_funcgrad, r.framework == "funcgrad"),
            ratio_cell(r.ratio_to_floor, r.framework == "floor"),
        )) + " |")
        if r.note:
            notes.append(f"- {r.case}, {r.framework}: {r.note}")
    return "\n".join(lines + [""] + notes)


def case_title(row: Row) -> str:
    return f"{row.case} ({significant(row.steps)} steps)" if row.steps > 1 else row.case


def ratio_cell(ratio: float | None, is_reference: bool) -> str:
    if ratio is None:
        return ""
    return "1" if is_reference else significant(ratio)


def significant(x: float, digits: int = 3) -> str:
    """``x`` to ``digits`` significant figures, thousands spaced as README writes them.

        significant(0.037612) == "0.0376"; significant(3.6) == "3.60"; significant(3290.4) == "3 290"
    """
    if x == 0:
        return "0"
    if abs(x) >= 10 ** (digits - 1):
        return f"{round(x):,}".replace(",", " ")
    return f"{x:.{digits - 1 - math.floor(math.log10(abs(x)))}f}"


def warn_if_busy(load_average: tuple[float, float, float]) -> None:
    """Say so when other processes already keep a core busy.

    Every row then slows down, the torch rows most (their OpenMP threads wait for cores;
    see the note on OMP_WAIT_POLICY at the top): on 2 cores under a load of 4, torch.func's per-example
    gradients took 2-5 ms a call against 2 ms alone. The min / median / max show it.
    """
    one_minute = load_average[0]
    if one_minute >= 0.5 * os.cpu_count():
        print(f"WARNING: load average {one_minute:.2f} on {os.cpu_count()} cores before the first row: "
              "other processes are running, and the torch rows will be slow and noisy.", file=sys.stderr)


BENCHES = {
    **{case.name: functools.partial(bench_full_batch, case) for case in FULL_BATCH_CASES},
    "mnist-softmax": bench_mnist,
    "sweep-iris": bench_sweep,
    "per-example-grads": bench_per_example_grads,
}
# Only these cases have a torch.compile row, so only they take ``with_compile``.
TORCH_COMPILE_CASES = {case.name for case in FULL_BATCH_CASES} | {"mnist-softmax"}


def run_bench(name: str, ctx: Context, repeats: Repeats, with_compile: bool) -> list[Row]:
    """The rows of one case: ``run_bench("mnist-softmax", ctx, Repeats(), with_compile=False)``."""
    if name in TORCH_COMPILE_CASES:
        return BENCHES[name](ctx, repeats, with_compile)
    return BENCHES[name](ctx, repeats)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=list(BENCHES), metavar="NAME",
                        help=f"time only this case (repeatable): {', '.join(BENCHES)}")
    parser.add_argument("--skip-torch-compile", action="store_true",
                        help="leave out torch.compile (its compiles take tens of seconds on 2 cores)")
    parser.add_argument("--repeats", type=int, default=MIN_REPEATS,
                        help=f"at least this many timed repeats per row (default {MIN_REPEATS}; "
                             f"sweep-iris takes at most {SWEEP_MIN_REPEATS})")
    parser.add_argument("--min-time", type=float, default=MIN_TIME_S, metavar="S",
                        help=f"and at least this many seconds of timed work per row (default {MIN_TIME_S})")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu")
    parser.add_argument("--mnist-dir", metavar="DIR", help="real MNIST (else $FUNCGRAD_MNIST_DIR, else digits)")
    parser.add_argument("--json", metavar="PATH", help="write the rows and the environment here")
    args = parser.parse_args(argv)
    repeats = Repeats(args.repeats, args.min_time)

    jax_device, torch_device = select_devices(args.device)
    precision = set_matmul_precision()
    torch.set_num_threads(os.cpu_count())
    ctx = Context(dtype=np.dtype(np.float32), jax_device=jax_device, torch_device=torch_device,
                  mnist_dir=args.mnist_dir)
    environment = describe_environment(ctx)
    threads = {"cpu_count": os.cpu_count(), "torch_intra_op": torch.get_num_threads(),
               "xla_cpu": "one intra-op thread per core (XLA's default)",
               "omp_wait_policy": "torch loaded before compare.bench" if TORCH_LOADED_BEFORE
               else os.environ.get("OMP_WAIT_POLICY", "libgomp's default")}
    print(f"funcgrad benchmark on {environment['device']['name']}: {threads}")
    load_at_start = os.getloadavg()
    warn_if_busy(load_at_start)
    print(f"Each row: one warm-up call, then at least {args.repeats} timed repeats and {args.min_time} s"
          f" of timed work; calls under {MIN_REGION_S * 1e3:.0f} ms are timed in batches. Ratios use medians.\n")

    rows = []
    with jax.default_device(jax_device):
        for name in args.case or BENCHES:
            rows.extend(run_bench(name, ctx, repeats, not args.skip_torch_compile))
            print(f"{name}: done", file=sys.stderr)
    add_ratios(rows)
    print(format_table(rows))
    if args.json:
        report = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **environment,
                  "threads": threads, "matmul_precision": precision, "repeats": args.repeats,
                  "min_time_s": args.min_time, "min_region_s": MIN_REGION_S,
                  "load_average_1_5_15_min": {"start": load_at_start, "end": os.getloadavg()},
                  "rows": [dataclasses.asdict(r) | {"per_step_us": r.per_step_us} for r in rows]}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"report written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
