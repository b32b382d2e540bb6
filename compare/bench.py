"""``python -m compare.bench``: how fast each training case runs, side by side, in one process.

    python -m compare.bench --json bench.json            # every case
    python -m compare.bench --skip-torch-compile         # skip torch.compile's long compiles

For every training case: funcgrad (the whole run compiled once; compile and steady-state
run timed apart), PyTorch eager (the seed's zero_grad/backward/step loop), torch.compile
of the same step, and for MNIST the floor, the one forward + weight-gradient matmul over
all 60 000 rows that a full epoch cannot avoid. Every timed region ends with
``block_until_ready`` (JAX) or ``torch.cuda.synchronize`` (GPU); run times are the median
of ``--repeats`` runs after one warm-up. Both frameworks use the same number of threads.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
import time
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn as nn
import torch.nn.functional as F

import funcgrad as fg
from compare.runtime import Context, describe_environment, select_devices, set_matmul_precision
from compare.cases import iris_softmax as iris_softmax_case
from compare.cases import per_example_grads as per_example_case
from compare.cases import sweep_iris as sweep_iris_case
from examples import binary_logistic, iris_softmax, linear_regression, mnist_softmax
from examples import sweep_iris as sweep_iris_example


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
    run_s: float
    note: str = ""
    ratio_to_funcgrad: float | None = None
    ratio_to_floor: float | None = None

    @property
    def per_step_us(self) -> float:
        return 1e6 * self.run_s / self.steps


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run`` after one warm-up call; ``run`` must synchronise itself."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sync_torch(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_funcgrad(case: str, steps: int, compile_run: Callable, dynamic: tuple, repeats: int) -> Row:
    """Compile ahead of time (timed apart), then time the compiled call alone.

    ``compile_run()`` returns the compiled executable, e.g.
    ``lambda: fg.fit_full_batch.lower(loss_fn, opt, params, state, batch, n).compile()``;
    it is then called with ``dynamic`` (the non-static arguments).
    """
    start = time.perf_counter()
    compiled = compile_run()
    compile_s = time.perf_counter() - start
    run_s = median_seconds(lambda: jax.block_until_ready(compiled(*dynamic)), repeats)
    return Row(case, "funcgrad", steps, compile_s, run_s)


def time_torch(case: str, framework: str, steps: int, run: Callable[[], None], repeats: int) -> Row:
    """Time a torch run; the first call's extra time is reported as its compile time."""
    start = time.perf_counter()
    run()
    first_s = time.perf_counter() - start
    run_s = median_seconds(run, repeats)
    compile_s = max(first_s - run_s, 0.0) if framework == "torch-compile" else 0.0
    return Row(case, framework, steps, compile_s, run_s)


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


def bench_full_batch(case: FullBatchCase, ctx: Context, repeats: int, with_compile: bool) -> list[Row]:
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

def bench_mnist(ctx: Context, repeats: int, with_compile: bool) -> list[Row]:
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


def bench_floor(case: str, ctx: Context, images: np.ndarray, params: dict, steps: int, repeats: int) -> Row:
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

def bench_sweep(ctx: Context, repeats: int, with_compile: bool) -> list[Row]:
    """funcgrad's one vmapped call against torch.func's vmap(grad) and a loop over models.

    The torch rows are extrapolated from a sample, stated in their notes: torch.func from
    ``TORCH_FUNC_SAMPLE_STEPS`` steps of all 1000 models, the loop from
    ``TORCH_LOOP_SAMPLE_MODELS`` whole models trained as the seed trains one.
    """
    case, steps = "sweep-iris", iris_softmax.NUM_EPOCHS
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
        (params, rates, batch), repeats=1,
    )
    funcgrad_row.note = f"{num_models} models in one call"
    initial, learning_rates = fg.to_state_dict(params), np.asarray(rates)

    def torch_func_sample():
        sweep_iris_case.torch_side(ctx, iris, initial, learning_rates, num_epochs=TORCH_FUNC_SAMPLE_STEPS)
        sync_torch(ctx.torch_device)

    torch_func = time_torch(case, "torch-func", TORCH_FUNC_SAMPLE_STEPS, torch_func_sample, repeats=1)
    torch_func.run_s *= steps / TORCH_FUNC_SAMPLE_STEPS
    torch_func.steps = steps
    torch_func.note = f"extrapolated from {TORCH_FUNC_SAMPLE_STEPS} steps of all {num_models} models"

    def torch_loop_sample():
        for model in range(TORCH_LOOP_SAMPLE_MODELS):
            one = {name: value[model] for name, value in initial.items()}
            iris_softmax_case.torch_side(ctx, iris, one)
        sync_torch(ctx.torch_device)

    torch_loop = time_torch(case, "torch-loop", steps, torch_loop_sample, repeats=1)
    torch_loop.run_s *= num_models / TORCH_LOOP_SAMPLE_MODELS
    torch_loop.note = f"extrapolated from {TORCH_LOOP_SAMPLE_MODELS} of {num_models} models, eager, one after another"
    return [funcgrad_row, torch_func, torch_loop]


