"""A torch ``state_dict`` into an Equinox module and its ``eqx.nn.State``, and back, by name.

The twin of ``torch_model.load_state_dict(state_dict)`` / ``torch_model.state_dict()``. Each
layer's rule comes from the Equinox module's type. Equinox keeps torch's layouts: ``Linear`` and
``Embedding`` ``weight`` as torch's, ``Conv`` ``weight`` OIHW with ``bias`` ``(out, 1, 1)``
(reshaped from torch's ``(out,)``), ``LayerNorm`` ``weight``/``bias``, ``MultiheadAttention``'s
``query_proj``/``key_proj``/``value_proj`` weights ``(H*D, E)`` as rows of torch's packed
``in_proj_weight`` and ``output_proj`` for ``out_proj`` (biases exist only when built with
``use_query_bias=True`` etc.). ``BatchNorm``'s ``weight``/``bias`` are leaves of the module; its
running mean and variance live in the state: ``ema_state_index[0]``/``[1]`` (``mode="ema"``,
marked as filled) or ``batch_state_index[0]``/``[1]`` (``mode="batch"``, its ``batch_counter``
set to ``LOADED_COUNT``, 2**30, where equinox's debiasing divides by exactly 1, so inference
and further training steps use them as torch does; at 0 the first step would divide the
updated statistics by ``1 - momentum``; ``to_torch`` divides by ``1 - momentum**batch_counter``,
as equinox's inference does). Array leaves of any other module
pair with the torch key of the same name, unchanged. Paths are attribute names and list
indices joined by dots: ``layers.0``; an ``eqx.nn.Sequential``'s are ``features.layers.0``
(``modules={"features": "features.layers"}`` pairs them with torch's ``features.0``).

Equinox keeps no ``num_batches_tracked``: ``from_torch`` drops it, ``to_torch`` takes it from
``num_batches_tracked=`` and refuses, naming the keys, without it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad.interop import rules

FRAMEWORK = "equinox"


def _kinds() -> tuple[tuple[type, str], ...]:
    import equinox as eqx

    return ((eqx.nn.Linear, "linear"), (eqx.nn.Conv, "conv"), (eqx.nn.BatchNorm, "batchnorm"),
            (eqx.nn.LayerNorm, "layernorm"), (eqx.nn.Embedding, "embedding"), (eqx.nn.MultiheadAttention, "attention"))


def _locator(path) -> tuple[tuple[str, Any], ...]:
    """A pytree path as ``("attr", name)``/``("item", index)`` steps, to find the node again."""
    steps = []
    for key in path:
        if isinstance(key, jax.tree_util.GetAttrKey):
            steps.append(("attr", key.name))
        elif isinstance(key, (jax.tree_util.SequenceKey, jax.tree_util.DictKey)):
            steps.append(("item", key.idx if isinstance(key, jax.tree_util.SequenceKey) else key.key))
        else:
            raise ValueError(f"equinox: cannot name the pytree path entry {key!r}")
    return tuple(steps)


def _get(node, locator: tuple[tuple[str, Any], ...]):
    for kind, value in locator:
        node = getattr(node, value) if kind == "attr" else node[value]
    return node


def _zero_like(old):
    """False or 0 as ``State.set`` takes it in place of ``old`` (an array or its shape): same
    dtype, and weakly typed when ``old`` is (only a Python scalar makes a weakly typed array)."""
    if isinstance(old, jax.Array):
        return jnp.zeros_like(old)
    if old.weak_type:
        return jnp.asarray(np.zeros((), old.dtype).item())
    return jnp.zeros(old.shape, old.dtype)


def _known_true(flag) -> bool:
    """A flag's value where it is known; a traced one (inside a loss) is not known, and taken as False."""
    return not isinstance(flag, jax.core.Tracer) and bool(flag)


# The batch counter from_torch gives a mode="batch" BatchNorm: at this count equinox's debiasing
# 1 - momentum**count is 1.0 exactly (for any momentum up to 1 - 1e-7), before and after more
# steps, so torch's running statistics are used, and updated, as they are. At 0 the first
# training step would divide them by 1 - momentum.
LOADED_COUNT = 2**30


def _loaded_count(old):
    """LOADED_COUNT in ``old``'s shape, as an integer of the current mode's width (equinox adds
    a Python 1 to it, which under 64-bit mode makes a weakly typed int64)."""
    if getattr(old, "weak_type", False):
        return jnp.asarray(LOADED_COUNT)
    return jnp.full(jnp.shape(old), LOADED_COUNT, old.dtype)


