"""Port a small transformer language model into Flax NNX and prove every step against torch.

    python examples/port_a_transformer_into_flax.py [--steps N]

The original: token and position embeddings, one pre-norm ``nn.TransformerEncoderLayer(32,
4, 128, dropout=0.0, activation="gelu", batch_first=True, norm_first=True)`` under a causal
mask, a final ``LayerNorm`` and a ``Linear`` head, trained on characters of the shipped
Shakespeare excerpt (``fg.text``) with AdamW and gradients clipped to 1.0.

The port is what a Flax user writes, with four choices made to match torch, each a Flax
default that differs (tests/test_framework_ports.py plants each back and shows it caught at
step 0, the module named where the forward pass parts):

- **LayerNorm's epsilon**: Flax's default is 1e-6, torch's 1e-5.
- **GELU**: ``nnx.gelu`` is the tanh approximation unless ``approximate=False``; torch's
  ``"gelu"`` is exact.
- **Embeddings in float64**: ``nnx.Embed`` fixes its output dtype when it is built
  (``dtype or param_dtype``, float32), so the float64 twin of a step would embed in float32;
  the port passes a ``promote_dtype`` that keeps the table's dtype.
- **Attention in float64**: ``nnx.MultiHeadAttention``'s default ``attention_fn`` may call
  ``jax.nn.dot_product_attention``, whose softmax runs in float32 whatever the inputs; the
  port passes one built on ``dot_product_attention_weights``, which computes in the inputs'
  dtype, as torch does.

torch's packed ``self_attn.in_proj_weight`` (3E, E) becomes NNX's query, key and value
kernels (E, H, D) and ``out_proj`` the ``out`` kernel (H, D, E), by the bridge
(``fg.interop.flax_nnx``), by name.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from flax import nnx
from flax.nnx.nn.attention import dot_product_attention_weights
from torch import nn

import funcgrad as fg
from funcgrad.interop import flax_nnx

TEXT = fg.text.shakespeare_excerpt()
VOCABULARY = fg.text.char_vocabulary(TEXT)
IDS = fg.text.encode(TEXT, VOCABULARY)
BLOCK, WIDTH, HEADS, BATCH = 16, 32, 4, 16
LEARNING_RATE, WEIGHT_DECAY, MAX_NORM = 1e-3, 1e-2, 1.0


class TorchLM(nn.Module):  # the original
    def __init__(self):
        super().__init__()
        self.tok, self.pos = nn.Embedding(len(VOCABULARY), WIDTH), nn.Embedding(BLOCK, WIDTH)
        self.layer = nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, dropout=0.0, activation="gelu",
                                                batch_first=True, norm_first=True)
        self.norm, self.head = nn.LayerNorm(WIDTH), nn.Linear(WIDTH, len(VOCABULARY))

    def forward(self, idx):
        steps = idx.shape[1]
        causal = torch.triu(torch.ones(steps, steps, dtype=torch.bool), diagonal=1)  # True: not attended
        h = self.tok(idx) + self.pos(torch.arange(steps))
        return self.head(self.norm(self.layer(h, src_mask=causal)))


torch.manual_seed(0)
INITIAL = {name: value.numpy().copy() for name, value in TorchLM().state_dict().items()}


def torch_setup(dtype):
    model = TorchLM().to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.tensor(v.astype(dtype)) for k, v in INITIAL.items()})
    return model, torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)


def torch_loss(model, batch):
    x, y = batch
    return F.cross_entropy(model(x).flatten(0, 1), y.flatten())


def torch_clip(model):
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)


def batches(num_steps: int) -> list[tuple]:
    keys = jax.random.split(jax.random.key(3), num_steps)
    return [fg.text.char_batch(IDS, fg.text.char_batch_offsets(key, len(IDS), BLOCK, BATCH), BLOCK) for key in keys]


def optimizer():
    """``optax.adamw``'s chain (decay on every parameter, as torch's AdamW here), after torch's
    clip, its direction ``fg.optim.scale_by_torch_adam`` (torch's bias corrections)."""
    return optax.chain(fg.optim.clip_grad_norm(MAX_NORM), fg.optim.scale_by_torch_adam(),
                       optax.add_decayed_weights(WEIGHT_DECAY), optax.scale_by_learning_rate(LEARNING_RATE))


def torch_attention(query, key, value, mask=None, **unused):
    """Attention in the inputs' dtype: the weights, then their sum over the values."""
    return jnp.einsum("...hqk,...khd->...qhd", dot_product_attention_weights(query, key, mask=mask), value)


def keep_dtype(arrays, dtype=None, inexact=False):
    """``nnx.Embed``'s ``promote_dtype`` that keeps the table's dtype: by default the output
    dtype is fixed when the layer is built (``dtype or param_dtype``), so a float64 table
    loaded from torch would still embed in float32."""
    return arrays


class NnxBlock(nnx.Module):
    """torch's pre-norm TransformerEncoderLayer, its attribute names kept."""

    def __init__(self, rngs: nnx.Rngs, epsilon: float, approximate_gelu: bool, attention_fn):
        self.norm1 = nnx.LayerNorm(WIDTH, epsilon=epsilon, rngs=rngs)
        attention = {} if attention_fn is None else {"attention_fn": attention_fn}
        self.self_attn = nnx.MultiHeadAttention(HEADS, WIDTH, decode=False, rngs=rngs, **attention)
        self.norm2 = nnx.LayerNorm(WIDTH, epsilon=epsilon, rngs=rngs)
        self.linear1, self.linear2 = nnx.Linear(WIDTH, 4 * WIDTH, rngs=rngs), nnx.Linear(4 * WIDTH, WIDTH, rngs=rngs)
        self.approximate_gelu = approximate_gelu

    def __call__(self, h, mask):
        h = h + self.self_attn(self.norm1(h), mask=mask, deterministic=True)
        return h + self.linear2(nnx.gelu(self.linear1(self.norm2(h)), approximate=self.approximate_gelu))


class NnxLM(nnx.Module):
    """The port in Flax NNX, torch's module names kept (so the bridge needs no ``modules=``);
    the Flax defaults that differ from torch are arguments, to plant back: ``epsilon=1e-6``,
    ``approximate_gelu=True``, ``attention_fn=None`` (NNX's own), ``promote_dtype=None``
    (``nnx.Embed``'s own)."""

    def __init__(self, rngs: nnx.Rngs, epsilon=1e-5, approximate_gelu=False, attention_fn=torch_attention,
                 promote_dtype=keep_dtype):
        embed = {} if promote_dtype is None else {"promote_dtype": promote_dtype}
        self.tok = nnx.Embed(len(VOCABULARY), WIDTH, rngs=rngs, **embed)
        self.pos = nnx.Embed(BLOCK, WIDTH, rngs=rngs, **embed)
        self.layer = NnxBlock(rngs, epsilon, approximate_gelu, attention_fn)
        self.norm = nnx.LayerNorm(WIDTH, epsilon=epsilon, rngs=rngs)
        self.head = nnx.Linear(WIDTH, len(VOCABULARY), rngs=rngs)

    def __call__(self, idx):
        h = self.tok(idx) + self.pos(jnp.arange(idx.shape[1]))
        return self.head(self.norm(self.layer(h, nnx.make_causal_mask(idx))))


def nnx_port(model: NnxLM) -> dict:
    """The arguments compare_steps takes for the port: its loss over torch's names, the
    port's name for each torch key, its module outputs."""
    def framework_loss(m, batch):
        x, y = batch
        return fg.cross_entropy(m(x).reshape(-1, len(VOCABULARY)), y.reshape(-1))

    def load(state_dict):
        return flax_nnx.from_torch(model, state_dict, modules=None)

    return {"jax_loss": fg.interop.torch_named_loss(framework_loss, load),
            "framework_names": fg.interop.framework_names(flax_nnx.pairs(model, modules=None)),
            "jax_taps": flax_nnx.taps(framework_loss, load, None)}


def prove(port: dict, steps: list[tuple], dtypes=("float64", "float32")) -> dict:
    return fg.assert_same_steps(jax_optimizer=optimizer(), torch_setup=torch_setup, torch_loss=torch_loss,
                                batches=steps, dtypes=dtypes, torch_after_backward=torch_clip, **port)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps (default 40)")
    args = parser.parse_args()
    print(fg.interop.describe(flax_nnx.pairs(NnxLM(nnx.Rngs(0)), modules=None)))
    for verdict in prove(nnx_port(NnxLM(nnx.Rngs(0))), batches(args.steps)).values():
        print(verdict.summary)
