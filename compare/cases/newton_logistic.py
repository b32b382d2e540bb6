"""newton-logistic (seed 001, Newton's method): Linear(3, 1) on the two blobs, BCE with
logits plus a ridge of 1e-2 on the weight, eight Newton steps.

JAX: ``jax.hessian`` and ``jnp.linalg.solve`` in a ``lax.scan``. PyTorch:
``torch.autograd.functional.hessian`` and ``torch.linalg.solve`` in a Python loop.
θ is ``ravel_pytree``'s layout of ``{"bias", "weight"}``: the bias first.

The final gradient norm is rounding noise on both sides once Newton has converged
(~1e-9 in float32, ~1e-18 in float64): that both are that small is the point, and the
row passes on the absolute tolerance; its relative error means nothing.
"""

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.functional import hessian

import funcgrad as fg
from funcgrad.parity import History
from funcgrad.tutorials import newton_logistic as tutorial

NAME = "newton-logistic"
SOURCE = "001 logistic regression (Newton)"


def run(ctx):
    xs, ys_true = fg.gaussian_blobs(seed=1, dtype=ctx.dtype)
    initial = ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(6), 3, 1)))
    return jax_side(xs, ys_true, initial), torch_side(ctx, xs, ys_true, initial)


def jax_side(xs, ys_true, initial):
    params, objectives, gradient_norm = tutorial.fit_newton(fg.from_state_dict(initial), xs, ys_true)
    return {
        "objective before each step": History(objectives),
        "final weight": params["weight"],
        "final bias": params["bias"],
        "final gradient norm": gradient_norm,
    }


def torch_side(ctx, xs, ys_true, initial):
    xs, ys_true = ctx.to_torch(xs), ctx.to_torch(ys_true)
    bce_with_sigmoid = nn.BCEWithLogitsLoss()

    def objective(theta):
        bias, weight = theta[:1], theta[1:].view(1, 3)
        return bce_with_sigmoid(F.linear(xs, weight, bias), ys_true) + tutorial.RIDGE / 2 * weight.pow(2).sum()

    theta = torch.cat([ctx.to_torch(initial["bias"]), ctx.to_torch(initial["weight"]).flatten()])
    objectives = []
    for step in range(tutorial.NUM_NEWTON_STEPS):
        theta.requires_grad_(True)
        loss = objective(theta)
        (gradient,) = torch.autograd.grad(loss, theta)
        with torch.no_grad():
            theta = theta - torch.linalg.solve(hessian(objective, theta), gradient)
        objectives.append(loss.detach())

    theta.requires_grad_(True)
    (gradient,) = torch.autograd.grad(objective(theta), theta)
    theta = theta.detach()
    return {
        "objective before each step": History(torch.stack(objectives)),
        "final weight": theta[1:].view(1, 3),
        "final bias": theta[:1],
        "final gradient norm": torch.linalg.norm(gradient),
    }
