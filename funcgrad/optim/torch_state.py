"""torch's ``optimizer.state_dict()`` as :mod:`funcgrad.optim`'s state and back, so that a
run started in one framework continues in the other.

What maps to what, per parameter (torch's key → the field of the fg.optim state):

- SGD's ``momentum_buffer`` → ``trace`` of ``optax.TraceState`` (plain momentum, Nesterov:
  ``optax.sgd``) or of :class:`~funcgrad.optim.DampenedTraceState` (dampening, weight
  decay, maximize), whose ``count`` is the step: at 0 torch holds no buffer and its next
  step sets ``buf = g``;
- Adam's and AdamW's ``step``, ``exp_avg``, ``exp_avg_sq``, ``max_exp_avg_sq`` →
  :class:`~funcgrad.optim.TorchAdamState`'s ``count``, ``mu``, ``nu``, ``nu_max``;
- a schedule's position → ``optax.ScaleByScheduleState.count``. torch keeps it in the
  scheduler (its ``state_dict()["last_epoch"]``) and the rate it reached in the optimizer's
  ``param_groups[...]["lr"]``, from which StepLR and CosineAnnealingLR compute the next one.

Hyperparameters are the optimizer's, on either side: the torch ``param_groups`` are not
checked against the fg.optim optimizer, only required to be one setting for every
parameter, as fg.optim applies one.

    params, buffers = map(fg.from_state_dict, fg.split_buffers(model.state_dict()))   # torch, after k steps
    names = fg.optim.torch_param_names(model, optimizer)
    opt_state = state_from_torch(optimizer_fg.init(params), optimizer.state_dict(), names, step=k)
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad import _checks
from funcgrad.optim.transforms import DampenedTraceState, TorchAdamState

# Each state this bridge converts: {its per-parameter field: torch's state key}. A state with a
# ``count`` holds the step; an Adam state's is also torch's per-parameter "step".
_FIELDS = {
    optax.EmptyState: {},
    optax.ScaleByScheduleState: {},
    optax.TraceState: {"trace": "momentum_buffer"},
    DampenedTraceState: {"trace": "momentum_buffer"},
    TorchAdamState: {"mu": "exp_avg", "nu": "exp_avg_sq", "nu_max": "max_exp_avg_sq"},
    optax.ScaleByAdamState: {"mu": "exp_avg", "nu": "exp_avg_sq"},
}
# The states whose count is torch's per-parameter "step".
_STEPPED = (TorchAdamState, optax.ScaleByAdamState)


class Source(NamedTuple):
    """Where a leaf of an fg.optim state comes from in torch's: the per-parameter ``key`` of
    parameter ``name``, or (``key`` None) the step count."""

    name: str | None
    key: str | None
    dtype: np.dtype
    shape: tuple[int, ...]


class StatePlan(NamedTuple):
    """An fg.optim state's leaves and where each comes from in torch's state, worked out once
    from ``optimizer.init(params)``: what :func:`state_from_torch` fills, and what the
    step-synchronized verdict reads from torch's optimizer at every step."""

    treedef: Any
    sources: list[Source]
    labels: list[str]  # each leaf's name in a report: "trace of 0.weight", "count of transformation 2"
    order: list[int]  # the leaves in report order: chain position, field, torch's parameter order
    states: list  # the fg.optim states the template holds, in chain order
    expected_keys: dict[str, frozenset[str]]  # per parameter, torch's keys the state has places for


def state_plan(what: str, template: optax.OptState, param_names: Sequence[str]) -> StatePlan:
    """The :class:`StatePlan` of ``template`` for a torch optimizer over ``param_names``;
    refuses a state this bridge does not convert, and names that are not the template's."""
    states = _states(what, template)
    _check_names(what, states, param_names)
    names = list(param_names)

    def mark(state, place: str):
        fields = {field: _map_named(lambda name, like, field=field, key=key: _Marker(
            Source(name, key, np.dtype(like.dtype), tuple(np.shape(like))),
            (place, field, names.index(name)), f"{field} of {name}"), getattr(state, field))
            for field, key in _FIELDS[type(state)].items() if getattr(state, field) is not None}
        if "count" in state._fields:
            fields["count"] = _Marker(Source(None, None, np.dtype(state.count.dtype), ()), (place, "count", -1),
                                      f"count of {place}")
        return state._replace(**fields)

    markers, treedef = jax.tree_util.tree_flatten(_map_states(mark, template, with_place=True),
                                                  is_leaf=lambda node: isinstance(node, _Marker))
    unknown = [marker for marker in markers if not isinstance(marker, _Marker)]
    if unknown:
        raise ValueError(f"{what}: the state holds a leaf with no torch counterpart: {unknown[0]!r}")
    expected = {name: set() for name in names}
    for state in states:
        for field, key in _FIELDS[type(state)].items():
            for name, _ in _named_leaves(getattr(state, field)):
                expected[name] |= {key} | ({"step"} if isinstance(state, _STEPPED) else set())
    return StatePlan(treedef, [marker.source for marker in markers], [marker.label for marker in markers],
                     sorted(range(len(markers)), key=lambda i: markers[i].order), states,
                     {name: frozenset(keys) for name, keys in expected.items()})


