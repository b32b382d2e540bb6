"""nanoGPT's GPT (``CausalSelfAttention``, ``MLP``, ``Block``, learned positions, the tied
token embedding) as init/apply pairs with its ``state_dict`` names.

    model = GPT(GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128))
    params, buffers = model.init(jax.random.key(0))                    # {"transformer": {"wte", "wpe", "h", "ln_f"}}
    logits, _ = model.apply(params, buffers, idx, train=True, key=step_key)    # (B, T, vocab)

**Dropout masks** are keyed by torch's module paths, ``layer_key(key, path)``: a GPT draws
``transformer.drop`` and, per block ``transformer.h.<i>``, ``.attn.attn_dropout``,
``.attn.resid_dropout`` and ``.mlp.dropout``. nanoGPT's ``nn.Dropout`` modules take them
under ``replay_dropout`` once its attention runs the manual path (``attn.flash = False``): with
``F.scaled_dot_product_attention(dropout_p=...)`` torch draws the weights' mask itself.

**Weight tying.** nanoGPT's ``lm_head.weight`` *is* ``transformer.wte.weight``: here one leaf,
``params["transformer"]["wte"]["weight"]``, used twice (its gradient is the sum of both uses,
as torch's). :func:`gpt_to_state_dict` writes it under both keys, :func:`gpt_from_state_dict`
reads both and keeps one.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad import _checks
from funcgrad.layers import activations
from funcgrad.layers.attention import _check_heads, _softmax
from funcgrad.layers.base import Layer, layer, torch_repr
from funcgrad.layers.embedding import embedding_apply
from funcgrad.layers.linear import linear_apply, linear_init
from funcgrad.layers.norm import layer_norm_apply, layer_norm_init
from funcgrad.layers.transformer import _child, _dropout_at
from funcgrad.state_dict import from_state_dict, host_array, to_state_dict
from funcgrad.types import Params


class GPTConfig(NamedTuple):
    """nanoGPT's ``GPTConfig``, its fields and defaults (GPT-2 small, vocabulary padded to 50304)."""

    block_size: int = 1024
    vocab_size: int = 50304
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True


def causal_self_attention_init(key: jax.Array, n_embd: int, *, bias: bool = True, dtype=jnp.float32) -> Params:
    """nanoGPT's ``CausalSelfAttention``: ``c_attn`` ``Linear(E, 3E)`` (q, k, v side by side along
    its outputs) and ``c_proj`` ``Linear(E, E)``, ``nn.Linear``'s default init (as the module has
    on its own; :func:`gpt_init` draws GPT's)."""
    attn_key, proj_key = jax.random.split(key)
    return {"c_attn": linear_init(attn_key, n_embd, 3 * n_embd, dtype, bias=bias),
            "c_proj": linear_init(proj_key, n_embd, n_embd, dtype, bias=bias)}


def causal_self_attention_apply(params: Params, x: jax.Array, *, n_head: int, dropout: float = 0.0, train: bool,
                                key: jax.Array | None = None, name: str = "") -> jax.Array:
    """nanoGPT's ``CausalSelfAttention.forward`` on ``x (B, T, C)``, its manual path:
    ``q, k, v = c_attn(x).split(C, dim=2)``, heads ``(B, T, H, D)`` moved to ``(B, H, T, D)``,
    ``att = (q @ kᵀ) * (1/sqrt(D))``, ``-inf`` above the diagonal, softmax, ``attn_dropout``,
    ``@ v``, heads side by side again, ``resid_dropout(c_proj(y))``. Masks keyed
    ``name.attn_dropout`` and ``name.resid_dropout``.

    >>> params = causal_self_attention_init(jax.random.key(0), 8)
    >>> causal_self_attention_apply(params, jnp.ones((2, 5, 8)), n_head=2, train=False).shape
    (2, 5, 8)
    """
    what = "causal_self_attention_apply"
    _checks.check_float_leaves(what, x, "x")
    if jnp.ndim(x) != 3:
        raise ValueError(f"{what}: x must be (B, T, C), got shape {jnp.shape(x)}")
    batch, length, channels = jnp.shape(x)
    _check_heads(what, channels, n_head, ("n_embd", "n_head"))
    drops = train and dropout > 0
    where = f"CausalSelfAttention at '{name}'" if name else "CausalSelfAttention"
    q, k, v = jnp.split(linear_apply(params["c_attn"], x), 3, axis=2)
    head_dim = channels // n_head
    q, k, v = (jnp.swapaxes(t.reshape(batch, length, n_head, head_dim), 1, 2) for t in (q, k, v))
    att = jnp.matmul(q, jnp.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(head_dim))
    att = jnp.where(jnp.tril(jnp.ones((length, length), bool)), att, -jnp.inf)
    att = _dropout_at(_softmax(att, safe=False), dropout, key, name, "attn_dropout", train, drops, where)
    y = jnp.swapaxes(jnp.matmul(att, v), 1, 2).reshape(batch, length, channels)
    return _dropout_at(linear_apply(params["c_proj"], y), dropout, key, name, "resid_dropout", train, drops, where)


