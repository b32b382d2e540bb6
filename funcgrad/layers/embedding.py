"""``nn.Embedding`` as an init/apply pair: a ``(num_embeddings, embedding_dim)`` table looked up by index.

    params = embedding_init(key, 1000, 64, padding_idx=0)       # nn.Embedding(1000, 64, padding_idx=0)
    vectors = embedding_apply(params, token_ids, padding_idx=0)  # (..., 64)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad import _checks
from funcgrad.types import Params


def embedding_init(
    key: jax.Array, num_embeddings: int, embedding_dim: int, *, padding_idx: int | None = None,
    dtype=jnp.float32,
) -> Params:
    """``nn.Embedding(num_embeddings, embedding_dim, padding_idx)``'s initial ``weight``:
    N(0, 1) draws, the ``padding_idx`` row zeroed, as torch's ``reset_parameters``. A
    negative ``padding_idx`` counts from the end, as torch's does. The draws come from a JAX
    key, so they are not torch's draws.

    >>> params = embedding_init(jax.random.key(0), 10, 4, padding_idx=-1)
    >>> params["weight"].shape, float(abs(params["weight"][9]).sum())
    ((10, 4), 0.0)
    """
    _checks.check_dtype_argument("embedding_init", dtype)
    weight = jax.random.normal(key, (num_embeddings, embedding_dim), dtype)
    if padding_idx is not None:
        weight = weight.at[_padding_row("embedding_init", padding_idx, num_embeddings)].set(0)
    return {"weight": weight}


def embedding_apply(params: Params, indices: jax.Array, *, padding_idx: int | None = None) -> jax.Array:
    """``nn.Embedding``'s forward pass: ``weight[indices]``, shape ``indices.shape + (embedding_dim,)``.

    The ``padding_idx`` row is looked up like any other but receives no gradient, as torch's
    (its gradient is zero however often it is looked up); pass the layer's ``padding_idx``.
    Indices must be integers. Concrete indices outside ``0..num_embeddings-1`` raise
    ``IndexError``, the exception torch raises there (negative ones included: torch does not
    count them from the end). Under ``jit`` nothing can be raised: an out-of-range index
    returns a row of NaN (rather than JAX's default of clamping it to the last row, or
    wrapping a negative one), so the mistake shows in the loss. torch's ``max_norm``,
    ``scale_grad_by_freq`` and ``sparse`` options are not supported.

    >>> params = embedding_init(jax.random.key(0), 10, 4)
    >>> embedding_apply(params, jnp.array([[1, 2], [3, 9]])).shape
    (2, 2, 4)
    """
    what = "embedding_apply"
    _checks.check_float_leaves(what, params, "params")
    weight = params["weight"]
    num_embeddings = jnp.shape(weight)[0]
    if not jnp.issubdtype(jnp.result_type(indices), jnp.integer):
        raise TypeError(f"{what}: indices must be integers, got dtype {jnp.result_type(indices)} "
                        f"(use indices.astype(jnp.int32))")
    if _checks.is_concrete(indices):
        values = np.asarray(indices)
        outside = values[(values < 0) | (values >= num_embeddings)]
        if outside.size:
            raise IndexError(f"{what}: index {outside.flat[0]} is out of range for {num_embeddings} "
                             f"embeddings (valid: 0..{num_embeddings - 1})")
    if padding_idx is not None:
        row = _padding_row(what, padding_idx, num_embeddings)
        weight = weight.at[row].set(jax.lax.stop_gradient(weight[row]))
    # "fill" makes an index past the end a NaN row; a negative one is sent past the end first.
    indices = jnp.where(indices < 0, num_embeddings, indices)
    return jnp.take(weight, indices, axis=0, mode="fill", fill_value=jnp.nan)


def _padding_row(what: str, padding_idx: int, num_embeddings: int) -> int:
    if not -num_embeddings <= padding_idx < num_embeddings:
        raise ValueError(f"{what}: padding_idx {padding_idx} must be within num_embeddings "
                         f"(-{num_embeddings}..{num_embeddings - 1})")
    return padding_idx % num_embeddings
