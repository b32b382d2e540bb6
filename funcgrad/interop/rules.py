"""Which torch ``state_dict`` key is which framework leaf, and how its layout changes (numpy, or JAX arrays passing through).

The bridges (``flax_nnx``, ``flax_linen``, ``equinox``) describe a framework model as a list
of ``Layer``s (a module path, a kind such as ``"conv"``, its leaves); ``plan`` pairs each leaf
with a torch key by name, never by order, and ``describe`` prints the plan:

    >>> layer = Layer("conv1", "conv", {"kernel": np.zeros((5, 5, 1, 16)), "bias": np.zeros(16)})
    >>> print(describe(plan([layer], "flax", modules={"features.0": "conv1"})))
    features.0.weight (16, 1, 5, 5) -> conv1.kernel (5, 5, 1, 16): transpose(2, 3, 1, 0)
    features.0.bias (16,) -> conv1.bias (16,): copy
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple, Union

import jax
import numpy as np

Shape = tuple[int, ...]
COUNTER = "num_batches_tracked"


class Rule(NamedTuple):
    """A layout change from torch's tensor to the framework's leaf: transposes and reshapes.

    Each step is ``("transpose", axes)`` or ``("reshape", torch_side_shape, framework_side_shape)``;
    a reshape names both shapes, so the rule runs both ways and never reshapes silently.
    Build rules with ``transpose``, ``reshape`` and ``chain``; ``Rule()`` is a copy.
    """

    steps: tuple = ()

    def __str__(self) -> str:
        return ", ".join(
            f"transpose{tuple(step[1])}" if step[0] == "transpose" else f"reshape{tuple(step[2])}"
            for step in self.steps
        ) or "copy"

    def to_framework(self, array: np.ndarray) -> np.ndarray:
        """The framework's leaf from torch's array (numpy or JAX: traced arrays too, so a loss
        can take torch's parameters and differentiate through the layout change)."""
        for step in self.steps:
            array = array.transpose(step[1]) if step[0] == "transpose" else array.reshape(step[2])
        return array

    def to_torch(self, array: np.ndarray) -> np.ndarray:
        for step in reversed(self.steps):
            array = (array.transpose(tuple(int(i) for i in np.argsort(step[1]))) if step[0] == "transpose"
                     else array.reshape(step[1]))
        return array

    def torch_shape(self, framework_shape: Shape) -> Shape:
        """The torch shape this rule turns into ``framework_shape``; ValueError if it cannot."""
        shape = tuple(framework_shape)
        for step in reversed(self.steps):
            if step[0] == "transpose":
                if len(shape) != len(step[1]):
                    raise ValueError(f"rule {self} cannot take shape {tuple(framework_shape)}: "
                                     f"transpose{tuple(step[1])} needs {len(step[1])} dimensions")
                shape = tuple(shape[i] for i in np.argsort(step[1]))
            else:
                if shape != tuple(step[2]):
                    raise ValueError(f"rule {self} cannot take shape {tuple(framework_shape)}: "
                                     f"reshape{tuple(step[2])} gives {tuple(step[2])}, not {shape}")
                shape = tuple(step[1])
        return shape


COPY = Rule()


def transpose(*axes: int) -> Rule:
    """Torch's axes in the framework's order, as ``np.transpose``: ``transpose(1, 0)`` for a Dense kernel."""
    if sorted(axes) != list(range(len(axes))):
        raise ValueError(f"transpose{axes}: the axes must be a permutation of 0..{len(axes) - 1}")
    return Rule((("transpose", tuple(axes)),))


def reshape(torch_shape: Sequence[int], framework_shape: Sequence[int]) -> Rule:
    """Reshape from ``torch_shape`` to ``framework_shape`` (both named, so the rule inverts).

    >>> str(reshape((6,), (2, 3)))
    'reshape(2, 3)'
    """
    torch_shape, framework_shape = tuple(torch_shape), tuple(framework_shape)
    if int(np.prod(torch_shape)) != int(np.prod(framework_shape)):
        raise ValueError(f"reshape: {torch_shape} and {framework_shape} hold different numbers of elements")
    return Rule((("reshape", torch_shape, framework_shape),))


def chain(*rules: Rule) -> Rule:
    """The rules one after the other, torch side first.

    >>> str(chain(transpose(1, 0), reshape((4, 6), (4, 2, 3))))
    'transpose(1, 0), reshape(4, 2, 3)'
    """
    return Rule(tuple(step for rule in rules for step in rule.steps))


class Pair(NamedTuple):
    """One torch key (or rows of one, for attention's packed ``in_proj_*``) and its framework leaf.

    ``framework_key`` is None for torch's BatchNorm ``num_batches_tracked``, which Flax and
    Equinox do not keep. ``torch_shape`` is the shape the rule takes (the rows' shape);
    ``rows`` is ``(start, stop, total)`` along torch's axis 0.
    """

    torch_key: str
    framework_key: str | None
    torch_shape: Shape
    framework_shape: Shape | None
    rule: Rule = COPY
    rows: tuple[int, int, int] | None = None

    @property
    def torch_name(self) -> str:
        """The torch key as reports name it: ``attn.in_proj_weight[0:8]`` for rows of a packed tensor."""
        return self.torch_key if self.rows is None else f"{self.torch_key}[{self.rows[0]}:{self.rows[1]}]"

    def __str__(self) -> str:
        if self.framework_key is None:
            return (f"{self.torch_key} () -> none: torch's BatchNorm counter; from_torch drops it, "
                    f"to_torch takes it from num_batches_tracked=")
        return f"{self.torch_name} {self.torch_shape} -> {self.framework_key} {self.framework_shape}: {self.rule}"


class Layer(NamedTuple):
    """A framework module as the plan sees it: its dotted path, its kind (``"linear"``, ``"conv"``,
    ``"batchnorm"``, ``"layernorm"``, ``"embedding"``, ``"attention"``; any other kind pairs each
    leaf with the torch key of the same name, unchanged), and its leaves by name relative to it
    (anything with ``.shape``; attention's are ``query.kernel``...)."""

    path: str
    kind: str
    leaves: Mapping[str, Any]


Modules = Union[Mapping[str, str], Callable[[str], str], None]
Override = Union[Rule, tuple[str, Rule]]
Overrides = Union[Mapping[str, Override], Callable[[Pair], Union[Override, None]], None]


def describe(pairs: Sequence[Pair]) -> str:
    """The plan, one line per pair, both names and shapes and the rule between them:
    ``features.0.weight (16, 1, 5, 5) -> conv1.kernel (5, 5, 1, 16): transpose(2, 3, 1, 0)``."""
    return "\n".join(str(pair) for pair in pairs)


def _join(*parts: str) -> str:
    return ".".join(part for part in parts if part)


def _flax_rules(kind: str, leaves: Mapping[str, Any]) -> dict[str, tuple[str, Rule, tuple | None]]:
    shape = {name: tuple(leaf.shape) for name, leaf in leaves.items()}
    if kind == "linear":
        return {"kernel": ("weight", transpose(1, 0), None), "bias": ("bias", COPY, None)}
    if kind == "conv":
        ndim = len(shape.get("kernel", (0, 0)))
        return {"kernel": ("weight", transpose(*range(2, ndim), 1, 0), None), "bias": ("bias", COPY, None)}
    if kind == "batchnorm":
        return {"scale": ("weight", COPY, None), "bias": ("bias", COPY, None),
                "mean": ("running_mean", COPY, None), "var": ("running_var", COPY, None)}
    if kind == "layernorm":
        return {"scale": ("weight", COPY, None), "bias": ("bias", COPY, None)}
    if kind == "embedding":
        return {"embedding": ("weight", COPY, None)}
    if kind == "attention":
        # DenseGeneral kernels: query (E, H, D) is torch's (H * D, E) rows transposed, heads major
        table = {}
        for name, rows in _packed_rows(shape, ("query", "key", "value"), lambda s: s[1] * s[2]).items():
            e_in, heads, depth = shape[f"{name}.kernel"]
            kernel = chain(transpose(1, 0), reshape((e_in, heads * depth), (e_in, heads, depth)))
            table[f"{name}.kernel"] = ("in_proj_weight", kernel, rows)
            table[f"{name}.bias"] = ("in_proj_bias", reshape((heads * depth,), (heads, depth)), rows)
        if "out.kernel" in shape:
            heads, depth, e_out = shape["out.kernel"]
            kernel = chain(transpose(1, 0), reshape((heads * depth, e_out), (heads, depth, e_out)))
            table["out.kernel"] = ("out_proj.weight", kernel, None)
        table["out.bias"] = ("out_proj.bias", COPY, None)
        return table
    return {}


def _equinox_rules(kind: str, leaves: Mapping[str, Any]) -> dict[str, tuple[str, Rule, tuple | None]]:
    # Linear, LayerNorm and Embedding keep torch's names and layouts: the same-name copy
    shape = {name: tuple(leaf.shape) for name, leaf in leaves.items()}
    if kind == "conv":
        bias = shape.get("bias", (0,))
        return {"weight": ("weight", COPY, None), "bias": ("bias", reshape(bias[:1], bias), None)}
    if kind == "batchnorm":
        table = {"weight": ("weight", COPY, None), "bias": ("bias", COPY, None)}
        for mode in ("ema", "batch"):
            table[f"{mode}_state_index[0]"] = ("running_mean", COPY, None)
            table[f"{mode}_state_index[1]"] = ("running_var", COPY, None)
        return table
    if kind == "attention":
        table = {}
        for name, rows in _packed_rows(shape, ("query_proj", "key_proj", "value_proj"), lambda s: s[0]).items():
            table[f"{name}.weight"] = ("in_proj_weight", COPY, rows)
            table[f"{name}.bias"] = ("in_proj_bias", COPY, rows)
        table["output_proj.weight"] = ("out_proj.weight", COPY, None)
        table["output_proj.bias"] = ("out_proj.bias", COPY, None)
        return table
    return {}


def _packed_rows(shape: Mapping[str, Shape], names: Sequence[str],
                 width: Callable[[Shape], int]) -> dict[str, tuple[int, int, int]]:
    # torch packs q, k, v (in that order) along in_proj_weight's rows; the widths come from the
    # framework's projection weights, so a missing projection leaves rows no one fills.
    kernel = "kernel" if f"{names[0]}.kernel" in shape else "weight"
    widths = {name: width(shape[f"{name}.{kernel}"]) for name in names if f"{name}.{kernel}" in shape}
    total, start, rows = sum(widths.values()), 0, {}
    for name, size in widths.items():
        rows[name] = (start, start + size, total)
        start += size
    return rows


_STYLES = {"flax": _flax_rules, "equinox": _equinox_rules}
_TORCH_ORDER = ("weight", "bias", "running_mean", "running_var", "in_proj_weight", "in_proj_bias",
                "out_proj.weight", "out_proj.bias")


def plan(layers: Sequence[Layer], style: str, modules: Modules = None, overrides: Overrides = None) -> list[Pair]:
    """Pair every framework leaf with a torch key, by name.

    Args:
      layers: the framework model, as the bridge read it.
      style: ``"flax"`` (NNX and linen: ``kernel``, ``scale``, ``embedding``) or ``"equinox"``.
      modules: which torch module each framework module is. A mapping torch path -> framework
        path (``{"features.0": "conv1"}``; an entry also maps what lies below it, so
        ``{"features": "features.layers"}`` maps ``features.0`` to ``features.layers.0``), or a
        function framework path -> torch path (the framework model is the side both directions
        have). Paths it does not name are the same on both sides.
      overrides: per framework key, a ``Rule`` to use instead of the default, or a
        ``(torch_key, Rule)`` pair to pair it with another torch key; or a function of the
        default ``Pair`` returning one of those or None (keep the default).

    Returns:
      the pairs, layer by layer, in torch's order within a layer; after each BatchNorm's
      statistics, a ``Pair`` with ``framework_key=None`` for its ``num_batches_tracked``.
    """
    torch_path = _torch_paths(layers, modules)
    pairs = []
    for layer in layers:
        table = _STYLES[style](layer.kind, layer.leaves)
        found = []
        for name, leaf in layer.leaves.items():
            torch_leaf, rule, rows = table.get(name, (name, COPY, None))
            shape = tuple(leaf.shape)
            found.append((torch_leaf, Pair(_join(torch_path[layer.path], torch_leaf), _join(layer.path, name),
                                           rule.torch_shape(shape), shape, rule, rows)))
        # torch's order within a module, so the plan reads like torch_model.state_dict()
        found.sort(key=lambda item: (_TORCH_ORDER.index(item[0]) if item[0] in _TORCH_ORDER else len(_TORCH_ORDER),
                                     item[1].rows or ()))
        pairs += [pair for _, pair in found]
        if any(torch_leaf == "running_mean" for torch_leaf, _ in found):
            pairs.append(Pair(_join(torch_path[layer.path], COUNTER), None, (), None))
    pairs = _apply_overrides(pairs, overrides)
    seen: dict[str, str] = {}
    for pair in pairs:
        if pair.framework_key is None:
            continue
        if pair.torch_name in seen:
            raise ValueError(f"torch key {pair.torch_name} is paired with both {seen[pair.torch_name]} and "
                             f"{pair.framework_key}: give each framework module its own torch module in modules=")
        seen[pair.torch_name] = pair.framework_key
    return pairs


def torch_module_paths(layers: Sequence[Layer], modules: Modules = None) -> dict[str, str]:
    """Each framework layer's torch module path, as ``plan`` pairs them: ``{"conv1": "features.0"}``."""
    return _torch_paths(layers, modules)


def _torch_paths(layers: Sequence[Layer], modules: Modules) -> dict[str, str]:
    if callable(modules):
        paths = {layer.path: modules(layer.path) for layer in layers}
        wrong = {path: torch for path, torch in paths.items() if not isinstance(torch, str)}
        if wrong:
            raise ValueError(f"modules: the function must give a torch module path (str) for every framework "
                             f"module; it gave {wrong}")
        return paths
    inverse: dict[str, str] = {}
    for torch_path, framework_path in (modules or {}).items():
        if framework_path in inverse:
            raise ValueError(f"modules: torch modules {inverse[framework_path]!r} and {torch_path!r} both map "
                             f"to framework module {framework_path!r}")
        inverse[framework_path] = torch_path
    parts = {layer.path: layer.path.split(".") if layer.path else [] for layer in layers}
    unknown = [path for path in inverse
               if not any(p[:len(path.split("."))] == path.split(".") for p in parts.values()) and path]
    if unknown:
        raise ValueError(f"modules: framework modules {unknown} are not in the model; its modules with "
                         f"leaves are {sorted(parts)}")
    paths = {}
    for layer in layers:
        for cut in range(len(parts[layer.path]), -1, -1):
            prefix = ".".join(parts[layer.path][:cut])
            if prefix in inverse:
                paths[layer.path] = _join(inverse[prefix], *parts[layer.path][cut:])
                break
        else:
            paths[layer.path] = layer.path
    return paths


def _apply_overrides(pairs: list[Pair], overrides: Overrides) -> list[Pair]:
    if overrides is None:
        return pairs
    if not callable(overrides):
        unknown = sorted(set(overrides) - {pair.framework_key for pair in pairs if pair.framework_key})
        if unknown:
            raise ValueError(f"overrides: framework keys {unknown} are not in the model; overrides are keyed "
                             f"by framework key: {[pair.framework_key for pair in pairs if pair.framework_key]}")
    result = []
    for pair in pairs:
        if pair.framework_key is None:
            result.append(pair)
            continue
        choice = overrides(pair) if callable(overrides) else overrides.get(pair.framework_key)
        if choice is None:
            result.append(pair)
            continue
        if isinstance(choice, tuple) and not isinstance(choice, Rule) and len(choice) == 2:
            (torch_key, rule), rows = choice, None
        else:
            torch_key, rule, rows = pair.torch_key, choice, pair.rows
        if not isinstance(torch_key, str) or not isinstance(rule, Rule):
            raise ValueError(f"overrides[{pair.framework_key!r}]: expected a Rule or a (torch_key, Rule) pair, "
                             f"got {choice!r}")
        try:
            torch_shape = rule.torch_shape(pair.framework_shape)
        except ValueError as error:
            raise ValueError(f"overrides[{pair.framework_key!r}]: {error}") from None
        result.append(Pair(torch_key, pair.framework_key, torch_shape, pair.framework_shape, rule, rows))
    return result


def _hint(torch_left: Sequence[str], framework: str) -> str:
    hints = []
    if framework == "equinox" and any(key.endswith(("in_proj_bias", "out_proj.bias")) or "in_proj_bias[" in key
                                      for key in torch_left):
        hints.append("equinox's MultiheadAttention has biases only when built with use_query_bias=True, "
                     "use_key_bias=True, use_value_bias=True, use_output_bias=True")
    hints.append("pair modules by name with modules={'torch.path': 'framework.path'}, and print "
                 "rules.describe(pairs(...)) to see the plan")
    return "; ".join(hints)


def _refuse_leftovers(where: str, framework: str, torch_left: Sequence[str], framework_left: Sequence[str]) -> None:
    if torch_left or framework_left:
        raise ValueError(f"{where}: torch keys with no counterpart: {sorted(torch_left)}; {framework} keys with "
                         f"no counterpart: {sorted(framework_left)} ({_hint(torch_left, framework)})")


def _uncovered(spans: Sequence[tuple[int, int]], total: int) -> list[tuple[int, int]]:
    gaps, at = [], 0
    for start, stop in sorted(spans):
        if start > at:
            gaps.append((at, start))
        at = max(at, stop)
    return gaps + ([(at, total)] if at < total else [])


def from_torch_arrays(where: str, framework: str, pairs: Sequence[Pair],
                      state_dict: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """The framework's leaves from torch's ``state_dict``, by framework key, in torch's dtypes;
    ValueError unless every key on each side is paired and every shape fits its rule."""
    state = {key: value if isinstance(value, jax.Array) else np.asarray(value) for key, value in state_dict.items()}
    paired = [pair for pair in pairs if pair.framework_key is not None]
    counters = {pair.torch_key for pair in pairs if pair.framework_key is None}
    wanted = {pair.torch_key for pair in paired}
    torch_left = [key for key in state if key not in wanted and key not in counters]
    framework_left = [pair.framework_key for pair in paired if pair.torch_key not in state]
    packed: dict[str, list[Pair]] = {}
    for pair in paired:
        if pair.rows is not None and pair.torch_key in state:
            packed.setdefault(pair.torch_key, []).append(pair)
    for key, parts in packed.items():
        torch_left += [f"{key}[{a}:{b}]" for a, b in _uncovered([p.rows[:2] for p in parts], parts[0].rows[2])]
    _refuse_leftovers(where, framework, torch_left, framework_left)

    shapes = []
    for pair in paired:
        array = state[pair.torch_key]
        expected = pair.torch_shape if pair.rows is None else (pair.rows[2],) + pair.torch_shape[1:]
        if array.shape != expected:
            shapes.append(f"{pair.torch_key} has shape {array.shape}, but {pair.framework_key} "
                          f"{pair.framework_shape} needs {expected} ({pair.rule})")
    if shapes:
        raise ValueError(f"{where}: " + "; ".join(shapes))
    return {pair.framework_key: pair.rule.to_framework(
        state[pair.torch_key] if pair.rows is None else state[pair.torch_key][pair.rows[0]:pair.rows[1]])
        for pair in paired}


def to_torch_arrays(where: str, framework: str, pairs: Sequence[Pair], arrays: Mapping[str, Any],
                    num_batches_tracked: int | Mapping[str, Any] | None) -> dict[str, np.ndarray]:
    """torch's ``state_dict`` (in the plan's order) from the framework's leaves by key: numpy
    arrays, or JAX arrays when the leaves are JAX arrays inside a trace (a loss that returns
    torch-named buffers differentiates through this)."""
    state: dict[str, np.ndarray] = {}
    packed: dict[str, list[tuple[Pair, np.ndarray]]] = {}
    counters = [pair.torch_key for pair in pairs if pair.framework_key is None]
    traced = any(isinstance(leaf, jax.core.Tracer) for leaf in arrays.values())
    for pair in pairs:
        if pair.framework_key is None:
            continue
        leaf = arrays[pair.framework_key]
        array = pair.rule.to_torch(leaf if traced else np.asarray(leaf))
        if pair.rows is None:
            state[pair.torch_key] = array if traced else np.array(array)  # a writable copy for torch.from_numpy
        else:
            state.setdefault(pair.torch_key, None)
            packed.setdefault(pair.torch_key, []).append((pair, array))
    torch_left = []
    for key, parts in packed.items():
        parts.sort(key=lambda part: part[0].rows)
        gaps = _uncovered([pair.rows[:2] for pair, _ in parts], parts[0][0].rows[2])
        torch_left += [f"{key}[{a}:{b}]" for a, b in gaps]
        kinds = {(array.shape[1:], array.dtype) for _, array in parts}
        if len(kinds) > 1:
            packed_as = ", ".join(f"{pair.framework_key} {array.shape} {array.dtype}" for pair, array in parts)
            raise ValueError(f"{where}: {key} packs {packed_as}, which differ in trailing shape or dtype")
        state[key] = (jax.numpy.concatenate if traced else np.concatenate)([array for _, array in parts])
    _refuse_leftovers(where, framework, torch_left, [])
    for key in counters:
        state[key] = _counter(where, framework, key, counters, num_batches_tracked)
    return state


def _counter(where: str, framework: str, key: str, keys: Sequence[str],
             given: int | Mapping[str, Any] | None) -> np.ndarray:
    if given is None:
        raise ValueError(f"{where}: torch's BatchNorm keeps a counter that {framework} does not: {list(keys)}; "
                         f"pass num_batches_tracked=N for all of them (0 for a fresh model), or a mapping by torch "
                         f"key (the original state_dict will do)")
    if isinstance(given, Mapping):
        if key not in given:
            raise ValueError(f"{where}: num_batches_tracked has no {key!r}; it needs every one of {list(keys)}")
        given = given[key]
    if isinstance(given, jax.core.Tracer):  # a count inside a trace: its value cannot be checked, its kind can
        if given.shape != () or not jax.numpy.issubdtype(given.dtype, jax.numpy.integer):
            raise ValueError(f"{where}: num_batches_tracked for {key} must be an integer scalar, got {given.dtype} "
                             f"{given.shape}")
        return given
    value = np.asarray(given)
    if value.shape != () or not np.issubdtype(value.dtype, np.integer) or value < 0:
        raise ValueError(f"{where}: num_batches_tracked for {key} must be a non-negative integer, got {given!r}")
    return np.asarray(value, dtype=np.int64)


def check_kept_dtypes(where: str, before: Mapping[str, Any], after: Mapping[str, Any]) -> None:
    """Refuse when JAX changed a dtype on the way in (float64 with 64-bit mode off), naming the keys."""
    changed = [f"{key} {np.dtype(before[key].dtype)} -> {np.dtype(after[key].dtype)}"
               for key in before if np.dtype(before[key].dtype) != np.dtype(after[key].dtype)]
    if changed:
        raise ValueError(f"{where}: JAX would change dtypes: {changed}; turn on 64-bit mode "
                         f"(with jax.enable_x64(True): ...) to keep float64")
