"""torch's ``state_dict`` form of a params pytree and back: keys joined with dots, buffers
(BatchNorm's running statistics) apart from the parameters.

    params, buffers = map(fg.from_state_dict, fg.split_buffers(sd))   # sd: model.state_dict()
    model.load_state_dict({k: torch.tensor(v) for k, v in fg.to_state_dict(params, buffers).items()})
"""

from __future__ import annotations

from typing import Mapping

import jax.numpy as jnp
import numpy as np

from funcgrad import _checks

# The buffers torch's layers keep in their state_dict beside their parameters (BatchNorm's).
BUFFER_NAMES = ("running_mean", "running_var", "num_batches_tracked")


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
    return flat(params)


def flat(tree, prefix: str = "") -> dict[str, np.ndarray]:
    """A nested dict of arrays as ``{"a.b": numpy array}``, unchecked (:func:`to_state_dict` checks)."""
    out: dict[str, np.ndarray] = {}
    for name, child in tree.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(child, Mapping):
            out.update(flat(child, key))
        else:
            out[key] = np.asarray(child)
    return out


def from_state_dict(state_dict: Mapping) -> dict:
    """Rebuild a nested params pytree from a ``state_dict``-shaped mapping of arrays.

    Accepts numpy arrays, JAX arrays and torch tensors (detached and moved to the CPU
    here, whether or not they require grad); a bfloat16 or float16 tensor is refused, as
    funcgrad computes in float32 or float64.

    >>> params = from_state_dict({"linear.weight": np.ones((3, 2)), "linear.bias": np.zeros(3)})
    >>> params["linear"]["weight"].shape
    (3, 2)
    """
    what = "from_state_dict"
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"{what}: state_dict must be a mapping of names to arrays (model.state_dict()), "
                        f"got {type(state_dict).__name__}")
    arrays = {key: jnp.asarray(host_array(what, key, value)) for key, value in state_dict.items()}
    _checks.check_float_leaves(what, arrays, "state_dict")
    return nested(arrays, what)


def nested(flat: Mapping, what: str = "from_state_dict") -> dict:
    """``{"a.b": x}`` as ``{"a": {"b": x}}``, the arrays as they are.

    >>> nested({"0.weight": w, "0.bias": b})
    {'0': {'weight': w, 'bias': b}}
    """
    tree: dict = {}
    for key, array in flat.items():
        *parents, leaf = key.split(".")
        node = tree
        for name in parents:
            node = node.setdefault(name, {})
            if not isinstance(node, dict):
                raise ValueError(f"{what}: {key!r} lies under {name!r}, which is itself an array")
        if leaf in node:
            raise ValueError(f"{what}: {key!r} is given twice, or is both an array and a module")
        node[leaf] = array
    return tree


def host_array(what: str, name: str, value) -> np.ndarray:
    """``value`` (a numpy or JAX array, or a torch tensor) as a numpy array on the host."""
    if type(value).__module__.startswith("torch"):
        if str(getattr(value, "dtype", "")) in ("torch.bfloat16", "torch.float16"):
            raise TypeError(f"{what}: {name} is a {value.dtype} tensor; funcgrad computes in float32 or float64: "
                            f"cast the state_dict first ({{k: v.float() for k, v in sd.items()}})")
        value = value.detach().cpu().numpy()
    return np.asarray(value)


def split_buffers(state_dict: Mapping) -> tuple[dict, dict]:
    """A ``state_dict`` split into its parameters and its buffers (``BUFFER_NAMES``), each
    still keyed by torch's names: what a model's ``init`` returns, flattened.

    >>> params, buffers = map(fg.from_state_dict, fg.split_buffers(torch_model.state_dict()))
    >>> logits, buffers = model.apply(params, buffers, x, train=False)
    """
    def is_buffer(name: str) -> bool:
        return name.rsplit(".", 1)[-1] in BUFFER_NAMES

    return ({name: value for name, value in state_dict.items() if not is_buffer(name)},
            {name: value for name, value in state_dict.items() if is_buffer(name)})


def flat_shapes(tree, prefix: str = "") -> dict[str, tuple[int, ...]]:
    """A nested dict's leaves as ``{"a.b": shape}``, keys joined as ``state_dict`` joins them."""
    if not isinstance(tree, dict):
        return {prefix: tuple(jnp.shape(tree))}
    flat = {}
    for name, child in tree.items():
        flat.update(flat_shapes(child, f"{prefix}.{name}" if prefix else str(name)))
    return flat