class _Marker:
    """A :class:`Source` as a pytree leaf (a NamedTuple would be a node), with its place in the
    report's order (param group and chain position, field, torch's parameter order) and its
    name there: ``trace of 0.weight``, ``count of transformation 2``, ``count of group 1's
    transformation 0``."""

    def __init__(self, source: Source, order: tuple, label: str):
        self.source, self.order, self.label = source, order, label


def fill(plan: StatePlan, held: Mapping[str, Mapping[str, np.ndarray]], step: int) -> optax.OptState:
    """The state ``plan`` describes, its leaves numpy arrays: each parameter's torch state
    from ``held`` (``{name: {key: array}}``; a momentum buffer torch has not made yet is
    zeros, as ``optax.trace``'s before its first step), each count ``step``."""
    leaves = []
    for source in plan.sources:
        if source.key is None:
            leaves.append(np.asarray(step, source.dtype))
            continue
        value = held.get(source.name, {}).get(source.key)
        if value is None:
            leaves.append(np.zeros(source.shape, source.dtype))
            continue
        if np.shape(value) != source.shape:
            raise ValueError(f"state_from_torch: torch's {source.key} for {source.name} has shape "
                             f"{np.shape(value)}, but the parameter's is {source.shape}")
        leaves.append(np.asarray(value, source.dtype))
    return plan.treedef.unflatten(leaves)


def held_state(torch_state_dict: Mapping[str, Any], param_names: Sequence[str]) -> dict[str, dict[str, np.ndarray]]:
    """torch's per-parameter state from an ``optimizer.state_dict()``, by parameter name, as
    numpy copies (torch's next step updates its buffers in place)."""
    return {param_names[index]: {key: _host_copy(value) for key, value in per_param.items() if value is not None}
            for index, per_param in torch_state_dict["state"].items() if per_param}


def _host_copy(value) -> np.ndarray:
    return value.detach().cpu().numpy().copy() if hasattr(value, "detach") else np.array(value)


def check_held(what: str, plan: StatePlan, held: Mapping[str, Mapping], step: int) -> None:
    """torch holds exactly the keys the state has places for, at the same step."""
    extra = sorted({key for name, per_param in held.items() for key in per_param
                    if key not in plan.expected_keys.get(name, ())})
    if extra:
        raise ValueError(
            f"{what}: torch's state holds {extra}, which the fg.optim state "
            f"({', '.join(type(state).__name__ for state in plan.states)}) has no place for: convert it "
            f"with the fg.optim optimizer that torch's is (fg.optim has SGD's momentum_buffer, "
            f"Adam's and AdamW's step, exp_avg, exp_avg_sq, max_exp_avg_sq)")
    if held and step == 0:
        raise ValueError(f"{what}: step is 0 but torch holds state for {sorted(held)}, which it "
                         f"creates on its first step: pass the number of updates applied")
    # optax.trace's zero buffer steps as torch's absent one (buf = g); nothing else does.
    optional = {"momentum_buffer"} if any(isinstance(s, optax.TraceState) for s in plan.states) else set()
    for name, per_param in held.items():
        if "step" in per_param and float(per_param["step"]) != step:
            raise ValueError(f"{what}: torch's step for {name} is {float(per_param['step']):g}, but "
                             f"step={step}: pass the number of updates torch applied")
    if step:
        lacking = {name: sorted(plan.expected_keys[name] - optional - held.get(name, {}).keys())
                   for name in sorted(_param_names(plan.states))}
        lacking = {name: keys for name, keys in lacking.items() if keys}
        if lacking:
            raise ValueError(
                f"{what}: after {step} steps torch holds no {lacking}; fg.optim counts the steps of "
                f"all parameters at once, so every parameter needs its state")


def torch_param_names(model, optimizer) -> list[str]:
    """The names of ``optimizer``'s parameters in the order its ``state_dict()`` numbers them:
    group by group, as given to it. That is ``model.named_parameters()``'s order for one
    group, not for several (nanoGPT's decay group holds every weight before any bias).

    >>> names = fg.optim.torch_param_names(model, optimizer)
    >>> opt_state = fg.optim.state_from_torch(opt.init(params), optimizer.state_dict(), names, step=k)
    """
    by_identity = {id(p): name for name, p in model.named_parameters()}
    names = [by_identity.get(id(p)) for group in optimizer.param_groups for p in group["params"]]
    if None in names:
        raise ValueError("torch_param_names: the optimizer holds a parameter the model does not "
                         f"(position {names.index(None)}): pass the model the optimizer trains")
    return names


