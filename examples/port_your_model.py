"""Port your own model: a PyTorch classifier and loop, its funcgrad port, and the proof.

    python examples/port_your_model.py

The original: an MLP with a tanh hidden layer on scikit-learn's wine data, AdamW with a
cosine schedule stepped every batch, label smoothing, batches of 32 (the last one short).
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
from sklearn.datasets import load_wine
from torch.utils.data import DataLoader, TensorDataset

import funcgrad as fg

wine = load_wine()
X, Y = (wine.data - wine.data.mean(0)) / wine.data.std(0), wine.target  # 178 samples, 13 features
INITIAL = fg.to_state_dict(fg.mlp_init(jax.random.key(0), (13, 32, 3)))  # drawn once, in float32
BATCHES = fg.loader_batches(jax.random.key(1), len(Y), batch_size=32, num_epochs=5)  # 6 steps an epoch


def torch_train(dtype):  # the original, unchanged but for where its weights and order come from
    model = torch.nn.Sequential(torch.nn.Linear(13, 32), torch.nn.Tanh(), torch.nn.Linear(32, 3))
    model = model.to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.tensor(v.astype(dtype)) for k, v in INITIAL.items()})
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=30)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
    data = TensorDataset(torch.tensor(X.astype(dtype)), torch.tensor(Y))

    def loop():
        for epoch in range(5):
            for x, y in DataLoader(data, batch_size=32, sampler=BATCHES.permutation(epoch).tolist()):
                optimizer.zero_grad()
                loss = criterion(model(x), y)
                loss.backward()
                optimizer.step()
                scheduler.step()
                yield loss

    return fg.record_torch_run(model, loop())


def jax_train(dtype):  # the port: pure functions, one compiled loop over every epoch
    params = fg.from_state_dict({k: v.astype(dtype) for k, v in INITIAL.items()})
    optimizer = fg.optim.adamw(fg.optim.cosine_annealing_lr(1e-2, t_max=30), weight_decay=1e-2)

    def loss_fn(params, batch):
        logits = fg.mlp_apply(params, batch[0], activation=jnp.tanh)
        return fg.cross_entropy(logits, batch[1], label_smoothing=0.05)

    data = (jnp.asarray(X, dtype), jnp.asarray(Y))
    params, _, losses = fg.fit_epochs(loss_fn, optimizer, params, optimizer.init(params), data, BATCHES)
    return fg.record_jax_run(losses, params)


if __name__ == "__main__":
    verdicts = fg.assert_same_training(jax_train, torch_train)  # raises fg.ParityError, naming the step
    for dtype, rows in verdicts.items():
        print(f"{dtype}: all {len(rows)} quantities agree\n{fg.parity.format_table(rows)}\n")
