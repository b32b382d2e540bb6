"""linear-regression (seed 001): N = 30, y = 2 x1 - 1.5 x2 + 5, Linear(2, 1), MSE, SGD lr 0.1, 300 steps."""

import jax
import torch
import torch.nn as nn
import torch.optim as optim

import funcgrad as fg
from funcgrad.parity import History
from funcgrad.tutorials import linear_regression as tutorial

NAME = "linear-regression"
SOURCE = "001 linear regression"


def run(ctx):
    xs, ys_true = fg.linear_regression_data(seed=1, dtype=ctx.dtype)
    initial = ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(5), 2, 1)))
    return jax_side(xs, ys_true, initial), torch_side(ctx, xs, ys_true, initial)


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


def torch_side(ctx, xs, ys_true, initial):
    xs, ys_true = ctx.to_torch(xs), ctx.to_torch(ys_true)
    linear = nn.Linear(2, 1).to(ctx.torch_device, ctx.torch_dtype)
    linear.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    mse = nn.MSELoss()
    mse(linear(xs), ys_true).backward()
    grads = {name: p.grad.clone() for name, p in linear.named_parameters()}

    optimizer = optim.SGD(linear.parameters(), lr=tutorial.LEARNING_RATE)
    losses = []
    for epoch in range(tutorial.NUM_STEPS):
        ys_pred = linear(xs)
        loss = mse(ys_pred, ys_true)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return {
        "weight grad at init": grads["weight"],
        "bias grad at init": grads["bias"],
        "loss per step": History(torch.stack(losses)),
        "trained weight": linear.weight,
        "trained bias": linear.bias,
    }
