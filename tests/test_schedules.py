"""funcgrad.optim's schedules against torch.optim.lr_scheduler: each schedule's rate at every
update of a run past its interesting range against torch's ``get_last_lr()`` before that
update, in float64 (torch's double itself where torch's arithmetic is tabulated, else within
a few ulps) and float32 (within a few float32 ulps of torch's double); then optimizers
driven by them against torch's optimizer and scheduler, update by update."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler

import funcgrad as fg
from funcgrad.optim.schedules import (
    cosine_annealing_lr, cosine_annealing_warm_restarts, exponential_lr, lambda_lr, linear_lr, multi_step_lr,
    one_cycle_lr, one_cycle_momentum, sequential_lr)
from funcgrad.optim.transforms import dampened_trace, scale_by_torch_adam
from funcgrad.parity import TOLERANCES
from tests.helpers_torch import DTYPES, jax_precision
from tests.test_optim import NUM_STEPS as OPTIMIZER_STEPS, gradient_stream, torch_trajectory

NUM_STEPS = 300
ONE_CYCLE_STEPS = 250  # torch's OneCycleLR has a rate for updates 0..total_steps


def nanogpt_multiplier(it, warmup_iters=20, lr_decay_iters=250, min_ratio=0.1):
    """nanoGPT's ``get_lr(it) / learning_rate``: a Python function of the step, as LambdaLR takes it."""
    if it < warmup_iters:
        return (it + 1) / (warmup_iters + 1)
    if it > lr_decay_iters:
        return min_ratio
    decay_ratio = (it - warmup_iters) / (lr_decay_iters - warmup_iters)
    return min_ratio + 0.5 * (1.0 + math.cos(math.pi * decay_ratio)) * (1.0 - min_ratio)


def nanogpt_multiplier_jnp(it, warmup_iters=20, lr_decay_iters=250, min_ratio=0.1):
    """The same in jax.numpy: ``jnp.where`` for the ``if``s, traceable under jit."""
    decay_ratio = jnp.clip((it - warmup_iters) / (lr_decay_iters - warmup_iters), 0.0, 1.0)
    decayed = min_ratio + 0.5 * (1.0 + jnp.cos(jnp.pi * decay_ratio)) * (1.0 - min_ratio)
    return jnp.where(it < warmup_iters, (it + 1) / (warmup_iters + 1), decayed)


def sequential(*schedulers, milestones):
    return lambda opt: lr_scheduler.SequentialLR(opt, [make(opt) for make in schedulers], milestones)


