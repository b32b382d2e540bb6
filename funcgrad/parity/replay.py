"""The steps a step-synchronized verdict runs: torch's step as its loop takes it, its float64
twin from the same state, and the JAX step from torch's state, each one's results keyed by
stage. Nothing here judges (:mod:`funcgrad.parity.steps` does).

Each step's work is done once: torch's state is read once (parameters, buffers, optimizer
state and schedule position, as numpy copies), a float64 twin is loaded from it in place
(``copy_`` into the twin's tensors), and the JAX step is one compiled function per dtype,
``(params, buffers, opt_state, batch, given_grads, use_given) -> (loss, new_buffers, grads,
new_params, new_opt_state)``, that gets the whole state in one call and hands its results
back in one; the synced steps and the whole run both call it (:class:`JaxStep`).
"""

from __future__ import annotations

import copy
from typing import Any, Callable, NamedTuple

import jax
import numpy as np
import optax

from funcgrad.optim import torch_state
from funcgrad.parity.values import Exact
from funcgrad.state_dict import flat, flat_shapes, nested, to_state_dict


class TorchObjects(NamedTuple):
    """What ``torch_setup(dtype)`` returned, and the model's parameters in its order."""

    model: Any
    optimizer: Any
    scheduler: Any
    names: list[str]  # the parameters' names, in torch's order (input to output)
    parameters: list  # the parameter tensors, in that order
    buffer_names: list[str]


class Snapshot(NamedTuple):
    """torch's state before a step, as numpy copies: what each side's step starts from."""

    params: dict[str, np.ndarray]
    buffers: dict[str, np.ndarray]
    held: dict[str, dict[str, np.ndarray]]  # the optimizer's per-parameter state, by parameter name
    groups: list[dict]  # the optimizer's param_groups' settings
    scheduler: dict | None


def torch_objects(what: str, torch_setup: Callable, dtype, stateful: bool) -> TorchObjects:
    """``torch_setup(dtype)``, checked: ``(model, optimizer)`` or ``(model, optimizer,
    scheduler)``, a model with parameters, and buffers only when the port is stateful."""
    objects = torch_setup(dtype)
    if not isinstance(objects, (tuple, list)) or len(objects) not in (2, 3):
        count = len(objects) if isinstance(objects, (tuple, list)) else f"a {type(objects).__name__}, not"
        raise ValueError(f"{what}: torch_setup must return (model, optimizer) or (model, optimizer, scheduler), "
                         f"got {count} objects")
    model, optimizer, scheduler = tuple(objects) + (None,) * (3 - len(objects))
    named = list(model.named_parameters())
    if not named:
        raise ValueError(f"{what}: the torch model has no parameters")
    buffers = [name for name in model.state_dict() if name not in dict(model.named_parameters(remove_duplicate=False))]
    if buffers and not stateful:
        raise ValueError(f"{what}: the torch model has buffers ({', '.join(buffers)}), which its forward pass may "
                         "update: pass stateful=True and a jax_loss(params, buffers, batch) -> (loss, new_buffers)")
    if not buffers and stateful:
        raise ValueError(f"{what}: stateful=True, but the torch model has no buffers: pass stateful=False and a "
                         "jax_loss(params, batch) -> loss")
    torch_dtype = {np.dtype(np.float32): "torch.float32", np.dtype(np.float64): "torch.float64"}[np.dtype(dtype)]
    wrong = [name for name, p in named if str(p.dtype) != torch_dtype]
    if wrong:
        raise ValueError(f"{what}: torch_setup({np.dtype(dtype).name}) must build the model in {torch_dtype}, but "
                         f"{', '.join(wrong)} {'is' if len(wrong) == 1 else 'are'} {named[0][1].dtype}: "
                         "model.to(dtype) after building it")
    return TorchObjects(model, optimizer, scheduler, [name for name, _ in named], [p for _, p in named], buffers)


def torch_batch(batch: tuple, dtype) -> tuple:
    """A batch's arrays as torch tensors (writable copies), floats in ``dtype``."""
    import torch

    return tuple(torch.from_numpy(np.array(part)) for part in in_dtype(batch, dtype))


def in_dtype(arrays, dtype) -> tuple[np.ndarray, ...]:
    """Arrays' floats in ``dtype``; integers (labels, a count) as they are."""
    return tuple(part.astype(dtype) if part.dtype.kind == "f" else part for part in arrays)


def in_dtype_dict(arrays: dict, dtype) -> dict[str, np.ndarray]:
    return dict(zip(arrays, in_dtype(arrays.values(), dtype)))


