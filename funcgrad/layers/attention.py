"""``F.scaled_dot_product_attention`` and ``nn.MultiheadAttention`` as pure functions, in torch's
layouts, mask meanings, ``state_dict`` names and rounding order.

    out = scaled_dot_product_attention(q, k, v, attn_mask=keep)        # (..., L, E); keep: True takes part
    params = multihead_attention_init(jax.random.key(0), 64, 8)        # nn.MultiheadAttention(64, 8)
    y, w = multihead_attention_apply(params, x, x, x, num_heads=8, key_padding_mask=pad, train=False)

**Masks flip meaning, as in torch.** SDPA's bool ``attn_mask``: True *takes part*. MHA's bool
``attn_mask`` and ``key_padding_mask``: True is *masked out*. A float mask is added in both.

**What torch 2.13 computes on the CPU**, and so what is computed here:

- SDPA on 4-D ``(N, heads, L, E)`` inputs of equal leading dims and one head size, a 2-D or 4-D
  mask and no dropout runs the CPU flash kernel: ``(q kᵀ)·scale + mask``, ``e = exp(x - max)``,
  ``(e v) / Σe``. Anything else (other ranks, broadcast leading dims, a 3-D mask, a value width
  other than E, ``dropout_p > 0``) runs the math kernel: ``(q·√scale)(k·√scale)ᵀ + mask``, a
  softmax, dropout, ``@ v``. Both give a fully masked row zeros, with zero gradients.
  Gradients are JAX's autodiff of these forms (the flash kernel's own logsumexp backward,
  tried, came out farther from float64 than torch's).
- MHA with ``need_weights=True`` (its default) computes attention itself: ``(q·√(1/D)) kᵀ + mask``,
  softmax, dropout, ``@ v``; a fully masked row is NaN, in the output and in the weights.
  ``need_weights=False`` goes through SDPA: zeros there.

**Dropout.** torch draws attention dropout inside its kernels (SDPA) or with ``F.dropout`` inside
``F.multi_head_attention_forward`` (MHA), from its global generator: no seed replays it. Here the
mask on the weights is ``dropout_mask(dropout_key, weights.shape, p)`` (its bits depend on the
number of elements, not on how they are shaped), so a torch twin that drops its attention weights
with an ``nn.Dropout`` module, under :func:`funcgrad.layers.replay_dropout`, drops the same entries.
A layer names that mask ``"<its path>.dropout"``, after the ``dropout`` attribute of torch's MHA.

**MultiheadAttention and the Layer convention.** Attention takes three inputs and returns two, so
the full interface is the function pair :func:`multihead_attention_init` /
:func:`multihead_attention_apply`; :func:`MultiheadAttention` is the ``Layer`` for use inside a
model: ``x`` is the query of self-attention (or a ``(query, key, value)`` tuple), no masks, and
the output alone (``need_weights=False``, as ``nn.TransformerEncoderLayer`` calls it).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from funcgrad import _checks
from funcgrad.layers.base import Layer, layer, torch_repr, uniform, uniform_fan_in
from funcgrad.layers.dropout import dropout_mask, layer_key
from funcgrad.layers.linear import linear_apply
from funcgrad.types import Params


def scaled_dot_product_attention(
    query: jax.Array, key: jax.Array, value: jax.Array, attn_mask: jax.Array | None = None,
    dropout_p: float = 0.0, is_causal: bool = False, scale: float | None = None, *,
    dropout_key: jax.Array | None = None,
) -> jax.Array:
    """``F.scaled_dot_product_attention``: ``softmax(q kᵀ · scale + mask) v`` over the last two dims.

    ``query`` is ``(..., L, E)``, ``key`` ``(..., S, E)``, ``value`` ``(..., S, Ev)``, the leading
    dims broadcasting. ``attn_mask`` broadcasts to ``(..., L, S)``: bool, True *takes part*
    (MHA's masks mean the opposite), or a float mask in the query's dtype, added. ``is_causal``
    keeps ``ones(L, S).tril(0)`` (top-left aligned when L != S) and excludes ``attn_mask``.
    ``scale`` defaults to ``1/sqrt(E)``. A fully masked row gives zeros, as torch's CPU kernels do.

    ``dropout_p > 0`` always drops (as torch's: pass 0 in eval mode), with the mask
    ``dropout_mask(dropout_key, (..., L, S), dropout_p)`` on the weights; torch's own SDPA
    dropout cannot be replayed: its twin applies an ``nn.Dropout`` module to the weights of a
    hand-written attention, under ``replay_dropout`` (see the module doc).

    >>> q = k = v = jnp.ones((2, 4, 3, 8))                     # (N, heads, L, E)
    >>> scaled_dot_product_attention(q, k, v, is_causal=True).shape
    (2, 4, 3, 8)
    """
    what = "scaled_dot_product_attention"
    _check_qkv(what, query, key, value)
    dtype = jnp.result_type(query)
    weights_shape = _weights_shape(what, query, key)
    if is_causal and attn_mask is not None:
        raise ValueError(f"{what}: is_causal=True builds its own mask; pass attn_mask=None (torch refuses both)")
    _check_dropout(what, dropout_p, dropout_key, train=True)
    bias = None
    if attn_mask is not None:
        if jnp.ndim(attn_mask) < 2:
            raise ValueError(f"{what}: attn_mask must have at least 2 dims (..., L, S), got shape "
                             f"{jnp.shape(attn_mask)} (torch refuses a 1-D mask)")
        _check_mask(what, "attn_mask", attn_mask, dtype, weights_shape)
        bias = _additive(attn_mask, dtype, masked_when=False)
    elif is_causal:
        bias = _additive(jnp.tril(jnp.ones(weights_shape[-2:], bool)), dtype, masked_when=False)
    if scale is None:
        scale = 1.0 / math.sqrt(jnp.shape(query)[-1])
    return _sdpa(query, key, value, bias, float(scale), dropout_p, dropout_key,
                 flash=_flash_runs(query, key, value, attn_mask, dropout_p))


def _sdpa(q, k, v, bias, scale: float, dropout_p: float, dropout_key, *, flash: bool):
    """SDPA in the order of the CPU kernel torch runs (``flash``: see :func:`_flash_runs`)."""
    if flash:  # scale after the product, normalize after @ v
        e, total = _exp_and_total(_add(jnp.matmul(q, _swap(k)) * scale, bias), safe=True)
        return jnp.matmul(e, v) * (1 / total)
    root = math.sqrt(abs(scale))  # the math kernel scales q and k by sqrt(scale) each
    logits = _add(jnp.matmul(q * (root if scale >= 0 else -root), _swap(k * root)), bias)
    weights = _softmax(logits, safe=True)
    if dropout_p > 0:
        weights = weights * dropout_mask(dropout_key, weights.shape, dropout_p, weights.dtype)
    return jnp.matmul(weights, v)


def _flash_runs(query, key, value, attn_mask, dropout_p) -> bool:
    """Whether torch 2.13's CPU dispatch (``torch._fused_sdp_choice``) picks the flash kernel:
    no dropout, 4-D q, k, v with equal leading dims and one head size, a 2-D or 4-D mask;
    anything else runs the math kernel."""
    shapes = [jnp.shape(x) for x in (query, key, value)]
    return (dropout_p == 0 and all(len(shape) == 4 for shape in shapes)
            and shapes[0][:2] == shapes[1][:2] == shapes[2][:2] and shapes[0][3] == shapes[2][3]
            and (attn_mask is None or jnp.ndim(attn_mask) in (2, 4)))


def _swap(x):
    return jnp.swapaxes(x, -1, -2)


def _add(logits, bias):
    return logits if bias is None else logits + bias


def _exp_and_total(logits, *, safe: bool):
    """``exp(x - max)`` and its row sum. ``safe``: a row that is all -inf gives zeros and a sum
    of 1 (torch's flash and math kernels); otherwise NaN (torch's ``softmax``). The max carries
    no gradient: softmax does not depend on it."""
    top = jnp.max(logits, axis=-1, keepdims=True)
    if safe:
        top = jnp.where(top == -jnp.inf, 0, top)
    e = jnp.exp(logits - jax.lax.stop_gradient(top))
    total = jnp.sum(e, axis=-1, keepdims=True)
    return e, (jnp.where(total == 0, 1, total) if safe else total)


def _softmax(logits, *, safe: bool):
    e, total = _exp_and_total(logits, safe=safe)
    return e * (1 / total)


def _additive(mask, dtype, *, masked_when: bool):
    """A mask as the float torch adds to the logits: a bool mask's ``masked_when`` entries -inf,
    the others 0 (torch's ``_canonical_mask``); a float mask as it is."""
    if jnp.result_type(mask) != jnp.bool_:
        return mask
    return jnp.where(mask == masked_when, jnp.asarray(-jnp.inf, dtype), jnp.zeros((), dtype))


# ---------------------------------------------------------------- nn.MultiheadAttention

def multihead_attention_init(
    key: jax.Array, embed_dim: int, num_heads: int, *, bias: bool = True, add_bias_kv: bool = False,
    add_zero_attn: bool = False, kdim: int | None = None, vdim: int | None = None, dtype=jnp.float32,
) -> Params:
    """``nn.MultiheadAttention(embed_dim, num_heads, bias=bias, kdim=kdim, vdim=vdim)``'s
    parameters, keyed and ordered as its ``state_dict``: ``in_proj_weight (3E, E)`` (q, k, v
    stacked along dim 0, q first) — or ``q_proj_weight (E, E)``, ``k_proj_weight (E, kdim)``,
    ``v_proj_weight (E, vdim)`` when ``kdim`` or ``vdim`` differs from ``embed_dim`` —
    ``in_proj_bias (3E,)``, ``out_proj.weight``, ``out_proj.bias``.

    torch's init: ``xavier_uniform_`` for the projection weights (``U(±sqrt(6/(fan_in + fan_out)))``
    of each matrix), ``out_proj.weight`` as ``nn.Linear``'s (``U(±1/sqrt(E))``), both biases
    zero. ``add_bias_kv`` and ``add_zero_attn`` are not supported.

    >>> params = multihead_attention_init(jax.random.key(0), 8, 2)
    >>> list(params), list(params["out_proj"])
    (['in_proj_weight', 'in_proj_bias', 'out_proj'], ['weight', 'bias'])
    """
    what = "multihead_attention_init"
    _checks.check_dtype_argument(what, dtype)
    _check_heads(what, embed_dim, num_heads)
    _refuse_unbuilt(what, add_bias_kv, add_zero_attn)
    kdim, vdim = embed_dim if kdim is None else kdim, embed_dim if vdim is None else vdim
    _checks.check_positive_int(what, "kdim", kdim)
    _checks.check_positive_int(what, "vdim", vdim)
    projection_key, out_key = jax.random.split(key)
    params = {}
    if kdim == embed_dim and vdim == embed_dim:
        params["in_proj_weight"] = _xavier_uniform(projection_key, (3 * embed_dim, embed_dim), dtype)
    else:
        for name, width, part in zip(("q", "k", "v"), (embed_dim, kdim, vdim), jax.random.split(projection_key, 3)):
            params[f"{name}_proj_weight"] = _xavier_uniform(part, (embed_dim, width), dtype)
    if bias:
        params["in_proj_bias"] = jnp.zeros(3 * embed_dim, dtype)
    params["out_proj"] = {"weight": uniform_fan_in(out_key, (embed_dim, embed_dim), embed_dim, dtype)}
    if bias:
        params["out_proj"]["bias"] = jnp.zeros(embed_dim, dtype)
    return params


def _xavier_uniform(key, shape, dtype):
    """``nn.init.xavier_uniform_`` of a ``(fan_out, fan_in)`` matrix."""
    bound = math.sqrt(6.0 / (shape[0] + shape[1]))
    return uniform(key, shape, dtype, -bound, bound)


def multihead_attention_apply(
    params: Params, query: jax.Array, key: jax.Array, value: jax.Array, *, num_heads: int,
    key_padding_mask: jax.Array | None = None, need_weights: bool = True, attn_mask: jax.Array | None = None,
    average_attn_weights: bool = True, is_causal: bool = False, batch_first: bool = False,
    dropout: float = 0.0, train: bool, dropout_key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array | None]:
    """``nn.MultiheadAttention.forward``: ``(attn_output, attn_weights)``, the weights None
    unless ``need_weights``.

    Shapes as torch's: ``(L, N, E)`` (``batch_first=False``, torch's default), ``(N, L, E)``
    (``batch_first=True``) or unbatched ``(L, E)``; key and value ``(S, N, kdim)``,
    ``(S, N, vdim)`` likewise. ``key_padding_mask`` ``(N, S)`` (unbatched ``(S,)``) and
    ``attn_mask`` ``(L, S)`` or ``(N * num_heads, L, S)`` (unbatched ``(num_heads, L, S)``),
    each bool with True **masked out** (SDPA's True takes part) or float in the query's dtype,
    added. ``is_causal`` is torch's hint: it needs ``attn_mask`` and, without
    ``key_padding_mask`` and ``need_weights``, replaces it by the causal mask, as torch does.
    The weights are ``(N, L, S)`` averaged over heads, or ``(N, num_heads, L, S)``.

    ``dropout`` drops attention weights when ``train``, with the mask
    ``dropout_mask(dropout_key, (N, num_heads, L, S), dropout)`` (N = 1 unbatched). With
    ``need_weights`` a fully masked row is NaN, as torch's; without, zeros (SDPA's).

    >>> params = multihead_attention_init(jax.random.key(0), 8, 2)
    >>> x = jnp.ones((5, 3, 8))                                   # (L, N, E)
    >>> [a.shape for a in multihead_attention_apply(params, x, x, x, num_heads=2, train=False)]
    [(5, 3, 8), (3, 5, 5)]
    """
    what = "multihead_attention_apply"
    embed_dim, kdim, vdim = _check_mha_params(what, params)
    _check_heads(what, embed_dim, num_heads)
    _check_qkv(what, query, key, value, same_width=False)
    _check_dropout(what, dropout, dropout_key, train)
    batched = _check_mha_inputs(what, query, key, value, embed_dim, kdim, vdim)
    if not batched:
        query, key, value = (x[:, None] for x in (query, key, value))
    elif batch_first:
        query, key, value = (jnp.swapaxes(x, 0, 1) for x in (query, key, value))
    (length, batch, _), source = query.shape, key.shape[0]
    if key.shape[1] != batch:
        raise ValueError(f"{what}: query and key have batch sizes {batch} and {key.shape[1]} "
                         f"(batch_first={batch_first}); they must match")
    dtype = jnp.result_type(query)
    bias = _mha_bias(what, attn_mask, key_padding_mask, is_causal, need_weights, batched, batch, num_heads,
                     length, source, dtype)
    q, k, v = _in_projection(params, query, key, value, embed_dim)
    head_dim = embed_dim // num_heads
    q, k, v = (jnp.moveaxis(x.reshape(x.shape[0], batch, num_heads, head_dim), 0, 2) for x in (q, k, v))
    dropout = dropout if train else 0.0
    if need_weights:
        logits = _add(jnp.matmul(q * math.sqrt(1.0 / head_dim), _swap(k)), bias)
        weights = _softmax(logits, safe=False)
        if dropout > 0:
            weights = weights * dropout_mask(dropout_key, weights.shape, dropout, dtype)
        heads = jnp.matmul(weights, v)
    else:
        if is_causal and bias is None:
            bias = _additive(jnp.tril(jnp.ones((length, source), bool)), dtype, masked_when=False)
        # torch hands SDPA 4-D (N, heads, L, D) tensors and a 4-D mask: the flash kernel, unless dropping.
        heads = _sdpa(q, k, v, bias, 1.0 / math.sqrt(head_dim), dropout, dropout_key, flash=dropout == 0)
        weights = None
    output = linear_apply(params["out_proj"], jnp.moveaxis(heads, 2, 0).reshape(length, batch, embed_dim))
    if weights is not None and average_attn_weights:
        weights = jnp.mean(weights, axis=1)
    if not batched:
        return output[:, 0], None if weights is None else weights[0]
    return (jnp.swapaxes(output, 0, 1) if batch_first else output), weights


def _in_projection(params, query, key, value, embed_dim):
    """q, k, v projected by the packed (or separate) weights: ``in_proj_weight`` chunked in
    three along dim 0, q first, as torch's ``_in_projection_packed``."""
    if "in_proj_weight" in params:
        weights = jnp.split(params["in_proj_weight"], 3)
    else:
        weights = [params[f"{name}_proj_weight"] for name in ("q", "k", "v")]
    biases = jnp.split(params["in_proj_bias"], 3) if "in_proj_bias" in params else [None] * 3
    return [linear_apply({"weight": w} | ({} if b is None else {"bias": b}), x)
            for x, w, b in zip((query, key, value), weights, biases)]


def _mha_bias(what, attn_mask, key_padding_mask, is_causal, need_weights, batched, batch, num_heads, length,
              source, dtype):
    """torch's merged additive mask, broadcasting to ``(N, num_heads, L, S)``, or None."""
    if is_causal and attn_mask is None:
        raise ValueError(f"{what}: is_causal is a hint that attn_mask is the causal mask, and torch needs the mask "
                         f"too: pass attn_mask=jnp.triu(jnp.ones((L, L), bool), 1) (True above the diagonal: "
                         f"masked out)")
    bias = None
    if attn_mask is not None:
        heads_shape = (batch * num_heads,) if batched else (num_heads,)
        shapes = [(length, source), (*heads_shape, length, source)]
        _check_mask(what, "attn_mask", attn_mask, dtype, exact_shapes=shapes)
        if not (is_causal and key_padding_mask is None and not need_weights):  # torch uses is_causal instead
            bias = _additive(attn_mask, dtype, masked_when=True)
            if attn_mask.ndim == 3:  # (N * heads, L, S): torch's head index runs fastest
                bias = bias.reshape(batch, num_heads, length, source)
    if key_padding_mask is not None:
        _check_mask(what, "key_padding_mask", key_padding_mask, dtype,
                    exact_shapes=[(batch, source) if batched else (source,)])
        padding = _additive(key_padding_mask, dtype, masked_when=True).reshape(batch, 1, 1, source)
        bias = padding if bias is None else bias + padding
    return bias


def MultiheadAttention(embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                       add_bias_kv: bool = False, add_zero_attn: bool = False, kdim: int | None = None,
                       vdim: int | None = None, batch_first: bool = False) -> Layer:
    """``nn.MultiheadAttention`` as a ``Layer``: ``x`` is the query of self-attention, or a
    ``(query, key, value)`` tuple; ``apply`` returns the output alone (``need_weights=False``,
    SDPA's path, as ``nn.TransformerEncoderLayer`` calls it). Its dropout mask is keyed
    ``layer_key(key, "<name>.dropout")``. For masks and weights, call
    :func:`multihead_attention_apply` with the layer's params.

    >>> attention = MultiheadAttention(8, 2, batch_first=True)
    >>> params, buffers = attention.init(jax.random.key(0))
    >>> attention.apply(params, buffers, jnp.ones((3, 5, 8)), train=False)[0].shape
    (3, 5, 8)
    """
    _refuse_unbuilt("MultiheadAttention", add_bias_kv, add_zero_attn)
    _check_heads("MultiheadAttention", embed_dim, num_heads)
    _checks.check_probability("MultiheadAttention", dropout)

    def init(key, dtype=jnp.float32):
        return multihead_attention_init(key, embed_dim, num_heads, bias=bias, kdim=kdim, vdim=vdim, dtype=dtype), {}

    def apply(params, buffers, x, *, train, key=None, name=""):
        query, key_, value = x if isinstance(x, tuple) else (x, x, x)
        output, _ = multihead_attention_apply(
            params, query, key_, value, num_heads=num_heads, need_weights=False, batch_first=batch_first,
            dropout=dropout, train=train, dropout_key=_sublayer_key(f"MultiheadAttention at '{name}'", key, name,
                                                                    "dropout", train and dropout > 0))
        return output, {}

    options = {"kdim": kdim, "vdim": vdim} if (kdim, vdim) != (None, None) else {}
    return layer(init, apply, torch_repr("MultiheadAttention", embed_dim=embed_dim, num_heads=num_heads, **options,
                                         dropout=dropout, bias=bias, batch_first=batch_first))


def _sublayer_key(what: str, key, name: str, child: str, needed: bool):
    """``layer_key(key, "<name>.<child>")``: the key of the dropout torch's twin holds at that path."""
    if not needed:
        return None
    if key is None:
        raise ValueError(f"{what} needs a key in train mode with dropout: "
                         "model.apply(params, buffers, x, train=True, key=step_key)")
    return layer_key(key, f"{name}.{child}" if name else child)


# ---------------------------------------------------------------- checks

def _check_qkv(what, query, key, value, same_width=True):
    for name, x in (("query", query), ("key", key), ("value", value)):
        _checks.check_float_dtype(what, jnp.result_type(x), name)
        if jnp.ndim(x) < 2:
            raise ValueError(f"{what}: {name} must have at least 2 dims (..., sequence, features), got shape "
                             f"{jnp.shape(x)}")
    dtypes = {name: jnp.result_type(x) for name, x in (("query", query), ("key", key), ("value", value))}
    if len(set(dtypes.values())) > 1:
        raise TypeError(f"{what}: query, key and value must share one dtype, got "
                        + ", ".join(f"{name} {dtype}" for name, dtype in dtypes.items()))
    if same_width and jnp.shape(query)[-1] != jnp.shape(key)[-1]:
        raise ValueError(f"{what}: query {jnp.shape(query)} and key {jnp.shape(key)} must have the same last "
                         f"dim (E)")
    if same_width and jnp.shape(key)[-2] != jnp.shape(value)[-2]:
        raise ValueError(f"{what}: key {jnp.shape(key)} and value {jnp.shape(value)} must have the same sequence "
                         f"length S (dim -2)")


def _weights_shape(what, query, key) -> tuple[int, ...]:
    try:
        leading = jnp.broadcast_shapes(jnp.shape(query)[:-2], jnp.shape(key)[:-2])
    except ValueError:
        raise ValueError(f"{what}: the leading dims of query {jnp.shape(query)} and key {jnp.shape(key)} do not "
                         f"broadcast") from None
    return (*leading, jnp.shape(query)[-2], jnp.shape(key)[-2])


def _check_mask(what, name, mask, dtype, broadcast_to=None, exact_shapes=None):
    """A bool mask or a float one in ``dtype``, of one of ``exact_shapes`` or broadcasting to ``broadcast_to``."""
    mask_dtype = jnp.result_type(mask)
    if mask_dtype != jnp.bool_ and mask_dtype != dtype:
        raise TypeError(f"{what}: {name} has dtype {mask_dtype}; it must be bool or float in the query's dtype "
                        f"{dtype} (added to the logits): cast it with .astype(bool) or .astype({dtype})")
    shape = tuple(jnp.shape(mask))
    if exact_shapes is not None and shape not in exact_shapes:
        raise ValueError(f"{what}: {name} has shape {shape}, but must be " + " or ".join(map(str, exact_shapes)))
    if broadcast_to is not None:
        try:
            fits = jnp.broadcast_shapes(shape, broadcast_to) == tuple(broadcast_to)
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"{what}: {name} has shape {shape}, which does not broadcast to the attention "
                             f"weights' shape {tuple(broadcast_to)} (..., L, S)")


def _check_dropout(what, p, dropout_key, train):
    _checks.check_probability(what, p)
    if train and p > 0 and dropout_key is None:
        raise ValueError(f"{what}: dropout {p} needs dropout_key (the key of the attention weights' mask), or "
                         f"train=False / dropout 0")


def _check_heads(what, embed_dim, num_heads, names=("embed_dim", "num_heads")):
    width, heads = names
    _checks.check_positive_int(what, width, embed_dim)
    _checks.check_positive_int(what, heads, num_heads)
    if embed_dim % num_heads:
        raise ValueError(f"{what}: {width} {embed_dim} is not divisible by {heads} {num_heads} "
                         f"(each head takes {width} // {heads} features)")


def _refuse_unbuilt(what, add_bias_kv, add_zero_attn):
    for name, value in (("add_bias_kv", add_bias_kv), ("add_zero_attn", add_zero_attn)):
        if value:
            raise NotImplementedError(f"{what}: {name}=True is not supported (funcgrad's MultiheadAttention has "
                                      f"no bias_k/bias_v or zero-attention row); build it with {name}=False")


def _check_mha_params(what, params) -> tuple[int, int, int]:
    """The keys and shapes of :func:`multihead_attention_init`'s params; ``(E, kdim, vdim)``."""
    if not isinstance(params, dict):
        raise TypeError(f"{what}: params must be multihead_attention_init's dict, got {type(params).__name__}")
    _checks.check_float_leaves(what, params, "params")
    for name in ("bias_k", "bias_v"):
        if name in params:
            raise NotImplementedError(f"{what}: params hold {name!r} (add_bias_kv=True), which is not supported")
    packed = "in_proj_weight" in params
    projections = ["in_proj_weight"] if packed else ["q_proj_weight", "k_proj_weight", "v_proj_weight"]
    allowed = set(projections) | {"in_proj_bias", "out_proj"}
    missing = [name for name in projections + ["out_proj"] if name not in params]
    if missing or set(params) - allowed:
        raise ValueError(f"{what}: params hold {list(params)}; nn.MultiheadAttention's are in_proj_weight (or "
                         f"q_proj_weight, k_proj_weight, v_proj_weight), in_proj_bias, out_proj"
                         + (f" (missing {missing})" if missing else ""))
    embed_dim = jnp.shape(params["out_proj"]["weight"])[0]
    if packed:
        expected = {"in_proj_weight": (3 * embed_dim, embed_dim)}
        kdim = vdim = embed_dim
    else:
        kdim, vdim = jnp.shape(params["k_proj_weight"])[-1], jnp.shape(params["v_proj_weight"])[-1]
        expected = {"q_proj_weight": (embed_dim, embed_dim), "k_proj_weight": (embed_dim, kdim),
                    "v_proj_weight": (embed_dim, vdim)}
    if "in_proj_bias" in params:
        expected["in_proj_bias"] = (3 * embed_dim,)
    for name, shape in expected.items():
        if tuple(jnp.shape(params[name])) != shape:
            raise ValueError(f"{what}: params[{name!r}] has shape {jnp.shape(params[name])}, but out_proj.weight "
                             f"{jnp.shape(params['out_proj']['weight'])} makes embed_dim {embed_dim}: expected {shape}")
    return embed_dim, kdim, vdim


def _check_mha_inputs(what, query, key, value, embed_dim, kdim, vdim) -> bool:
    """torch's ``_mha_shape_check`` and its width checks; whether the input is batched."""
    rank = jnp.ndim(query)
    if rank not in (2, 3):
        raise ValueError(f"{what}: query should be unbatched 2-D (L, E) or batched 3-D, got shape {jnp.shape(query)}")
    if jnp.ndim(key) != rank or jnp.ndim(value) != rank:
        raise ValueError(f"{what}: for a {rank}-D query, key and value must be {rank}-D, got shapes "
                         f"{jnp.shape(key)} and {jnp.shape(value)}")
    for name, x, width in (("query", query, embed_dim), ("key", key, kdim), ("value", value, vdim)):
        if jnp.shape(x)[-1] != width:
            raise ValueError(f"{what}: {name} has shape {jnp.shape(x)}, whose last dim must be "
                             f"{'embed_dim' if name == 'query' else name[0] + 'dim'} = {width}")
    if jnp.shape(key)[:-1] != jnp.shape(value)[:-1]:
        raise ValueError(f"{what}: key {jnp.shape(key)} and value {jnp.shape(value)} must agree on every dim but "
                         f"the last")
    return rank == 3
