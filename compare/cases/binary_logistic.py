"""binary-logistic (seed 001): two 3-D blobs of 15, BCE with logits, SGD lr 0.1, 300 steps."""

import jax
import jax.numpy as jnp
import torch
import torch.nn as nn
import torch.nn.functional as F

import funcgrad as fg
from compare.cases._linear import grads_at_init, timed_full_batch, torch_full_batch, torch_linear
from compare.timed import Timed
from funcgrad.parity import Exact, History, Logits
from funcgrad.tutorials import binary_logistic as tutorial

NAME = "binary-logistic"
SOURCE = "001 logistic regression"


def setup(ctx):
    """The blobs and the initial weights, drawn once in float32."""
    xs, ys_true = fg.gaussian_blobs(seed=1, dtype=ctx.dtype)
    return xs, ys_true, ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(6), 3, 1)))


def timed(ctx) -> Timed:
    return timed_full_batch(ctx, tutorial.NUM_STEPS, tutorial.train, torch_train, *setup(ctx))


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


def torch_train(linear, xs, ys_true) -> torch.Tensor:
    """The seed's loop: forward, BCE with logits, zero_grad, backward, step, every step; the losses."""
    return torch_full_batch(linear, nn.BCEWithLogitsLoss(), xs, ys_true, tutorial.LEARNING_RATE, tutorial.NUM_STEPS)


def torch_side(ctx, xs, ys_true, initial):
    xs, ys_true = ctx.to_torch(xs), ctx.to_torch(ys_true)
    linear = torch_linear(ctx, initial)
    grads = grads_at_init(linear, nn.BCEWithLogitsLoss(), xs, ys_true)
    losses = torch_train(linear, xs, ys_true)

    with torch.no_grad():
        zs = linear(xs)
        ys_pred = F.sigmoid(zs)
        correct = ((zs > 0) == (ys_true > 0.5)).sum().item()
    return {
        "weight grad at init": grads["weight"],
        "bias grad at init": grads["bias"],
        "loss per step": History(losses),
        "trained weight": linear.weight,
        "trained bias": linear.bias,
        "sigmoid predictions": ys_pred,
        "predicted classes": Logits(zs),
        "training accuracy": Exact(correct / len(ys_true)),
    }
