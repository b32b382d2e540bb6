"""Transformer porting bugs the step-synchronized verdict must catch, each named by the step,
stage and parameter where it first shows: the traps of ``../shared/PARITY.md``'s
"Transformers" section, planted one at a time in a port of nanoGPT's training.

The original is char-gpt's recipe at toy size: nanoGPT's ``GPT`` (compare/cases/_nanogpt.py,
manual attention path) with 1 layer, 2 heads, 8 dimensions, a block of 8, biases, dropout
0.1, the head tied to the token embedding; ``configure_optimizers``' AdamW groups (decay
0.1 on the >= 2-D parameters), a warmup through ``LambdaLR``, ``clip_grad_norm_(..., 0.5)``
after ``backward``. A port is written out here from funcgrad's pieces (``forward`` below,
every trap a switch of :class:`Bugs`) with fg.optim's optimizer or a mutated one; the honest
port (no switch) passes in both dtypes (tests/test_gpt_mutants.py).

    python -m compare.gpt_mutants      # the table: each bug, where each dtype's verdict names it
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch

import funcgrad as fg
from compare.cases import _nanogpt as nanogpt
from compare.stepwise_mutants import Verdict, where
from funcgrad.layers.dropout import dropout_mask, layer_key
from funcgrad.layers.gpt import GPTConfig, gpt_init, gpt_to_state_dict
from funcgrad.parity import DTYPES

CONFIG = GPTConfig(block_size=8, vocab_size=13, n_layer=1, n_head=2, n_embd=8, dropout=0.1, bias=True)
BATCH_SIZE, NUM_STEPS = 4, 2
LEARNING_RATE, WARMUP, BETAS, WEIGHT_DECAY, MAX_NORM = 1e-2, 4, (0.9, 0.99), 0.1, 0.5


def _initial() -> dict[str, np.ndarray]:
    """gpt_init's tree with weights wider than nanoGPT's N(0, 0.02) (U(+-1/sqrt(fan_in)), so that
    the activations are of order one and an activation's form shows), LayerNorms and biases
    nonzero; drawn once, in float32."""
    rng = np.random.default_rng(0)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if leaf.ndim == 2:
            return rng.uniform(-1, 1, leaf.shape).astype(np.float32) / math.sqrt(leaf.shape[1])
        return (("weight" in name) + 0.3 * rng.normal(size=leaf.shape)).astype(np.float32)

    return gpt_to_state_dict(jax.tree_util.tree_map_with_path(draw, gpt_init(jax.random.key(0), CONFIG)))


INITIAL = _initial()


def warmup(it: int) -> float:
    """The rate's multiplier at update ``it``: train.py's linear warmup, then constant."""
    return min((it + 1) / (WARMUP + 1), 1.0)


def batches(num_steps: int = NUM_STEPS) -> list[tuple]:
    """Random token windows, their next tokens and each step's dropout key data."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(0, CONFIG.vocab_size, (num_steps, BATCH_SIZE, CONFIG.block_size + 1))
    keys = jax.random.key_data(jax.random.split(jax.random.key(2), num_steps))
    return [(t[:, :-1], t[:, 1:], np.asarray(k)) for t, k in zip(tokens, keys)]


def torch_setup(dtype):
    model = nanogpt.GPT(nanogpt.GPTConfig(**CONFIG._asdict()), flash=False)
    model = model.to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({name: torch.tensor(value.astype(dtype)) for name, value in INITIAL.items()}, strict=True)
    optimizer = nanogpt.adamw_param_groups(model, WEIGHT_DECAY, LEARNING_RATE, BETAS)
    return model, optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, warmup)


def torch_loss(model, batch):
    x, y, key = batch
    with fg.layers.replay_dropout(model, key.numpy()):
        return model(x, y)[1]


def clip(model):
    torch.nn.utils.clip_grad_norm_(model.parameters(), MAX_NORM)


class Bugs(NamedTuple):
    """The port's switches; all off is the honest port."""

    causal_diagonal: int = 0  # tril(k=1): each position also sees the next token
    mask_inverted: bool = False  # nn.MultiheadAttention's meaning (True: masked) handed to SDPA's (True: attends)
    qkv_order: str = "qkv"  # the order c_attn's output is split in
    scale_width: int | None = None  # 1/sqrt(n_embd) for 1/sqrt(head size)
    layer_norm_eps: float = 1e-5  # Flax's LayerNorm: 1e-6
    gelu: str = "none"  # jax.nn.gelu's default: "tanh"
    head_gradient_once: bool = False  # the tied head's use left out of wte's gradient
    attention_dropout_name: str = "attn.attn_dropout"  # the key the attention weights drop with


