"""The step-synchronized verdict: every step of a torch run replayed in JAX from torch's
exact state, so that one step's error is seen without the drift of the steps before it.

A long non-convex float32 run parts from its twin at a ReLU kink even when every step is
right: XLA's and ATen's kernels round differently, one run crosses the kink and the other
does not, and from there the gap grows by a steady factor a step. A verdict on the whole
run cannot tell that from a porting bug. Here, at every step (or every ``every``-th), the
JAX step starts from torch's parameters, buffers, optimizer state and schedule position, on
the same batch, and three stages are judged one after another:

- **forward**: the loss at the same weights (and the buffers it updates, BatchNorm's);
- **gradient**: every parameter's gradient (reported nearest the output first: backprop
  carries an error to every earlier layer, so the one nearest the output is where to look);
- **optimizer**: every parameter's new value and every field of the optimizer state,
  updated from torch's gradients, so that each stage is judged on the same inputs.

float64 is held to the direct rule (1e-10). float32 is judged by the band
(:mod:`funcgrad.parity.band`): torch's distance to its float64 step *from the same float32
state*, and JAX's to its own float64 step from that state (which must equal torch's by the
float64 rule), so nothing can amplify and neither side is credited with the other's
summation order; each element's envelope is torch's largest distance there over the last 10
synced steps, and the factor is ``SYNCED_BAND_FACTOR`` (8). The same torch runs give the
whole-run comparison too: a float32 whole run that leaves its band while every synced step
agrees (and float64 agrees) is reported as rounding amplified by the model, not as a
difference.

What you write: your torch set-up and loss, and your JAX loss and optimizer::

    def torch_setup(dtype):                      # the model, optimizer and scheduler, in dtype
        model = make_model().to(torch_dtype(dtype)); model.load_state_dict(initial)
        optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
        return model, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, 50)

    def torch_loss(model, batch):                # the forward pass and loss of one step
        x, y = batch
        return criterion(model(x), y)

    report = assert_same_steps(loss_fn, fg.optim.sgd(schedule, momentum=0.9),
                               torch_setup, torch_loss, batches)

The harness runs torch's step itself (``zero_grad``, ``backward``, ``optimizer.step()``,
then ``scheduler.step()``), so every batch is met the same way on both sides.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, Callable, Iterable

import jax
import numpy as np
import optax

from funcgrad import _checks
from funcgrad.optim import torch_state
from funcgrad.parity import band, locate, replay, report
from funcgrad.parity.quantities import Quantity, StepJudge, compare_results
from funcgrad.parity.runs import LOSSES, final_weights, recorded_run
from funcgrad.parity.values import DTYPES, dtype_names, unwrap
from funcgrad.state_dict import to_state_dict
from funcgrad.types import LossFn

# A float32 step's gradient can leave its band at a discontinuity: where a max-pool window
# holds a near-tie (or a ReLU input sits at 0), float32 rounding decides which element gets
# the gradient, and each framework's rounding may decide differently. mnist-cnn met one in
# 100 steps: conv1's weight gradient 364x its band at one step, every other quantity in
# band, JAX's float64 step from the same state equal to torch's. Such a step is reported,
# not failed, when only gradients leave the band, the float64 steps from the same state
# agree (the algorithm is the same) and at most this fraction of the synced steps does so;
# a float32-only bug that shows at more steps fails.
MAX_DISCONTINUITY_FRACTION = 0.05


@dataclasses.dataclass
class StepVerdict:
    """One dtype's verdict: per quantity over the synced steps, the whole runs, and where
    the first synced step failed (stage and parameter) or where the whole runs separate."""

    dtype: str
    synced: list[Quantity]
    whole_run: list[Quantity]
    synced_steps: int
    first_failure: str | None  # "float64, step 0: the gradient of 2.bias differs (...)"
    separation: int | None  # first step the whole runs leave their band, float32 only
    passed: bool
    summary: str
    # Each whole run's final parameters and buffers, state_dict-keyed numpy: "jax", "torch",
    # and for float32 "reference" (torch's float64 run), to test the trained models on.
    final_weights: dict = dataclasses.field(default_factory=dict, repr=False)


def assert_same_steps(
    jax_loss: LossFn,
    jax_optimizer: optax.GradientTransformation,
    torch_setup: Callable[[np.dtype], tuple],
    torch_loss: Callable[[Any, tuple], Any],
    batches: Iterable[tuple],
    dtypes: Iterable[str] | str = DTYPES,
    every: int = 1,
    stateful: bool = False,
    start_step: int = 0,
    *,
    torch_after_backward: Callable[[Any], Any] | None = None,
    framework_names: Mapping[str, str] | None = None,
    jax_taps: Callable | None = None,
) -> dict[str, StepVerdict]:
    """:func:`compare_steps`, raising :class:`~funcgrad.ParityError` when a dtype fails:
    its message names the dtype, step, stage and parameter of the first synced step that
    differs, or a float64 whole-run difference.

    >>> verdicts = assert_same_steps(loss_fn, optimizer, torch_setup, torch_loss, batches)
    >>> print(verdicts["float32"].summary)
    """
    verdicts = compare_steps(jax_loss, jax_optimizer, torch_setup, torch_loss, batches, dtypes, every, stateful,
                             start_step, torch_after_backward=torch_after_backward, framework_names=framework_names,
                             jax_taps=jax_taps)
    failed = [v for v in verdicts.values() if not v.passed]
    if failed:
        raise report.ParityError("\n".join(v.summary for v in failed),
                                 [row for v in failed for row in v.synced + v.whole_run])
    return verdicts


def compare_steps(
    jax_loss: LossFn,
    jax_optimizer: optax.GradientTransformation,
    torch_setup: Callable[[np.dtype], tuple],
    torch_loss: Callable[[Any, tuple], Any],
    batches: Iterable[tuple],
    dtypes: Iterable[str] | str = DTYPES,
    every: int = 1,
    stateful: bool = False,
    start_step: int = 0,
    *,
    torch_after_backward: Callable[[Any], Any] | None = None,
    framework_names: Mapping[str, str] | None = None,
    jax_taps: Callable | None = None,
) -> dict[str, StepVerdict]:
    """Replay every ``every``-th step of the torch run in JAX from torch's exact state and
    judge each stage; compare the whole runs too. Returns ``{dtype: StepVerdict}``.

    Args:
      jax_loss, jax_optimizer: the port, ``loss_fn(params, batch)`` and an fg.optim optimizer.
      torch_setup: ``dtype -> (model, optimizer)`` or ``(model, optimizer, scheduler)``, fresh,
        from the shared initial weights (draw them once, in float32, and cast), or restored
        from a checkpoint after ``start_step`` updates.
      torch_loss: ``(model, batch) -> loss tensor`` on a batch of torch tensors.
      batches: the batches in order, each a tuple of numpy arrays (floats are cast to the
        dtype, integers kept), as both sides meet them. A batch may carry what else a step
        reads, such as its dropout key (``jax.random.key_data``, for
        :func:`funcgrad.layers.replay_dropout` on the torch side).
      dtypes: ``"float64"``, ``"float32"`` or both (float64 first: its torch run is the
        float32 verdict's reference).
      every: sync every ``every``-th step (the others run on torch's side only).
      stateful: the model has buffers (BatchNorm's running statistics), updated by the
        forward pass in train mode: ``jax_loss(params, buffers, batch) -> (loss,
        new_buffers)``, the buffers keyed as the model's ``state_dict``. Each synced step
        starts from torch's buffers too, and the forward stage judges the new buffers
        beside the loss (``num_batches_tracked`` exactly).
      start_step: the updates torch's objects have applied already (a checkpoint's): step
        numbers, optimizer counts and schedules continue from it, and the JAX whole run
        starts from torch's state there. ``batches`` are the ones after it.
      torch_after_backward: called with the torch model after ``backward()`` and before
        ``optimizer.step()``, as a loop clips there (``lambda model:
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)``); the gradient stage is
        judged on the gradients before it (the port clips in its optimizer:
        ``fg.optim.clip_grad_norm`` chained first).
      framework_names: torch key -> the port's own name for it (a Flax or Equinox port:
        ``fg.interop.framework_names(flax_nnx.pairs(model, modules=...))``); the first failure
        names both: ``the gradient of features.0.weight / conv1.kernel differs``.
      jax_taps: ``(params, buffers, batch) -> {torch module path: output}`` (the port's
        module outputs in torch's layout: ``fg.interop.flax_nnx.taps``,
        ``fg.interop.equinox.taps``). When a step's loss differs at the same weights, that
        step's forward pass is rerun in float64 from torch's state, torch's modules read with
        forward hooks, and the verdict names the first module whose output differs
        (:mod:`funcgrad.parity.locate`).

    >>> verdicts = compare_steps(loss_fn, optimizer, torch_setup, torch_loss, batches)
    >>> verdicts["float32"].passed, verdicts["float32"].separation
    (True, 724)
    """
    what = "compare_steps"
    batches = _check_arguments(what, jax_loss, jax_optimizer, torch_setup, torch_loss, batches, every, stateful,
                               start_step, torch_after_backward)
    if jax_taps is not None and not callable(jax_taps):
        raise TypeError(f"{what}: jax_taps must be a function (params, buffers, batch) -> {{module: output}}, got "
                        f"{type(jax_taps).__name__}")
    if framework_names is not None and not (isinstance(framework_names, Mapping) and all(
            isinstance(key, str) and isinstance(value, str) for key, value in framework_names.items())):
        raise TypeError(f"{what}: framework_names must map torch keys to the port's names (str to str), got "
                        f"{framework_names!r:.200}")
    names = dtype_names(what, dtypes)
    step_fn = replay.jax_step(jax_loss, jax_optimizer, stateful)
    run = _Replay(what, step_fn, jax_loss, jax_optimizer, torch_setup, torch_loss, batches, every, stateful,
                  start_step, torch_after_backward)
    verdicts, reference_run, located = {}, None, {}
    for name in sorted(names, key=DTYPES.index):
        dtype = np.dtype(name)
        if dtype == np.float32 and reference_run is None:
            reference_run = run.torch_run(np.dtype(np.float64))
        judge = StepJudge(dtype)
        torch_run, initial, stages = run.synced(dtype, judge)
        if dtype == np.float64:
            reference_run = torch_run
        jax_run = run.free_jax_run(dtype, initial, stages)
        verdicts[name] = _verdict(name, judge, torch_run, jax_run, reference_run if dtype == np.float32 else None,
                                  framework_names or {})
        first = _first_failing_step(dtype, judge)
        if jax_taps is not None and first is not None and "forward/loss" in judge.failures[first]:
            if first not in located:
                located[first] = locate.first_differing_module(
                    what, torch_setup, torch_loss, batches, first - start_step, stateful, torch_after_backward,
                    jax_taps, locate.module_names(framework_names or {}))
            verdict, alone = verdicts[name], verdicts[name].first_failure
            verdict.first_failure = f"{alone}; {located[first]}"
            verdict.summary = verdict.first_failure + verdict.summary[len(alone):]
        runs = {"jax": jax_run, "torch": torch_run} | ({"reference": reference_run} if dtype == np.float32 else {})
        verdicts[name].final_weights = {side: final_weights(whole) for side, whole in runs.items()}
    return {name: verdicts[name] for name in names}


def floor(
    jax_loss: LossFn,
    jax_optimizer: optax.GradientTransformation,
    torch_setup: Callable[[np.dtype], tuple],
    torch_loss: Callable[[Any, tuple], Any],
    batches: Iterable[tuple],
    dtypes: Iterable[str] | str = DTYPES,
    every: int = 1,
    stateful: bool = False,
    start_step: int = 0,
    *,
    torch_after_backward: Callable[[Any], Any] | None = None,
) -> None:
    """Every step :func:`compare_steps` runs with the same arguments, and nothing it runs
    only to judge: torch's run in each dtype (a float32 run's float64 reference too),
    torch's float64 step from each float32 state, the JAX steps from torch's state (the
    state to the device and back once a step), the JAX whole runs. What a verdict costs
    over this is what judging costs (``python -m compare.bench`` prints the ratio).

    >>> floor(loss_fn, optimizer, torch_setup, torch_loss, batches)
    """
    what = "compare_steps"
    batches = _check_arguments(what, jax_loss, jax_optimizer, torch_setup, torch_loss, batches, every, stateful,
                               start_step, torch_after_backward)
    names = dtype_names(what, dtypes)
    run = _Replay(what, replay.jax_step(jax_loss, jax_optimizer, stateful), jax_loss, jax_optimizer, torch_setup,
                  torch_loss, batches, every, stateful, start_step, torch_after_backward)
    for name in sorted(names, key=DTYPES.index):
        if name == "float32" and "float64" not in names:
            run.torch_run(np.dtype(np.float64))
        _, initial, stages = run.synced(np.dtype(name), None)
        run.free_jax_run(np.dtype(name), initial, stages)


def _check_arguments(what, jax_loss, jax_optimizer, torch_setup, torch_loss, batches, every, stateful,
                     start_step, torch_after_backward) -> list[tuple]:
    """Every argument checked before anything runs; the batches as tuples of numpy arrays."""
    if torch_after_backward is not None and not callable(torch_after_backward):
        raise TypeError(f"{what}: torch_after_backward must be a function of the torch model (or None), got "
                        f"{type(torch_after_backward).__name__}")
    for name, value in (("jax_loss", jax_loss), ("torch_setup", torch_setup), ("torch_loss", torch_loss)):
        if not callable(value):
            raise TypeError(f"{what}: {name} must be a function, got {type(value).__name__}")
    if not isinstance(jax_optimizer, optax.GradientTransformation):
        raise TypeError(f"{what}: jax_optimizer must be an optax.GradientTransformation (fg.optim.sgd(...), ...), "
                        f"got {type(jax_optimizer).__name__}")
    if not _checks.is_int(every) or every < 1:
        raise ValueError(f"{what}: every must be a positive number of steps, got {every!r}")
    if not _checks.is_int(start_step) or start_step < 0:
        raise ValueError(f"{what}: start_step must be the number of updates torch applied before these batches, "
                         f"an int >= 0, got {start_step!r}")
    if not isinstance(stateful, bool):
        raise TypeError(f"{what}: stateful must be True or False, got {stateful!r}")
    checked = []
    for t, batch in enumerate(batches):
        if not isinstance(batch, (tuple, list)):
            raise TypeError(f"{what}: batch {t} must be a tuple of arrays (x, y, ...), got {type(batch).__name__}")
        checked.append(tuple(np.asarray(part) for part in batch))
    if not checked:
        raise ValueError(f"{what}: no batches: give the batches of every step, in order")
    return checked


class _Replay:
    """The runs one verdict needs, sharing what they have in common: torch's run in each
    dtype (synced at every ``every``-th step), torch's float64 twin of each float32 step,
    and the JAX steps from torch's state."""

    def __init__(self, what, step_fn, jax_loss, optimizer, torch_setup, torch_loss, batches, every, stateful,
                 start_step, after_backward):
        self.what, self.step_fn, self.jax_loss, self.optimizer = what, step_fn, jax_loss, optimizer
        self.torch_setup, self.torch_loss, self.batches = torch_setup, torch_loss, batches
        self.every, self.stateful, self.start_step = every, stateful, start_step
        self.after_backward = after_backward

    def objects(self, dtype) -> replay.TorchObjects:
        return replay.torch_objects(self.what, self.torch_setup, dtype, self.stateful)

    def stages(self, objects: replay.TorchObjects, state: replay.Snapshot, dtype) -> replay.Stages:
        """The stage keys and the optimizer state's plan, from ``optimizer.init`` in ``dtype``."""
        with jax.enable_x64(dtype == np.float64):
            template = self.optimizer.init(replay.jax_params(state, dtype))
        return replay.Stages(objects.names, objects.buffer_names,
                             torch_state.state_plan(self.what, template, objects.names))

    def _torch_step(self, objects: replay.TorchObjects, batch: tuple, dtype) -> tuple:
        return replay.torch_step(objects, self.torch_loss, replay.torch_batch(batch, dtype), self.after_backward)

    def torch_run(self, dtype) -> dict:
        """A whole torch run, unsynced: its losses, final parameters and buffers."""
        objects = self.objects(dtype)
        losses = [self._torch_step(objects, batch, dtype)[0] for batch in self.batches]
        end = replay.snapshot(objects)
        return recorded_run(np.stack(losses), end.params, end.buffers)

    def synced(self, dtype, judge: StepJudge | None) -> tuple[dict, replay.Snapshot, replay.Stages]:
        """torch's run in ``dtype``; at each synced step the JAX step (and, for float32, both
        frameworks' float64 steps) from torch's state before it, handed to ``judge`` at once
        (a step's arrays are not kept: a large model's would fill memory over a long run).
        Without a judge the same steps run and nothing is read for judging: the floor of
        what a verdict costs (:func:`floor`). Returns torch's whole run, its state at the
        start, and the stages it was read in."""
        objects = self.objects(dtype)
        twin = self.objects(np.dtype(np.float64)) if dtype == np.float32 else None
        initial = before = replay.snapshot(objects)
        stages = self.stages(objects, initial, dtype)
        stages64 = self.stages(twin, initial, np.dtype(np.float64)) if twin else None
        torch_state.check_param_groups(self.what, objects.optimizer.state_dict()["param_groups"], objects.names)
        losses = []
        for i, batch in enumerate(self.batches):
            t, synced = self.start_step + i, i % self.every == 0
            if synced and before is None:
                before = replay.snapshot(objects)
            loss, grads = self._torch_step(objects, batch, dtype)
            losses.append(loss)
            if not synced:
                before = None
                continue
            after = replay.snapshot(objects)
            if i == 0:
                self._check_port(stages.plan, before, batch, t, dtype)
            jax_outputs = self._jax_outputs(stages, before, batch, t, dtype, grads)
            if twin is not None:
                replay.restore(twin, before)
                loss64, grads64 = self._torch_step(twin, batch, np.dtype(np.float64))
                jax_outputs64 = self._jax_outputs(stages64, before, batch, t, np.dtype(np.float64), grads64)
            if judge is not None:
                torch_state.check_held(self.what, stages.plan, before.held, t)
                reference = jax_reference = None
                if twin is not None:
                    reference = stages64.torch_results(twin, loss64, grads64, replay.snapshot(twin), t + 1)
                    jax_reference = stages64.jax_results(jax_outputs64)
                judge.add(t, stages.jax_results(jax_outputs), stages.torch_results(objects, loss, grads, after, t + 1),
                          reference, jax_reference)
            before = after
        end = replay.snapshot(objects)
        return recorded_run(np.stack(losses), end.params, end.buffers), initial, stages

    def _check_port(self, plan, state: replay.Snapshot, batch, t: int, dtype) -> None:
        with jax.enable_x64(dtype == np.float64):
            params, buffers, _ = replay.jax_inputs(plan, state, t, dtype)
            replay.check_port(self.what, self.jax_loss, self.stateful, params, buffers, replay.in_dtype(batch, dtype))

    def _jax_outputs(self, stages: replay.Stages, state: replay.Snapshot, batch, t: int, dtype, torch_grads):
        """The JAX step in ``dtype`` from torch's ``state`` before update ``t``, its optimizer
        updating ``torch_grads``; its outputs fetched to the host in one call."""
        with jax.enable_x64(dtype == np.float64):
            inputs = replay.jax_inputs(stages.plan, state, t, dtype)
            given = replay.in_dtype_dict(torch_grads, dtype)
            return jax.device_get(self.step_fn.synced(*inputs, replay.in_dtype(batch, dtype), given))

    def free_jax_run(self, dtype, initial: replay.Snapshot, stages: replay.Stages) -> dict:
        """The port on its own from torch's state at the start, over the same batches: its whole run."""
        with jax.enable_x64(dtype == np.float64):
            params, buffers, opt_state = jax.device_put(replay.jax_inputs(stages.plan, initial, self.start_step, dtype))
            no_grads = jax.device_put({name: np.zeros(value.shape, dtype) for name, value in initial.params.items()})
            losses = []
            for batch in self.batches:
                loss, buffers, _, params, opt_state = self.step_fn.free(params, buffers, opt_state,
                                                                        replay.in_dtype(batch, dtype), no_grads)
                losses.append(loss)
            losses, params, buffers = jax.device_get((losses, params, buffers))
        return recorded_run(np.stack(losses), to_state_dict(params), to_state_dict(buffers))