# (id, our schedule, torch's scheduler of an optimizer at lr 0.1, float64 ulps, float32 ulps).
# 0 ulps: equal to torch's double (float64), to it rounded once (float32): the schedules
# that tabulate torch's own arithmetic. Otherwise |ours - torch| <= ulps * eps * |torch|.
CASES = [
    ("lambda_lr-tabulated-nanogpt", lambda: lambda_lr(0.1, nanogpt_multiplier, num_steps=NUM_STEPS),
     lambda opt: lr_scheduler.LambdaLR(opt, nanogpt_multiplier), 0, 0),
    ("lambda_lr-jnp-nanogpt", lambda: lambda_lr(0.1, nanogpt_multiplier_jnp),
     lambda opt: lr_scheduler.LambdaLR(opt, nanogpt_multiplier), 6, 8),
    ("linear_lr-defaults", lambda: linear_lr(0.1),
     lambda opt: lr_scheduler.LinearLR(opt), 0, 0),
    ("linear_lr-warmup", lambda: linear_lr(0.1, start_factor=0.01, total_iters=200),
     lambda opt: lr_scheduler.LinearLR(opt, start_factor=0.01, total_iters=200), 0, 0),
    ("linear_lr-decay", lambda: linear_lr(0.1, start_factor=1.0, end_factor=0.05, total_iters=250),
     lambda opt: lr_scheduler.LinearLR(opt, start_factor=1.0, end_factor=0.05, total_iters=250), 0, 0),
    ("multi_step_lr-repeated-milestone", lambda: multi_step_lr(0.1, [30, 80, 80, 200], gamma=0.3),
     lambda opt: lr_scheduler.MultiStepLR(opt, [30, 80, 80, 200], gamma=0.3), 0, 0),
    ("multi_step_lr-milestone-0", lambda: multi_step_lr(0.1, [0, 5], gamma=0.5),
     lambda opt: lr_scheduler.MultiStepLR(opt, [0, 5], gamma=0.5), 0, 0),
    ("exponential_lr-decay", lambda: exponential_lr(0.1, gamma=0.99),
     lambda opt: lr_scheduler.ExponentialLR(opt, gamma=0.99), 12, 4),
    ("exponential_lr-growth", lambda: exponential_lr(0.1, gamma=1.01),  # a learning-rate range test
     lambda opt: lr_scheduler.ExponentialLR(opt, gamma=1.01), 12, 4),
    ("warm_restarts-t_mult-1", lambda: cosine_annealing_warm_restarts(0.1, t_0=10, eta_min=1e-3),
     lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=10, eta_min=1e-3), 2, 4),
    ("warm_restarts-t_mult-2", lambda: cosine_annealing_warm_restarts(0.1, t_0=7, t_mult=2, eta_min=1e-3),
     lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=7, T_mult=2, eta_min=1e-3), 2, 4),
    ("warm_restarts-t_mult-3", lambda: cosine_annealing_warm_restarts(0.1, t_0=3, t_mult=3),
     lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, T_0=3, T_mult=3), 2, 4),
    # torch's CosineAnnealingLR is a recursion, cosine_annealing_lr its closed form: 2.2e-14 apart.
    ("sequential_lr-linear-cosine",
     lambda: sequential_lr([linear_lr(0.1, 0.01, 1.0, 50), cosine_annealing_lr(0.1, 200, 1e-4)], [50]),
     sequential(lambda opt: lr_scheduler.LinearLR(opt, 0.01, 1.0, 50),
                lambda opt: lr_scheduler.CosineAnnealingLR(opt, 200, 1e-4), milestones=[50]), 200, 8),
    ("sequential_lr-linear-exponential",
     lambda: sequential_lr([linear_lr(0.1, 0.1, 1.0, 20), exponential_lr(0.1, 0.98)], [30]),
     sequential(lambda opt: lr_scheduler.LinearLR(opt, 0.1, 1.0, 20),
                lambda opt: lr_scheduler.ExponentialLR(opt, 0.98), milestones=[30]), 12, 4),
    ("sequential_lr-three",  # MultiStepLR's milestones count from its own start (update 20)
     lambda: sequential_lr([linear_lr(0.1, 0.1, 1.0, 20), multi_step_lr(0.1, [10, 40], 0.5),
                            cosine_annealing_warm_restarts(0.1, 30, 2)], [20, 100]),
     sequential(lambda opt: lr_scheduler.LinearLR(opt, 0.1, 1.0, 20),
                lambda opt: lr_scheduler.MultiStepLR(opt, [10, 40], 0.5),
                lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, 30, 2), milestones=[20, 100]), 2, 4),
    ("sequential_lr-milestone-0",  # the first schedule never runs
     lambda: sequential_lr([linear_lr(0.1, 0.1, 1.0, 20), exponential_lr(0.1, 0.98)], [0]),
     sequential(lambda opt: lr_scheduler.LinearLR(opt, 0.1, 1.0, 20),
                lambda opt: lr_scheduler.ExponentialLR(opt, 0.98), milestones=[0]), 12, 4),
    ("sequential_lr-constants",  # threestudio#226: torch once started at the product of all factors
     lambda: sequential_lr([lambda_lr(0.1, lambda t: factor, num_steps=NUM_STEPS) for factor in (1.0, 0.1, 0.5)],
                           [200, 250]),
     sequential(*[lambda opt, factor=factor: lr_scheduler.ConstantLR(opt, factor, 99999) for factor in (1.0, 0.1, 0.5)],
                milestones=[200, 250]), 0, 0),
]

