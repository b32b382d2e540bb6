"""Seed 002's two sides, shared by mnist-softmax and data-parallel-mnist (the same model on
the same batches, the latter with every batch split over the devices): the set-up, the
tutorial's JAX epoch, and the seed's raw-tensor torch loop.

    data_name, data, initial, order = setup(ctx)
    jax_results, torch_results = jax_side(data, initial, order), torch_side(ctx, data, initial, order)
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import funcgrad as fg
from compare.cases._mnist import to_tensor
from funcgrad.parity import Exact, History, Logits
from funcgrad.tutorials import mnist_softmax as tutorial

# Without MNIST, sklearn's 1 500 training digits stand in: one epoch of 100 would be 15
# steps, so the stand-in takes batches of 20 for 10 epochs.
STAND_IN_BATCH_SIZE = 20
STAND_IN_EPOCHS = 10


def setup(ctx):
    """The data, the initial W and b, and the batch order both sides train on."""
    data_name, data = ctx.mnist()
    init_key, order_key = jax.random.split(ctx.key(7))
    initial = ctx.cast(fg.to_state_dict(tutorial.init_params(init_key, data["train_images"][0].size)))
    batch_size, num_epochs = (tutorial.BATCH_SIZE, 1) if data_name == "MNIST" else (STAND_IN_BATCH_SIZE, STAND_IN_EPOCHS)
    order = fg.shuffled_batch_indices(order_key, len(data["train_labels"]), batch_size, num_epochs)
    return data_name, data, initial, order


def jax_side(data, initial, order):
    params = fg.from_state_dict(initial)
    first_batch = (jnp.asarray(data["train_images"][order[0]]),
                   jnp.asarray(data["train_labels"][order[0]], jnp.int32))
    grads = jax.grad(tutorial.loss_fn)(params, first_batch)
    params, losses = tutorial.train_epoch(params, data["train_images"], data["train_labels"], order)
    test_logits = tutorial.logits(params, jnp.asarray(data["test_images"]))
    correct = int(jnp.sum(fg.predict_classes(test_logits) == data["test_labels"]))
    return {
        "W grad on first batch": grads["W"],
        "b grad on first batch": grads["b"],
        "loss per batch": History(losses),
        "trained W": params["W"],
        "trained b": params["b"],
        "test logits": test_logits,
        "test classes": Logits(test_logits),
        "test accuracy": Exact(correct / len(data["test_labels"])),
    }


def torch_dataset(ctx, data, split: str) -> TensorDataset:
    return TensorDataset(to_tensor(ctx, data[f"{split}_images"]),
                         ctx.to_torch(data[f"{split}_labels"].astype(np.int64)))


def torch_train(W, b, train_loader):
    """The seed's loop over ``train_loader``; every batch's loss and the first batch's gradients."""
    num_pixels = W.shape[0]
    optimizer = torch.optim.SGD([W, b], lr=tutorial.LEARNING_RATE)

    losses, grads = [], None
    for images, labels in train_loader:
        optimizer.zero_grad()
        x = images.view(-1, num_pixels)
        y = torch.matmul(x, W) + b
        cross_entropy = F.cross_entropy(y, labels)
        cross_entropy.backward()
        if grads is None:
            grads = (W.grad.clone(), b.grad.clone())
        optimizer.step()
        losses.append(cross_entropy.detach())
    return losses, grads


def torch_side(ctx, data, initial, order):
    mnist_train, mnist_test = torch_dataset(ctx, data, "train"), torch_dataset(ctx, data, "test")
    # The seed's shuffle=True, with the batch order handed over instead of drawn by torch
    # (every epoch's permutation, one after the other).
    train_loader = DataLoader(mnist_train, batch_size=order.shape[1], sampler=order.ravel().tolist())
    test_loader = DataLoader(mnist_test, batch_size=100, shuffle=False)
    num_pixels = data["train_images"][0].size

    W = ctx.to_torch(initial["W"])
    W.requires_grad_()
    b = ctx.to_torch(initial["b"]).requires_grad_()
    losses, grads = torch_train(W, b, train_loader)

    correct, all_logits = 0, []
    with torch.no_grad():
        for images, labels in test_loader:
            x = images.view(-1, num_pixels)
            y = torch.matmul(x, W) + b
            predictions = torch.argmax(y, dim=1)
            correct += torch.sum((predictions == labels).float())
            all_logits.append(y)
    test_logits = torch.cat(all_logits)
    return {
        "W grad on first batch": grads[0],
        "b grad on first batch": grads[1],
        "loss per batch": History(torch.stack(losses)),
        "trained W": W,
        "trained b": b,
        "test logits": test_logits,
        "test classes": Logits(test_logits),
        "test accuracy": Exact(correct.item() / len(mnist_test)),
    }
