"""torch's learning-rate schedulers as Optax schedules: plain functions of the update count.

torch steps its scheduler after the optimizer, so update ``t`` (from 0) uses the rate after
``t`` scheduler steps: ``schedule(t)``, as ``optax.scale_by_schedule`` reads it. A schedule
computes its rate in the default float (float64 under x64), as torch computes it in
Python's double.

    optimizer = fg.optim.sgd(step_lr(0.1, step_size=30, gamma=0.5), momentum=0.9)
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad import _checks


def step_lr(learning_rate: float, step_size: int, gamma: float = 0.1) -> optax.Schedule:
    """``StepLR(optimizer, step_size, gamma)`` with ``scheduler.step()`` after every update:
    ``lr * gamma ** (t // step_size)``. Stepped once an epoch instead, pass
    ``step_size * steps_per_epoch``. In float32 this is
    ``optax.exponential_decay(lr, step_size, gamma, staircase=True)``; that one stays
    float32 under x64 (Optax divides its int32 count into a float32 exponent), this one
    follows the default float.

    >>> optimizer = fg.optim.sgd(step_lr(0.1, step_size=30, gamma=0.5), momentum=0.9)
    """
    _checks.check_non_negative("step_lr", learning_rate=learning_rate, gamma=gamma)
    _checks.check_positive_int("step_lr", "step_size", step_size)

    def schedule(count):
        decays = jnp.asarray(jnp.floor_divide(count, step_size), default_float())
        return learning_rate * gamma**decays

    return schedule


def cosine_annealing_lr(learning_rate: float, t_max: int, eta_min: float = 0.0) -> optax.Schedule:
    """``CosineAnnealingLR(optimizer, T_max, eta_min)``, stepped after every update:
    ``eta_min + (lr - eta_min) * (1 + cos(pi * t / T_max)) / 2``.

    Up to ``t_max`` this equals ``optax.cosine_decay_schedule(lr, t_max, eta_min / lr)``;
    after it, torch's rate climbs back along the cosine (period ``2 * t_max``) while
    Optax's stays at ``eta_min``. This schedule follows torch on both sides of ``t_max``.

    >>> optimizer = fg.optim.adam(cosine_annealing_lr(1e-3, t_max=100))
    """
    _checks.check_non_negative("cosine_annealing_lr", learning_rate=learning_rate, eta_min=eta_min)
    _checks.check_positive_int("cosine_annealing_lr", "t_max", t_max)

    def schedule(count):
        # (1 + cos(pi t / T)) / 2 = sin^2(pi (T - t mod 2T) / 2T): near the minimum the sine
        # of a small exact angle keeps float32's relative precision, where 1 + cos cancels.
        distance = t_max - jnp.remainder(count, 2 * t_max)
        angle = (math.pi / (2 * t_max)) * jnp.asarray(distance, default_float())
        return eta_min + (learning_rate - eta_min) * jnp.sin(angle) ** 2

    return schedule


# ---- the rest of torch.optim.lr_scheduler ----
#
# Where torch's scheduler is a recursion (LinearLR, MultiStepLR) or has a finite range
# (OneCycleLR, a LambdaLR tabulated for a run), the rates are computed at construction as
# torch computes them, in Python doubles, and the schedule reads them from a table indexed
# by the count: torch's value itself under x64, that value rounded once in float32.


def lambda_lr(
    learning_rate: float, lr_lambda: Callable[[Any], Any], num_steps: int | None = None
) -> optax.Schedule:
    """``LambdaLR(optimizer, lr_lambda)``: ``learning_rate * lr_lambda(t)``.

    A Python function of the step (nanoGPT's ``get_lr``, with its ``if it < warmup_iters``
    and ``math.cos``) cannot run on the traced count inside ``jit``. Two ways:

    - ``num_steps=`` the run's number of updates: ``lr_lambda(t)`` is called in Python for
      every ``t < num_steps`` here, in double as torch calls it, and the schedule looks the
      rate up. A count from ``num_steps`` on has no rate: refused (ValueError) when the
      count is concrete, NaN under ``jit`` (the update turns NaN).
    - without it, ``lr_lambda`` must be written in ``jax.numpy`` (``jnp.where`` for the
      ``if``, ``jnp.cos`` for ``math.cos``): it is called on the count, computing in the
      default float (float32 without x64, where torch's lambda computes in double). It is
      traced once here, so a function that cannot be traced is refused now, naming the fix.

    Optax has no twin; ``optax.join_schedules`` of its schedules covers most such lambdas.

    >>> lr = lambda_lr(6e-4, get_lr_multiplier, num_steps=5000)   # any Python function of it
    >>> lr = lambda_lr(1e-3, lambda t: jnp.minimum((t + 1) / 100, 1.0))   # traceable: no table
    >>> optimizer = fg.optim.adamw(lr, betas=(0.9, 0.95))
    """
    what = "lambda_lr"
    (learning_rate,) = _rates(what, learning_rate=learning_rate)
    if not callable(lr_lambda):
        raise TypeError(f"{what}: lr_lambda must be a function of the step count, got {lr_lambda!r}")
    if num_steps is not None:
        _checks.check_positive_int(what, "num_steps", num_steps)
        rates = [learning_rate * _checks.real_number(what, f"lr_lambda({t})", lr_lambda(t)) for t in range(num_steps)]
        return _table_schedule(what, rates, f"num_steps={num_steps}")
    try:
        shape = jax.eval_shape(lr_lambda, jax.ShapeDtypeStruct((), jnp.int32)).shape
    except (jax.errors.ConcretizationTypeError, jax.errors.TracerIntegerConversionError,
            jax.errors.TracerArrayConversionError) as error:
        raise TypeError(
            f"{what}: lr_lambda cannot run on a traced step count ({type(error).__name__}: a Python "
            f"`if`, `int()`, `math.*` or numpy call on it), so it cannot run under jit. Pass "
            f"num_steps=<the number of updates> to tabulate it in Python, or write it with jax.numpy "
            f"(jnp.where for the `if`, jnp.cos for math.cos)") from error
    if shape != ():
        raise ValueError(f"{what}: lr_lambda must return one multiplier (a scalar), got shape {shape}")

    def schedule(count):
        return learning_rate * jnp.asarray(lr_lambda(count), default_float())

    return schedule


def linear_lr(
    learning_rate: float, start_factor: float = 1.0 / 3, end_factor: float = 1.0, total_iters: int = 5
) -> optax.Schedule:
    """``LinearLR(optimizer, start_factor, end_factor, total_iters)``: the factor goes
    linearly from ``start_factor`` (update 0) to ``end_factor`` (update ``total_iters``
    on), as torch computes it.

    torch's LinearLR is chainable: each step multiplies the current rate by
    ``1 + (end - start) / (total_iters * start + (t - 1) * (end - start))``. In double
    that drifts from the closed form ``lr * (start + (end - start) * t / total_iters)``
    (``optax.linear_schedule(lr * start, lr * end, total_iters)``): by 1 ulp with torch's
    defaults, 21 ulps (2.9e-15 relative) warming up from 0.01 over 300 steps, 40 ulps
    from 0.001 over 1000. This schedule tabulates torch's recursion: torch's rate exactly. ``total_iters=0``
    keeps ``lr * start_factor`` for ever, as torch does (the closed form divides by 0).

    >>> warmup = linear_lr(1e-3, start_factor=0.01, total_iters=100)
    >>> optimizer = fg.optim.adamw(warmup)
    >>> rate = warmup(50)
    """
    what = "linear_lr"
    learning_rate, end_factor = _rates(what, learning_rate=learning_rate, end_factor=end_factor)
    start_factor = _checks.real_number(what, "start_factor", start_factor)
    if not 0.0 < start_factor <= 1.0:
        raise ValueError(f"{what}: start_factor must lie in (0, 1], as torch requires, got {start_factor!r}")
    if end_factor > 1.0:
        raise ValueError(f"{what}: end_factor must lie in [0, 1], as torch requires, got {end_factor!r}")
    if not _checks.is_int(total_iters) or total_iters < 0:
        raise ValueError(f"{what}: total_iters must be an int >= 0, got {total_iters!r}")
    rates = [learning_rate * start_factor]
    for t in range(1, total_iters + 1):
        rates.append(rates[-1] * (1.0 + (end_factor - start_factor) / (
            total_iters * start_factor + (t - 1) * (end_factor - start_factor))))

    def schedule(count):
        return _lookup(rates, jnp.clip(count, 0, total_iters))

    return schedule


def multi_step_lr(learning_rate: float, milestones: Sequence[int], gamma: float = 0.1) -> optax.Schedule:
    """``MultiStepLR(optimizer, milestones, gamma)``: the rate is multiplied by ``gamma`` at
    each milestone (twice at one listed twice, as torch's ``Counter`` does).

    torch multiplies the current rate (``(lr * γ) * γ``, not ``lr * γ**2``); this
    schedule keeps its products, so it is torch's rate exactly.
    ``optax.piecewise_constant_schedule(lr, {m: γ})`` multiplies its scales in the
    rate's dtype (float32 without x64, where torch multiplies in double).

    >>> lr = multi_step_lr(0.1, milestones=[30, 80], gamma=0.1)
    >>> optimizer = fg.optim.sgd(lr, momentum=0.9)
    >>> rate = lr(50)   # 0.01
    """
    what = "multi_step_lr"
    learning_rate, gamma = _rates(what, learning_rate=learning_rate, gamma=gamma)
    milestones = _milestones(what, milestones, strictly=False)
    steps = sorted(set(milestones))
    rates = [learning_rate]
    for step in steps:
        rates.append(rates[-1] * gamma ** milestones.count(step))
    boundaries = np.asarray(steps, np.int32)

    def schedule(count):
        return _lookup(rates, jnp.searchsorted(boundaries, count, side="right"))

    return schedule


def exponential_lr(learning_rate: float, gamma: float) -> optax.Schedule:
    """``ExponentialLR(optimizer, gamma)``: ``lr * gamma ** t``, computed as
    ``lr * exp(t * log(gamma))`` with the log in double.

    torch multiplies the current rate by ``gamma`` each step, rounding once per step: its
    double drifts from the closed form by a few ulps (this is 1.9e-15 relative from it
    by step 300 at γ = 0.99). The exponential keeps float32 within a few
    ulps of torch's rate, where float32's ``gamma ** t`` multiplies γ's rounding error by
    ``t`` (150 ulps by step 300). ``optax.exponential_decay(lr, 1, gamma)`` is that power
    in float32, also under x64. ``gamma`` must be > 0 (torch's 0 zeroes the rate after the
    first update).

    >>> lr = exponential_lr(0.1, gamma=0.99)
    >>> optimizer = fg.optim.sgd(lr)
    >>> rate = lr(100)
    """
    what = "exponential_lr"
    learning_rate, gamma = _rates(what, learning_rate=learning_rate, gamma=gamma)
    if gamma == 0:
        raise ValueError(f"{what}: gamma must be > 0, got {gamma!r}")
    log_gamma = math.log(gamma)

    def schedule(count):
        return learning_rate * jnp.exp(jnp.asarray(count, default_float()) * log_gamma)

    return schedule


def cosine_annealing_warm_restarts(
    learning_rate: float, t_0: int, t_mult: int = 1, eta_min: float = 0.0
) -> optax.Schedule:
    """``CosineAnnealingWarmRestarts(optimizer, T_0, T_mult, eta_min)``, stepped after every
    update: ``eta_min + (lr - eta_min) * (1 + cos(pi * T_cur / T_i)) / 2``, ``T_cur`` the
    updates since the last restart, ``T_i`` the current cycle's length: ``t_0``, then
    ``t_0 * t_mult``, ``t_0 * t_mult**2``...

    torch counts ``T_cur`` in integers (``T_cur + 1``, back to 0 and ``T_i *= T_mult`` on
    reaching ``T_i``); so does this, from the cycles' starts. The rate never reaches
    ``eta_min``: the step that would is the restart, at ``lr``. Optax's twin is
    ``optax.sgdr_schedule`` of ``cosine_decay_schedule`` cycles (whose last step reaches
    ``eta_min``). Under x64 the rate is torch's expression, in its order (within an ulp:
    XLA fuses a multiply and an add into one rounding); in float32, where ``1 + cos``
    cancels near a cycle's end, it is ``sin²`` of the half angle to the end.

    >>> lr = cosine_annealing_warm_restarts(0.1, t_0=10, t_mult=2, eta_min=1e-4)
    >>> optimizer = fg.optim.sgd(lr, momentum=0.9)
    >>> rate = lr(25)
    """
    what = "cosine_annealing_warm_restarts"
    learning_rate, eta_min = _rates(what, learning_rate=learning_rate, eta_min=eta_min)
    _checks.check_positive_int(what, "t_0", t_0)
    _checks.check_positive_int(what, "t_mult", t_mult)
    starts, lengths = [0], [t_0]  # each cycle's first update and length, while int32 counts reach it
    while t_mult > 1 and starts[-1] + lengths[-1] < 2**31:
        starts.append(starts[-1] + lengths[-1])
        lengths.append(lengths[-1] * t_mult)
    starts, lengths = np.asarray(starts, np.int64), np.asarray(lengths, np.float64)

    def schedule(count):
        count = jnp.asarray(count)
        if t_mult == 1:
            t_cur, t_i = jnp.remainder(count, t_0), t_0
        else:
            cycle = jnp.searchsorted(jnp.asarray(starts, count.dtype), count, side="right") - 1
            t_cur, t_i = count - jnp.asarray(starts, count.dtype)[cycle], jnp.asarray(lengths, default_float())[cycle]
        t_cur = jnp.asarray(t_cur, default_float())
        if default_float() == np.float64:  # torch's expression, in torch's order
            return eta_min + (learning_rate - eta_min) * (1 + jnp.cos(math.pi * t_cur / t_i)) / 2
        return eta_min + (learning_rate - eta_min) * jnp.sin((math.pi / 2) * (t_i - t_cur) / t_i) ** 2

    return schedule


def sequential_lr(schedules: Sequence[optax.Schedule], milestones: Sequence[int]) -> optax.Schedule:
    """``SequentialLR(optimizer, schedulers, milestones)``: ``schedules[i]`` from
    ``milestones[i - 1]`` on, counted from 0 there.

    At a milestone torch restarts the next scheduler at 0 (``_update_lr(0)``: its closed
    form at 0, or ``get_lr`` at 0, i.e. ``lr * f(0)``) and steps it from there, the same as
    a scheduler started afresh; a scheduler's own milestones (MultiStepLR's) count from its
    start. That is ``optax.join_schedules(schedules, milestones)``, but for one thing: each
    schedule here is only asked for the counts of its own segment, so a table as long as
    the segment (``lambda_lr(..., num_steps=milestones[0])``) is enough. Measured against
    torch 2.13 for LinearLR→CosineAnnealingLR, LinearLR→ExponentialLR, three schedulers,
    and a first milestone at 0 (the scheduler before it never runs; torch started it
    anyway until pytorch#185986 fixed pytorch#185872).

    >>> warmup = linear_lr(1e-3, start_factor=0.01, total_iters=100)
    >>> lr = sequential_lr([warmup, cosine_annealing_lr(1e-3, t_max=900)], milestones=[100])
    >>> optimizer = fg.optim.adamw(lr)
    """
    what = "sequential_lr"
    schedules = list(schedules)
    if not schedules or not all(callable(s) for s in schedules):
        raise TypeError(f"{what}: schedules must be a non-empty list of schedules (functions of the count)")
    milestones = _milestones(what, milestones, strictly=True)
    if len(milestones) != len(schedules) - 1:
        raise ValueError(f"{what}: {len(schedules)} schedules need {len(schedules) - 1} milestones "
                         f"(one where each after the first starts), got {len(milestones)}")
    starts = [0, *milestones]

    def schedule(count):
        rate = schedules[-1](jnp.maximum(count - starts[-1], 0))
        for earlier, start, end in reversed(list(zip(schedules, starts, starts[1:]))):
            local = jnp.clip(count - start, 0, max(end - start - 1, 0))
            rate = jnp.where(count < end, earlier(local), rate)
        return rate

    return schedule


def one_cycle_lr(
    max_lr: float,
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    div_factor: float = 25.0,
    final_div_factor: float = 1e4,
    three_phase: bool = False,
) -> optax.Schedule:
    """``OneCycleLR(optimizer, max_lr, total_steps, ...)``'s rate: from ``max_lr /
    div_factor`` up to ``max_lr``, then down to ``max_lr / div_factor / final_div_factor``
    (``three_phase``: back to the start first, then down).

    As torch computes them, the phases end at updates ``pct_start * total_steps - 1``
    (then ``2 * pct_start * total_steps - 2`` with ``three_phase``) and ``total_steps -
    1``, floats, not rounded: the peak falls between two updates unless ``pct_start *
    total_steps`` is whole, and update ``total_steps`` (the rate torch holds after its
    last step) lies past the last phase's end, extrapolated. A count past
    ``total_steps`` is refused (ValueError) when concrete, as torch refuses to step
    further, and NaN under ``jit``. ``optax.cosine_onecycle_schedule`` peaks at update
    ``int(pct_start * total_steps)`` and ends on ``total_steps`` exactly.

    torch also cycles the optimizer's momentum by default (``cycle_momentum=True``: Adam's
    β1, SGD's momentum, from ``max_momentum`` down to ``base_momentum`` and back): pass
    :func:`one_cycle_momentum` as β1 or momentum for that; ``cycle_momentum=False`` is
    leaving it out.

    >>> lr = one_cycle_lr(0.01, total_steps=1000)
    >>> b1 = one_cycle_momentum(total_steps=1000)
    >>> optimizer = fg.optim.adamw(lr, betas=(b1, 0.999))
    """
    what = "one_cycle_lr"
    (max_lr,) = _rates(what, max_lr=max_lr)
    for name, value in (("div_factor", div_factor), ("final_div_factor", final_div_factor)):
        if not _checks.real_number(what, name, value) > 0:
            raise ValueError(f"{what}: {name} must be > 0, got {value!r}")
    initial_lr = max_lr / div_factor
    min_lr = initial_lr / final_div_factor
    ends = (initial_lr, max_lr, initial_lr, min_lr) if three_phase else (initial_lr, max_lr, min_lr)
    rates = _one_cycle(what, total_steps, pct_start, anneal_strategy, three_phase, ends)
    return _table_schedule(what, rates, f"total_steps={total_steps}")


def one_cycle_momentum(
    total_steps: int,
    pct_start: float = 0.3,
    anneal_strategy: str = "cos",
    base_momentum: float = 0.85,
    max_momentum: float = 0.95,
    three_phase: bool = False,
) -> optax.Schedule:
    """The momentum ``OneCycleLR`` (``cycle_momentum=True``, its default) writes into the
    optimizer each step, inverse to :func:`one_cycle_lr`'s rate (same phases, same
    ``total_steps`` and refusal past it): ``max_momentum`` down to ``base_momentum`` at
    the peak rate, back up to ``max_momentum`` (and, ``three_phase``, held there).

    Pass it where torch's scheduler rewrites: Adam's and AdamW's ``betas[0]`` (torch's
    step uses the current β1 in ``exp_avg.lerp_(grad, 1 - β1)`` and in the bias
    correction ``1 - β1 ** step``, the current β1 to the power of the step, not a product
    of the past β1s; :func:`~funcgrad.optim.scale_by_torch_adam` does the same), or SGD's
    ``momentum`` (:func:`~funcgrad.optim.dampened_trace`). Optax has no twin.

    >>> b1 = one_cycle_momentum(total_steps=1000)
    >>> optimizer = optax.chain(fg.optim.scale_by_torch_adam(b1), optax.scale_by_learning_rate(lr))
    >>> beta1 = b1(300)   # base_momentum, at the peak rate
    """
    what = "one_cycle_momentum"
    base_momentum, max_momentum = _rates(what, base_momentum=base_momentum, max_momentum=max_momentum)
    ends = ((max_momentum, base_momentum, max_momentum, max_momentum) if three_phase
            else (max_momentum, base_momentum, max_momentum))
    momenta = _one_cycle(what, total_steps, pct_start, anneal_strategy, three_phase, ends)
    return _table_schedule(what, momenta, f"total_steps={total_steps}")


def _one_cycle(what, total_steps, pct_start, anneal_strategy, three_phase, ends) -> list[float]:
    """OneCycleLR's ``get_lr`` for steps 0..total_steps, in its arithmetic; ``ends`` are the
    values at the phases' boundaries (phase ``i`` goes from ``ends[i]`` to ``ends[i + 1]``)."""
    _checks.check_positive_int(what, "total_steps", total_steps)
    pct_start = _checks.real_number(what, "pct_start", pct_start)
    if not 0.0 <= pct_start <= 1.0:
        raise ValueError(f"{what}: pct_start must lie in [0, 1], got {pct_start!r}")
    if anneal_strategy not in ("cos", "linear"):
        raise ValueError(f"{what}: anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
    phase_ends = [float(pct_start * total_steps) - 1]
    if three_phase:
        phase_ends.append(float(2 * pct_start * total_steps) - 2)
    phase_ends.append(total_steps - 1)
    values = []
    for step in range(total_steps + 1):
        start_step = 0.0
        for i, end_step in enumerate(phase_ends):
            if step <= end_step or i == len(phase_ends) - 1:
                if end_step == start_step:
                    raise ValueError(
                        f"{what}: pct_start={pct_start} with total_steps={total_steps} makes phase {i} "
                        f"zero steps long, where torch's OneCycleLR divides by zero: change pct_start")
                pct = (step - start_step) / (end_step - start_step)
                start, end = ends[i], ends[i + 1]
                if anneal_strategy == "cos":
                    values.append(end + (start - end) / 2.0 * (math.cos(math.pi * pct) + 1))
                else:
                    values.append((end - start) * pct + start)
                break
            start_step = end_step
    return values


def _table_schedule(what: str, values: Sequence[float], bound: str) -> optax.Schedule:
    """A schedule reading ``values[count]``; a count past them has no value: refused when
    concrete, NaN under ``jit`` (where nothing can raise)."""
    padded = [*values, math.nan]

    def schedule(count):
        if _checks.is_concrete(count) and np.any(np.asarray(count) >= len(values)):
            raise ValueError(f"{what}: count {np.max(np.asarray(count))} is past the schedule's last "
                             f"update, {len(values) - 1} ({bound})")
        return _lookup(padded, jnp.clip(count, 0, len(values)))

    return schedule


def _lookup(values: Sequence[float], index) -> jax.Array:
    """``values[index]``, the Python doubles rounded once to the default float."""
    return jnp.asarray(np.asarray(values, np.float64), default_float())[index]


def _rates(what: str, **values) -> list[float]:
    """Each value a real number >= 0 (NaN refused), as a float."""
    _checks.check_non_negative(what, **{name: _checks.real_number(what, name, v) for name, v in values.items()})
    return [float(v) for v in values.values()]


def _milestones(what: str, milestones, *, strictly: bool) -> list[int]:
    """Ints >= 0 in increasing order (non-decreasing unless ``strictly``)."""
    milestones = list(milestones)
    if not all(_checks.is_int(m) and m >= 0 for m in milestones):
        raise ValueError(f"{what}: milestones must be ints >= 0, got {milestones!r}")
    pairs = list(zip(milestones, milestones[1:]))
    if any(b < a or (strictly and b == a) for a, b in pairs):
        order = "increasing" if strictly else "non-decreasing"
        raise ValueError(f"{what}: milestones must be {order}, got {milestones!r}")
    return [int(m) for m in milestones]


def default_float():
    """float64 with x64 on, else float32: the dtype a schedule computes its rate in."""
    return jax.dtypes.canonicalize_dtype(jnp.float64)