ONE_CYCLES = [
    dict(),
    dict(anneal_strategy="linear"),
    dict(three_phase=True),
    dict(three_phase=True, anneal_strategy="linear", pct_start=0.25),
    dict(pct_start=0.333),  # the peak between two updates: phase 0 ends at 82.25
    dict(pct_start=0.0),  # phase 0 ends at -1: update 0 is already annealing
]


def torch_rates(scheduler, num_steps, optimizer="Adam"):
    """torch's rate (``get_last_lr()``) and β1 or momentum before each of ``num_steps``
    updates: what each update uses."""
    param = torch.nn.Parameter(torch.zeros(1, dtype=torch.float64))
    opt = getattr(torch.optim, optimizer)([param], lr=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # SequentialLR's sub-schedulers' own construction
        schedule = scheduler(opt)
    rates, momenta = [], []
    for step in range(num_steps):
        group = opt.param_groups[0]
        rates.append(schedule.get_last_lr()[0])
        momenta.append(group["betas"][0] if "betas" in group else group["momentum"])
        if step < num_steps - 1:
            opt.step()
            schedule.step()
    return np.array(rates), np.array(momenta)


def our_rates(schedule, num_steps, dtype, compile=True):
    with jax_precision(dtype):
        run = jax.vmap(schedule)
        return np.asarray((jax.jit(run) if compile else run)(jnp.arange(num_steps)))


def assert_within_ulps(ours, theirs, ulps):
    """0 ulps: ``ours`` is ``theirs`` rounded to its dtype; else within ``ulps`` of it."""
    assert np.all(np.isfinite(ours))
    if ulps == 0:
        np.testing.assert_array_equal(ours, theirs.astype(ours.dtype))
        return
    error = np.abs(ours - theirs) / (np.finfo(ours.dtype).eps * np.abs(theirs))
    assert np.max(error) <= ulps, f"{np.max(error):.3g} ulps at update {np.argmax(error)}, allowed {ulps}"


ONE_CYCLE_IDS = [",".join(f"{k}={v}" for k, v in kwargs.items()) or "defaults" for kwargs in ONE_CYCLES]


@DTYPES
@pytest.mark.parametrize("name, ours, theirs, ulps64, ulps32", CASES, ids=[case[0] for case in CASES])
def test_schedule_matches_torch_get_last_lr_every_update(name, ours, theirs, ulps64, ulps32, dtype):
    rates, _ = torch_rates(theirs, NUM_STEPS)
    got = our_rates(ours(), NUM_STEPS, dtype)
    assert got.dtype == dtype
    assert_within_ulps(got, rates, ulps64 if dtype == np.float64 else ulps32)


@DTYPES
@pytest.mark.parametrize("kwargs", ONE_CYCLES, ids=ONE_CYCLE_IDS)
def test_one_cycle_rate_and_momentum_match_torch_through_total_steps(kwargs, dtype):
    # torch's OneCycleLR rewrites Adam's betas[0] (SGD's momentum) with each rate.
    rates, momenta = torch_rates(lambda opt: lr_scheduler.OneCycleLR(opt, 0.01, ONE_CYCLE_STEPS, **kwargs),
                                 ONE_CYCLE_STEPS + 1)
    assert_within_ulps(our_rates(one_cycle_lr(0.01, ONE_CYCLE_STEPS, **kwargs), ONE_CYCLE_STEPS + 1, dtype), rates, 0)
    assert_within_ulps(our_rates(one_cycle_momentum(ONE_CYCLE_STEPS, **kwargs), ONE_CYCLE_STEPS + 1, dtype),
                       momenta, 0)


def test_one_cycle_momentum_is_what_torch_writes_into_sgd_momentum():
    _, momenta = torch_rates(lambda opt: lr_scheduler.OneCycleLR(opt, 0.01, 100), 101, optimizer="SGD")
    assert_within_ulps(our_rates(one_cycle_momentum(100), 101, np.float64), momenta, 0)


# A table, a traced lambda, the closed forms (eager runs each primitive on its own: slow).
EAGER_CASES = {name: ours for name, ours, *_ in CASES if name in {
    "lambda_lr-tabulated-nanogpt", "lambda_lr-jnp-nanogpt", "exponential_lr-decay", "warm_restarts-t_mult-2"}} | {
    "one_cycle_lr-three_phase": lambda: one_cycle_lr(0.01, ONE_CYCLE_STEPS, three_phase=True)}


@DTYPES
@pytest.mark.parametrize("name", EAGER_CASES)
def test_compiled_schedule_equals_eager(name, dtype):
    # Equal but for XLA's fused multiply-adds (one rounding where eager rounds twice).
    steps = min(NUM_STEPS, ONE_CYCLE_STEPS + 1)
    schedule = EAGER_CASES[name]()
    np.testing.assert_allclose(our_rates(schedule, steps, dtype), our_rates(schedule, steps, dtype, compile=False),
                               rtol=2 * np.finfo(dtype).eps, atol=0)


def test_one_cycle_past_total_steps_is_refused_as_torch_refuses_and_nan_under_jit():
    scheduler = lr_scheduler.OneCycleLR(torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))]), 0.01, 10)
    for _ in range(10):
        scheduler.optimizer.step()
        scheduler.step()
    with pytest.raises(ValueError, match="Tried to step 11 times"):
        scheduler.step()
    schedule = one_cycle_lr(0.01, total_steps=10)
    assert float(schedule(10)) == pytest.approx(scheduler.get_last_lr()[0], rel=1e-6)
    with pytest.raises(ValueError, match=r"count 11 is past the schedule's last update, 10 \(total_steps=10\)"):
        schedule(11)
    assert np.isnan(jax.jit(schedule)(11))