def torch_step(objects: TorchObjects, torch_loss: Callable, batch: tuple,
               after_backward: Callable | None = None) -> tuple[np.ndarray, dict]:
    """torch's step as its loop takes it (``zero_grad``, the loss, ``backward``,
    ``after_backward(model)`` (a clip), ``step``, then ``scheduler.step()``); the loss and
    every parameter's gradient before ``after_backward``, as numpy copies."""
    model, optimizer, scheduler, names, parameters, _ = objects
    optimizer.zero_grad()
    loss = torch_loss(model, batch)
    if not hasattr(loss, "backward") or tuple(loss.shape) != ():
        raise ValueError(f"torch_loss must return the step's scalar loss tensor, got "
                         f"{type(loss).__name__}{'' if not hasattr(loss, 'shape') else ' of shape ' + str(tuple(loss.shape))}")
    loss.backward()
    grads = {name: np.zeros(tuple(p.shape), _numpy_dtype(p)) if p.grad is None else p.grad.detach().cpu().numpy().copy()
             for name, p in zip(names, parameters)}
    if after_backward is not None:
        after_backward(model)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    return loss.detach().cpu().numpy().copy(), grads


def _numpy_dtype(tensor) -> np.dtype:
    return np.dtype(str(tensor.dtype).removeprefix("torch."))


def snapshot(objects: TorchObjects) -> Snapshot:
    """torch's state now, as numpy copies."""
    model, optimizer, scheduler, names, parameters, buffer_names = objects
    state = model.state_dict()
    held = {}
    for name, p in zip(names, parameters):
        per_param = optimizer.state.get(p)
        if per_param:
            held[name] = {key: value.detach().cpu().numpy().copy() if hasattr(value, "detach") else np.array(value)
                          for key, value in per_param.items() if value is not None}
    return Snapshot({name: p.detach().cpu().numpy().copy() for name, p in zip(names, parameters)},
                    {name: state[name].detach().cpu().numpy().copy() for name in buffer_names},
                    held, [{key: value for key, value in group.items() if key != "params"}
                           for group in optimizer.param_groups],
                    None if scheduler is None else copy.deepcopy(scheduler.state_dict()))


def restore(twin: TorchObjects, state: Snapshot) -> None:
    """Load ``state`` (the float32 run's) into the float64 twin, in place, cast to its dtype."""
    import torch

    model, optimizer, scheduler, names, parameters, buffer_names = twin
    with torch.no_grad():
        for name, p in zip(names, parameters):
            p.copy_(torch.from_numpy(state.params[name]))
        buffers = dict(model.named_buffers())
        for name in buffer_names:
            buffers[name].copy_(torch.from_numpy(state.buffers[name]))
    for name, p in zip(names, parameters):
        held = state.held.get(name)
        if not held:
            optimizer.state.pop(p, None)
            continue
        per_param = optimizer.state.setdefault(p, {})
        for key, value in held.items():
            tensor = torch.from_numpy(value)
            if key in per_param and per_param[key].shape == tensor.shape:
                per_param[key].copy_(tensor)
            else:  # as load_state_dict casts: floats to the parameter's dtype, a step stays as torch keeps it
                per_param[key] = tensor.to(p.dtype) if key != "step" and tensor.is_floating_point() else tensor.clone()
        for key in set(per_param) - set(held):
            del per_param[key]
    for group, settings in zip(optimizer.param_groups, state.groups):
        group.update(copy.deepcopy(settings))
    if scheduler is not None:
        scheduler.load_state_dict(copy.deepcopy(state.scheduler))


class JaxStep(NamedTuple):
    """The port's step, one compiled program per dtype for both of the verdict's uses:
    ``synced(params, buffers, opt_state, batch, given_grads) -> (loss, new_buffers, grads,
    new_params, new_opt_state)`` updates ``given_grads`` (torch's: each stage is judged on
    the same inputs); ``free(params, buffers, opt_state, batch, no_grads) -> (loss,
    new_buffers, grads, new_params, new_opt_state)`` updates the port's own gradients
    (``no_grads``: zeros with ``given_grads``' shapes and dtypes, which never reach the
    update), a step of its whole run: it also writes the gradients out, a params-sized
    buffer a step that the run drops.

    Both call one jitted function that selects the gradients its update takes by a traced
    flag (a select passes a value on exactly), so a port is compiled once a dtype instead of
    twice: each program of a transformer's step takes seconds to compile. XLA lays out the
    joint program its own way, so a whole run can differ in its last bits from one a
    separate program of the free step gives (a digits MLP's did not; a BatchNorm CNN's moved
    by 1e-17 in float64, its biases before the BatchNorm, which only rounding moves, by
    more): rounding, judged as the verdict judges any."""

    synced: Callable
    free: Callable