def forward(params, idx, key, bugs: Bugs = Bugs()):
    """nanoGPT's ``GPT.forward`` in train mode, written out from funcgrad's pieces with ``bugs``."""
    body, (batch, length), width = params["transformer"], idx.shape, CONFIG.n_embd
    heads, head_size = CONFIG.n_head, CONFIG.n_embd // CONFIG.n_head
    dtype = body["wte"]["weight"].dtype

    def drop(x, name):
        return x * dropout_mask(layer_key(key, name), x.shape, CONFIG.dropout, dtype)

    def norm(p, x):
        return fg.layers.layer_norm_apply(p, x, width, eps=bugs.layer_norm_eps)

    def split_heads(t):
        return t.reshape(batch, length, heads, head_size).transpose(0, 2, 1, 3)

    x = drop(body["wte"]["weight"][idx] + body["wpe"]["weight"][:length], "transformer.drop")
    for index in range(CONFIG.n_layer):
        p, name = body["h"][str(index)], f"transformer.h.{index}"
        parts = dict(zip(bugs.qkv_order, jnp.split(fg.linear_apply(p["attn"]["c_attn"], norm(p["ln_1"], x)), 3, -1)))
        q, k, v = (split_heads(parts[c]) for c in "qkv")
        att = (q @ k.swapaxes(-2, -1)) * (1.0 / math.sqrt(bugs.scale_width or head_size))
        attends = jnp.tril(jnp.ones((length, length), bool), bugs.causal_diagonal)
        att = jnp.where(~attends if bugs.mask_inverted else attends, att, -jnp.inf)
        att = drop(jax.nn.softmax(att, axis=-1), f"{name}.{bugs.attention_dropout_name}")
        y = (att @ v).transpose(0, 2, 1, 3).reshape(batch, length, width)
        x = x + drop(fg.linear_apply(p["attn"]["c_proj"], y), f"{name}.attn.resid_dropout")
        h = fg.layers.gelu(fg.linear_apply(p["mlp"]["c_fc"], norm(p["ln_2"], x)), bugs.gelu)
        x = x + drop(fg.linear_apply(p["mlp"]["c_proj"], h), f"{name}.mlp.dropout")
    head = body["wte"]["weight"]
    return norm(body["ln_f"], x) @ (jax.lax.stop_gradient(head) if bugs.head_gradient_once else head).T


def loss_of(bugs: Bugs) -> Callable:
    def loss(params, batch):
        x, y, key = batch
        logits = forward(params, x, jax.random.wrap_key_data(key), bugs)
        return fg.cross_entropy(logits.reshape(-1, CONFIG.vocab_size), y.reshape(-1))
    return loss


def optimizer(clip_transform=None, decay_all: bool = False, multiplier=warmup) -> optax.GradientTransformation:
    """The honest optimizer (fg.optim's clip, then AdamW's two groups, the warmup), or one mutated."""
    groups = ([{"params": lambda name, p: True, "weight_decay": WEIGHT_DECAY}] if decay_all else
              [{"params": lambda name, p: p.ndim >= 2, "weight_decay": WEIGHT_DECAY},
               {"params": lambda name, p: p.ndim < 2, "weight_decay": 0.0}])
    rate = fg.optim.lambda_lr(LEARNING_RATE, multiplier, num_steps=64)
    return optax.chain(clip_transform or fg.optim.clip_grad_norm(MAX_NORM),
                       fg.optim.param_groups(fg.optim.adamw, groups, learning_rate=rate, betas=BETAS))


def clip_per_tensor(max_norm: float) -> optax.GradientTransformation:
    """Each gradient clipped to ``max_norm`` alone (``clip_grad_norm_`` called per parameter)."""
    def update(updates, state, params=None):
        def one(g):
            return g * jnp.minimum(1.0, max_norm / (jnp.linalg.norm(g.ravel()) + 1e-6))
        return jax.tree.map(one, updates), state
    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


@dataclasses.dataclass(frozen=True)
class Mutant:
    """One transformer porting bug and where the verdict must first see it, in both dtypes."""

    name: str
    description: str
    port: Callable[[], tuple[Callable, optax.GradientTransformation]]  # () -> (loss, optimizer)
    step: int
    stage: str
    parameter: str


def _bug(**switches):
    return lambda: (loss_of(Bugs(**switches)), optimizer())