def state_from_torch(
    template: optax.OptState,
    torch_state_dict: Mapping[str, Any],
    param_names: Sequence[str],
    step: int,
) -> optax.OptState:
    """The fg.optim state equal to a torch optimizer's ``state_dict()`` after ``step`` updates.

    Args:
      template: ``optimizer.init(params)`` of the matching fg.optim optimizer: the
        structure and dtypes to fill (torch's values are cast to them).
      torch_state_dict: ``optimizer.state_dict()``; its tensors may be torch tensors or
        numpy arrays.
      param_names: the optimizer's parameters in the order its state_dict numbers them, as
        ``state_dict`` names (:func:`torch_param_names`; for one param group
        ``[n for n, _ in model.named_parameters()]``: the parameters only, not a
        BatchNorm's buffers); ``"a.b"`` is ``params["a"]["b"]``.
      step: the number of updates applied: every count in the state (schedules, the
        first-step mark of a dampened momentum) is set to it, and torch's own
        per-parameter ``step`` (Adam) must equal it.

    Raises ValueError naming the problem: names that are not the template's params, a shape
    that differs, torch state that fg.optim has no place for, param_groups with different
    settings, a torch ``step`` other than ``step``.

    >>> opt = fg.optim.adamw(fg.optim.cosine_annealing_lr(1e-3, t_max=100))
    >>> opt_state = state_from_torch(opt.init(params), optimizer.state_dict(), names, step=10)
    """
    what = "state_from_torch"
    if not _checks.is_int(step) or step < 0:
        raise ValueError(f"{what}: step must be the number of updates applied, an int >= 0, got {step!r}")
    plan = state_plan(what, template, param_names)
    check_param_groups(what, torch_state_dict["param_groups"], param_names)
    held = held_state(torch_state_dict, param_names)
    check_held(what, plan, held, step)
    return jax.tree.map(jnp.asarray, fill(plan, held, step))


def state_to_torch(
    opt_state: optax.OptState,
    param_names: Sequence[str],
    torch_template: Mapping[str, Any],
    *,
    schedule: optax.Schedule | Sequence[optax.Schedule] | None = None,
) -> dict[str, Any]:
    """A torch ``optimizer.state_dict()`` holding an fg.optim state, for ``optimizer.load_state_dict``.

    Args:
      opt_state: the fg.optim optimizer's state.
      param_names: the torch optimizer's parameters in its order (:func:`torch_param_names`).
      torch_template: the torch optimizer's ``state_dict()``: its ``param_groups``
        (hyperparameters) are kept.
      schedule: the fg.optim optimizer's learning-rate schedule, if it has one (or one per
        torch param group, in their order): every group's ``lr`` becomes its value (in
        float64) at the state's schedule count, the
        rate torch's optimizer holds after that many scheduler steps, from which torch's
        scheduler computes the next. Without it the template's ``lr`` is kept. Either
        way the scheduler's own position is the torch scheduler's: set its
        ``state_dict()["last_epoch"]`` to the count.

    The tensors are on the CPU in the state's dtype; ``load_state_dict`` moves them to each
    parameter's device and dtype (torch's ``step`` stays a float32 scalar, as torch keeps it).

    >>> optimizer.load_state_dict(state_to_torch(opt_state, names, optimizer.state_dict(), schedule=lr))
    >>> scheduler.load_state_dict(scheduler.state_dict() | {"last_epoch": int(step)})
    """
    import torch  # the optional ``compare`` extra: needed only here, on call

    what = "state_to_torch"
    states = _states(what, opt_state)
    _check_names(what, states, param_names)
    groups = copy.deepcopy(list(torch_template["param_groups"]))
    check_param_groups(what, groups, param_names)
    index = {name: i for i, name in enumerate(param_names)}
    torch_state: dict[int, dict[str, Any]] = {i: {} for i in range(len(param_names))}
    for state in states:
        if "count" in state._fields and int(state.count) == 0:
            continue  # torch holds nothing before its first step
        for field, key in _FIELDS[type(state)].items():
            for name, value in _named_leaves(getattr(state, field)):
                torch_state[index[name]][key] = torch.from_numpy(np.array(value))
                if isinstance(state, _STEPPED):
                    torch_state[index[name]]["step"] = torch.tensor(float(state.count))
    if schedule is not None:
        counts = {int(state.count) for state in states if isinstance(state, optax.ScaleByScheduleState)}
        if len(counts) != 1:
            raise ValueError(f"{what}: a schedule was passed but the state holds {len(counts)} schedule "
                             f"counts; pass schedule only for an optimizer built on one")
        schedules = list(schedule) if isinstance(schedule, (list, tuple)) else [schedule] * len(groups)
        if len(schedules) != len(groups):
            raise ValueError(f"{what}: {len(schedules)} schedules for torch's {len(groups)} param groups; "
                             f"give one schedule, or one per group")
        count = counts.pop()
        with jax.enable_x64(True):
            for group, group_schedule in zip(groups, schedules):
                group["lr"] = float(group_schedule(jnp.asarray(count)))
    return {"state": {i: per_param for i, per_param in torch_state.items() if per_param}, "param_groups": groups}


