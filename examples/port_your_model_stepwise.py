"""Port a non-convex model and prove every step: the step-synchronized verdict.

    python examples/port_your_model_stepwise.py [--every K]

The original: ``nn.Sequential(Linear(64, 128), ReLU(), Linear(128, 10))`` on scikit-learn's
digits (pixels / 16), SGD with Nesterov momentum and weight decay, ``CosineAnnealingLR``
stepped every batch, label smoothing, a ``DataLoader`` of batch 64 with its short last
batch, 30 epochs: 870 steps. In float32 the two whole runs can part (one crosses a ReLU
kink the other does not, and from there the gap grows by a steady factor a step): with
one torch thread on an AVX2 AMD EPYC they leave their band at step 724, with two they do
not. Either way every step, started from torch's exact state, agrees: the verdict passes
and, where the whole runs part, says where.
"""

import argparse

import jax
import numpy as np
import torch
from sklearn.datasets import load_digits

import funcgrad as fg

digits = load_digits()
X, Y = digits.data / 16.0, digits.target  # 1 797 samples, 64 features, 10 classes
INITIAL = fg.to_state_dict(fg.mlp_init(jax.random.key(0), (64, 128, 10)))  # drawn once, in float32
ORDER = fg.loader_batches(jax.random.key(1), len(Y), batch_size=64, num_epochs=30)  # 29 steps an epoch
BATCHES = [(X[i], Y[i]) for i in ORDER.in_order()]


def torch_setup(dtype):  # the original's model, optimizer and scheduler, in dtype
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    model = model.to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.tensor(v.astype(dtype)) for k, v in INITIAL.items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    return model, optimizer, torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=50)


def torch_loss(model, batch):  # the original's forward pass and loss
    x, y = batch
    return torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)


def loss_fn(params, batch):  # the port
    x, y = batch
    return fg.cross_entropy(fg.mlp_apply(params, x), y, label_smoothing=0.1)


OPTIMIZER = fg.optim.sgd(fg.optim.cosine_annealing_lr(0.05, t_max=50), momentum=0.9, nesterov=True,
                         weight_decay=5e-4)

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, default=1, help="sync every K-th step (default: every step)")
    args = parser.parse_args()
    verdicts = fg.assert_same_steps(loss_fn, OPTIMIZER, torch_setup, torch_loss, BATCHES, every=args.every)
    for dtype, verdict in verdicts.items():
        print(verdict.summary)
        print(fg.parity.format_table(verdict.synced + verdict.whole_run), end="\n\n")
