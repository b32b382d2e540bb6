"""Port a CNN with BatchNorm and dropout, prove every step, and continue a torch checkpoint in JAX.

    python examples/port_your_cnn.py [--steps N] [--checkpoint-at K]

The original: ``nn.Sequential(Conv2d(1, 8, 3, padding=1), BatchNorm2d(8), ReLU(),
MaxPool2d(2), Conv2d(8, 16, 3, padding=1), BatchNorm2d(16), ReLU(), MaxPool2d(2),
Flatten(), Dropout(0.25), Linear(64, 10))`` on scikit-learn's 8x8 digits, AdamW with a
cosine schedule stepped every batch, batches of 32, in train mode.

1. **The port**: the same model as ``fg.layers.Sequential``, keyed as the torch model's
   ``state_dict``; its loss is stateful, ``(params, buffers, batch) -> (loss, new_buffers)``
   (BatchNorm's running statistics go in and come out), and each step's dropout mask comes
   from the key the batch carries.
2. **The proof**: ``fg.assert_same_steps(..., stateful=True)`` starts every step from
   torch's exact parameters, buffers, AdamW moments and schedule position, and judges the
   loss and new buffers, every gradient and every update, in float64 and float32. torch's
   own ``nn.Dropout`` drops what JAX drops (``fg.layers.replay_dropout``).
3. **The checkpoint**: torch trains ``K`` steps and saves its model, optimizer and scheduler.
   JAX loads them (``fg.split_buffers``, ``fg.optim.state_from_torch``) and continues with
   ``fg.train_step``; the synced verdict continues from the same checkpoint
   (``start_step=K``), so the resumed run is proven too.
"""

import argparse
import io

import jax
import numpy as np
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import funcgrad as fg

L = fg.layers
digits = load_digits()
IMAGES, LABELS = (digits.images / 16.0)[:, None], digits.target  # (1 797, 1, 8, 8), 10 classes
LEARNING_RATE, T_MAX = 3e-3, 100


def torch_model() -> nn.Sequential:  # the original
    return nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.25), nn.Linear(16 * 2 * 2, 10))


MODEL = L.Sequential(L.Conv2d(1, 8, 3, padding=1), L.BatchNorm2d(8), L.ReLU(), L.MaxPool2d(2),  # the port
                     L.Conv2d(8, 16, 3, padding=1), L.BatchNorm2d(16), L.ReLU(), L.MaxPool2d(2),
                     L.Flatten(), L.Dropout(0.25), L.Linear(16 * 2 * 2, 10))
OPTIMIZER = fg.optim.adamw(fg.optim.cosine_annealing_lr(LEARNING_RATE, t_max=T_MAX))
INITIAL = fg.to_state_dict(*MODEL.init(jax.random.key(0)))  # drawn once, in float32


def batches(num_steps: int) -> list[tuple]:
    """Each step's (images, labels, dropout key data), in the order a DataLoader meets them."""
    order = fg.loader_batches(jax.random.key(1), len(LABELS), 32, num_epochs=3).in_order()[:num_steps]
    keys = jax.random.key_data(jax.random.split(jax.random.key(2), len(order)))
    return [(IMAGES[i], LABELS[i], np.asarray(key)) for i, key in zip(order, keys)]


def loss_fn(params, buffers, batch):  # the port's loss: stateful, its dropout key in the batch
    x, y, key = batch
    logits, buffers = MODEL.apply(params, buffers, x, train=True, key=jax.random.wrap_key_data(key))
    return fg.cross_entropy(logits, y), buffers


def torch_loss(model, batch):  # the original's forward pass and loss, its Dropout replaying JAX's masks
    x, y, key = batch
    with L.replay_dropout(model, key.numpy()):
        return F.cross_entropy(model(x), y)


def torch_setup(dtype, checkpoint: bytes | None = None):
    """The original's model, AdamW and CosineAnnealingLR in ``dtype``: fresh from INITIAL, or
    restored from a saved checkpoint (its tensors cast to ``dtype``)."""
    torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
    model = torch_model().to(torch_dtype)
    optimizer = torch.optim.AdamW(model.parameters(), lr=LEARNING_RATE)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=T_MAX)
    if checkpoint is None:
        model.load_state_dict({k: torch.tensor(v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in INITIAL.items()})
    else:
        saved = torch.load(io.BytesIO(checkpoint))
        model.load_state_dict(saved["model"])  # load_state_dict casts to the model's dtype
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
    return model, optimizer, scheduler


def torch_checkpoint(steps: list[tuple]) -> bytes:
    """torch trains ``steps`` in float32 and saves its model, optimizer and scheduler."""
    model, optimizer, scheduler = torch_setup(np.float32)
    for x, y, key in steps:
        optimizer.zero_grad()
        torch_loss(model, (torch.tensor(x, dtype=torch.float32), torch.tensor(y), torch.tensor(key))).backward()
        optimizer.step()
        scheduler.step()
    buffer = io.BytesIO()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict()}, buffer)
    return buffer.getvalue()


def continue_in_jax(checkpoint: bytes, start_step: int, steps: list[tuple]) -> list[float]:
    """The checkpoint loaded into JAX and trained on: the BatchNorm model's parameters and
    buffers from its state_dict, AdamW's moments and the schedule's position from torch's."""
    saved = torch.load(io.BytesIO(checkpoint))
    params, buffers = map(fg.from_state_dict, fg.split_buffers(saved["model"]))
    names = [name for name, _ in torch_model().named_parameters()]  # the optimizer's parameters, in its order
    opt_state = fg.optim.state_from_torch(OPTIMIZER.init(params), saved["optimizer"], names, step=start_step)
    step = jax.jit(lambda p, s, b, batch: fg.train_step(loss_fn, OPTIMIZER, p, s, batch, buffers=b))
    losses = []
    for batch in steps:
        params, opt_state, loss, buffers = step(params, opt_state, buffers, batch)
        losses.append(float(loss))
    return losses


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=120, help="training steps (default 120)")
    parser.add_argument("--checkpoint-at", type=int, default=60, metavar="K", help="save torch's state after K steps")
    args = parser.parse_args()
    every_step = batches(args.steps)

    verdicts = fg.assert_same_steps(loss_fn, OPTIMIZER, torch_setup, torch_loss, every_step, stateful=True)
    for verdict in verdicts.values():
        print(verdict.summary)

    k = args.checkpoint_at
    checkpoint = torch_checkpoint(every_step[:k])
    losses = continue_in_jax(checkpoint, k, every_step[k:])
    print(f"resumed in JAX from torch's step {k}: loss {losses[0]:.4f} -> {losses[-1]:.4f} over {len(losses)} steps")
    resumed = fg.assert_same_steps(loss_fn, OPTIMIZER, lambda dtype: torch_setup(dtype, checkpoint), torch_loss,
                                   every_step[k:], stateful=True, start_step=k)
    for verdict in resumed.values():
        print(f"from the checkpoint, {verdict.summary}")
