"""binary-logistic (seed 001): two 3-D blobs of 15, BCE with logits, SGD lr 0.1, 300 steps."""

import jax
import jax.numpy as jnp
import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.optim as optim

import funcgrad as fg
from funcgrad.parity import Exact, History, Logits
from funcgrad.tutorials import binary_logistic as tutorial

NAME = "binary-logistic"
SOURCE = "001 logistic regression"


def run(ctx):
    xs, ys_true = fg.gaussian_blobs(seed=1, dtype=ctx.dtype)
    initial = ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(6), 3, 1)))
    return jax_side(xs, ys_true, initial), torch_side(ctx, xs, ys_true, initial)


def jax_side(xs, ys_true, initial):
    params = fg.from_state_dict(initial)
    grads = jax.grad(tutorial.loss_fn)(params, (xs, ys_true))
    params, losses = tutorial.train(params, xs, ys_true)
    zs = fg.linear_apply(params, jnp.asarray(xs))
    correct = int(jnp.sum((zs > 0) == (ys_true > 0.5)))
    return {
        "weight grad at init": grads["weight"],
        "bias grad at init": grads["bias"],
        "loss per step": History(losses),
        "trained weight": params["weight"],
        "trained bias": params["bias"],
        "sigmoid predictions": tutorial.predict_probabilities(params, xs),
        "predicted classes": Logits(zs),
        "training accuracy": Exact(correct / len(ys_true)),
    }


def torch_side(ctx, xs, ys_true, initial):
    xs, ys_true = ctx.to_torch(xs), ctx.to_torch(ys_true)
    linear = nn.Linear(3, 1).to(ctx.torch_device, ctx.torch_dtype)
    linear.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    bce_with_sigmoid = nn.BCEWithLogitsLoss()
    bce_with_sigmoid(linear(xs), ys_true).backward()
    grads = {name: p.grad.clone() for name, p in linear.named_parameters()}

    optimizer = optim.SGD(linear.parameters(), lr=tutorial.LEARNING_RATE)
    losses = []
    for epoch in range(tutorial.NUM_STEPS):
        zs = linear(xs)
        loss = bce_with_sigmoid(zs, ys_true)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())

    with torch.no_grad():
        zs = linear(xs)
        ys_pred = F.sigmoid(zs)
        correct = ((zs > 0) == (ys_true > 0.5)).sum().item()
    return {
        "weight grad at init": grads["weight"],
        "bias grad at init": grads["bias"],
        "loss per step": History(torch.stack(losses)),
        "trained weight": linear.weight,
        "trained bias": linear.bias,
        "sigmoid predictions": ys_pred,
        "predicted classes": Logits(zs),
        "training accuracy": Exact(correct / len(ys_true)),
    }
