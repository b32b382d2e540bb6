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

    model_sd, optim_sd = model.state_dict(), optimizer.state_dict()       # torch, after k steps
    params = fg.from_state_dict({n: t.numpy() for n, t in model_sd.items()})
    opt_state = state_from_torch(optimizer_fg.init(params), optim_sd, list(model_sd), step=k)
"""

from __future__ import annotations

import copy
from typing import Any, Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax

from funcgrad.optim import DampenedTraceState, TorchAdamState

# Each fg.optim state this bridge converts: {its per-parameter field: torch's state key}.
# A state with a ``count`` holds the step; TorchAdamState's is also torch's per-parameter "step".
_FIELDS = {
    optax.EmptyState: {},
    optax.ScaleByScheduleState: {},
    optax.TraceState: {"trace": "momentum_buffer"},
    DampenedTraceState: {"trace": "momentum_buffer"},
    TorchAdamState: {"mu": "exp_avg", "nu": "exp_avg_sq", "nu_max": "max_exp_avg_sq"},
}


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
      param_names: the optimizer's parameters in torch's order, as ``state_dict`` names
        (``[n for n, _ in model.named_parameters()]``); ``"a.b"`` is ``params["a"]["b"]``.
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
    if isinstance(step, bool) or not isinstance(step, (int, np.integer)) or step < 0:
        raise ValueError(f"{what}: step must be the number of updates applied, an int >= 0, got {step!r}")
    states = _states(what, template)
    _check_names(what, states, param_names)
    _check_param_groups(what, torch_state_dict["param_groups"], param_names)
    held = {param_names[index]: {key: value for key, value in per_param.items() if value is not None}
            for index, per_param in torch_state_dict["state"].items()}
    held = {name: per_param for name, per_param in held.items() if per_param}
    _check_keys(what, states, held, step)

    def fill(state):
        fields = {field: _map_named(lambda name, like: _from_torch(what, held, name, key, like), getattr(state, field))
                  for field, key in _FIELDS[type(state)].items() if getattr(state, field) is not None}
        if "count" in state._fields:
            fields["count"] = jnp.asarray(step, state.count.dtype)
        return state._replace(**fields)

    return _map_states(fill, template)


def state_to_torch(
    opt_state: optax.OptState,
    param_names: Sequence[str],
    torch_template: Mapping[str, Any],
    *,
    schedule: optax.Schedule | None = None,
) -> dict[str, Any]:
    """A torch ``optimizer.state_dict()`` holding an fg.optim state, for ``optimizer.load_state_dict``.

    Args:
      opt_state: the fg.optim optimizer's state.
      param_names: the torch optimizer's parameters in its order, as ``state_dict`` names.
      torch_template: the torch optimizer's ``state_dict()``: its ``param_groups``
        (hyperparameters) are kept.
      schedule: the fg.optim optimizer's learning-rate schedule, if it has one: every
        group's ``lr`` becomes its value (in float64) at the state's schedule count, the
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
    _check_param_groups(what, groups, param_names)
    index = {name: i for i, name in enumerate(param_names)}
    torch_state: dict[int, dict[str, Any]] = {i: {} for i in range(len(param_names))}
    for state in states:
        if "count" in state._fields and int(state.count) == 0:
            continue  # torch holds nothing before its first step
        if isinstance(state, TorchAdamState):
            for per_param in torch_state.values():
                per_param["step"] = torch.tensor(float(state.count))
        for field, key in _FIELDS[type(state)].items():
            for name, value in _named_leaves(getattr(state, field)):
                torch_state[index[name]][key] = torch.from_numpy(np.array(value))
    if schedule is not None:
        counts = {int(state.count) for state in states if isinstance(state, optax.ScaleByScheduleState)}
        if len(counts) != 1:
            raise ValueError(f"{what}: a schedule was passed but the state holds {len(counts)} schedule "
                             f"counts; pass schedule only for an optimizer built on one")
        with jax.enable_x64(True):
            lr = float(schedule(jnp.asarray(counts.pop())))
        for group in groups:
            group["lr"] = lr
    return {"state": {i: per_param for i, per_param in torch_state.items() if per_param}, "param_groups": groups}


def _states(what: str, opt_state) -> list:
    """The states of a (chained) fg.optim state in order; any other state is refused."""
    states = []
    _map_states(states.append, opt_state)
    for state in states:
        if type(state) not in _FIELDS:
            raise ValueError(
                f"{what}: the optimizer state holds {type(state).__name__}, which has no torch "
                f"counterpart here; the bridge converts the states of fg.optim's sgd, adam and "
                f"adamw ({', '.join(t.__name__ for t in _FIELDS)}): build the optimizer with fg.optim")
    return states