def test_tabulated_lambda_past_num_steps_is_refused_and_nan_under_jit():
    schedule = lambda_lr(6e-4, nanogpt_multiplier, num_steps=100)
    assert float(schedule(99)) == pytest.approx(6e-4 * nanogpt_multiplier(99))
    with pytest.raises(ValueError, match=r"past the schedule's last update, 99 \(num_steps=100\)"):
        schedule(jnp.int32(100))
    assert np.isnan(jax.jit(schedule)(100))


def test_python_lambda_without_num_steps_is_refused_naming_the_fix():
    with pytest.raises(TypeError, match=r"TracerBoolConversionError.*Pass num_steps=.*jnp.where"):
        lambda_lr(6e-4, nanogpt_multiplier)
    with pytest.raises(TypeError, match="ConcretizationTypeError"):
        lambda_lr(6e-4, lambda t: math.cos(t / 100))


def test_sequential_asks_each_schedule_only_for_its_own_segment():
    # A warmup tabulated for its 20 updates: optax.join_schedules would ask it for update 50.
    lr = sequential_lr([lambda_lr(0.1, lambda t: (t + 1) / 20, num_steps=20), exponential_lr(0.1, 0.98)], [20])
    assert float(lr(19)) == pytest.approx(0.1) and float(lr(50)) == pytest.approx(0.1 * 0.98**30)
    with pytest.raises(ValueError, match="past the schedule's last update"):
        optax.join_schedules([lambda_lr(0.1, lambda t: (t + 1) / 20, num_steps=20), exponential_lr(0.1, 0.98)],
                             [20])(50)


