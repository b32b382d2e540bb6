"""Layers as init/apply pairs over a params pytree, in ``torch.nn``'s layout."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad import _checks
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
    _checks.check_dtype_argument("linear_init", dtype)
    bound = 1.0 / math.sqrt(in_features)
    weight_key, bias_key = jax.random.split(key)
    params = {"weight": jax.random.uniform(weight_key, (out_features, in_features), dtype, -bound, bound)}
    if bias:
        params["bias"] = jax.random.uniform(bias_key, (out_features,), dtype, -bound, bound)
    return params


def linear_apply(params: Params, x: jax.Array) -> jax.Array:
    """``nn.Linear``'s forward pass: ``x @ weight.T + bias`` (no bias when params have none).

    >>> params = linear_init(jax.random.key(0), 2, 3)
    >>> linear_apply(params, jnp.ones((5, 2))).shape
    (5, 3)
    """
    _checks.check_float_leaves("linear_apply", params, "params")
    _checks.check_float_leaves("linear_apply", x, "x")
    weight = params["weight"]
    if jnp.ndim(x) < 1 or jnp.shape(x)[-1] != weight.shape[1]:
        raise ValueError(
            f"linear_apply: input has shape {jnp.shape(x)} but weight has shape "
            f"{weight.shape} (out, in): the input's last dimension must be {weight.shape[1]}"
        )
    y = x @ weight.T
    return y + params["bias"] if "bias" in params else y


def mlp_init(key: jax.Array, sizes: tuple[int, ...], dtype=jnp.float32) -> Params:
    """``nn.Sequential(Linear(sizes[0], sizes[1]), ReLU(), Linear(sizes[1], sizes[2]), ...)``'s
    default initial parameters, keyed as its ``state_dict`` is: ``"0"``, ``"2"``, ``"4"``...
    (the activations hold no parameters but take the odd indices).

    >>> params = mlp_init(jax.random.key(0), (784, 128, 10))
    >>> sorted(to_state_dict(params))
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

    >>> mlp_apply(mlp_init(jax.random.key(0), (784, 128, 10)), jnp.ones((5, 784))).shape
    (5, 10)
    """
    _checks.check_float_leaves("mlp_apply", params, "params")
    _checks.check_float_leaves("mlp_apply", x, "x")
    layers = sorted(params, key=int)
    for name in layers[:-1]:
        x = activation(linear_apply(params[name], x))
    return linear_apply(params[layers[-1]], x)


def to_state_dict(params, buffers=None) -> dict[str, np.ndarray]:
    """Flatten a params pytree of nested dicts (and a model's buffers, such as BatchNorm's
    running statistics) into torch's ``state_dict`` form.

    Keys join the nesting with dots, as ``nn.Module.state_dict()`` does; with ``buffers``,
    the result loads into the torch model with ``strict=True``.

    >>> to_state_dict({"linear": {"weight": jnp.ones((3, 2)), "bias": jnp.zeros(3)}}).keys()
    dict_keys(['linear.weight', 'linear.bias'])
    """
    _checks.check_float_leaves("to_state_dict", params, "params")
    if buffers is not None:
        _checks.check_float_leaves("to_state_dict", buffers, "buffers")
        flat_params, flat_buffers = to_state_dict(params), to_state_dict(buffers)
        both = sorted(flat_params.keys() & flat_buffers.keys())
        if both:
            raise ValueError(f"to_state_dict: {both} are both a parameter and a buffer")
        return flat_params | flat_buffers
    flat: dict[str, np.ndarray] = {}

    def visit(prefix: str, node) -> None:
        if isinstance(node, dict):
            for name, child in node.items():
                visit(f"{prefix}.{name}" if prefix else name, child)
        else:
            flat[prefix] = np.asarray(node)

    visit("", params)
    return flat


def from_state_dict(state_dict) -> dict:
    """Rebuild a nested params pytree from a ``state_dict``-shaped mapping of arrays.

    Accepts anything array-like (numpy arrays, or torch tensors after ``.numpy()``).

    >>> params = from_state_dict({"linear.weight": np.ones((3, 2)), "linear.bias": np.zeros(3)})
    >>> params["linear"]["weight"].shape
    (3, 2)
    """
    arrays = {key: jnp.asarray(value) for key, value in state_dict.items()}
    _checks.check_float_leaves("from_state_dict", arrays, "state_dict")
    params: dict = {}
    for key, array in arrays.items():
        *parents, leaf = key.split(".")
        node = params
        for name in parents:
            node = node.setdefault(name, {})
        node[leaf] = array
    return params


# The buffers torch's layers keep in their state_dict beside their parameters (BatchNorm's).
BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")


def split_buffers(state_dict) -> tuple[dict, dict]:
    """A ``state_dict`` split into its parameters and its buffers (``BUFFER_NAMES``), each
    still keyed by torch's names: what a model's ``init`` returns, flattened.

    >>> params, buffers = map(from_state_dict, split_buffers(torch_model.state_dict()))
    >>> logits, buffers = model.apply(params, buffers, x, train=False)
    """
    def is_buffer(name: str) -> bool:
        return name.rsplit(".", 1)[-1] in BUFFER_NAMES

    return ({name: value for name, value in state_dict.items() if not is_buffer(name)},
            {name: value for name, value in state_dict.items() if is_buffer(name)})