def gpt_mlp_init(key: jax.Array, n_embd: int, *, bias: bool = True, dtype=jnp.float32) -> Params:
    """nanoGPT's ``MLP``: ``c_fc`` ``Linear(E, 4E)``, ``c_proj`` ``Linear(4E, E)``, default init."""
    fc_key, proj_key = jax.random.split(key)
    return {"c_fc": linear_init(fc_key, n_embd, 4 * n_embd, dtype, bias=bias),
            "c_proj": linear_init(proj_key, 4 * n_embd, n_embd, dtype, bias=bias)}


def gpt_mlp_apply(params: Params, x: jax.Array, *, dropout: float = 0.0, train: bool, key: jax.Array | None = None,
                  name: str = "") -> jax.Array:
    """nanoGPT's ``MLP.forward``: ``dropout(c_proj(gelu(c_fc(x))))``, GELU exact (``nn.GELU()``),
    the mask keyed ``name.dropout``."""
    hidden = activations.gelu(linear_apply(params["c_fc"], x))
    where = f"MLP at '{name}'" if name else "MLP"
    return _dropout_at(linear_apply(params["c_proj"], hidden), dropout, key, name, "dropout", train,
                      train and dropout > 0, where)


def gpt_block_init(key: jax.Array, n_embd: int, *, bias: bool = True, dtype=jnp.float32) -> Params:
    """nanoGPT's ``Block``: ``ln_1``, ``attn``, ``ln_2``, ``mlp``, in its ``state_dict``'s order;
    its ``LayerNorm(ndim, bias)`` holds no ``bias`` when ``bias=False``."""
    _checks.check_dtype_argument("gpt_block_init", dtype)
    attn_key, mlp_key = jax.random.split(key)
    return {"ln_1": layer_norm_init(n_embd, bias=bias, dtype=dtype),
            "attn": causal_self_attention_init(attn_key, n_embd, bias=bias, dtype=dtype),
            "ln_2": layer_norm_init(n_embd, bias=bias, dtype=dtype),
            "mlp": gpt_mlp_init(mlp_key, n_embd, bias=bias, dtype=dtype)}


def gpt_block_apply(params: Params, x: jax.Array, *, n_head: int, dropout: float = 0.0, train: bool,
                    key: jax.Array | None = None, name: str = "") -> jax.Array:
    """nanoGPT's ``Block.forward``: ``x + attn(ln_1(x))``, then ``x + mlp(ln_2(x))`` (pre-norm,
    LayerNorm eps 1e-5).

    >>> params = gpt_block_init(jax.random.key(0), 8)
    >>> gpt_block_apply(params, jnp.ones((2, 5, 8)), n_head=2, train=False).shape
    (2, 5, 8)
    """
    width = jnp.shape(x)[-1]
    x = x + causal_self_attention_apply(params["attn"], layer_norm_apply(params["ln_1"], x, width), n_head=n_head,
                                        dropout=dropout, train=train, key=key, name=_child(name, "attn"))
    return x + gpt_mlp_apply(params["mlp"], layer_norm_apply(params["ln_2"], x, width), dropout=dropout,
                             train=train, key=key, name=_child(name, "mlp"))