def test_linear_lr_is_torchs_recursion_not_its_closed_form():
    rates, _ = torch_rates(lambda opt: lr_scheduler.LinearLR(opt, 0.001, 1.0, 1000), 1001)
    closed = 0.1 * (0.001 + (1.0 - 0.001) * np.arange(1001) / 1000)
    assert np.max(np.abs(closed - rates) / np.spacing(rates)) >= 20  # torch's drift, in ulps
    assert_within_ulps(our_rates(linear_lr(0.1, 0.001, 1.0, 1000), 1001, np.float64), rates, 0)


def test_optax_onecycle_peaks_elsewhere_than_torchs():
    ours = our_rates(one_cycle_lr(0.01, 100, pct_start=0.255), 101, np.float64)
    theirs = our_rates(optax.cosine_onecycle_schedule(100, 0.01, pct_start=0.255), 101, np.float64)
    assert np.argmax(ours) == 25 and ours[25] < 0.01  # torch's peak, 24.5, lies between updates
    assert np.argmax(theirs) == 25 and theirs[25] == pytest.approx(0.01)


@pytest.mark.parametrize("make, error, message", [
    (lambda: lambda_lr(-0.1, lambda t: 1.0, num_steps=3), ValueError, "learning_rate must be >= 0"),
    (lambda: lambda_lr(0.1, 2.0), TypeError, "lr_lambda must be a function"),
    (lambda: lambda_lr(0.1, lambda t: 1.0, num_steps=0), ValueError, "num_steps must be a positive int"),
    (lambda: lambda_lr(0.1, lambda t: "x", num_steps=3), TypeError, r"lr_lambda\(0\) must be a real number"),
    (lambda: lambda_lr(0.1, lambda t: jnp.ones(2) * t), ValueError, "must return one multiplier"),
    (lambda: linear_lr(0.1, start_factor=0.0), ValueError, r"start_factor must lie in \(0, 1\]"),
    (lambda: linear_lr(0.1, end_factor=1.5), ValueError, r"end_factor must lie in \[0, 1\]"),
    (lambda: linear_lr(0.1, total_iters=2.5), ValueError, "total_iters must be an int >= 0"),
    (lambda: multi_step_lr(0.1, [30, 10]), ValueError, "milestones must be non-decreasing"),
    (lambda: multi_step_lr(0.1, [-1]), ValueError, "milestones must be ints >= 0"),
    (lambda: multi_step_lr(0.1, [10], gamma=-0.5), ValueError, "gamma must be >= 0"),
    (lambda: exponential_lr(0.1, gamma=0.0), ValueError, "gamma must be > 0"),
    (lambda: exponential_lr("0.1", gamma=0.9), TypeError, "learning_rate must be a real number"),
    (lambda: cosine_annealing_warm_restarts(0.1, t_0=0), ValueError, "t_0 must be a positive int"),
    (lambda: cosine_annealing_warm_restarts(0.1, t_0=10, t_mult=1.5), ValueError, "t_mult must be a positive int"),
    (lambda: cosine_annealing_warm_restarts(0.1, t_0=10, eta_min=-1e-3), ValueError, "eta_min must be >= 0"),
    (lambda: sequential_lr([linear_lr(0.1), exponential_lr(0.1, 0.9)], [5, 10]), ValueError, "2 schedules need 1"),
    (lambda: sequential_lr([linear_lr(0.1)] * 3, [10, 10]), ValueError, "milestones must be increasing"),
    (lambda: sequential_lr([], []), TypeError, "non-empty list of schedules"),
    (lambda: one_cycle_lr(0.01, total_steps=0), ValueError, "total_steps must be a positive int"),
    (lambda: one_cycle_lr(0.01, total_steps=100, pct_start=1.5), ValueError, r"pct_start must lie in \[0, 1\]"),
    (lambda: one_cycle_lr(0.01, 100, anneal_strategy="cosine"), ValueError,
     "anneal_strategy must be 'cos' or 'linear'"),
    (lambda: one_cycle_lr(0.01, 100, div_factor=0), ValueError, "div_factor must be > 0"),
    (lambda: one_cycle_lr(0.01, 10, pct_start=0.1), ValueError, "phase 0 zero steps long"),  # torch: ZeroDivisionError
    (lambda: one_cycle_momentum(100, base_momentum=-0.1), ValueError, "base_momentum must be >= 0"),
])
def test_bad_schedule_arguments_are_refused_by_name(make, error, message):
    with pytest.raises(error, match=message):
        make()


