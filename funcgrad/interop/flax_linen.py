"""A torch ``state_dict`` into Flax linen variables and back, by name.

The twin of ``torch_model.load_state_dict(state_dict)`` / ``torch_model.state_dict()`` for the
``{"params": ..., "batch_stats": ...}`` that ``module.init`` returns. linen variables carry no
module types, so each module's rule comes from its leaf names: ``embedding`` is an
``nn.Embed``; ``kernel`` with 2 dimensions a ``Dense`` (torch's ``weight`` transposed), with 3 or
more a ``Conv`` (``(kh, kw, in, out)`` from torch's OIHW by ``transpose(2, 3, 1, 0)``);
``mean``/``var`` in ``batch_stats`` a ``BatchNorm`` (``scale``, ``bias``, ``mean``, ``var`` for
``weight``, ``bias``, ``running_mean``, ``running_var``); ``scale`` otherwise a ``LayerNorm``; a
module whose ``query``, ``key``, ``value``, ``out`` children hold 3-dimensional kernels a
``MultiHeadDotProductAttention`` (rows of torch's packed ``in_proj_weight``). Other leaves pair
with the torch key of the same name, unchanged. Paths are linen's names joined by dots
(``Conv_0``, ``Block_0.Dense_1``), without the collection.

Flax keeps no ``num_batches_tracked``: ``from_torch`` drops it, ``to_torch`` takes it from
``num_batches_tracked=`` and refuses, naming the keys, without it. Collections other than
``params`` and ``batch_stats`` are passed through untouched.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

from funcgrad.interop import rules

FRAMEWORK = "flax"
COLLECTIONS = ("params", "batch_stats")


def _read(variables: Mapping[str, Any]) -> tuple[dict[str, tuple], dict[str, Any]]:
    """Each leaf of ``params`` and ``batch_stats`` by dotted key, and its (collection, path)."""
    paths: dict[str, tuple] = {}
    leaves: dict[str, Any] = {}

    def walk(node, collection, path):
        if isinstance(node, Mapping):
            for name, child in node.items():
                walk(child, collection, path + (name,))
            return
        key = ".".join(path)
        if key in leaves:
            raise ValueError(f"flax_linen: {key} is in both {paths[key][0]} and {collection}")
        paths[key], leaves[key] = (collection,) + path, node

    for collection in COLLECTIONS:
        walk(variables.get(collection, {}), collection, ())
    return paths, leaves


def _kind(names: Mapping[str, Any], stats: bool) -> str:
    if "embedding" in names:
        return "embedding"
    if "kernel" in names:
        return "linear" if len(names["kernel"].shape) == 2 else "conv"
    if stats:
        return "batchnorm"
    return "layernorm" if "scale" in names else "unknown"


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _layers(paths: Mapping[str, tuple], leaves: Mapping[str, Any]) -> list[rules.Layer]:
    modules: dict[str, dict[str, Any]] = {}
    for key, leaf in leaves.items():
        module, _, name = key.rpartition(".")
        modules.setdefault(module, {})[name] = leaf
    heads = ("query", "key", "value", "out")
    def kernel_ndim(module: str) -> int:
        return len(getattr(modules.get(module, {}).get("kernel"), "shape", ()))

    attention = {module.rpartition(".")[0] for module in modules if module.rpartition(".")[2] == "query"}
    attention = {parent for parent in attention if all(kernel_ndim(_join(parent, head)) == 3 for head in heads)}
    layers: dict[str, rules.Layer] = {}
    for module, names in modules.items():
        parent, _, name = module.rpartition(".")
        if parent in attention and name in heads:
            layer = layers.setdefault(parent, rules.Layer(parent, "attention", {}))
            layer.leaves.update({f"{name}.{leaf}": value for leaf, value in names.items()})
            continue
        stats = any(paths[_join(module, leaf)][0] == "batch_stats" for leaf in names)
        layers[module] = rules.Layer(module, _kind(names, stats), names)
    return list(layers.values())


def pairs(variables: Mapping[str, Any], modules: rules.Modules = None,
          overrides: rules.Overrides = None) -> list[rules.Pair]:
    """Which torch key is which linen leaf, and the rule between them (``rules.describe`` prints it).

        print(rules.describe(pairs(variables, modules={"features.0": "Conv_0"})))
        # features.0.weight (16, 1, 5, 5) -> Conv_0.kernel (5, 5, 1, 16): transpose(2, 3, 1, 0)
        # ...

    ``modules``, ``overrides``: as in ``rules.plan`` (torch module path -> linen path, or a
    function linen path -> torch path; per linen key, a ``Rule`` or ``(torch_key, Rule)``).
    """
    paths, leaves = _read(variables)
    return rules.plan(_layers(paths, leaves), "flax", modules, overrides)


def from_torch(variables: Mapping[str, Any], state_dict: Mapping[str, Any], modules: rules.Modules = None,
               overrides: rules.Overrides = None) -> dict[str, Any]:
    """New linen variables, shaped as ``variables``, holding ``state_dict``'s values.

        variables = Net().init(jax.random.key(0), x)
        variables = from_torch(variables, {k: v.numpy() for k, v in torch_model.state_dict().items()},
                               modules={"features.0": "Conv_0", "features.1": "BatchNorm_0"})

    Refuses, with a ValueError naming the keys, any torch key or linen leaf left without a
    counterpart, and a shape that does not match after the rule. Nothing is cast: the leaves
    take torch's dtypes (``BatchNorm``'s ``mean``/``var``, float32 by default whatever
    ``param_dtype`` says, become float64 from a float64 state_dict), which for float64 needs
    JAX's 64-bit mode (``with jax.enable_x64(True):``), refused by name without it.
    """
    where = "flax_linen.from_torch"
    paths, leaves = _read(variables)
    plan = rules.plan(_layers(paths, leaves), "flax", modules, overrides)
    arrays = rules.from_torch_arrays(where, FRAMEWORK, plan, state_dict)
    converted = {key: jnp.asarray(array) for key, array in arrays.items()}
    rules.check_kept_dtypes(where, arrays, converted)

    def rebuild(node, path):
        if isinstance(node, Mapping):
            return {name: rebuild(child, path + (name,)) for name, child in node.items()}
        return converted[".".join(path[1:])]

    return {collection: rebuild(tree, (collection,)) if collection in COLLECTIONS else tree
            for collection, tree in variables.items()}


def to_torch(variables: Mapping[str, Any], modules: rules.Modules = None, overrides: rules.Overrides = None,
             num_batches_tracked: int | Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """linen ``variables`` as torch's ``state_dict`` (numpy arrays).

        state_dict = to_torch(variables, modules={"features.0": "Conv_0"}, num_batches_tracked=0)
        torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})

    ``num_batches_tracked``: an int for every BatchNorm, or a mapping by torch key (the
    state_dict the variables came from will do); required when there is a BatchNorm.
    """
    paths, leaves = _read(variables)
    plan = rules.plan(_layers(paths, leaves), "flax", modules, overrides)
    return rules.to_torch_arrays("flax_linen.to_torch", FRAMEWORK, plan, leaves, num_batches_tracked)