def positional_embedding_apply(params: Params, length: int) -> jax.Array:
    """nanoGPT's ``wpe(arange(t))``: the first ``length`` rows of a learned position table
    ``(block_size, E)``, refused when ``length`` exceeds ``block_size``.

    >>> positional_embedding_apply({"weight": jnp.zeros((8, 4))}, 5).shape
    (5, 4)
    """
    block_size = jnp.shape(params["weight"])[0]
    if length > block_size:
        raise ValueError(f"positional_embedding_apply: cannot forward a sequence of length {length}, the position "
                         f"table (block_size) holds only {block_size}")
    return params["weight"][:length]


def gpt_init(key: jax.Array, config: GPTConfig, dtype=jnp.float32) -> Params:
    """nanoGPT's ``GPT(config)`` parameters with its init: Linear and Embedding weights
    N(0, 0.02), the residual projections' (``c_proj.weight``) N(0, 0.02/sqrt(2 n_layer)),
    biases zero, LayerNorms ones and zeros. The tied ``lm_head.weight`` is not a leaf of its
    own (module doc); the draws come from a JAX key.

    >>> params = gpt_init(jax.random.key(0), GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=4))
    >>> list(params["transformer"])
    ['wte', 'wpe', 'h', 'ln_f']
    """
    what = "gpt_init"
    _checks.check_dtype_argument(what, dtype)
    _check_gpt_config(what, config)
    width, residual_std = config.n_embd, 0.02 / math.sqrt(2 * config.n_layer)
    token_key, position_key, *block_keys = jax.random.split(key, 2 + config.n_layer)

    def normal(key, shape, std=0.02):
        return std * jax.random.normal(key, shape, dtype)

    def linear(key, fan_in, fan_out, std=0.02):
        return {"weight": normal(key, (fan_out, fan_in), std)} | (
            {"bias": jnp.zeros(fan_out, dtype)} if config.bias else {})

    blocks = {}
    for index, block_key in enumerate(block_keys):
        keys = jax.random.split(block_key, 4)
        blocks[str(index)] = {
            "ln_1": layer_norm_init(width, bias=config.bias, dtype=dtype),
            "attn": {"c_attn": linear(keys[0], width, 3 * width), "c_proj": linear(keys[1], width, width, residual_std)},
            "ln_2": layer_norm_init(width, bias=config.bias, dtype=dtype),
            "mlp": {"c_fc": linear(keys[2], width, 4 * width), "c_proj": linear(keys[3], 4 * width, width, residual_std)},
        }
    return {"transformer": {"wte": {"weight": normal(token_key, (config.vocab_size, width))},
                            "wpe": {"weight": normal(position_key, (config.block_size, width))},
                            "h": blocks,
                            "ln_f": layer_norm_init(width, bias=config.bias, dtype=dtype)}}


def gpt_apply(params: Params, idx: jax.Array, *, config: GPTConfig, train: bool, key: jax.Array | None = None,
              name: str = "") -> jax.Array:
    """nanoGPT's ``GPT.forward(idx, targets)``'s logits ``(B, T, vocab_size)`` at every position
    (nanoGPT computes the last position alone when ``targets`` is None): ``drop(wte(idx) +
    wpe(arange(T)))``, the blocks, ``ln_f``, ``lm_head`` with the tied ``wte`` weight.
    A sequence longer than ``block_size`` is refused, as nanoGPT's assertion does.

    >>> config = GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=4)
    >>> gpt_apply(gpt_init(jax.random.key(0), config), jnp.zeros((2, 5), int), config=config, train=False).shape
    (2, 5, 11)
    """
    what = "gpt_apply"
    if jnp.ndim(idx) != 2:
        raise ValueError(f"{what}: idx must be token indices (B, T), got shape {jnp.shape(idx)}")
    length = jnp.shape(idx)[1]
    if length > config.block_size:
        raise ValueError(f"{what}: cannot forward sequence of length {length}, block size is only "
                         f"{config.block_size}")
    body = params["transformer"]
    tokens = embedding_apply(body["wte"], idx)
    x = tokens + positional_embedding_apply(body["wpe"], length)
    x = _dropout_at(x, config.dropout, key, _child(name, "transformer"), "drop", train,
                   train and config.dropout > 0, what)
    for index in range(config.n_layer):
        x = gpt_block_apply(body["h"][str(index)], x, n_head=config.n_head, dropout=config.dropout, train=train,
                            key=key, name=_child(name, f"transformer.h.{index}"))
    x = layer_norm_apply(body["ln_f"], x, config.n_embd)
    return x @ body["wte"]["weight"].T