# ---- optimizers driven by the schedules, against torch's optimizer and scheduler ----

def funcgrad_trajectory(optimizer, initial, grads):
    """The parameters after each update, the loop compiled (a scan) as a training loop is."""
    def update(carry, grad):
        params, state = carry
        updates, state = optimizer.update(grad, state, params)
        params = optax.apply_updates(params, updates)
        return (params, state), params

    run = jax.jit(lambda params, grads: jax.lax.scan(update, (params, optimizer.init(params)), grads)[1])
    return np.asarray(run(jnp.asarray(initial), jnp.asarray(grads)))


def one_cycle_adamw(b1, **kwargs):
    """``fg.optim.adamw``'s chain with a scheduled β1 (AdamW, weight decay 1e-2)."""
    return optax.chain(scale_by_torch_adam(b1, 0.999, 1e-8), optax.add_decayed_weights(1e-2),
                       optax.scale_by_learning_rate(one_cycle_lr(0.05, OPTIMIZER_STEPS, **kwargs)))


DRIVEN = [
    ("adamw-lambda_lr-nanogpt",
     lambda: fg.optim.adamw(lambda_lr(0.05, nanogpt_multiplier, num_steps=OPTIMIZER_STEPS), betas=(0.9, 0.95),
                            weight_decay=0.1),
     torch.optim.AdamW, dict(lr=0.05, betas=(0.9, 0.95), weight_decay=0.1),
     lambda opt: lr_scheduler.LambdaLR(opt, nanogpt_multiplier)),
    ("adamw-sequential-linear-cosine",
     lambda: fg.optim.adamw(sequential_lr([linear_lr(0.05, 0.01, 1.0, 20), cosine_annealing_lr(0.05, 80)], [20])),
     torch.optim.AdamW, dict(lr=0.05),
     sequential(lambda opt: lr_scheduler.LinearLR(opt, 0.01, 1.0, 20),
                lambda opt: lr_scheduler.CosineAnnealingLR(opt, 80), milestones=[20])),
    ("sgd-multi_step_lr", lambda: fg.optim.sgd(multi_step_lr(0.1, [30, 60, 90], 0.5), momentum=0.9),
     torch.optim.SGD, dict(lr=0.1, momentum=0.9), lambda opt: lr_scheduler.MultiStepLR(opt, [30, 60, 90], 0.5)),
    ("sgd-exponential_lr", lambda: fg.optim.sgd(exponential_lr(0.1, 0.98), momentum=0.8, dampening=0.2),
     torch.optim.SGD, dict(lr=0.1, momentum=0.8, dampening=0.2), lambda opt: lr_scheduler.ExponentialLR(opt, 0.98)),
    ("sgd-warm_restarts", lambda: fg.optim.sgd(cosine_annealing_warm_restarts(0.1, 10, 2), momentum=0.9,
                                               nesterov=True),
     torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True),
     lambda opt: lr_scheduler.CosineAnnealingWarmRestarts(opt, 10, 2)),
    ("adamw-one_cycle-no-momentum-cycling", lambda: fg.optim.adamw(one_cycle_lr(0.05, OPTIMIZER_STEPS)),
     torch.optim.AdamW, dict(lr=0.05),
     lambda opt: lr_scheduler.OneCycleLR(opt, 0.05, OPTIMIZER_STEPS, cycle_momentum=False)),
    *[(f"adamw-one_cycle-cycled-beta1-{ident}",
       lambda kw=kw: one_cycle_adamw(one_cycle_momentum(OPTIMIZER_STEPS, **kw), **kw),
       torch.optim.AdamW, dict(lr=0.05),
       lambda opt, kw=kw: lr_scheduler.OneCycleLR(opt, 0.05, OPTIMIZER_STEPS, **kw))
      for ident, kw in [("cos", {}), ("linear", dict(anneal_strategy="linear")),
                        ("three_phase", dict(three_phase=True))]],
    ("sgd-one_cycle-cycled-momentum",
     lambda: optax.chain(dampened_trace(one_cycle_momentum(OPTIMIZER_STEPS), 0.0),
                         optax.scale_by_learning_rate(one_cycle_lr(0.1, OPTIMIZER_STEPS))),
     torch.optim.SGD, dict(lr=0.1, momentum=0.9), lambda opt: lr_scheduler.OneCycleLR(opt, 0.1, OPTIMIZER_STEPS)),
]


