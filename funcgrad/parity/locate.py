"""Where a forward pass parts: the first module, in torch's execution order, whose output
differs between torch and the port at the same weights, as PaDiff names the first differing
layer between Paddle and torch.

torch's side is read with forward hooks on every named module; the port's with
``jax_taps(params, buffers, batch) -> {torch module path: output in torch's layout}``
(:func:`funcgrad.interop.flax_nnx.taps`, :func:`funcgrad.interop.equinox.taps`). Both run
in float64 from torch's state before the failing step, so rounding cannot hide or fake a
difference: the outputs are held to the float64 rule.

    text = first_differing_module("compare_steps", torch_setup, torch_loss, batches, 0, ...)
    # "in float64 the forward pass parts at 0 / conv1 (output 0.41 off; the first module tapped)"
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad.parity import band, replay
from funcgrad.state_dict import nested

FLOAT64 = np.dtype(np.float64)


def torch_module_outputs(model, run: Callable[[], Any]) -> dict[str, np.ndarray]:
    """Each named module's output (the first call's; a tuple's first tensor) while ``run()``
    runs, in the order the modules finished: torch's execution order."""
    import torch

    outputs: dict[str, np.ndarray] = {}

    def hook(name):
        def record(module, inputs, output):
            tensor = output[0] if isinstance(output, (tuple, list)) and output else output
            if isinstance(tensor, torch.Tensor) and name not in outputs:
                outputs[name] = tensor.detach().cpu().numpy().copy()
        return record

    handles = [module.register_forward_hook(hook(name)) for name, module in model.named_modules() if name]
    try:
        with torch.no_grad():
            run()
    finally:
        for handle in handles:
            handle.remove()
    return outputs


def first_differing_module(what: str, torch_setup: Callable, torch_loss: Callable, batches: Sequence[tuple],
                           steps_before: int, stateful: bool, after_backward: Callable | None,
                           jax_taps: Callable, module_names: Mapping[str, str] = {}) -> str:
    """The forward pass of update ``steps_before`` (counted from the batches' first), compared
    module by module in float64 from torch's state there, in words."""
    objects = replay.torch_objects(what, torch_setup, FLOAT64, stateful)
    for batch in batches[:steps_before]:
        replay.torch_step(objects, torch_loss, replay.torch_batch(batch, FLOAT64), after_backward)
    state = replay.snapshot(objects)
    batch = batches[steps_before]
    torch_outputs = torch_module_outputs(objects.model, lambda: torch_loss(objects.model,
                                                                          replay.torch_batch(batch, FLOAT64)))
    with jax.enable_x64(True):
        params = nested({key: jnp.asarray(value) for key, value in state.params.items()})
        buffers = nested({key: jnp.asarray(value) for key, value in state.buffers.items()}) if stateful else {}
        jax_outputs = jax_taps(params, buffers, replay.in_dtype(batch, FLOAT64))
    return _words(torch_outputs, jax_outputs, module_names)


def _words(torch_outputs: Mapping[str, np.ndarray], jax_outputs: Mapping[str, np.ndarray],
           module_names: Mapping[str, str]) -> str:
    def named(path):
        return f"{path} / {module_names[path]}" if module_names.get(path, path) != path else path

    rtol, atol = band.TOLERANCES[FLOAT64]
    compared = [path for path in torch_outputs if path in jax_outputs]
    if not compared:
        return ("no module output could be compared (the taps gave " + (", ".join(sorted(jax_outputs)) or "none")
                + f"; torch's modules are {', '.join(torch_outputs)})")
    agreeing = []
    for path in compared:
        theirs, ours = torch_outputs[path], np.asarray(jax_outputs[path])
        if theirs.shape != ours.shape:
            return (f"in float64 the forward pass parts at {named(path)} (output shape {ours.shape}, torch's "
                    f"{theirs.shape}{_agreeing(agreeing, named)})")
        error = float(np.max(np.abs(ours - theirs))) if theirs.size else 0.0
        if not np.allclose(ours, theirs, rtol=rtol, atol=atol):
            return f"in float64 the forward pass parts at {named(path)} (output {error:.2g} off{_agreeing(agreeing, named)})"
        agreeing.append(path)
    return (f"in float64 every tapped module's output agrees ({', '.join(map(named, compared))}): the forward "
            "pass parts after them or in what is not a tapped module (a function: a reshape, a pooling, the loss)")


def _agreeing(agreeing: list[str], named: Callable[[str], str]) -> str:
    if not agreeing:
        return "; the first module tapped"
    return f"; {', '.join(map(named, agreeing))} {'agrees' if len(agreeing) == 1 else 'agree'}"


def module_names(framework_names: Mapping[str, str]) -> dict[str, str]:
    """torch module path -> the port's, from parameter names: ``{"0.weight": "conv1.kernel"}``
    gives ``{"0": "conv1"}``."""
    names = {}
    for torch_key, framework_key in framework_names.items():
        if ", " not in framework_key and "." in torch_key and "." in framework_key:
            names.setdefault(torch_key.rpartition(".")[0], framework_key.rpartition(".")[0])
    return names
