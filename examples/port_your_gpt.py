"""Port your own transformer language model, prove every step, and see two classic traps caught.

    python examples/port_your_gpt.py [--steps N]

The original: a small causal language model written with torch's own modules, as many
projects write one before reaching for nanoGPT: ``nn.Embedding`` (with a padding index) plus
learned positions, two ``nn.TransformerEncoderLayer(norm_first=True, activation="gelu",
batch_first=True)`` under a causal mask and a key-padding mask (the lines of the text are
left-padded into batches of one width), a final ``nn.LayerNorm`` and an ``nn.Linear`` head; cross-entropy
that ignores the padding; AdamW with minGPT's groups (decay on the Linear weights only),
``OneCycleLR`` (which also cycles Adam's beta1), and ``clip_grad_norm_(..., 1.0)``.

1. **The port**: ``fg.layers``' encoder layer keyed as torch's ``state_dict``
   (``layers.0.self_attn.in_proj_weight``...), the masks in MHA's meaning (bool True:
   masked out), the optimizer as ``fg.optim.param_groups`` behind ``fg.optim.clip_grad_norm``
   with ``fg.optim.one_cycle_lr`` and ``one_cycle_momentum`` for the betas.
2. **The proof**: ``fg.assert_same_steps(..., torch_after_backward=clip)`` in float64 and
   float32, every step synced from torch's state.
3. **Two traps planted**: the key-padding mask left out (the real tokens then attend to
   the pads before them), and GELU in its tanh form (``jax.nn.gelu``'s default): each is
   caught at step 0, in the forward pass (judged here in float64 over two steps; float32
   catches both as well).
"""

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from torch import nn

import funcgrad as fg

L = fg.layers
TEXT = fg.shakespeare_excerpt()
VOCABULARY = fg.char_vocabulary(TEXT)
PAD = len(VOCABULARY)  # one more token: the padding
VOCAB, WIDTH, HEADS, LAYERS, BLOCK, BATCH = PAD + 1, 32, 4, 2, 48, 8
MAX_LR, CLIP = 3e-3, 1.0


class CausalLM(nn.Module):  # the original
    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, WIDTH, padding_idx=PAD)
        self.pos = nn.Embedding(BLOCK, WIDTH)
        self.layers = nn.ModuleList(nn.TransformerEncoderLayer(WIDTH, HEADS, 4 * WIDTH, dropout=0.0, activation="gelu",
                                                               batch_first=True, norm_first=True)
                                    for _ in range(LAYERS))
        self.norm = nn.LayerNorm(WIDTH)
        self.head = nn.Linear(WIDTH, VOCAB)

    def forward(self, idx, padding):
        length = idx.size(1)
        x = self.embed(idx) + self.pos(torch.arange(length))
        causal = torch.ones(length, length, dtype=torch.bool).triu(1)  # True: masked out
        for layer in self.layers:
            x = layer(x, src_mask=causal, src_key_padding_mask=padding, is_causal=True)
        return self.head(self.norm(x))


def decayed_names(model: nn.Module) -> list[str]:
    """minGPT's groups: the weights of Linear layers (MHA's packed in_proj_weight is one) decay."""
    linear_weights = {f"{module_name}.{name}".lstrip(".") for module_name, module in model.named_modules()
                      for name, _ in module.named_parameters(recurse=False)
                      if isinstance(module, (nn.Linear, nn.MultiheadAttention)) and name.endswith("weight")}
    return [name for name, _ in model.named_parameters() if name in linear_weights]


def torch_setup_for(num_steps: int, initial: dict):
    def torch_setup(dtype):
        model = CausalLM().to(torch.float64 if dtype == np.float64 else torch.float32)
        model.load_state_dict({name: torch.tensor(value.astype(dtype)) for name, value in initial.items()})
        decay = set(decayed_names(model))
        groups = [{"params": [p for n, p in model.named_parameters() if n in decay], "weight_decay": 0.1},
                  {"params": [p for n, p in model.named_parameters() if n not in decay], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=MAX_LR, betas=(0.9, 0.95))
        return model, optimizer, torch.optim.lr_scheduler.OneCycleLR(optimizer, MAX_LR, total_steps=num_steps)
    return torch_setup


def torch_loss(model, batch):
    idx, targets, padding = batch
    logits = model(idx, padding)
    return F.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100)


