"""The types the public functions speak in, defined once.

    def loss_fn(params: Params, batch: Batch) -> jax.Array: ...
"""

from __future__ import annotations

from typing import Any, Callable

import jax

# A pytree of arrays: nested dicts with torch's names, e.g. {"weight": w, "bias": b}.
Params = Any
# Any pytree of arrays a loss reads, e.g. (images, labels).
Batch = Any
# loss_fn(params, batch) -> scalar.
LossFn = Callable[[Params, Batch], jax.Array]
