"""``nn.TransformerEncoderLayer`` as an init/apply pair with torch's ``state_dict`` names.

    params = transformer_encoder_layer_init(key, 64, 4, 256)           # nn.TransformerEncoderLayer(64, 4, 256)
    y = transformer_encoder_layer_apply(params, src, nhead=4, src_key_padding_mask=pad, train=True, key=step_key)

**Dropout masks** are keyed by torch's module paths, ``layer_key(key, path)``: an encoder layer
at ``name`` draws ``name.self_attn.dropout`` (the attention weights), ``name.dropout`` (after
``linear1``'s activation), ``name.dropout1`` and ``name.dropout2`` (the residual branches).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from funcgrad import _checks
from funcgrad.layers import activations
from funcgrad.layers.attention import (
    _check_heads, _sublayer_key, multihead_attention_apply, multihead_attention_init,
)
from funcgrad.layers.base import Layer, layer, torch_repr
from funcgrad.layers.dropout import dropout as _dropout
from funcgrad.layers.linear import linear_apply, linear_init
from funcgrad.layers.norm import layer_norm_apply, layer_norm_init
from funcgrad.types import Params

_ACTIVATIONS = {"relu": activations.relu, "gelu": activations.gelu}


def _child(name: str, child: str) -> str:
    return f"{name}.{child}" if name else child


def _dropout_at(x, p, key, name, child, train, needed, where):
    """``nn.Dropout(p)`` at the module path ``name.child``."""
    return _dropout(x, p, key=_sublayer_key(where, key, name, child, needed), train=train)


# ---------------------------------------------------------------- nn.TransformerEncoderLayer

def transformer_encoder_layer_init(
    key: jax.Array, d_model: int, nhead: int, dim_feedforward: int = 2048, *, bias: bool = True,
    dtype=jnp.float32,
) -> Params:
    """``nn.TransformerEncoderLayer(d_model, nhead, dim_feedforward, bias=bias)``'s parameters,
    keyed and ordered as its ``state_dict``: ``self_attn`` (:func:`multihead_attention_init`),
    ``linear1``, ``linear2`` (``nn.Linear``'s init), ``norm1``, ``norm2`` (ones, zeros).

    >>> list(transformer_encoder_layer_init(jax.random.key(0), 8, 2, 16))
    ['self_attn', 'linear1', 'linear2', 'norm1', 'norm2']
    """
    what = "transformer_encoder_layer_init"
    _checks.check_dtype_argument(what, dtype)
    _check_heads(what, d_model, nhead, ("d_model", "nhead"))
    _checks.check_positive_int(what, "dim_feedforward", dim_feedforward)
    attention_key, first_key, second_key = jax.random.split(key, 3)
    return {
        "self_attn": multihead_attention_init(attention_key, d_model, nhead, bias=bias, dtype=dtype),
        "linear1": linear_init(first_key, d_model, dim_feedforward, dtype, bias=bias),
        "linear2": linear_init(second_key, dim_feedforward, d_model, dtype, bias=bias),
        "norm1": layer_norm_init(d_model, bias=bias, dtype=dtype),
        "norm2": layer_norm_init(d_model, bias=bias, dtype=dtype),
    }


def transformer_encoder_layer_apply(
    params: Params, src: jax.Array, *, nhead: int, src_mask: jax.Array | None = None,
    src_key_padding_mask: jax.Array | None = None, is_causal: bool = False, dropout: float = 0.1,
    activation: str | Callable = "relu", layer_norm_eps: float = 1e-5, batch_first: bool = False,
    norm_first: bool = False, train: bool, key: jax.Array | None = None, name: str = "",
) -> jax.Array:
    """``nn.TransformerEncoderLayer.forward(src, src_mask, src_key_padding_mask, is_causal)``.

    Post-norm (torch's default): ``x = norm1(x + sa(x)); x = norm2(x + ff(x))``; with
    ``norm_first``: ``x = x + sa(norm1(x)); x = x + ff(norm2(x))``, where ``sa`` is self-attention
    (``need_weights=False``, so a fully masked row attends to nothing: zeros, as torch's slow
    path) followed by ``dropout1``, and ``ff`` is ``linear2(dropout(activation(linear1(x))))``
    followed by ``dropout2``. Masks mean what MHA's mean (bool True: masked out). ``activation``:
    ``"relu"``, ``"gelu"`` (exact, torch's ``F.gelu``) or a function. ``key`` and ``name`` (the
    layer's module path) draw the four dropout masks (module doc).

    >>> params = transformer_encoder_layer_init(jax.random.key(0), 8, 2, 16)
    >>> transformer_encoder_layer_apply(params, jnp.ones((5, 3, 8)), nhead=2, train=False).shape
    (5, 3, 8)
    """
    what = "transformer_encoder_layer_apply"
    act = _activation(what, activation)
    _checks.check_probability(what, dropout)
    drops = train and dropout > 0
    where = f"{what} at '{name}'" if name else what

    def drop(x, child):
        return _dropout_at(x, dropout, key, name, child, train, drops, where)

    def self_attention(x):
        y, _ = multihead_attention_apply(
            params["self_attn"], x, x, x, num_heads=nhead, key_padding_mask=src_key_padding_mask,
            need_weights=False, attn_mask=src_mask, is_causal=is_causal, batch_first=batch_first, dropout=dropout,
            train=train, dropout_key=_sublayer_key(where, key, name, "self_attn.dropout", drops))
        return drop(y, "dropout1")

    def feed_forward(x):
        hidden = drop(act(linear_apply(params["linear1"], x)), "dropout")
        return drop(linear_apply(params["linear2"], hidden), "dropout2")

    def norm(x, which):
        return layer_norm_apply(params[which], x, jnp.shape(x)[-1], eps=layer_norm_eps)

    x = src
    if norm_first:
        x = x + self_attention(norm(x, "norm1"))
        return x + feed_forward(norm(x, "norm2"))
    x = norm(x + self_attention(x), "norm1")
    return norm(x + feed_forward(x), "norm2")


def _activation(what, activation):
    if callable(activation):
        return activation
    if activation not in _ACTIVATIONS:
        raise ValueError(f"{what}: activation should be relu/gelu, not {activation!r} (or pass a function)")
    return _ACTIVATIONS[activation]


def TransformerEncoderLayer(d_model: int, nhead: int, dim_feedforward: int = 2048, dropout: float = 0.1,
                            activation: str | Callable = "relu", layer_norm_eps: float = 1e-5,
                            batch_first: bool = False, norm_first: bool = False, bias: bool = True) -> Layer:
    """``nn.TransformerEncoderLayer`` as a ``Layer`` on ``src`` alone (for masks call
    :func:`transformer_encoder_layer_apply` with its params). torch's defaults: dropout 0.1
    (train mode needs a key), relu, post-norm, ``(L, N, E)``.

    >>> encoder = TransformerEncoderLayer(8, 2, 16, batch_first=True)
    >>> params, buffers = encoder.init(jax.random.key(0))
    >>> encoder.apply(params, buffers, jnp.ones((3, 5, 8)), train=False)[0].shape
    (3, 5, 8)
    """
    what = "TransformerEncoderLayer"
    _activation(what, activation)
    _checks.check_probability(what, dropout)
    _check_heads(what, d_model, nhead, ("d_model", "nhead"))

    def init(key, dtype=jnp.float32):
        return transformer_encoder_layer_init(key, d_model, nhead, dim_feedforward, bias=bias, dtype=dtype), {}

    def apply(params, buffers, x, *, train, key=None, name=""):
        return transformer_encoder_layer_apply(
            params, x, nhead=nhead, dropout=dropout, activation=activation, layer_norm_eps=layer_norm_eps,
            batch_first=batch_first, norm_first=norm_first, train=train, key=key, name=name), {}

    return layer(init, apply, torch_repr(what, d_model=d_model, nhead=nhead, dim_feedforward=dim_feedforward,
                                         dropout=dropout, batch_first=batch_first, norm_first=norm_first))
