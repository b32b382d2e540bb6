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

A model with buffers (BatchNorm) passes ``save=``, the bridge's ``to_torch``: the loss then
takes torch's buffers too and returns the new ones in torch's names, as ``stateful=True``
wants. ``framework_names(pairs)`` lets the verdict name each quantity in both frameworks.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from funcgrad.interop.rules import COUNTER
from funcgrad.state_dict import nested


def torch_named_loss(framework_loss: Callable[[Any, Any], Any], load: Callable[[dict], Any],
                     save: Callable[[Any, dict], Mapping[str, Any]] | None = None) -> Callable:
    """The port's own loss as ``fg.compare_steps`` calls it, over torch's names and layout.

    Without ``save``: ``loss(params, batch) = framework_loss(load(state_dict), batch)``, the
    ``state_dict`` flattened from ``params`` (nested by torch's names, as compare_steps gives
    them), ``load`` the bridge's ``from_torch`` with the framework's model bound.

    With ``save``, for a model with buffers (``compare_steps(..., stateful=True)``):
    ``loss(params, buffers, batch) -> (loss, new_buffers)``. ``load`` takes parameters and
    buffers as one ``state_dict``; ``framework_loss(model, batch)`` returns ``(loss, updated)``
    (the NNX model after its training forward pass, Equinox's ``(module, new_state)``);
    ``save(updated, num_batches_tracked)`` is the bridge's ``to_torch`` and gives the new
    buffers in torch's names. ``num_batches_tracked`` holds each BatchNorm's count plus one,
    as torch's training forward pass counts (Flax and Equinox keep no counter).

    >>> loss = torch_named_loss(eqx_loss, lambda sd: equinox.from_torch(model, state, sd)[0])
    >>> loss = torch_named_loss(nnx_loss, lambda sd: flax_nnx.from_torch(model, sd, modules=modules),
    ...                         lambda m, counts: flax_nnx.to_torch(m, modules=modules, num_batches_tracked=counts))
    """
    if not callable(framework_loss) or not callable(load):
        raise TypeError(f"torch_named_loss: framework_loss and load must be functions, got "
                        f"{type(framework_loss).__name__} and {type(load).__name__}")
    if save is not None and not callable(save):
        raise TypeError(f"torch_named_loss: save must be a function (the bridge's to_torch) or None, got "
                        f"{type(save).__name__}")

    if save is None:
        def loss(params, batch):
            return framework_loss(load(_flat(params)), batch)

        return loss

    def stateful_loss(params, buffers, batch):
        old = _flat(buffers)
        out = framework_loss(load(_flat(params) | old), batch)
        if not (isinstance(out, tuple) and len(out) == 2):
            raise ValueError(f"torch_named_loss: with save=, framework_loss(model, batch) must return (loss, "
                             f"updated model), got {type(out).__name__}")
        value, updated = out
        counts = {key: count + 1 for key, count in old.items() if key.rpartition(".")[2] == COUNTER}
        saved = save(updated, counts)
        missing = sorted(set(old) - set(saved))
        if missing:
            raise ValueError(f"torch_named_loss: save gave no {missing}, buffers of torch's model; it gave "
                             f"{sorted(saved)}")
        return value, nested({key: saved[key] for key in old}, "torch_named_loss")

    return stateful_loss


def framework_names(pairs: Sequence[Any]) -> dict[str, str]:
    """torch key -> the framework's key, from a bridge's ``pairs(...)``, for
    ``compare_steps(..., framework_names=)``, so a verdict names both: ``features.0.weight /
    conv1.kernel``. The rows of a packed tensor name each framework leaf.

    >>> framework_names(flax_nnx.pairs(model, modules={"0": "fc1"}))["0.weight"]
    'fc1.kernel'
    """
    names: dict[str, list[str]] = {}
    for pair in pairs:
        if pair.framework_key is not None:
            names.setdefault(pair.torch_key, []).append(pair.framework_key)
    return {key: ", ".join(values) for key, values in names.items()}



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