def _verdict(dtype_name: str, judge: StepJudge, torch_run: dict, jax_run: dict, reference_run: dict | None,
             framework_names: Mapping[str, str] = {}) -> StepVerdict:
    """One dtype's verdict from its judged synced steps and the two whole runs.

    Whole runs that differ while every synced step agrees are rounding amplified by the
    model: reported, as information, in float32; in float64 only if every step's loss
    agrees as well (else they fail). float64 runs part where the model amplifies rounding
    without bound: Adam's steps on a parameter the loss does not depend on (a bias before
    a BatchNorm, whose gradient is zero but for rounding) follow the rounding, which
    differs between frameworks, and the BatchNorm's running mean follows that bias."""
    dtype = np.dtype(dtype_name)
    judge.flush()
    steps = len(judge.steps)
    kinks = _discontinuities(dtype, judge)
    synced = judge.rows(kinks)
    first = _first_failing_step(dtype, judge)
    first_failure = None if first is None else report.first_failure(
        dtype_name, first, judge.keys, set(judge.failures[first]), _named(judge.keys, framework_names))
    whole_run = compare_results(jax_run, torch_run, dtype, reference_run)
    whole_passed = all(row.passed for row in whole_run)
    separation = min((row.first_divergence for row in whole_run if row.first_divergence is not None), default=None)
    if first_failure is not None:
        passed, summary = False, first_failure
    elif whole_passed:
        passed, summary = True, report.steps_agree(dtype_name, steps)
    elif dtype == np.float32:
        passed, summary = True, report.whole_runs_separate(dtype_name, separation, steps)
        whole_run = report.as_information(whole_run, report.SEPARATE)
    elif all(row.passed for row in whole_run if row.name == LOSSES):
        differing = [row.name.split("/", 1)[-1] for row in whole_run if not row.passed]
        idle = [name for name in differing
                if judge.largest_gradient.get(name, np.inf) <= band.TOLERANCES[dtype][1]]
        passed, summary = True, report.final_values_part(dtype_name, differing, idle, steps)
        whole_run = report.as_information(whole_run, report.SEPARATE)
    else:
        passed, summary = False, report.whole_runs_differ(dtype_name, whole_run)
    if kinks and first_failure is None:
        summary += report.discontinuities(sorted(kinks))
    summary += report.nonfinite_note(_first_nonfinite({"jax": jax_run, "torch": torch_run}))
    return StepVerdict(dtype_name, synced, whole_run, steps, first_failure,
                       separation if not whole_passed else None, passed, summary)


