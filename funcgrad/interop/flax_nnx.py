"""A torch ``state_dict`` into a Flax NNX model and back, by name (flax imported on first use).

The twin of ``torch_model.load_state_dict(state_dict)`` / ``torch_model.state_dict()``. Each
layer's rule comes from the NNX module's type: ``nnx.Linear`` (``kernel`` is torch's ``weight``
transposed), ``nnx.Conv`` (``kernel`` ``(kh, kw, in, out)`` from torch's OIHW by
``transpose(2, 3, 1, 0)``), ``nnx.BatchNorm`` (``scale``, ``bias`` params and ``mean``, ``var``
batch statistics for ``weight``, ``bias``, ``running_mean``, ``running_var``), ``nnx.LayerNorm``
(``scale``), ``nnx.Embed`` (``embedding``), ``nnx.MultiHeadAttention`` (``query``, ``key``,
``value`` kernels ``(E, H, D)`` and biases ``(H, D)`` from the rows of torch's packed
``in_proj_weight``/``in_proj_bias``, ``out`` kernel ``(H, D, E)``). Any other module's
``nnx.Param``/``nnx.BatchStat`` leaves pair with the torch key of the same name, unchanged.

Flax keeps no ``num_batches_tracked``: ``from_torch`` drops it, ``to_torch`` takes it from
``num_batches_tracked=`` and refuses, naming the keys, without it. Flax computes
``x @ kernel + bias`` on NHWC images, so a model that flattens a conv's output needs torch's
CHW order before the ``Linear`` (or an override of that ``kernel``'s rule). NNX's attention
calls ``jax.nn.dot_product_attention``, whose softmax runs in float32 whatever the inputs: in
float64 it is ~4e-8 from torch until ``attention_fn`` is one built on
``flax.nnx.nn.attention.dot_product_attention_weights``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad.interop import rules

FRAMEWORK = "flax"


def _kind(module) -> str | None:
    from flax import nnx

    kinds = ((nnx.Linear, "linear"), (nnx.Conv, "conv"), (nnx.BatchNorm, "batchnorm"), (nnx.LayerNorm, "layernorm"),
             (nnx.Embed, "embedding"), (nnx.MultiHeadAttention, "attention"))
    return next((kind for cls, kind in kinds if isinstance(module, cls)), None)


def _dotted(path) -> str:
    return ".".join(str(part) for part in path)


def _read(model) -> tuple[Any, dict[str, tuple], dict[str, Any]]:
    """The model's Param and BatchStat state, its leaves' paths by dotted key, and the leaves."""
    from flax import nnx

    state = nnx.state(model, nnx.Any(nnx.Param, nnx.BatchStat))
    flat = jax.tree_util.tree_flatten_with_path(nnx.to_pure_dict(state))[0]
    paths = {_dotted(key.key for key in path): tuple(key.key for key in path) for path, _ in flat}
    leaves = {_dotted(key.key for key in path): leaf for path, leaf in flat}
    return state, paths, leaves


def _layers(model, leaves: Mapping[str, Any]) -> list[rules.Layer]:
    from flax import nnx

    known = {_dotted(path): _kind(module) for path, module in nnx.iter_modules(model) if _kind(module)}
    layers: dict[str, rules.Layer] = {}
    for key, leaf in leaves.items():
        # a leaf belongs to its nearest known module (attention's query.kernel to the attention);
        # else its own module is one of unknown kind
        parts = key.split(".")
        owners = [".".join(parts[:cut]) for cut in range(len(parts) - 1, -1, -1)]
        owner = next((path for path in owners if path in known), owners[0])
        layer = layers.setdefault(owner, rules.Layer(owner, known.get(owner, "unknown"), {}))
        layer.leaves[key[len(owner) + 1:] if owner else key] = leaf
    return list(layers.values())


def pairs(model, modules: rules.Modules = None, overrides: rules.Overrides = None) -> list[rules.Pair]:
    """Which torch key is which NNX leaf, and the rule between them (``rules.describe`` prints it).

        print(rules.describe(pairs(model, modules={"features.0": "conv1"})))
        # features.0.weight (16, 1, 5, 5) -> conv1.kernel (5, 5, 1, 16): transpose(2, 3, 1, 0)
        # ...

    ``modules`` and ``overrides`` are as in ``rules.plan``: a mapping torch module path ->
    NNX path (attribute names and list indices joined by dots: ``layers.0``), or a function NNX
    path -> torch path; per NNX key, a ``Rule`` or a ``(torch_key, Rule)`` pair.
    """
    _, _, leaves = _read(model)
    return rules.plan(_layers(model, leaves), "flax", modules, overrides)


def from_torch(model, state_dict: Mapping[str, Any], modules: rules.Modules = None,
               overrides: rules.Overrides = None):
    """A copy of the NNX ``model`` holding ``state_dict``'s values (the model passed is unchanged).

        model = from_torch(model, {k: v.numpy() for k, v in torch_model.state_dict().items()},
                           modules={"features.0": "conv1", "features.1": "bn1"})

    Refuses, with a ValueError naming the keys, any torch key or NNX leaf left without a
    counterpart, and a shape that does not match after the rule. Nothing is cast: the leaves
    take torch's dtypes (NNX makes BatchNorm's ``mean``/``var`` float32 whatever
    ``param_dtype`` says; a float64 state_dict makes them float64), which for float64 needs
    JAX's 64-bit mode (``with jax.enable_x64(True):``), refused by name without it.
    """
    from flax import nnx

    where = "flax_nnx.from_torch"
    state, paths, leaves = _read(model)
    plan = rules.plan(_layers(model, leaves), "flax", modules, overrides)
    arrays = rules.from_torch_arrays(where, FRAMEWORK, plan, state_dict)
    converted = {key: jnp.asarray(array) for key, array in arrays.items()}
    rules.check_kept_dtypes(where, arrays, converted)
    pure = nnx.to_pure_dict(state)
    for key, array in converted.items():
        node = pure
        for part in paths[key][:-1]:
            node = node[part]
        node[paths[key][-1]] = array
    nnx.replace_by_pure_dict(state, pure)
    graphdef, _, rest = nnx.split(model, nnx.Any(nnx.Param, nnx.BatchStat), ...)
    return nnx.merge(graphdef, state, rest)


def to_torch(model, modules: rules.Modules = None, overrides: rules.Overrides = None,
             num_batches_tracked: int | Mapping[str, Any] | None = None) -> dict[str, np.ndarray]:
    """The NNX ``model``'s parameters and batch statistics as torch's ``state_dict`` (numpy arrays).

        state_dict = to_torch(model, modules={"features.0": "conv1"}, num_batches_tracked=0)
        torch_model.load_state_dict({k: torch.from_numpy(v) for k, v in state_dict.items()})

    ``num_batches_tracked``: an int for every BatchNorm, or a mapping by torch key (the
    state_dict the model came from will do); required when the model has a BatchNorm.
    """
    _, _, leaves = _read(model)
    plan = rules.plan(_layers(model, leaves), "flax", modules, overrides)
    return rules.to_torch_arrays("flax_nnx.to_torch", FRAMEWORK, plan, leaves, num_batches_tracked)


def taps(forward, load, modules: rules.Modules = None):
    """``jax_taps`` for ``compare_steps(..., jax_taps=)``: the output of each NNX module the
    bridge pairs with a torch module (``modules`` as ``from_torch`` takes it), by torch path, in
    torch's layout (a conv's or BatchNorm's channels moved to axis 1), from one eager run of
    ``forward(model, batch)``.

        jax_taps = taps(framework_loss, lambda sd: from_torch(model, sd, modules=modules), modules)
    """
    from flax import nnx

    from funcgrad.interop import taps as tapping

    def find(model):
        _, _, leaves = _read(model)
        layers = _layers(model, leaves)
        torch_paths = rules.torch_module_paths(layers, modules)
        by_path = {_dotted(path): module for path, module in nnx.iter_modules(model)}
        return {id(by_path[layer.path]): (by_path[layer.path], torch_paths[layer.path])
                for layer in layers if layer.path in by_path and layer.kind != "unknown"}

    return tapping.tap_function(forward, load, find, _torch_layout)


def _torch_layout(module, array: np.ndarray) -> np.ndarray:
    """A Flax output in torch's layout: a conv's or BatchNorm's channels-last output channels-first."""
    return np.moveaxis(array, -1, 1) if _kind(module) in ("conv", "batchnorm") and array.ndim >= 3 else array
