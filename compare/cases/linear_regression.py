"""linear-regression (seed 001): N = 30, y = 2 x1 - 1.5 x2 + 5, Linear(2, 1), MSE, SGD lr 0.1, 300 steps."""

import jax
import torch
import torch.nn as nn

import funcgrad as fg
from compare.cases._linear import grads_at_init, timed_full_batch, torch_full_batch, torch_linear
from compare.timed import Timed
from funcgrad.parity import History
from funcgrad.tutorials import linear_regression as tutorial

NAME = "linear-regression"
SOURCE = "001 linear regression"


def setup(ctx):
    """The data and the initial weights, drawn once in float32."""
    xs, ys_true = fg.linear_regression_data(seed=1, dtype=ctx.dtype)
    return xs, ys_true, ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(5), 2, 1)))


def timed(ctx) -> Timed:
    return timed_full_batch(ctx, tutorial.NUM_STEPS, tutorial.train, torch_train, *setup(ctx))


def jax_side(xs, ys_true, initial):
    params = fg.from_state_dict(initial)
    grads = jax.grad(tutorial.loss_fn)(params, (xs, ys_true))
    params, losses = tutorial.train(params, xs, ys_true)
    return {
        "weight grad at init": grads["weight"],
        "bias grad at init": grads["bias"],
        "loss per step": History(losses),
        "trained weight": params["weight"],
        "trained bias": params["bias"],
    }


def torch_train(linear, xs, ys_true) -> torch.Tensor:
    """The seed's loop: forward, MSE, zero_grad, backward, step, every step; the losses."""
    return torch_full_batch(linear, nn.MSELoss(), xs, ys_true, tutorial.LEARNING_RATE, tutorial.NUM_STEPS)


def torch_side(ctx, xs, ys_true, initial):
    xs, ys_true = ctx.to_torch(xs), ctx.to_torch(ys_true)
    linear = torch_linear(ctx, initial)
    grads = grads_at_init(linear, nn.MSELoss(), xs, ys_true)
    losses = torch_train(linear, xs, ys_true)
    return {
        "weight grad at init": grads["weight"],
        "bias grad at init": grads["bias"],
        "loss per step": History(losses),
        "trained weight": linear.weight,
        "trained bias": linear.bias,
    }
