"""A port written in Flax or Equinox, judged by :func:`funcgrad.compare_steps` in torch's names.

``compare_steps`` hands a port torch's parameters, nested by their ``state_dict`` names, in
torch's layout. :func:`torch_named_loss` turns the port's own loss (over its framework's
model) into such a loss: the bridge's ``from_torch`` puts the parameters into the model
inside the loss, and since a layout change is a transpose or a reshape, the gradient comes
back in torch's names and layout. An Optax optimizer then steps torch's tree; its element-wise
arithmetic and its global norms are the same on either layout, so what is judged is what the
port computes.

    model = Net(rngs=nnx.Rngs(0))                        # the Flax NNX port
    loss = torch_named_loss(lambda m, batch: nnx_loss(m, batch),
                            lambda state_dict: flax_nnx.from_torch(model, state_dict, modules=...))
    fg.assert_same_steps(loss, optax.adamw(1e-3), torch_setup, torch_loss, batches)

Models without buffers (BatchNorm's running statistics are not carried through yet).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any


def torch_named_loss(framework_loss: Callable[[Any, Any], Any], load: Callable[[dict], Any]) -> Callable:
    """``loss(params, batch) = framework_loss(load(state_dict_of(params)), batch)``: ``params``
    nested by torch's names (as ``fg.compare_steps`` gives them), ``load`` the bridge's
    ``from_torch`` with the framework's model bound, ``framework_loss`` the port's own loss.

    >>> loss = torch_named_loss(eqx_loss, lambda sd: equinox.from_torch(model, state, sd)[0])
    """
    if not callable(framework_loss) or not callable(load):
        raise TypeError(f"torch_named_loss: framework_loss and load must be functions, got "
                        f"{type(framework_loss).__name__} and {type(load).__name__}")

    def loss(params, batch):
        return framework_loss(load(_flat(params)), batch)

    return loss


def _flat(tree: Mapping, prefix: str = "") -> dict:
    """``{"a": {"b": x}}`` as ``{"a.b": x}``, the leaves as they are (traced arrays stay traced)."""
    out = {}
    for name, child in tree.items():
        key = f"{prefix}.{name}" if prefix else str(name)
        if isinstance(child, Mapping):
            out.update(_flat(child, key))
        else:
            out[key] = child
    return out