@DTYPES
@pytest.mark.parametrize("name, ours, optimizer_class, kwargs, scheduler", DRIVEN, ids=[case[0] for case in DRIVEN])
def test_scheduled_optimizer_matches_torch_optimizer_and_scheduler(name, ours, optimizer_class, kwargs, scheduler,
                                                                   dtype):
    initial, grads = np.linspace(-1, 1, 7).astype(dtype), gradient_stream(dtype)
    with jax_precision(dtype):
        got = funcgrad_trajectory(ours(), initial, grads)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        expected = torch_trajectory(optimizer_class, kwargs, initial, grads, scheduler)
    rtol, atol = TOLERANCES[np.dtype(dtype)] if dtype == np.float32 else (1e-12, 1e-12)
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol)


def test_one_cycle_without_its_momentum_is_not_torchs_default():
    # torch's OneCycleLR cycles Adam's β1 unless cycle_momentum=False: a port that passes
    # one_cycle_lr alone, with a fixed β1, leaves torch's default run.
    initial, grads = np.linspace(-1, 1, 7), gradient_stream(np.float64)
    with jax.enable_x64(True):
        fixed = funcgrad_trajectory(fg.optim.adamw(one_cycle_lr(0.05, OPTIMIZER_STEPS)), initial, grads)
    torch_default = torch_trajectory(torch.optim.AdamW, dict(lr=0.05), initial, grads,
                                     lambda opt: lr_scheduler.OneCycleLR(opt, 0.05, OPTIMIZER_STEPS))
    assert np.max(np.abs(fixed - torch_default)) > 1e-3


def test_one_cycle_with_torchs_default_beta1_cycling_is_proven_every_step_through_adamw():
    """torch's OneCycleLR rewrites AdamW's beta1 every step unless cycle_momentum=False:
    fg.optim.adamw takes the cycled beta1 as a schedule, and every synced step agrees."""
    import funcgrad as fg

    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(40, 8, 5)).astype(np.float32), rng.integers(0, 3, (40, 8))
    initial = fg.to_state_dict(fg.linear_init(jax.random.key(0), 5, 3))

    def torch_setup(dtype):
        model = torch.nn.Linear(5, 3).to(torch.float64 if dtype == np.float64 else torch.float32)
        model.load_state_dict({k: torch.tensor(v.astype(dtype)) for k, v in initial.items()})
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
        return model, optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=40)

    optimizer = fg.optim.adamw(fg.optim.one_cycle_lr(1e-2, total_steps=40),
                               betas=(fg.optim.one_cycle_momentum(total_steps=40), 0.999))
    verdicts = fg.assert_same_steps(lambda p, b: fg.cross_entropy(fg.linear_apply(p, b[0]), b[1]), optimizer,
                                    torch_setup, lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1]),
                                    list(zip(x, y)))
    assert all(verdict.passed for verdict in verdicts.values())
