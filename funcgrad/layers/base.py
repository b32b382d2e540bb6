"""What every layer shares: the ``Layer(init, apply)`` pair and its printed form, torch's
default initialisation, and the strict check of the params a layer is applied to.

    layer = Layer(init, apply, "Linear(in_features=4, out_features=2, bias=True)")
    params, buffers = layer.init(jax.random.key(0))
    y, buffers = layer.apply(params, buffers, x, train=False)

A layer refuses params that its ``init`` would not build before anything is computed:
missing and unexpected keys, and shapes that differ, named as torch's
``load_state_dict(strict=True)`` names them. A port that forgot a bias or loaded a 5x5
kernel into a 3x3 convolution fails at its first call, not as a plausible number.
"""

from __future__ import annotations

import functools
import math
import operator
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from funcgrad import _checks
from funcgrad.state_dict import flat_shapes


class Layer(NamedTuple):
    """A layer or a model: ``init(key, dtype=jnp.float32) -> (params, buffers)`` and
    ``apply(params, buffers, x, *, train, key=None, name="") -> (y, new_buffers)``
    (``name``: the layer's path in its model, which keys its dropout mask and names it in
    errors and profiles). It prints as its torch twin prints.

    >>> fg.layers.Conv2d(1, 8, 3, padding=1)
    Conv2d(1, 8, kernel_size=(3, 3), stride=(1, 1), padding=(1, 1))
    """

    init: Callable
    apply: Callable
    torch_repr: str = "Layer()"

    def __repr__(self) -> str:
        return self.torch_repr


def layer(init: Callable, apply: Callable, torch_repr: str) -> Layer:
    """A :class:`Layer` whose ``apply`` first checks its params and buffers against what
    ``init`` builds (keys and shapes, see the module doc), and runs under
    ``jax.named_scope(name)``, so profiles and HLO dumps name the layer."""
    expected = _expected_shapes(init)

    def checked_apply(params, buffers, x, *, train: bool, key=None, name: str = ""):
        what = torch_repr.split("(", 1)[0] + (f" at '{name}'" if name else "")
        check_state(what, name, params, buffers, expected())
        with jax.named_scope(name or what):
            return apply(params, buffers, x, train=train, key=key, name=name)

    return Layer(init, checked_apply, torch_repr)


def stateless(function: Callable, torch_repr: str, init: Callable | None = None) -> Layer:
    """A layer without buffers: ``function(params, x)``, or ``function(x)`` without ``init``."""
    def apply(params, buffers, x, *, train, key=None, name=""):
        return (function(params, x) if init else function(x)), {}

    return layer(init or (lambda key, dtype=jnp.float32: ({}, {})), apply, torch_repr)


def torch_repr(name: str, *args, **options) -> str:
    """``Name(arg, ..., option=value, ...)`` as torch's ``extra_repr`` writes it (strings unquoted).

    >>> torch_repr("Conv2d", 1, 8, kernel_size=(3, 3))
    'Conv2d(1, 8, kernel_size=(3, 3))'
    """
    parts = [str(arg) for arg in args] + [f"{key}={value}" for key, value in options.items()]
    return f"{name}({', '.join(parts)})"


def uniform_fan_in(key: jax.Array, shape: tuple[int, ...], fan_in: int, dtype) -> jax.Array:
    """torch's default draw for a Linear's or a Conv's weight and bias,
    ``kaiming_uniform_(a=sqrt(5))``: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    >>> uniform_fan_in(jax.random.key(0), (3, 2), 2, jnp.float32).shape
    (3, 2)
    """
    bound = 1.0 / math.sqrt(fan_in)
    return uniform(key, shape, dtype, -bound, bound)


def uniform(key: jax.Array, shape: tuple[int, ...], dtype, minval: float, maxval: float) -> jax.Array:
    """``jax.random.uniform(key, shape, dtype, minval, maxval)``, the same numbers, drawn as
    one flat vector and reshaped.

    jax counts its random bits along the shape's flat, row-major index, so the flat draw is
    the same draw; XLA:CPU compiles the flat one 3 to 5 times faster than a draw of three or
    more dimensions (a convolution's kernel: 0.15 s against 0.7 s), once per shape.

    >>> uniform(jax.random.key(0), (2, 1, 3, 3), jnp.float32, -1.0, 1.0).shape
    (2, 1, 3, 3)
    """
    shape = tuple(operator.index(size) for size in (shape if hasattr(shape, "__iter__") else (shape,)))
    return jax.random.uniform(key, (math.prod(shape),), dtype, minval, maxval).reshape(shape)


def _expected_shapes(init: Callable) -> Callable[[], tuple[dict, dict]]:
    """``init``'s params and buffers as flat ``{name: shape}`` dicts, computed once, on first use."""
    @functools.cache
    def expected():
        params, buffers = jax.eval_shape(lambda: init(jax.random.key(0)))
        return flat_shapes(params), flat_shapes(buffers)

    return expected


def check_state(what: str, name: str, params, buffers, expected: tuple[dict, dict]) -> None:
    """``params`` and ``buffers`` hold exactly the keys and shapes ``expected`` holds, and one
    float dtype; else a ValueError naming every difference, keys prefixed with ``name``."""
    problems = []
    for tree, wanted, kind in ((params, expected[0], "params"), (buffers, expected[1], "buffers")):
        if not isinstance(tree, dict):
            raise TypeError(f"{what}: {kind} must be a dict keyed as the torch module's state_dict "
                            f"(what init returns), got {type(tree).__name__}")
        given = flat_shapes(tree)
        full = (lambda key: f"{name}.{key}" if name else key)
        missing = [full(key) for key in wanted if key not in given]
        unexpected = [full(key) for key in given if key not in wanted]
        if missing:
            problems.append(f"missing key(s) in {kind}: {', '.join(repr(k) for k in missing)}")
        if unexpected:
            problems.append(f"unexpected key(s) in {kind}: {', '.join(repr(k) for k in unexpected)}")
        problems += [f"size mismatch for {full(key)}: got shape {given[key]}, the layer's is {shape}"
                     for key, shape in wanted.items() if key in given and given[key] != shape]
    if problems:
        raise ValueError(f"{what}: the params do not fit the layer (as torch's load_state_dict(strict=True) "
                         f"would refuse them): " + "; ".join(problems))
    floats = {jnp.result_type(leaf) for leaf in jax.tree.leaves(params)
              if jnp.issubdtype(jnp.result_type(leaf), jnp.floating)}
    if len(floats) > 1:
        raise TypeError(f"{what}: the params mix dtypes {sorted(str(d) for d in floats)}; a torch module "
                        f"holds one (cast them all to float32 or float64)")
    _checks.check_float_leaves(what, params, "params")
    _checks.check_float_leaves(what, buffers, "buffers")
