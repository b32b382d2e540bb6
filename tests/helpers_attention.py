"""What the attention and transformer layer tests share: conversions, the verdict as an
assertion, torch twins that replay funcgrad's dropout masks, and parameters drawn in shape."""

import contextlib
import math

import jax
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import funcgrad as fg
from funcgrad.layers.dropout import dropout_mask, layer_key
from tests.helpers_torch import jax_precision


def to_numpy(tree):
    def convert(value):
        return value.detach().numpy().copy() if isinstance(value, torch.Tensor) else np.array(value)
    return {name: to_numpy(value) if isinstance(value, dict) else convert(value) for name, value in tree.items()}


def tensor(array, dtype, requires_grad=False):
    array = np.asarray(array)
    return torch.tensor(array.astype(dtype) if array.dtype.kind == "f" else array, requires_grad=requires_grad)


def assert_parity(jax_results, torch_results, reference, dtype):
    rows = fg.parity.compare_results(jax_results, torch_results, dtype, reference=reference)
    assert all(row.passed for row in rows), fg.parity.format_failures(rows)


def failing(jax_results, torch_results, reference, dtype) -> set[str]:
    return {row.name for row in fg.parity.compare_results(jax_results, torch_results, dtype, reference=reference)
            if not row.passed}


# ---------------------------------------------------------------- torch twins that replay dropout

def math_kernel_attention(q, k, v, attn_mask=None, is_causal=False, scale=None, drop=None):
    """torch's ``_scaled_dot_product_attention_math`` written out (q and k each scaled by
    sqrt(scale), the mask added, ``_safe_softmax``), with ``drop`` in the place of its dropout."""
    root = math.sqrt(abs(1 / math.sqrt(q.size(-1)) if scale is None else scale))
    if is_causal:
        attn_mask = torch.ones(q.size(-2), k.size(-2), dtype=torch.bool).tril()
    if attn_mask is not None and attn_mask.dtype == torch.bool:
        attn_mask = torch.zeros_like(attn_mask, dtype=q.dtype).masked_fill(attn_mask.logical_not(), -math.inf)
    attn = (q * (root if scale is None or scale >= 0 else -root)) @ (k.transpose(-2, -1) * root)
    if attn_mask is not None:
        attn = attn + attn_mask
    attn = torch.ops.aten._safe_softmax(attn, -1)
    return (attn if drop is None else drop(attn)) @ v


class ManualAttention(nn.Module):
    """The twin a port replays SDPA's dropout with: its math kernel, an ``nn.Dropout`` on the weights."""

    def __init__(self, p: float):
        super().__init__()
        self.attn_dropout = nn.Dropout(p)

    def forward(self, q, k, v, attn_mask=None, is_causal=False, scale=None):
        return math_kernel_attention(q, k, v, attn_mask, is_causal, scale, self.attn_dropout)


def replayed_mask(key, name: str, x: torch.Tensor, p: float) -> torch.Tensor:
    dtype = np.float64 if x.dtype == torch.float64 else np.float32
    with jax_precision(dtype):
        return torch.from_numpy(np.array(dropout_mask(layer_key(key, name), tuple(x.shape), p, dtype)))


@contextlib.contextmanager
def mha_dropout_replayed(key, name: str):
    """Inside, ``F.multi_head_attention_forward`` drops its attention weights with funcgrad's mask
    ``layer_key(key, name)``: through ``F.dropout`` (need_weights=True) or through SDPA's math
    kernel (need_weights=False), both looked up in ``torch.nn.functional`` at call time."""
    original_dropout, original_sdpa = F.dropout, F.scaled_dot_product_attention

    def dropout(x, p=0.5, training=True, inplace=False):
        return x * replayed_mask(key, name, x, p) if training and p > 0 else x

    def sdpa(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, scale=None, enable_gqa=False):
        if dropout_p == 0:
            return original_sdpa(q, k, v, attn_mask, dropout_p, is_causal, scale=scale)
        return math_kernel_attention(q, k, v, attn_mask, is_causal, scale,
                                     lambda w: w * replayed_mask(key, name, w, dropout_p))

    F.dropout, F.scaled_dot_product_attention = dropout, sdpa
    try:
        yield
    finally:
        F.dropout, F.scaled_dot_product_attention = original_dropout, original_sdpa




def drawn_like(init, rng):
    """Params of ``init``'s shapes (no init run: drawing them compiles nothing), float64:
    matrices U(±1/sqrt(fan_in)), vectors N(0, 0.5) (biases nonzero, LayerNorms not 1)."""
    def draw(shape):
        if len(shape) == 2:
            return rng.uniform(-1, 1, shape) / math.sqrt(shape[1])
        return 0.5 * rng.normal(size=shape)
    return jax.tree.map(lambda leaf: draw(leaf.shape), jax.eval_shape(init))