def _states(what: str, opt_state) -> list:
    """The states of a (chained, grouped) fg.optim state in order; any other state is refused."""
    states = []
    _map_states(states.append, opt_state)
    for state in states:
        if type(state) not in _FIELDS:
            raise ValueError(
                f"{what}: the optimizer state holds {type(state).__name__}, which has no torch "
                f"counterpart here; the bridge converts the states of fg.optim's sgd, adam and "
                f"adamw, of optax.sgd and optax.adam, in chains and param groups "
                f"({', '.join(t.__name__ for t in _FIELDS)}): build the optimizer with fg.optim")
    return states


def _map_states(fn, opt_state, with_place: bool = False, group: str = "", position: tuple = ()):
    """``fn`` applied to each state in an ``optax.chain``'s (nested) tuple of states, in each
    param group's (``optax.multi_transform``'s ``PartitionState``, whose groups' states are
    ``MaskedState``); ``with_place``: ``fn(state, place)``, place as a report names it,
    ``transformation 1`` or ``group 0's transformation 2``."""
    if isinstance(opt_state, tuple) and not hasattr(opt_state, "_fields"):
        return tuple(_map_states(fn, state, with_place, group, position + (i,)) for i, state in enumerate(opt_state))
    if isinstance(opt_state, optax.PartitionState):
        return optax.PartitionState({label: _map_states(fn, state, with_place, str(label), ())
                                     for label, state in opt_state.inner_states.items()})
    if isinstance(opt_state, optax.MaskedState):
        return optax.MaskedState(_map_states(fn, opt_state.inner_state, with_place, group, position))
    if not with_place:
        return fn(opt_state)
    where = f"transformation {'.'.join(map(str, position)) or 0}"
    return fn(opt_state, f"group {group}'s {where}" if group else where)


def _map_named(fn, tree):
    """``fn(name, leaf)`` over a params-shaped tree, ``name`` as ``state_dict`` joins it."""
    return jax.tree_util.tree_map_with_path(lambda path, leaf: fn(_path_name(path), leaf), tree)


def _named_leaves(tree) -> list[tuple[str, Any]]:
    return [(_path_name(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _path_name(path) -> str:
    """A leaf's path as ``state_dict`` joins names: dict keys, attribute names (an Equinox
    module's) and list indices, by dots."""
    return ".".join(str(key.key if isinstance(key, jax.tree_util.DictKey) else key.name
                        if isinstance(key, jax.tree_util.GetAttrKey) else getattr(key, "idx", key)) for key in path)


def _param_names(states: list) -> set[str]:
    """The names of the parameters the states hold something for."""
    return {name for state in states for field in _FIELDS[type(state)]
            for name, _ in _named_leaves(getattr(state, field))}


def _check_names(what: str, states: list, param_names: Sequence[str]) -> None:
    names = _param_names(states)
    repeated = sorted({name for name in param_names if list(param_names).count(name) > 1})
    if repeated:
        raise ValueError(f"{what}: param_names repeats {repeated}")
    if names and names != set(param_names):
        raise ValueError(
            f"{what}: param_names do not name the optimizer state's params: the state has "
            f"{sorted(names - set(param_names))} that param_names lacks, param_names has "
            f"{sorted(set(param_names) - names)} that the state lacks")


def check_param_groups(what: str, groups: Sequence[Mapping], param_names: Sequence[str]) -> None:
    """torch's param_groups hold each of ``param_names`` once. Their settings are the
    optimizer's (``fg.optim.param_groups`` builds groups with their own): the state holds
    none of them, and the synced verdict judges what they do, every new value."""
    indices = sorted(index for group in groups for index in group["params"])
    if indices != list(range(len(param_names))):
        raise ValueError(f"{what}: torch's param_groups hold {len(indices)} parameters (indices "
                         f"{indices}) but param_names names {len(param_names)}")
