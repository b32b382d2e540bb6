"""What each module of a Flax NNX or Equinox port outputs, keyed by torch's module names, so
the verdict can name the first module whose output differs (``compare_steps(..., jax_taps=)``).

A tap runs the port's own forward pass once, eagerly, with the ``__call__`` of each module
it watches wrapped to hand its output to ``jax.debug.callback``: inside ``jax.vmap`` (as an
Equinox model runs per example) the callback comes once per example, and the outputs are
stacked back into the batch. The outputs come back in torch's layout: a Flax conv's or
BatchNorm's channels-last output with its channels moved to axis 1.

    jax_taps = flax_nnx.taps(framework_loss, load, modules={"0": "conv1", "1": "bn1"})
    jax_taps(params, buffers, batch)   # {"0": conv1's output, "1": bn1's output, ...}

The modules watched are the ones the bridge pairs with torch modules (those with parameters
or statistics), named as ``from_torch`` names them with the same ``modules=``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import jax
import numpy as np

from funcgrad.interop.ports import _flat


def _first_array(output):
    """A module's output, or the first of a tuple's (Equinox's BatchNorm returns (y, state))."""
    return output[0] if isinstance(output, tuple) and output else output


@contextlib.contextmanager
def _watching(watched: Mapping[int, tuple[Any, str]], outputs: dict[str, list]) -> Iterator[None]:
    """Within the block, each watched module's calls append its output to ``outputs[torch_path]``."""
    originals = {}
    for module, _ in watched.values():
        cls = type(module)
        if cls not in originals:
            originals[cls] = cls.__dict__.get("__call__")

    def wrap(cls):
        call = cls.__call__

        def tapped(self, *args, **kwargs):
            output = call(self, *args, **kwargs)
            if id(self) in watched:
                name = watched[id(self)][1]
                jax.debug.callback(lambda value: outputs.setdefault(name, []).append(np.asarray(value)),
                                   _first_array(output))
            return output

        return tapped

    try:
        for cls in originals:
            setattr(cls, "__call__", wrap(cls))
        yield
    finally:
        for cls, original in originals.items():
            if original is None:
                delattr(cls, "__call__")
            else:
                setattr(cls, "__call__", original)


def capture(forward: Callable[[Any, Any], Any], model, batch, watched: Mapping[int, tuple[Any, str]],
            to_torch_layout: Callable[[Any, np.ndarray], np.ndarray]) -> dict[str, np.ndarray]:
    """Run ``forward(model, batch)`` once and return each watched module's output by torch
    path. A module called once gives that call's output; called once per example (under
    ``vmap``) the examples stacked; called any other number of times, it is left out."""
    outputs: dict[str, list] = {}
    with _watching(watched, outputs):
        jax.block_until_ready(forward(model, batch))
        jax.effects_barrier()
    size = len(batch[0]) if isinstance(batch, tuple) and batch and hasattr(batch[0], "__len__") else None
    modules = {name: module for module, name in watched.values()}
    taps = {}
    for name, values in outputs.items():
        if len(values) == 1:
            taps[name] = to_torch_layout(modules[name], values[0])
        elif len(values) == size:
            taps[name] = to_torch_layout(modules[name], np.stack(values))
    return taps


def tap_function(forward: Callable, load: Callable[[dict], Any],
                 find: Callable[[Any], dict[int, tuple[Any, str]]],
                 to_torch_layout: Callable[[Any, np.ndarray], np.ndarray]) -> Callable:
    """``jax_taps(params, buffers, batch)`` for ``compare_steps``: ``load`` the state_dict,
    ``find`` the modules to watch in what it loaded (id -> (module, torch path)), run ``forward``."""

    def jax_taps(params, buffers, batch):
        model = load(_flat(params) | _flat(buffers or {}))
        return capture(forward, model, batch, find(model), to_torch_layout)

    return jax_taps