def _map_states(fn, opt_state):
    """``fn`` applied to each state in an ``optax.chain``'s (nested) tuple of states."""
    if isinstance(opt_state, tuple) and not hasattr(opt_state, "_fields"):
        return tuple(_map_states(fn, state) for state in opt_state)
    return fn(opt_state)


def _map_named(fn, tree):
    """``fn(name, leaf)`` over a params-shaped tree, ``name`` as ``state_dict`` joins it."""
    return jax.tree_util.tree_map_with_path(lambda path, leaf: fn(_path_name(path), leaf), tree)


def _named_leaves(tree) -> list[tuple[str, Any]]:
    return [(_path_name(path), leaf) for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _path_name(path) -> str:
    return ".".join(str(getattr(key, "key", getattr(key, "idx", key))) for key in path)


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


def _check_param_groups(what: str, groups: Sequence[Mapping], param_names: Sequence[str]) -> None:
    """One setting for every group (fg.optim applies one), and as many parameters as names."""
    first = groups[0]
    for number, group in enumerate(groups[1:], 1):
        for setting in sorted((first.keys() | group.keys()) - {"params"}, key=str):
            if first.get(setting) != group.get(setting):
                raise ValueError(
                    f"{what}: param_groups 0 and {number} differ in {setting!r} ({first.get(setting)!r} "
                    f"against {group.get(setting)!r}); an fg.optim optimizer applies one setting to "
                    f"every parameter: convert each group with its own optimizer")
    indices = sorted(index for group in groups for index in group["params"])
    if indices != list(range(len(param_names))):
        raise ValueError(f"{what}: torch's param_groups hold {len(indices)} parameters (indices "
                         f"{indices}) but param_names names {len(param_names)}")


def _check_keys(what: str, states: list, held: dict[str, dict], step: int) -> None:
    """torch holds exactly the keys the state has places for, and the same step."""
    expected = {key for state in states for field, key in _FIELDS[type(state)].items()
                if getattr(state, field) is not None} | (
        {"step"} if any(isinstance(state, TorchAdamState) for state in states) else set())
    extra = sorted({key for per_param in held.values() for key in per_param} - expected)
    if extra:
        raise ValueError(
            f"{what}: torch's state holds {extra}, which the fg.optim state "
            f"({', '.join(type(state).__name__ for state in states)}) has no place for: convert it "
            f"with the fg.optim optimizer that torch's is (fg.optim has SGD's momentum_buffer, "
            f"Adam's and AdamW's step, exp_avg, exp_avg_sq, max_exp_avg_sq)")
    if held and step == 0:
        raise ValueError(f"{what}: step is 0 but torch holds state for {sorted(held)}, which it "
                         f"creates on its first step: pass the number of updates applied")
    # optax.trace's zero buffer steps as torch's absent one (buf = g); nothing else does.
    required = expected - ({"momentum_buffer"} if any(isinstance(s, optax.TraceState) for s in states) else set())
    for name, per_param in held.items():
        if "step" in per_param and float(per_param["step"]) != step:
            raise ValueError(f"{what}: torch's step for {name} is {float(per_param['step']):g}, but "
                             f"step={step}: pass the number of updates torch applied")
    if step:
        lacking = {name: sorted(required - held.get(name, {}).keys()) for name in sorted(_param_names(states))}
        lacking = {name: keys for name, keys in lacking.items() if keys}
        if lacking:
            raise ValueError(
                f"{what}: after {step} steps torch holds no {lacking}; fg.optim counts the steps of "
                f"all parameters at once, so every parameter needs its state")


def _from_torch(what: str, held: dict, name: str, key: str, like: jax.Array) -> jax.Array:
    if key not in held.get(name, {}):
        return jnp.zeros_like(like)  # optax.trace's buffer before the first step
    value = held[name][key]
    # A copy: on the CPU jnp.asarray may share a numpy array's memory, and torch's next
    # step updates its buffers in place.
    value = np.asarray(value.detach().cpu() if hasattr(value, "detach") else value).copy()
    if value.shape != like.shape:
        raise ValueError(f"{what}: torch's {key} for {name} has shape {value.shape}, but the "
                         f"parameter's is {like.shape}")
    return jnp.asarray(value, like.dtype)