def _first_failing_step(dtype, judge: StepJudge) -> int | None:
    """The first synced step that fails, a discontinuity's steps aside."""
    kinks = _discontinuities(np.dtype(dtype), judge)
    return next((t for t in judge.steps if t in judge.failures and t not in kinks), None)


def _named(keys: list[str], framework_names: Mapping[str, str]) -> dict[str, str]:
    """Each step quantity's key -> its parameter's or buffer's name in the port's framework:
    ``gradient/0.weight``, ``forward/new 1.running_mean``, ``optimizer/mu of 0.weight``."""
    named = {}
    for key in keys:
        label = key.split("/", 1)[1]
        torch_key = label.rpartition(" of ")[2] if " of " in label else label.removeprefix("new ")
        if torch_key in framework_names:
            named[key] = framework_names[torch_key]
    return named


def _first_nonfinite(runs: dict) -> dict[str, int]:
    """Each run's first step whose loss is not finite, for those that have one."""
    steps = {}
    for side, run in runs.items():
        bad = np.flatnonzero(~np.isfinite(np.asarray(unwrap(run[LOSSES]))))
        if bad.size:
            steps[side] = int(bad[0])
    return steps


def _discontinuities(dtype, judge: StepJudge) -> set[int]:
    """The float32 synced steps at which only gradients left their band, by the band alone
    (no non-finite value, the float64 steps from the same state agreeing): rounding at a
    discontinuity of the gradient (see ``MAX_DISCONTINUITY_FRACTION``). Empty in float64,
    or where more steps than that fraction fail so."""
    if dtype != np.float32:
        return set()
    steps = {t for t, failed in judge.failures.items()
             if all(key.startswith("gradient/") and has_reference and not note
                    for key, (has_reference, note) in failed.items())}
    return steps if len(steps) <= MAX_DISCONTINUITY_FRACTION * len(judge.steps) else set()


