"""mnist-softmax (seed 002): W = randn(784, 10)/sqrt(784), b = 0, cross-entropy, SGD lr 0.1,
shuffled batches of 100, one epoch; real MNIST when a folder is given.

Without one, sklearn's 1 500 training digits stand in: one epoch of 100 would be 15 steps
(test accuracy 0.3, a model that has not trained), so the stand-in takes batches of 20 for
10 epochs, 750 steps (accuracy 0.94), a fresh permutation each epoch.
"""

import jax
import jax.numpy as jnp
from torch.utils.data import DataLoader

import funcgrad as fg
from compare.cases._seed_002 import jax_side, setup, torch_dataset, torch_side, torch_train
from compare.timed import Timed
from funcgrad.tutorials import mnist_softmax as tutorial

NAME = "mnist-softmax"
SOURCE = "002"
READS_MNIST = True  # real MNIST when a folder is given, else the stand-in digits


def run(ctx):
    data_name, data, initial, order = setup(ctx)
    jax_results = jax_side(data, initial, order)
    torch_results = torch_side(ctx, data, initial, order)
    return jax_results, torch_results, {"data": data_name}


def timed(ctx) -> Timed:
    """Both sides, and the floor: the forward and weight-gradient matmuls over every row,
    which no epoch can avoid."""
    data_name, data, initial, order = setup(ctx)
    pixels = tutorial.pixels(jnp.asarray(data["train_images"]), ctx.dtype)
    weights = jnp.asarray(initial["W"])
    floor = jax.jit(lambda x, w: x.T @ (x @ w))
    params = fg.from_state_dict(initial)
    images, labels = jnp.asarray(data["train_images"]), jnp.asarray(data["train_labels"], jnp.int32)
    train_loader = DataLoader(torch_dataset(ctx, data, "train"), batch_size=order.shape[1],
                              sampler=order.ravel().tolist())
    W, b = (ctx.to_torch(initial[name]).requires_grad_() for name in ("W", "b"))
    return Timed(len(order), {"funcgrad": lambda: tutorial.train_epoch(params, images, labels, order),
                              "torch-eager": lambda: torch_train(W, b, train_loader),
                              "floor": lambda: floor(pixels, weights)},
                 {"funcgrad": data_name, "floor": "x @ W and x.T @ g over all rows"})