def _key(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


_ATTENTION_LEAVES = tuple((projection, leaf) for projection in ("query_proj", "key_proj", "value_proj", "output_proj")
                          for leaf in ("weight", "bias"))


def _read(module, state) -> tuple[list[rules.Layer], dict[str, tuple], dict[str, Any]]:
    """The layers, where each framework key lives (``("module", locator)`` or ``("state",
    batch_norm, index_name, position)``), and the leaves by framework key."""
    import equinox as eqx

    kinds = _kinds()
    known = tuple(cls for cls, _ in kinds)
    stop_at = known + (eqx.nn.StateIndex,)
    found = jax.tree_util.tree_flatten_with_path(module, is_leaf=lambda node: isinstance(node, stop_at))[0]
    layers: dict[str, rules.Layer] = {}
    places: dict[str, tuple] = {}
    for path, node in found:
        locator = _locator(path)
        dotted = ".".join(str(value) for _, value in locator)
        if isinstance(node, known):
            kind = next(name for cls, name in kinds if isinstance(node, cls))
            layer = layers[dotted] = rules.Layer(dotted, kind, {})
            for attributes in _ATTENTION_LEAVES if kind == "attention" else (("weight",), ("bias",)):
                steps = tuple(("attr", name) for name in attributes)
                leaf = node
                for name in attributes:  # Embedding has no bias; a bias may be None
                    leaf = getattr(leaf, name, None)
                if leaf is not None:
                    layer.leaves[".".join(attributes)] = leaf
                    places[_key(dotted, ".".join(attributes))] = ("module", locator + steps)
            if kind == "batchnorm":
                index = "ema_state_index" if node.mode == "ema" else "batch_state_index"
                for position, leaf in enumerate(state.get(getattr(node, index))):
                    layer.leaves[f"{index}[{position}]"] = leaf
                    places[_key(dotted, f"{index}[{position}]")] = ("state", node, index, position)
        elif eqx.is_array(node) or isinstance(node, jax.ShapeDtypeStruct):  # the latter from filter_eval_shape
            parent, _, name = dotted.rpartition(".")
            layers.setdefault(parent, rules.Layer(parent, "unknown", {})).leaves[name] = node
            places[dotted] = ("module", locator)
    leaves = {_key(layer.path, name): leaf for layer in layers.values() for name, leaf in layer.leaves.items()}
    return list(layers.values()), places, leaves


def pairs(module, state, modules: rules.Modules = None, overrides: rules.Overrides = None) -> list[rules.Pair]:
    """Which torch key is which Equinox leaf, and the rule between them (``rules.describe`` prints it).

        print(rules.describe(pairs(model, state, modules={"features": "features.layers"})))
        # features.0.weight (16, 1, 5, 5) -> features.layers.0.weight (16, 1, 5, 5): copy
        # ...

    ``modules``, ``overrides``: as in ``rules.plan`` (torch module path -> Equinox path, or a
    function Equinox path -> torch path; per Equinox key, a ``Rule`` or ``(torch_key, Rule)``).
    """
    layers, _, _ = _read(module, state)
    return rules.plan(layers, "equinox", modules, overrides)


def from_torch(module, state, state_dict: Mapping[str, Any], modules: rules.Modules = None,
               overrides: rules.Overrides = None) -> tuple[Any, Any]:
    """``(module, state)`` holding ``state_dict``'s values, leaves replaced with ``eqx.tree_at``.

        model, state = eqx.nn.make_with_state(Net)(key)
        model, state = from_torch(model, state, {k: v.numpy() for k, v in torch_model.state_dict().items()},
                                  modules={"features": "features.layers"})

    Refuses, with a ValueError naming the keys, any torch key or Equinox leaf left without a
    counterpart, and a shape that does not match after the rule. Nothing is cast: module
    leaves and the running statistics in the state take torch's dtypes (float64 needs
    ``with jax.enable_x64(True):``), so a model and state built in float32 load a float64
    state_dict as float64.
    """
    import equinox as eqx

    where = "equinox.from_torch"
    # State.set retires the state it is called on; a clone leaves the caller's usable, so one
    # state can be loaded again and again (as a loss over torch's names does every step)
    leaves_of_state, structure = jax.tree_util.tree_flatten(state)
    state = jax.tree_util.tree_unflatten(structure, leaves_of_state)
    layers, places, leaves = _read(module, state)
    plan = rules.plan(layers, "equinox", modules, overrides)
    arrays = rules.from_torch_arrays(where, FRAMEWORK, plan, state_dict)
    converted = {key: jnp.asarray(array) for key, array in arrays.items()}
    rules.check_kept_dtypes(where, arrays, converted)

    in_module = [key for key in converted if places[key][0] == "module"]
    if in_module:
        module = eqx.tree_at(lambda m: [_get(m, places[key][1]) for key in in_module], module,
                             [converted[key] for key in in_module])
    statistics: dict[int, tuple] = {}
    for pair in plan:
        key = pair.framework_key
        if key is not None and places[key][0] == "state":
            _, batch_norm, index, position = places[key]
            statistics.setdefault(id(batch_norm), (batch_norm, index, {}))[2][position] = converted[key]
    replacements = []  # (the state's leaf, its new value)
    for batch_norm, index, values in statistics.values():
        replacements += list(zip(state.get(getattr(batch_norm, index)), (values[0], values[1])))
        # the statistics are filled (ema) and used as they are (batch: no debiasing at LOADED_COUNT)
        if index == "ema_state_index":
            state = state.set(batch_norm.ema_first_time_index, _zero_like(state.get(batch_norm.ema_first_time_index)))
        else:
            counter = state.get(batch_norm.batch_counter)
            replacements.append((counter, _loaded_count(counter)))
    return module, _replaced(state, replacements)


def _replaced(state, replacements) -> Any:
    """``state`` with leaves replaced (each found by identity), dtypes and all.

    ``State.set`` keeps a value's dtype, but a float64 step (the float64 twin of a float32
    one) needs float64 statistics, and equinox's count of 64-bit mode's integer width, in a
    state made in float32."""
    leaves, structure = jax.tree_util.tree_flatten(state)
    for old, new in replacements:
        at = [i for i, leaf in enumerate(leaves) if leaf is old]
        if len(at) != 1:
            raise ValueError(f"equinox.from_torch: a BatchNorm's state entry is found {len(at)} times among the "
                             f"state's leaves; give each BatchNorm arrays of its own")
        leaves[at[0]] = new
    return jax.tree_util.tree_unflatten(structure, leaves)


def to_torch(module, state, modules: rules.Modules = None, overrides: rules.Overrides = None,
             num_batches_tracked: int | Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """An Equinox module and its state as torch's ``state_dict`` (numpy arrays).

        state_dict = to_torch(model, state, modules={"features": "features.layers"}, num_batches_tracked=0)
        torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})

    ``num_batches_tracked``: an int for every BatchNorm, or a mapping by torch key (the
    state_dict the module came from will do). Refuses a ``mode="ema"`` BatchNorm that has not
    filled its statistics yet (it has none to give).
    """
    layers, places, leaves = _read(module, state)
    plan = rules.plan(layers, "equinox", modules, overrides)
    traced = any(isinstance(leaf, jax.core.Tracer) for leaf in leaves.values())  # inside a loss: stay JAX
    arrays = {key: leaf if traced else np.asarray(leaf) for key, leaf in leaves.items()}
    for key, place in places.items():
        if place[0] != "state":
            continue
        _, batch_norm, index, _ = place
        if index == "ema_state_index" and _known_true(state.get(batch_norm.ema_first_time_index)):
            raise ValueError(f"equinox.to_torch: BatchNorm {key.rpartition('.')[0] or '(root)'} (mode='ema') has not "
                             f"filled its running statistics yet, so torch's running_mean/running_var have no "
                             f"values; run it once in training mode, or start from torch with from_torch")
        if index == "batch_state_index":
            count = state.get(batch_norm.batch_counter)
            if isinstance(count, jax.core.Tracer):
                scale = jnp.where(count == 0, 1, 1 - batch_norm.momentum**count)
                arrays[key] = (arrays[key] / scale).astype(arrays[key].dtype)
            elif int(count):
                arrays[key] = (arrays[key] / (1 - batch_norm.momentum**int(count))).astype(arrays[key].dtype)
    return rules.to_torch_arrays("equinox.to_torch", FRAMEWORK, plan, arrays, num_batches_tracked)


def taps(forward, load, modules: rules.Modules = None):
    """``jax_taps`` for ``compare_steps(..., jax_taps=)``: the output of each Equinox module the
    bridge pairs with a torch module (``modules`` as ``from_torch`` takes it), by torch path,
    from one eager run of ``forward(loaded, batch)`` (per example under ``vmap``, stacked), in
    torch's layout as Equinox keeps it.

        jax_taps = taps(framework_loss, lambda sd: from_torch(model, state, sd, modules=modules), modules)
    """
    from funcgrad.interop import taps as tapping

    def find(loaded):
        module, state = loaded if isinstance(loaded, tuple) else (loaded, None)
        layers, _, _ = _read(module, state)
        torch_paths = rules.torch_module_paths(layers, modules)
        by_path = _submodules(module)
        return {id(by_path[layer.path]): (by_path[layer.path], torch_paths[layer.path])
                for layer in layers if layer.path in by_path and layer.kind != "unknown"}

    return tapping.tap_function(forward, load, find, lambda module, array: array)


def _submodules(module, prefix: str = "") -> dict[str, Any]:
    """Every Equinox module inside ``module`` by its dotted path (attributes and list indices)."""
    import dataclasses

    import equinox as eqx

    found = {prefix: module}

    def visit(value, path):
        if isinstance(value, eqx.Module):
            found.update(_submodules(value, path))
        elif isinstance(value, (list, tuple)):
            for index, item in enumerate(value):
                visit(item, _key(path, str(index)))

    for field in dataclasses.fields(module):
        visit(getattr(module, field.name, None), _key(prefix, field.name))
    return found