def with_trained_models(verdict: StepVerdict, jax_results: dict, torch_results: dict,
                        reference: dict | None = None) -> StepVerdict:
    """``verdict`` with its trained models' results judged beside its whole runs (each
    side's test logits, accuracy...: ``jax_results`` from the JAX run's final weights,
    ``torch_results`` from torch's, ``reference`` from torch's float64 run for float32).
    Where the float32 whole runs part while every synced step agrees, what the trained
    models give is information, as the runs' rows are; else a failing row fails the verdict.

    >>> verdict = with_trained_models(verdicts["float32"], evaluate(jax_weights), evaluate(torch_weights),
    ...                               evaluate(torch_float64_weights))
    """
    dtype = np.dtype(verdict.dtype)
    rows = compare_results(jax_results, torch_results, dtype, reference if dtype == np.float32 else None)
    if any(report.is_information(row) for row in verdict.whole_run):
        rows = report.as_information(rows, report.TRAINED_AS_RUNS)
    failing = [row for row in rows if not row.passed]
    passed, summary = verdict.passed, verdict.summary
    if failing and verdict.passed:
        passed, summary = False, report.trained_models_differ(verdict.dtype, failing)
    return dataclasses.replace(verdict, whole_run=verdict.whole_run + rows, passed=passed, summary=summary)