def clip(model):
    torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)


def jax_loss_for(activation: str = "gelu", use_padding: bool = True):
    """The port; ``activation`` and ``use_padding`` are the switches the traps flip."""
    def loss(params, batch):
        idx, targets, padding = batch
        length = idx.shape[1]
        x = L.embedding_apply(params["embed"], idx, padding_idx=PAD) + params["pos"]["weight"][:length]
        causal = jnp.triu(jnp.ones((length, length), bool), 1)
        for index in range(LAYERS):
            x = L.transformer_encoder_layer_apply(
                params["layers"][str(index)], x, nhead=HEADS, src_mask=causal,
                src_key_padding_mask=padding if use_padding else None, is_causal=True, dropout=0.0,
                activation=activation, batch_first=True, norm_first=True, train=True)
        logits = fg.linear_apply(params["head"], L.layer_norm_apply(params["norm"], x, WIDTH))
        return fg.cross_entropy(logits.reshape(-1, VOCAB), targets.reshape(-1), ignore_index=-100)
    return loss


def jax_optimizer(num_steps: int, decay: list[str]) -> optax.GradientTransformation:
    rate = fg.optim.one_cycle_lr(MAX_LR, num_steps)
    beta1 = fg.optim.one_cycle_momentum(num_steps)  # OneCycleLR rewrites betas[0] every step
    groups = [{"params": decay, "weight_decay": 0.1},
              {"params": lambda name, p: name not in decay, "weight_decay": 0.0}]
    return optax.chain(fg.optim.clip_grad_norm(CLIP),
                       fg.optim.param_groups(fg.optim.adamw, groups, learning_rate=rate, betas=(beta1, 0.95)))


def batches(num_steps: int) -> list[tuple]:
    """Lines of the text, left-padded to one width (one shape: each step compiles once):
    (inputs, targets, padding)."""
    lines = [fg.encode(line, VOCABULARY) for line in TEXT.splitlines() if 8 <= len(line) <= BLOCK]
    order = fg.loader_batches(jax.random.key(1), len(lines), BATCH, num_epochs=1).in_order()[:num_steps]
    out = []
    for rows in order:
        width = BLOCK - 1
        idx, targets = np.full((len(rows), width), PAD), np.full((len(rows), width), -100)
        for r, i in enumerate(rows):
            line = lines[i]
            idx[r, width - len(line) + 1:], targets[r, width - len(line) + 1:] = line[:-1], line[1:]
        out.append((idx, targets, idx == PAD))
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps to prove (default 40)")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    initial = {name: value.detach().numpy().copy() for name, value in CausalLM().state_dict().items()}
    torch_setup, data = torch_setup_for(args.steps, initial), batches(args.steps)
    decay = decayed_names(CausalLM())
    verdicts = fg.assert_same_steps(jax_loss_for(), jax_optimizer(args.steps, decay), torch_setup, torch_loss, data,
                                    torch_after_backward=clip)
    for verdict in verdicts.values():
        print(verdict.summary)
    for trap, loss in (("the key-padding mask left out", jax_loss_for(use_padding=False)),
                       ("GELU's tanh form", jax_loss_for(activation=lambda x: jax.nn.gelu(x, approximate=True)))):
        try:
            fg.assert_same_steps(loss, jax_optimizer(2, decay), torch_setup_for(2, initial), torch_loss, data[:2],
                                 dtypes=["float64"], torch_after_backward=clip)
        except fg.ParityError as error:
            print(f"trap, {trap}: caught: {str(error).splitlines()[0]}")
        else:
            raise SystemExit(f"trap, {trap}: not caught")


if __name__ == "__main__":
    main()
