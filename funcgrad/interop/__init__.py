"""Bridges between a torch ``state_dict`` and Flax NNX, Flax linen and Equinox: names and layouts,
nothing else, so a port built in those frameworks can be judged in torch's names.

    from funcgrad.interop import flax_nnx, rules
    model = flax_nnx.from_torch(model, state_dict, modules={"features.0": "conv1"})
    print(rules.describe(flax_nnx.pairs(model, modules={"features.0": "conv1"})))
    state_dict = flax_nnx.to_torch(model, modules={"features.0": "conv1"}, num_batches_tracked=0)

flax and equinox are imported on first use, never by ``import funcgrad.interop``.
"""

from funcgrad.interop import equinox, flax_linen, flax_nnx, ports, rules
from funcgrad.interop.ports import framework_names, torch_named_loss
from funcgrad.interop.rules import Pair, Rule, chain, describe, reshape, transpose

__all__ = ["equinox", "flax_linen", "flax_nnx", "ports", "rules", "torch_named_loss", "framework_names", "Pair", "Rule", "chain", "describe", "reshape", "transpose"]
