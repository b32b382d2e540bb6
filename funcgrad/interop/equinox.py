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
set to 0 so that inference uses them as they are; ``to_torch`` divides them by
``1 - momentum**batch_counter``, as equinox's inference does). Array leaves of any other module
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
    leaves take torch's dtypes (float64 needs ``with jax.enable_x64(True):``); a BatchNorm's
    state cannot change dtype, so a running statistic in another dtype than the state's is
    refused (build the BatchNorm with ``dtype=`` the state_dict's).
    """
    import equinox as eqx

    where = "equinox.from_torch"
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
    wrong = []
    for pair in plan:
        key = pair.framework_key
        if key is not None and places[key][0] == "state":
            _, batch_norm, index, position = places[key]
            statistics.setdefault(id(batch_norm), (batch_norm, index, {}))[2][position] = converted[key]
            if converted[key].dtype != leaves[key].dtype:
                wrong.append(f"{pair.torch_key} is {converted[key].dtype}, {key} is {leaves[key].dtype}")
    if wrong:
        raise ValueError(f"{where}: equinox's State keeps its dtypes: " + "; ".join(wrong)
                         + "; build the BatchNorm with dtype= the state_dict's, or cast the state_dict")
    for batch_norm, index, values in statistics.values():
        state = state.set(getattr(batch_norm, index), (values[0], values[1]))
        # the statistics are filled (ema) and used as they are (batch: no debiasing at count 0)
        flag = batch_norm.ema_first_time_index if index == "ema_state_index" else batch_norm.batch_counter
        state = state.set(flag, _zero_like(state.get(flag)))
    return module, state


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
    arrays = {key: np.asarray(leaf) for key, leaf in leaves.items()}
    for key, place in places.items():
        if place[0] != "state":
            continue
        _, batch_norm, index, _ = place
        if index == "ema_state_index" and bool(state.get(batch_norm.ema_first_time_index)):
            raise ValueError(f"equinox.to_torch: BatchNorm {key.rpartition('.')[0] or '(root)'} (mode='ema') has not "
                             f"filled its running statistics yet, so torch's running_mean/running_var have no "
                             f"values; run it once in training mode, or start from torch with from_torch")
        if index == "batch_state_index":
            count = int(state.get(batch_norm.batch_counter))
            if count:
                arrays[key] = (arrays[key] / (1 - batch_norm.momentum**count)).astype(arrays[key].dtype)
    return rules.to_torch_arrays("equinox.to_torch", FRAMEWORK, plan, arrays, num_batches_tracked)