MUTANTS = {mutant.name: mutant for mutant in (
    Mutant("causal-off-by-one", "the causal mask tril(k=1): each position sees the next token",
           _bug(causal_diagonal=1), 0, "forward", ""),
    Mutant("mask-inverted", "the causal mask in MHA's meaning (True: masked) where SDPA's is meant (True: attends)",
           _bug(mask_inverted=True), 0, "forward", ""),
    Mutant("qkv-order", "c_attn's output split as k, q, v", _bug(qkv_order="kqv"), 0, "forward", ""),
    Mutant("scale-by-width", "attention scaled by 1/sqrt(n_embd), not 1/sqrt(head size)",
           _bug(scale_width=CONFIG.n_embd), 0, "forward", ""),
    Mutant("layer-norm-eps", "LayerNorm eps 1e-6 (Flax's default), not 1e-5", _bug(layer_norm_eps=1e-6),
           0, "forward", ""),
    Mutant("gelu-tanh", "GELU's tanh form (jax.nn.gelu's default), not the exact erf", _bug(gelu="tanh"),
           0, "forward", ""),
    Mutant("attention-dropout-key", "the attention weights dropped with resid_dropout's mask",
           _bug(attention_dropout_name="attn.resid_dropout"), 0, "forward", ""),
    Mutant("tied-head-gradient", "the tied head's use left out of wte's gradient (stop_gradient on the head)",
           _bug(head_gradient_once=True), 0, "gradient", "transformer.wte.weight"),
    Mutant("clip-per-tensor", "each gradient clipped to max_norm alone, not by the global norm",
           lambda: (loss_of(Bugs()), optimizer(clip_per_tensor(MAX_NORM))), 0, "optimizer",
           "nu of transformer.ln_f.bias"),
    Mutant("clip-without-eps", "optax.clip_by_global_norm: no 1e-6 in max_norm / (norm + 1e-6)",
           lambda: (loss_of(Bugs()), optimizer(optax.clip_by_global_norm(MAX_NORM))), 0, "optimizer",
           "nu of transformer.h.0.mlp.c_proj.bias"),
    Mutant("decay-on-all", "weight decay on biases and LayerNorms too (one group)",
           lambda: (loss_of(Bugs()), optimizer(decay_all=True)), 0, "optimizer",
           "new value of transformer.ln_f.bias"),
    Mutant("warmup-off-by-one", "the warmup read one update ahead: get_lr(it + 1)",
           lambda: (loss_of(Bugs()), optimizer(multiplier=lambda it: warmup(it + 1))), 0, "optimizer",
           "new value of transformer.ln_f.bias"),
)}


def expected(mutant: Mutant) -> str:
    """What the failure message must start with after the dtype."""
    what = {"forward": "the loss differs at the same weights",
            "gradient": f"the gradient of {mutant.parameter} differs",
            "optimizer": f"the optimizer's {mutant.parameter} differs"}[mutant.stage]
    return f"step {mutant.step}: {what}"


def judge_port(loss, port_optimizer, dtype: str, num_steps: int = NUM_STEPS) -> Verdict:
    try:
        verdicts = fg.assert_same_steps(loss, port_optimizer, torch_setup, torch_loss, batches(num_steps),
                                        dtypes=[dtype], torch_after_backward=clip)
        return Verdict(False, verdicts[dtype].summary)
    except fg.ParityError as error:
        return Verdict(True, str(error))


def judge(mutant: Mutant, dtype: str, num_steps: int = NUM_STEPS) -> Verdict:
    return judge_port(*mutant.port(), dtype, num_steps)


def control(dtype: str, num_steps: int = NUM_STEPS) -> Verdict:
    """The verdict on the honest port."""
    return judge_port(loss_of(Bugs()), optimizer(), dtype, num_steps)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.gpt_mutants",
                                     description="Transformer porting bugs under the step-synchronized verdict.")
    parser.add_argument("--steps", type=int, default=NUM_STEPS, help=f"steps of each run (default {NUM_STEPS})")
    args = parser.parse_args(argv)
    start, missed = time.perf_counter(), 0
    honest = {dtype: control(dtype, args.steps) for dtype in DTYPES}
    print("honest port: " + "; ".join(f"{dtype} {'FAILS' if v.caught else 'passes'}" for dtype, v in honest.items()))
    print("| mutant | what is wrong | float64: first failing stage and parameter "
          "| float32: first failing stage and parameter |")
    print("| --- | --- | --- | --- |")
    for mutant in MUTANTS.values():
        cells = [mutant.name, mutant.description]
        for dtype in DTYPES:
            verdict = judge(mutant, dtype, args.steps)
            missed += not verdict.caught
            cells.append(where(verdict.message) if verdict.caught else "NOT CAUGHT")
        print("| " + " | ".join(cells) + " |", flush=True)
    missed += sum(v.caught for v in honest.values())
    print(f"{missed} wrong verdicts, in {time.perf_counter() - start:.0f} s")
    return 0 if missed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