def _check_gpt_config(what, config):
    if not isinstance(config, GPTConfig):
        raise TypeError(f"{what}: config must be a GPTConfig(block_size=..., vocab_size=..., ...), got "
                        f"{type(config).__name__}")
    for field in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
        _checks.check_positive_int(what, field, getattr(config, field))
    _check_heads(what, config.n_embd, config.n_head, ("n_embd", "n_head"))
    _checks.check_probability(what, config.dropout)


def GPT(config: GPTConfig) -> Layer:
    """nanoGPT's ``GPT(config)`` as a ``Layer`` on token indices ``(B, T)``: logits at every position.

    >>> model = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=1, n_head=2, n_embd=4))
    >>> params, buffers = model.init(jax.random.key(0))
    >>> model.apply(params, buffers, jnp.zeros((2, 5), int), train=False)[0].shape
    (2, 5, 11)
    """
    _check_gpt_config("GPT", config)

    def apply(params, buffers, idx, *, train, key=None, name=""):
        return gpt_apply(params, idx, config=config, train=train, key=key, name=name), {}

    return layer(lambda key, dtype=jnp.float32: (gpt_init(key, config, dtype), {}), apply,
                 torch_repr("GPT", **config._asdict()))


def gpt_to_state_dict(params: Params) -> dict[str, np.ndarray]:
    """A GPT's params as nanoGPT's ``state_dict``: the tied weight under ``transformer.wte.weight``
    and again under ``lm_head.weight`` (last, as torch lists it). nanoGPT's flash path holds no
    buffers; its manual path adds a causal-mask buffer ``transformer.h.<i>.attn.bias`` per block
    (``tril(ones)``, which ``from_pretrained`` discards): merge those in to load it strictly.

    >>> sd = gpt_to_state_dict(gpt_init(jax.random.key(0), GPTConfig(8, 11, 1, 2, 4)))
    >>> sd["lm_head.weight"] is sd["transformer.wte.weight"]
    True
    """
    flat = to_state_dict(params)
    if "transformer.wte.weight" not in flat or "lm_head.weight" in flat:
        raise ValueError("gpt_to_state_dict: params must be gpt_init's tree, with the token table at "
                         "transformer.wte.weight and no lm_head of its own (it is tied)")
    return flat | {"lm_head.weight": flat["transformer.wte.weight"]}


def gpt_from_state_dict(state_dict) -> Params:
    """nanoGPT's ``state_dict`` as GPT params: ``lm_head.weight`` must equal ``transformer.wte.weight``
    (tied) and becomes no leaf of its own; the manual path's ``.attn.bias`` mask buffers are dropped.

    >>> params = gpt_from_state_dict(torch_gpt.state_dict())
    """
    what = "gpt_from_state_dict"
    arrays = {name: host_array(what, name, value) for name, value in state_dict.items()}
    missing = [name for name in ("transformer.wte.weight", "lm_head.weight") if name not in arrays]
    if missing:
        raise ValueError(f"{what}: the state_dict lacks {missing}; nanoGPT's holds both (tied)")
    if not np.array_equal(arrays["transformer.wte.weight"], arrays["lm_head.weight"]):
        raise ValueError(f"{what}: lm_head.weight differs from transformer.wte.weight; nanoGPT ties them "
                         f"(wte.weight = lm_head.weight), and funcgrad's GPT holds one table")
    return from_state_dict({name: value for name, value in arrays.items()
                            if name != "lm_head.weight" and not name.endswith(".attn.bias")})