def bench_per_example_grads(ctx: Context, repeats: int, with_compile: bool) -> list[Row]:
    """``vmap(grad)`` over one batch of 100 MNIST examples, against torch.func's recipe."""
    case = "per-example-grads"
    data_name, data = ctx.mnist()
    count = per_example_case.NUM_EXAMPLES
    images, labels = data["train_images"][:count], data["train_labels"][:count]
    params = mnist_softmax.init_params(ctx.key(12), images[0].size)
    per_example = jax.jit(jax.vmap(jax.grad(per_example_case.loss_of_one_example), in_axes=(None, 0, 0)))
    inputs = jax.device_put((params, jnp.asarray(images), jnp.asarray(labels, jnp.int32)), ctx.jax_device)
    funcgrad_row = time_funcgrad(case, 1, lambda: per_example.lower(*inputs).compile(), inputs, repeats)
    funcgrad_row.note = f"{count} examples of {data_name}"
    initial = fg.to_state_dict(params)

    def torch_func():
        per_example_case.torch_side(ctx, images, labels, initial)
        sync_torch(ctx.torch_device)

    torch_row = time_torch(case, "torch-func", 1, torch_func, repeats)
    torch_row.note = "vmap(grad) as torch.func's per-sample-gradients recipe, plus one batch backward"
    return [funcgrad_row, torch_row]


TORCH_FUNC_SAMPLE_STEPS = 200
TORCH_LOOP_SAMPLE_MODELS = 2


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
    header = ("case", "framework", "compile s", "run s", "per-step µs", "× funcgrad", "× floor", "note")
    lines = [header]
    for r in rows:
        lines.append((
            r.case, r.framework, f"{r.compile_s:.3f}", f"{r.run_s:.4f}", f"{r.per_step_us:.1f}",
            f"{r.ratio_to_funcgrad:.1f}" if r.ratio_to_funcgrad is not None else "",
            f"{r.ratio_to_floor:.2f}" if r.ratio_to_floor is not None else "", r.note,
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = [" | ".join(cell.ljust(w) for cell, w in zip(line, widths)) for line in lines]
    text.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(text)


BENCHES = {
    **{case.name: (lambda case: lambda ctx, repeats, with_compile:
                   bench_full_batch(case, ctx, repeats, with_compile))(case)
       for case in FULL_BATCH_CASES},
    "mnist-softmax": bench_mnist,
    "sweep-iris": bench_sweep,
    "per-example-grads": bench_per_example_grads,
}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=list(BENCHES), metavar="NAME",
                        help=f"time only this case (repeatable): {', '.join(BENCHES)}")
    parser.add_argument("--skip-torch-compile", action="store_true",
                        help="leave out torch.compile (its compiles take tens of seconds on 2 cores)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per row (median reported)")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu")
    parser.add_argument("--mnist-dir", metavar="DIR", help="real MNIST (else $FUNCGRAD_MNIST_DIR, else digits)")
    parser.add_argument("--json", metavar="PATH", help="write the rows and the environment here")
    args = parser.parse_args(argv)

    jax_device, torch_device = select_devices(args.device)
    precision = set_matmul_precision()
    torch.set_num_threads(os.cpu_count())
    ctx = Context(dtype=np.dtype(np.float32), jax_device=jax_device, torch_device=torch_device,
                  mnist_dir=args.mnist_dir)
    environment = describe_environment(ctx)
    threads = {"cpu_count": os.cpu_count(), "torch_intra_op": torch.get_num_threads(),
               "xla_cpu": "one intra-op thread per core (XLA's default)"}
    print(f"funcgrad benchmark on {environment['device']['name']}: {threads}")

    rows = []
    with jax.default_device(jax_device):
        for name in args.case or BENCHES:
            rows.extend(BENCHES[name](ctx, args.repeats, not args.skip_torch_compile))
            print(f"{name}: done", file=sys.stderr)
    add_ratios(rows)
    print(format_table(rows))
    if args.json:
        report = {"date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **environment,
                  "threads": threads, "matmul_precision": precision, "repeats": args.repeats,
                  "rows": [dataclasses.asdict(r) | {"per_step_us": r.per_step_us} for r in rows]}
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2)
        print(f"report written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
