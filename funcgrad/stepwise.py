"""The step-synchronized verdict: every step of a torch run replayed in JAX from torch's
exact state, so that one step's error is seen without the drift of the steps before it.

A long non-convex float32 run parts from its twin at a ReLU kink even when every step is
right: XLA's and ATen's kernels round differently, one run crosses the kink and the other
does not, and from there the gap grows by a steady factor a step. A verdict on the whole
run cannot tell that from a porting bug. Here, at every step (or every ``every``-th), the
JAX step starts from torch's parameters, optimizer state and schedule position, on the
same batch, and three stages are judged one after another:

- **forward**: the loss at the same weights (and the buffers it updates, BatchNorm's);
- **gradient**: every parameter's gradient (reported nearest the output first: backprop
  carries an error to every earlier layer, so the one nearest the output is where to look);
- **optimizer**: every parameter's new value and every field of the optimizer state,
  updated from torch's gradients, so that each stage is judged on the same inputs.

float64 is held to the direct rule (1e-10). float32 is judged by the error model
(:mod:`funcgrad.parity`): torch's distance to its float64 step *from the same float32
state*, and JAX's to its own float64 step from that state (which must equal torch's by the
float64 rule), so nothing can amplify and neither side is credited with the other's
summation order. Each element's noise is torch's largest distance there over the last 10
synced steps, as a history's band has a trailing window, and the factor is
``SYNCED_BAND_FACTOR`` (8; see there why not 4). The same torch runs give the whole-run comparison too: a float32
whole run that leaves its band while every synced step agrees (and float64 agrees) is
reported as rounding amplified by the model, not as a difference.

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

import collections
import copy
import dataclasses
from typing import Any, Callable, Iterable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad import parity
from funcgrad.nn import from_state_dict, to_state_dict
from funcgrad.optim_state import state_from_torch
from funcgrad.porting import DTYPES, ParityError
from funcgrad.types import LossFn

STAGES = ("forward", "gradient", "optimizer")
# The float32 error model's factor for one step from a shared state. A whole run's factor
# (parity.BAND_FACTOR, 4) was measured where amplification dominates; one step shows each
# kernel's own rounding. On XLA's SSE4.2 corner and the AVX2+avx2 corner, the output
# layer's gradients and momentum buffers of digits-mlp-synced needed 5.0x and 5.4x, and no
# other: XLA's float32 step was that much further from float64 than torch's at a few
# elements, while JAX's own float64 step equals torch's (to 1e-10), so the algorithm is the
# same. 8 leaves that margin the whole-run factor leaves over its worst (4 over 2.5); every
# stepwise mutant is caught by orders of magnitude more (compare/stepwise_mutants.py).
SYNCED_BAND_FACTOR = 8.0
# Marks a whole-run row that left its band where every synced step agrees: shown, not failed.
INFORMATION = "(information)"
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
    synced: list[parity.Quantity]
    whole_run: list[parity.Quantity]
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
    dtypes: Iterable[str] = DTYPES,
    every: int = 1,
    stateful: bool = False,
) -> dict[str, StepVerdict]:
    """:func:`compare_steps`, raising :class:`~funcgrad.ParityError` when a dtype fails:
    its message names the dtype, step, stage and parameter of the first synced step that
    differs, or a float64 whole-run difference.

    >>> verdicts = assert_same_steps(loss_fn, optimizer, torch_setup, torch_loss, batches)
    >>> print(verdicts["float32"].summary)
    """
    verdicts = compare_steps(jax_loss, jax_optimizer, torch_setup, torch_loss, batches, dtypes, every, stateful)
    failed = [v for v in verdicts.values() if not v.passed]
    if failed:
        raise ParityError("\n".join(v.summary for v in failed),
                          [row for v in failed for row in v.synced + v.whole_run])
    return verdicts


def compare_steps(
    jax_loss: LossFn,
    jax_optimizer: optax.GradientTransformation,
    torch_setup: Callable[[np.dtype], tuple],
    torch_loss: Callable[[Any, tuple], Any],
    batches: Iterable[tuple],
    dtypes: Iterable[str] = DTYPES,
    every: int = 1,
    stateful: bool = False,
) -> dict[str, StepVerdict]:
    """Replay every ``every``-th step of the torch run in JAX from torch's exact state and
    judge each stage; compare the whole runs too. Returns ``{dtype: StepVerdict}``.

    Args:
      jax_loss, jax_optimizer: the port, ``loss_fn(params, batch)`` and an fg.optim optimizer.
      torch_setup: ``dtype -> (model, optimizer)`` or ``(model, optimizer, scheduler)``, fresh,
        from the shared initial weights (draw them once, in float32, and cast).
      torch_loss: ``(model, batch) -> loss tensor`` on a batch of torch tensors.
      batches: the batches in order, each a tuple of numpy arrays (floats are cast to the
        dtype, integers kept), as both sides meet them. A batch may carry what else a step
        reads, such as its dropout key (``jax.random.key_data``, for
        :func:`funcgrad.layers.replay_dropout` on the torch side).
      stateful: the model has buffers (BatchNorm's running statistics), updated by the
        forward pass in train mode: ``jax_loss(params, buffers, batch) -> (loss,
        new_buffers)``, the buffers keyed as ``model.named_buffers()``. Each synced step
        starts from torch's buffers too, and the forward stage judges the new buffers
        beside the loss (``num_batches_tracked`` exactly).

    >>> verdicts = compare_steps(loss_fn, optimizer, torch_setup, torch_loss, batches)
    >>> verdicts["float32"].passed, verdicts["float32"].separation
    (True, 724)
    """
    if every < 1:
        raise ValueError(f"compare_steps: every must be a positive number of steps, got {every}")
    batches = [tuple(np.asarray(part) for part in batch) for batch in batches]
    if not batches:
        raise ValueError("compare_steps: no batches: give the batches of every step, in order")
    dtypes = list(dtypes)
    if not dtypes:
        raise ValueError(f"compare_steps: no dtype to train in; give some of {DTYPES}")
    step_fn = _jax_step(jax_loss, jax_optimizer, stateful)
    verdicts, reference_run = {}, None
    for name in dtypes:
        dtype = np.dtype(name)
        if dtype not in parity.TOLERANCES:
            raise ValueError(f"compare_steps: no parity rule for {name}; use float32 or float64")
        if dtype == np.float32 and reference_run is None:
            reference_run = _torch_run(torch_setup, torch_loss, batches, np.dtype(np.float64), stateful)
        twin = _torch_objects(torch_setup, np.dtype(np.float64), stateful) if dtype == np.float32 else None
        judge, per_step, largest_gradient = _step_judge(dtype)
        record = _synced_run(step_fn, jax_optimizer, torch_setup, torch_loss, batches, dtype, every, twin, judge,
                             stateful)
        if dtype == np.float64:
            reference_run = record["torch run"]
        jax_run = _free_jax_run(step_fn, jax_optimizer, record["initial"], batches, dtype)
        verdicts[name] = _verdict(name, per_step, record["torch run"], jax_run,
                                  reference_run if dtype == np.float32 else None, largest_gradient)
        runs = {"jax": jax_run, "torch": record["torch run"]} | (
            {"reference": reference_run} if dtype == np.float32 else {})
        verdicts[name].final_weights = {side: _final_weights(run) for side, run in runs.items()}
    return verdicts


class _JaxStep(NamedTuple):
    """A step in two compiled halves, so that the optimizer can be judged on torch's
    gradients: ``gradient(params, buffers, batch) -> (loss, new_buffers, grads)`` (a
    stateless loss keeps its empty buffers) and ``update(grads, opt_state, params) ->
    (new_params, new_opt_state)``."""

    gradient: Callable
    update: Callable


def _jax_step(loss_fn, optimizer, stateful: bool) -> _JaxStep:
    @jax.jit
    def gradient(params, buffers, batch):
        if stateful:
            (loss, new_buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, buffers, batch)
            return loss, new_buffers, grads
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        return loss, buffers, grads

    @jax.jit
    def update(grads, opt_state, params):
        updates, new_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_state

    return _JaxStep(gradient, update)


def _torch_objects(torch_setup, dtype, stateful: bool) -> tuple:
    objects = tuple(torch_setup(dtype))
    if len(objects) not in (2, 3):
        raise ValueError("compare_steps: torch_setup must return (model, optimizer) or "
                         f"(model, optimizer, scheduler), got {len(objects)} objects")
    model, optimizer, scheduler = objects + (None,) * (3 - len(objects))
    names = [name for name, _ in model.named_parameters()]
    if not names:
        raise ValueError("compare_steps: the torch model has no parameters")
    buffers = list(_buffers(model))
    if buffers and not stateful:
        raise ValueError(f"compare_steps: the torch model has buffers ({', '.join(buffers)}), which its "
                         "forward pass may update: pass stateful=True and a jax_loss(params, buffers, batch) "
                         "-> (loss, new_buffers)")
    return model, optimizer, scheduler, names


def _torch_batch(batch, dtype):
    import torch

    return tuple(torch.from_numpy(np.array(part)) for part in _in_dtype(batch, dtype))  # a writable copy


def _in_dtype(batch, dtype) -> tuple[np.ndarray, ...]:
    """A batch's float arrays in ``dtype``; integers (labels) as they are."""
    return tuple(part.astype(dtype) if part.dtype.kind == "f" else part for part in batch)


def _in_dtype_dict(arrays: dict, dtype) -> dict[str, np.ndarray]:
    """Named arrays' floats in ``dtype``; integers (a buffer's count) as they are."""
    return dict(zip(arrays, _in_dtype(arrays.values(), dtype)))


def _torch_step(objects, torch_loss, batch) -> tuple[np.ndarray, dict]:
    """torch's step as its loop takes it; the loss and every parameter's gradient."""
    model, optimizer, scheduler, names = objects
    optimizer.zero_grad()
    loss = torch_loss(model, batch)
    loss.backward()
    grads = {name: np.zeros_like(p.detach().cpu().numpy()) if p.grad is None else p.grad.detach().cpu().numpy().copy()
             for name, p in model.named_parameters()}
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach().cpu().numpy().copy(), grads


def _params(model) -> dict[str, np.ndarray]:
    return {name: p.detach().cpu().numpy().copy() for name, p in model.named_parameters()}


def _buffers(model) -> dict[str, np.ndarray]:
    return {name: b.detach().cpu().numpy().copy() for name, b in model.named_buffers()}


def _torch_run(torch_setup, torch_loss, batches, dtype, stateful: bool) -> dict:
    """A whole torch run, unsynced: its losses, final parameters and buffers."""
    objects = _torch_objects(torch_setup, dtype, stateful)
    losses = [_torch_step(objects, torch_loss, _torch_batch(batch, dtype))[0] for batch in batches]
    return _whole_run(losses, _params(objects[0]), _buffers(objects[0]))


def _whole_run(losses, params, buffers) -> dict:
    run = {"loss per step": parity.History(np.stack(losses)), "final parameters": params}
    return run | ({"final buffers": _as_compared(buffers)} if buffers else {})


def _final_weights(run: dict) -> dict[str, np.ndarray]:
    """A whole run's final parameters and buffers as one state_dict."""
    return run["final parameters"] | {name: np.asarray(parity.unwrap(value))
                                      for name, value in run.get("final buffers", {}).items()}


def _as_compared(buffers: dict) -> dict:
    """Float buffers as floats; a count (``num_batches_tracked``) exactly, whatever its int width."""
    return {name: value if value.dtype.kind == "f" else parity.Exact(value.astype(np.int64))
            for name, value in buffers.items()}


def _synced_run(step_fn, optimizer, torch_setup, torch_loss, batches, dtype, every, twin, judge, stateful) -> dict:
    """The torch run in ``dtype``; at each synced step the JAX step (and, for float32, both
    frameworks' float64 steps) from torch's state before it, handed to ``judge`` at once
    (a step's arrays are not kept: a large model's would fill memory over a long run)."""
    objects = _torch_objects(torch_setup, dtype, stateful)
    model, torch_optimizer, scheduler, names = objects
    templates = {d: _template(optimizer, _params(model), d) for d in {dtype, np.dtype(np.float64)}}
    initial, losses = (_params(model), _buffers(model)), []
    for t, batch in enumerate(batches):
        torch_batch = _torch_batch(batch, dtype)
        if t % every:
            losses.append(_torch_step(objects, torch_loss, torch_batch)[0])
            continue
        params, buffers, state = _params(model), _buffers(model), copy.deepcopy(torch_optimizer.state_dict())
        scheduler_state = None if scheduler is None else copy.deepcopy(scheduler.state_dict())
        torch_loss_value, torch_grads = _torch_step(objects, torch_loss, torch_batch)
        losses.append(torch_loss_value)
        jax_side = _jax_step_from(step_fn, templates[dtype], names, (params, buffers), state, batch, t, dtype,
                                  torch_grads, first=t == 0)
        with jax.enable_x64(dtype == np.float64):
            torch_state = state_from_torch(templates[dtype], copy.deepcopy(torch_optimizer.state_dict()), names, t + 1)
        torch_side = _stage_results(names, torch_loss_value, _buffers(model), torch_grads, _params(model),
                                    torch_state)
        if twin is None:
            judge(t, jax_side, torch_side, None, None)
            continue
        reference = _twin_step(twin, templates[np.dtype(np.float64)], torch_loss, batch, (params, buffers), state,
                               scheduler_state, t)
        jax_reference = _jax_step_from(step_fn, templates[np.dtype(np.float64)], names, (params, buffers), state,
                                       batch, t, np.dtype(np.float64),
                                       {name: reference[f"gradient/{name}"] for name in names})
        judge(t, jax_side, torch_side, reference, jax_reference)
    return {"torch run": _whole_run(losses, _params(model), _buffers(model)), "initial": initial}


def _template(optimizer, params: dict, dtype):
    """``optimizer.init`` of ``params`` in ``dtype``: the state layout torch's is read into."""
    with jax.enable_x64(dtype == np.float64):
        return optimizer.init(from_state_dict({name: value.astype(dtype) for name, value in params.items()}))


def _jax_step_from(step_fn, template, names, weights: tuple, state: dict, batch, t: int, dtype, torch_grads: dict,
                   first=False) -> dict:
    """The JAX step in ``dtype`` from torch's ``(parameters, buffers)`` and optimizer state
    before step ``t``: its loss, new buffers and gradients, and its optimizer's update of
    ``torch_grads``, the gradients of the torch step it is judged against. Each stage is
    judged on the same inputs: an update that amplifies its gradient's rounding (Adam's,
    of a parameter whose gradient is zero but for rounding, such as a bias before a
    BatchNorm) is not a different optimizer. On the first call, a port whose loss
    expects other parameters than torch's (names, shapes) fails: say so, naming torch's."""
    params, buffers = weights
    with jax.enable_x64(dtype == np.float64):
        opt_state = state_from_torch(template, state, names, t)
        jax_params = from_state_dict({name: value.astype(dtype) for name, value in params.items()})
        inputs = (jax_params, from_state_dict(_in_dtype_dict(buffers, dtype)),
                  tuple(map(jnp.asarray, _in_dtype(batch, dtype))))
        try:
            loss, new_buffers, grads = step_fn.gradient(*inputs)
        except (KeyError, TypeError, ValueError) as error:
            if not first:
                raise
            shapes = ", ".join(f"{name} {value.shape}" for name, value in params.items())
            raise ValueError(f"compare_steps: the JAX loss cannot take torch's parameters ({shapes}) "
                             f"as fg.from_state_dict lays them out: {type(error).__name__}: {error}") from error
        given = from_state_dict({name: np.asarray(value).astype(dtype) for name, value in torch_grads.items()})
        new_params, new_state = step_fn.update(given, opt_state, jax_params)
        return _stage_results(names, loss, to_state_dict(new_buffers), to_state_dict(grads),
                              to_state_dict(new_params), new_state)


def _twin_step(twin, template, torch_loss, batch, weights, state, scheduler_state, t) -> dict:
    """torch's float64 step from the float32 run's state: the reference of one float32 step."""
    import torch

    model, torch_optimizer, scheduler, names = twin
    params, buffers = weights
    model.load_state_dict({name: torch.from_numpy(value) for name, value in
                           _in_dtype_dict(params | buffers, np.dtype(np.float64)).items()}, strict=False)
    torch_optimizer.load_state_dict(copy.deepcopy(state))
    if scheduler is not None:
        scheduler.load_state_dict(copy.deepcopy(scheduler_state))
    loss, grads = _torch_step(twin, torch_loss, _torch_batch(batch, np.float64))
    with jax.enable_x64(True):
        new_state = state_from_torch(template, copy.deepcopy(torch_optimizer.state_dict()), names, t + 1)
    return _stage_results(names, loss, _buffers(model), grads, _params(model), new_state)


def _stage_results(names: list[str], loss, new_buffers: dict, grads: dict, new_params: dict, opt_state) -> dict:
    """One step's quantities, keyed by stage, parameters in torch's order (input to output):
    ``forward/loss``, ``forward/new NAME`` (each buffer), ``gradient/NAME``,
    ``optimizer/new value of NAME``, ``optimizer/FIELD of NAME``."""
    results = {"forward/loss": np.asarray(loss)}
    results |= {f"forward/new {name}": value for name, value in
                _as_compared({name: np.asarray(value) for name, value in new_buffers.items()}).items()}
    results |= {f"gradient/{name}": np.asarray(grads[name]) for name in names}
    results |= {f"optimizer/new value of {name}": np.asarray(new_params[name]) for name in names}
    leaves = [(_state_key(path, names), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]]
    for (_, name), leaf in sorted(leaves, key=lambda item: item[0][0]):
        leaf = np.asarray(leaf)  # a step count is compared exactly, the rest as floats
        results[f"optimizer/{name}"] = leaf if leaf.dtype.kind == "f" else parity.Exact(leaf)
    return results


def _state_key(path, names: list[str]) -> tuple[tuple, str]:
    """A state leaf's place (chain position, field, torch's parameter order) and name:
    ``[1].trace['0']['weight']`` is ``trace of 0.weight``, ``[2].count`` is ``count of
    transformation 2``."""
    field = next((key.name for key in path if isinstance(key, jax.tree_util.GetAttrKey)), "state")
    param = ".".join(str(key.key) for key in path if isinstance(key, jax.tree_util.DictKey))
    position = ".".join(str(key.idx) for key in path if isinstance(key, jax.tree_util.SequenceKey)) or "0"
    order = (position, field, names.index(param) if param in names else -1)
    return order, f"{field} of {param}" if param else f"{field} of transformation {position}"


def _step_judge(dtype):
    """``judge(t, jax, torch, reference, jax_reference)`` judging one synced step, the list
    of ``(t, rows)`` it fills, and each parameter's largest torch gradient over the synced
    steps; torch's errors of the last steps are its only memory."""
    per_step, recent, largest_gradient = [], {}, {}

    def judge(t, jax_side, torch_side, reference, jax_reference):
        noise = {name: np.max(errors, axis=0) for name, errors in recent.items()}
        jax_floats = None if jax_reference is None else {
            name: value for name, value in jax_reference.items() if not isinstance(value, parity.Exact)}
        per_step.append((t, parity.compare_results(jax_side, torch_side, dtype, reference, noise, jax_floats,
                                                   SYNCED_BAND_FACTOR)))
        for name, value in torch_side.items():
            if name.startswith("gradient/"):
                name = name.split("/", 1)[1]
                largest_gradient[name] = max(largest_gradient.get(name, 0.0), float(np.max(np.abs(value))))
        for name, error in ({} if reference is None else _torch_errors(torch_side, reference)).items():
            recent.setdefault(name, collections.deque(maxlen=parity.MIN_BAND_WINDOW - 1)).append(error)

    return judge, per_step, largest_gradient


def _verdict(dtype_name: str, per_step: list, torch_run: dict, jax_run: dict, reference_run: dict | None,
             largest_gradient: dict) -> StepVerdict:
    """One dtype's verdict from its judged synced steps and the two whole runs.

    Whole runs that differ while every synced step agrees are rounding amplified by the
    model: reported, as information, in float32; in float64 only if every step's loss
    agrees as well (else they fail). float64 runs part where the model amplifies rounding
    without bound: Adam's steps on a parameter the loss does not depend on (a bias before
    a BatchNorm, whose gradient is zero but for rounding) follow the rounding, which
    differs between frameworks, and the BatchNorm's running mean follows that bias."""
    dtype = np.dtype(dtype_name)
    discontinuities = _discontinuities(dtype, per_step)
    synced = _over_steps(per_step, discontinuities)
    first_failure = next((_localize(dtype_name, t, rows) for t, rows in per_step
                          if not all(row.passed for row in rows) and t not in discontinuities), None)
    whole_run = parity.compare_results(jax_run, torch_run, dtype, reference_run)
    whole_passed = all(row.passed for row in whole_run)
    separation = min((row.first_divergence for row in whole_run if row.first_divergence is not None), default=None)
    if first_failure is not None:
        passed, summary = False, first_failure
    elif whole_passed:
        passed, summary = True, f"{dtype_name}: every synced step agrees ({len(per_step)} steps), and so do the whole runs"
    elif dtype == np.float32:
        where = f"after step {separation}" if separation is not None else "at the end"
        passed, summary = True, (f"{dtype_name}: whole runs separate {where}: rounding amplified by the model; "
                                 f"every step agrees from the same state ({len(per_step)} synced steps)")
        whole_run = _as_information(whole_run)
    elif all(row.passed for row in whole_run if row.name == "loss per step"):
        differing = [row.name.split("/", 1)[-1] for row in whole_run if not row.passed]
        idle = [name for name in differing if largest_gradient.get(name, np.inf) <= parity.TOLERANCES[dtype][1]]
        passed, summary = True, (
            f"{dtype_name}: the whole runs' final {', '.join(differing)} differ while every synced step agrees "
            f"({len(per_step)} steps) and so does every step's loss: rounding amplified by the model"
            + (f"; the gradient of {', '.join(idle)} is zero but for rounding at every synced step, so the loss "
               "does not depend on it and an adaptive optimizer's steps follow the rounding (a bias before a "
               "BatchNorm is such a parameter: torch's tuning guide advises bias=False there)" if idle else ""))
        whole_run = _as_information(whole_run)
    else:
        passed, summary = False, (f"{dtype_name}: every synced step agrees, but the whole runs differ: "
                                  + parity.format_failures(whole_run).replace("\n", "; "))
    if discontinuities and first_failure is None:
        summary += (f"; at {len(discontinuities)} synced step(s) ({', '.join(map(str, sorted(discontinuities)[:5]))}"
                    f"{', ...' if len(discontinuities) > 5 else ''}) only a gradient left its band while JAX's "
                    "float64 step from the same state equals torch's: float32 rounding on either side of a "
                    "discontinuity (a max-pool near-tie, a ReLU at 0), information")
    return StepVerdict(dtype_name, synced, whole_run, len(per_step), first_failure,
                       separation if not whole_passed else None, passed, summary)


def _discontinuities(dtype, per_step: list) -> set[int]:
    """The float32 synced steps at which only gradients left their band, by the band alone
    (no non-finite value, the float64 steps from the same state agreeing): rounding at a
    discontinuity of the gradient (see ``MAX_DISCONTINUITY_FRACTION``). Empty in float64,
    or where more steps than that fraction fail so."""
    if dtype != np.float32:
        return set()
    steps = {t for t, rows in per_step if not all(row.passed for row in rows) and all(
        row.passed or (row.name.startswith("gradient/") and row.jax_ref_err is not None and not row.note)
        for row in rows)}
    return steps if len(steps) <= MAX_DISCONTINUITY_FRACTION * len(per_step) else set()


def _as_information(whole_run: list[parity.Quantity]) -> list[parity.Quantity]:
    """The whole run's failing rows marked as information: every synced step agrees."""
    return [row if row.passed else dataclasses.replace(
        row, rule=f"{row.rule} {INFORMATION}", note=f"whole runs separate: {row.note or 'out of band'}; "
        "every synced step agrees") for row in whole_run]


def _torch_errors(torch_side: dict, reference: dict) -> dict[str, np.ndarray]:
    """torch's per-element distance to its float64 step, per float quantity: the noise the
    next synced steps' bands remember (a trailing window, as a history's band has), so that
    an element is not held to torch's luck at one step."""
    return {name: np.where(np.isfinite(value) & np.isfinite(reference[name]),
                           np.abs(value.astype(np.float64) - reference[name]), 0.0)
            for name, value in torch_side.items() if not isinstance(value, parity.Exact)}


def _free_jax_run(step_fn, optimizer, initial: tuple, batches, dtype) -> dict:
    """The port on its own from the initial weights (and buffers) over the same batches:
    its whole run."""
    with jax.enable_x64(dtype == np.float64):
        params, buffers = (from_state_dict(_in_dtype_dict(tree, dtype)) for tree in initial)
        opt_state, losses = optimizer.init(params), []
        for batch in batches:
            loss, buffers, grads = step_fn.gradient(params, buffers, tuple(map(jnp.asarray, _in_dtype(batch, dtype))))
            params, opt_state = step_fn.update(grads, opt_state, params)
            losses.append(loss)
        return _whole_run([np.asarray(loss) for loss in losses], to_state_dict(params),
                          {name: np.asarray(value) for name, value in to_state_dict(buffers).items()})


def _over_steps(per_step: list, discontinuities: set[int]) -> list[parity.Quantity]:
    """One row per quantity over all synced steps: its worst step, and its first failing one
    (steps at a discontinuity are named in the note, not failed)."""
    rows = []
    for index, first in enumerate(per_step[0][1]):
        column = [(t, step_rows[index]) for t, step_rows in per_step]
        judged = [(t, row) for t, row in column if t not in discontinuities] or column
        worst = max(judged, key=lambda item: item[1].band_ratio)[1]
        failing = [t for t, row in judged if not row.passed]
        kinks = [t for t, row in column if not row.passed and t in discontinuities]
        refs = [row.jax_ref_err for _, row in judged if row.jax_ref_err is not None]
        torch_refs = [row.torch_ref_err for _, row in judged if row.torch_ref_err is not None]
        factors = [row.factor_needed for _, row in judged if row.factor_needed is not None]
        rows.append(dataclasses.replace(
            worst, name=f"{first.name} (synced)", kind="history" if worst.kind == "float" else worst.kind,
            max_abs_err=max(row.max_abs_err for _, row in column),
            max_rel_err=max(row.max_rel_err for _, row in column),
            direct_passed=all(row.direct_passed for _, row in column),
            jax_ref_err=max(refs) if refs else None, torch_ref_err=max(torch_refs) if torch_refs else None,
            factor_needed=max(factors) if factors else None,
            first_divergence=failing[0] if failing else None, passed=not failing,
            note=(f"differs at step {failing[0]} ({len(failing)} of {len(column)} synced steps)"
                  + (f": {worst.note}" if worst.note else "")) if failing else
            (f"out of band at {len(kinks)} step(s) at a discontinuity (from step {kinks[0]}; information)"
             if kinks else "")))
    return rows


def _localize(dtype_name: str, t: int, rows: list[parity.Quantity]) -> str:
    """The first failing stage of one synced step, and its parameters nearest the output first."""
    by_stage = {stage: [row for row in rows if row.name.startswith(stage + "/")] for stage in STAGES}
    where = f"{dtype_name}, step {t}"
    forward = {_short(row.name): row.passed for row in by_stage["forward"]}
    if not forward["loss"]:
        return f"{where}: the loss differs at the same weights (the forward pass)"
    wrong = [name for name, passed in forward.items() if not passed]
    if wrong:
        return f"{where}: the forward pass's {', '.join(wrong)} differs (the loss agrees)"
    gradients = list(reversed(by_stage["gradient"]))  # torch registers parameters input to output
    wrong = [_short(row.name) for row in gradients if not row.passed]
    if wrong:
        right = [_short(row.name) for row in gradients if row.passed]
        return (f"{where}: the gradient of {wrong[0]} differs"
                + (f" (also {', '.join(wrong[1:])})" if wrong[1:] else "")
                + " (loss agrees" + (f"; {', '.join(right)} agree" if len(right) > 1 else
                                     f"; {right[0]} agrees" if right else "") + ")")
    wrong = [_short(row.name) for row in reversed(by_stage["optimizer"]) if not row.passed]
    return f"{where}: the optimizer's {wrong[0]} differs" + (
        f" (also {', '.join(wrong[1:])})" if wrong[1:] else "") + " (loss and gradients agree)"


def _short(name: str) -> str:
    return name.split("/", 1)[1]
