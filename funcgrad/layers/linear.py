"""``nn.Linear`` and the ``nn.Sequential`` of Linear and ReLU layers (an MLP) as init/apply
pairs, in torch's layout: ``weight`` is ``(out, in)``, ``bias`` is ``(out,)``.

    params = linear_init(jax.random.key(0), 2, 3)         # nn.Linear(2, 3)
    logits = linear_apply(params, x)                       # x @ weight.T + bias
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcgrad import _checks
from funcgrad.layers.base import uniform_fan_in
from funcgrad.types import Params


def linear_init(
    key: jax.Array, in_features: int, out_features: int, dtype=jnp.float32, *, bias: bool = True
) -> Params:
    """Draw ``nn.Linear(in_features, out_features, bias)``'s default initial parameters.

    Same layout (``weight`` is ``(out, in)``, ``bias`` is ``(out,)``, absent with
    ``bias=False``) and distribution, U(-1/sqrt(in), 1/sqrt(in)) for both, as torch's
    ``kaiming_uniform_(a=sqrt(5))``; the draws come from a JAX key, so they are not
    torch's draws.

    >>> params = linear_init(jax.random.key(0), 2, 3)
    >>> params["weight"].shape, params["bias"].shape
    ((3, 2), (3,))
    """
    what = "linear_init"
    _checks.check_dtype_argument(what, dtype)
    _checks.check_positive_int(what, "in_features", in_features)
    _checks.check_positive_int(what, "out_features", out_features)
    weight_key, bias_key = jax.random.split(key)
    params = {"weight": uniform_fan_in(weight_key, (out_features, in_features), in_features, dtype)}
    if bias:
        params["bias"] = uniform_fan_in(bias_key, (out_features,), in_features, dtype)
    return params


def linear_apply(params: Params, x: jax.Array) -> jax.Array:
    """``nn.Linear``'s forward pass: ``x @ weight.T + bias`` (no bias when params have none).

    ``params`` holds ``weight`` and, unless the layer has ``bias=False``, a ``bias`` of
    shape ``(out,)``; anything else is refused (a ``(1,)`` bias would broadcast over every
    output, an extra key would be ignored).

    >>> params = linear_init(jax.random.key(0), 2, 3)
    >>> linear_apply(params, jnp.ones((5, 2))).shape
    (5, 3)
    """
    what = "linear_apply"
    _checks.check_float_leaves(what, params, "params")
    _checks.check_float_leaves(what, x, "x")
    if not isinstance(params, dict) or "weight" not in params or set(params) - {"weight", "bias"}:
        keys = sorted(params) if isinstance(params, dict) else type(params).__name__
        raise ValueError(f"{what}: params must hold 'weight' and optionally 'bias' (nn.Linear's state_dict), "
                         f"got {keys}")
    weight = params["weight"]
    if jnp.ndim(weight) != 2:
        raise ValueError(f"{what}: weight must be (out, in), got shape {jnp.shape(weight)}")
    if "bias" in params and jnp.shape(params["bias"]) != weight.shape[:1]:
        raise ValueError(f"{what}: bias has shape {jnp.shape(params['bias'])} but weight {weight.shape} "
                         f"has {weight.shape[0]} outputs: bias must be ({weight.shape[0]},)")
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != weight.shape[1]:
        raise ValueError(
            f"{what}: input has shape {jnp.shape(x)} but weight has shape "
            f"{weight.shape} (out, in): the input's last dimension must be {weight.shape[1]}"
        )
    y = x @ weight.T
    return y + params["bias"] if "bias" in params else y


def mlp_init(key: jax.Array, sizes: tuple[int, ...], dtype=jnp.float32) -> Params:
    """``nn.Sequential(Linear(sizes[0], sizes[1]), ReLU(), Linear(sizes[1], sizes[2]), ...)``'s
    default initial parameters, keyed as its ``state_dict`` is: ``"0"``, ``"2"``, ``"4"``...
    (the activations hold no parameters but take the odd indices).

    >>> params = mlp_init(jax.random.key(0), (784, 128, 10))
    >>> sorted(fg.to_state_dict(params))
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    _checks.check_dtype_argument("mlp_init", dtype)
    if len(sizes) < 2:
        raise ValueError(f"mlp_init: sizes needs at least an input and an output size, got {sizes}")
    keys = jax.random.split(key, len(sizes) - 1)
    return {
        str(2 * i): linear_init(layer_key, fan_in, fan_out, dtype)
        for i, (layer_key, fan_in, fan_out) in enumerate(zip(keys, sizes[:-1], sizes[1:]))
    }


def mlp_apply(params: Params, x: jax.Array, activation=jax.nn.relu) -> jax.Array:
    """The ``nn.Sequential`` of :func:`mlp_init`'s forward pass: Linear, activation, ..., Linear.

    ``params`` must be what :func:`mlp_init` builds: layers ``"0"``, ``"2"``, ... each with a
    ``weight`` and a ``bias``, and consecutive layers' sizes chained.

    >>> mlp_apply(mlp_init(jax.random.key(0), (784, 128, 10)), jnp.ones((5, 784))).shape
    (5, 10)
    """
    what = "mlp_apply"
    _checks.check_float_leaves(what, params, "params")
    _checks.check_float_leaves(what, x, "x")
    _check_mlp_params(what, params)
    layers = sorted(params, key=int)
    for name in layers[:-1]:
        x = activation(linear_apply(params[name], x))
    return linear_apply(params[layers[-1]], x)


def _check_mlp_params(what: str, params) -> None:
    """Layers ``"0"``, ``"2"``, ... each exactly ``weight`` and ``bias``, as mlp_init builds them."""
    if not isinstance(params, dict) or not params:
        raise ValueError(f"{what}: params must be mlp_init's dict of layers '0', '2', ..., got {params!r:.80}")
    expected = [str(2 * i) for i in range(len(params))]
    if set(params) != set(expected):
        raise ValueError(f"{what}: params hold layers {sorted(params)}, but mlp_init's are {expected} "
                         f"(Linear layers at the even indices of the nn.Sequential)")
    for name in expected:
        layer = params[name]
        keys = sorted(layer) if isinstance(layer, dict) else type(layer).__name__
        if keys != ["bias", "weight"]:
            missing = [f"{name}.{key}" for key in ("weight", "bias") if not isinstance(layer, dict) or key not in layer]
            raise ValueError(f"{what}: layer {name} must hold 'weight' and 'bias', got {keys}"
                             + (f" (missing {', '.join(missing)})" if missing else ""))