def jax_step(loss_fn: Callable, optimizer: optax.GradientTransformation, stateful: bool) -> JaxStep:
    def gradient(params, buffers, batch):
        if stateful:
            (loss, new_buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, buffers, batch)
            return loss, new_buffers, grads
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        return loss, buffers, grads

    @jax.jit
    def step(params, buffers, opt_state, batch, given_grads, use_given):
        loss, new_buffers, grads = gradient(params, buffers, batch)
        # lax.select, not jnp.where: no dtype promotion, so gradients given in another dtype
        # than the port's own are an error, not a silent update in the wider one.
        used = jax.tree.map(lambda given, own: jax.lax.select(use_given, given, own), nested(given_grads), grads)
        updates, new_state = optimizer.update(used, opt_state, params)
        return loss, new_buffers, grads, optax.apply_updates(params, updates), new_state

    def synced(params, buffers, opt_state, batch, given_grads):
        return step(params, buffers, opt_state, batch, given_grads, np.bool_(True))

    def free(params, buffers, opt_state, batch, no_grads):
        return step(params, buffers, opt_state, batch, no_grads, np.bool_(False))

    return JaxStep(synced, free)


def check_port(what: str, loss_fn: Callable, stateful: bool, params, buffers, batch) -> None:
    """The port takes torch's parameters and returns what the verdict needs (a scalar loss;
    with ``stateful``, ``(loss, new_buffers)`` keyed as torch's buffers), or a ValueError
    saying which, naming torch's parameters."""
    try:
        out = jax.eval_shape(loss_fn, params, buffers, batch) if stateful else jax.eval_shape(loss_fn, params, batch)
    except (KeyError, TypeError, ValueError, IndexError) as error:
        shapes = ", ".join(f"{name} {value.shape}" for name, value in to_state_dict(params).items())
        raise ValueError(f"{what}: the JAX loss cannot take torch's parameters ({shapes}) as fg.from_state_dict "
                         f"lays them out: {type(error).__name__}: {error}") from error
    if stateful:
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise ValueError(f"{what}: stateful=True: jax_loss(params, buffers, batch) must return (loss, "
                             f"new_buffers), got {jax.tree.map(lambda leaf: leaf.shape, out)}")
        loss, new_buffers = out
        given, returned = sorted(flat_shapes(buffers)), sorted(flat_shapes(new_buffers))
        if given != returned:
            raise ValueError(f"{what}: jax_loss returned buffers {returned}, but torch's model has {given}")
    else:
        loss = out
    if not hasattr(loss, "shape") or loss.shape != ():
        raise ValueError(f"{what}: the JAX loss must return the batch's scalar loss (as torch's mean-reduced "
                         f"loss), got {'shape ' + str(loss.shape) if hasattr(loss, 'shape') else type(loss).__name__}"
                         + ("" if stateful else "; a model with buffers needs stateful=True and (loss, new_buffers)"))


class Stages(NamedTuple):
    """A step's results keyed by stage, in the order the verdict reports them, parameters in
    torch's order (input to output): ``forward/loss``, ``forward/new NAME`` (each buffer),
    ``gradient/NAME``, ``optimizer/new value of NAME``, ``optimizer/FIELD of NAME``."""

    names: list[str]
    buffer_names: list[str]
    plan: torch_state.StatePlan

    def results(self, loss, new_buffers: dict, grads: dict, new_params: dict, state_leaves: list) -> dict:
        results = {"forward/loss": np.asarray(loss)}
        for name in self.buffer_names:
            value = np.asarray(new_buffers[name])  # a count compared exactly, whatever its int width
            results[f"forward/new {name}"] = value if value.dtype.kind == "f" else Exact(value.astype(np.int64))
        for name in self.names:
            results[f"gradient/{name}"] = np.asarray(grads[name])
        for name in self.names:
            results[f"optimizer/new value of {name}"] = np.asarray(new_params[name])
        for index in self.plan.order:
            leaf = np.asarray(state_leaves[index])  # a step count exactly, the rest as floats
            results[f"optimizer/{self.plan.labels[index]}"] = leaf if leaf.dtype.kind == "f" else Exact(leaf)
        return results

    def jax_results(self, outputs) -> dict:
        """The results of :class:`JaxStep`'s ``synced``, fetched to the host."""
        loss, new_buffers, grads, new_params, new_state = outputs
        return self.results(loss, flat(new_buffers), flat(grads), flat(new_params), jax.tree.leaves(new_state))

    def torch_results(self, objects: TorchObjects, loss, grads: dict, after: Snapshot, step: int) -> dict:
        """torch's step's results, its new state read from ``after`` as the plan reads it."""
        leaves = jax.tree.leaves(torch_state.fill(self.plan, after.held, step))
        return self.results(loss, after.buffers, grads, after.params, leaves)


def jax_params(state: Snapshot, dtype) -> dict:
    """torch's parameters as the port's params tree, in ``dtype`` (numpy arrays)."""
    return nested(in_dtype_dict(state.params, dtype))


def jax_inputs(plan: torch_state.StatePlan, state: Snapshot, step: int, dtype) -> tuple:
    """``(params, buffers, opt_state)`` from torch's state before update ``step``, in ``dtype``,
    as numpy arrays: the compiled step moves them to the device in one call."""
    return jax_params(state, dtype), nested(in_dtype_dict(state.buffers, dtype)), torch_state.fill(
        plan, state.held, step)
