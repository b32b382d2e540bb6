"""vjp-and-stop-gradient (seed 000 §3): y.backward(v) as a VJP; no_grad and detach as
stop_gradient, including one result (x * x.detach()) where the stopped factor matters."""

import jax.numpy as jnp
import numpy as np
import torch

from funcgrad.tutorials.vjp_and_stop_gradient import (
    double,
    grad_of_x_times_stopped_x,
    grad_through_stopped,
    vjp_of_double,
)

NAME = "vjp-and-stop-gradient"
SOURCE = "000 §3"


def run(ctx):
    x = np.array([1.0, 2.0, 3.0], ctx.dtype)
    v = np.array([1.0, 0.1, 0.01], ctx.dtype)
    return jax_side(x, v), torch_side(ctx, x, v)


def jax_side(x, v):
    x, v = jnp.asarray(x), jnp.asarray(v)
    y, x_grad = vjp_of_double(x, v)
    return {
        "y = 2x": y,
        "x.grad after y.backward(v)": x_grad,
        "z = 2x under no_grad": double(x),
        "x.grad through detached x": grad_through_stopped(x),
        "x.grad of sum(x * x.detach())": grad_of_x_times_stopped_x(x),
    }


def torch_side(ctx, x, v):
    x = ctx.to_torch(x).requires_grad_(True)
    y = x * 2
    y.backward(ctx.to_torch(v))
    results = {"y = 2x": y, "x.grad after y.backward(v)": x.grad.clone()}

    with torch.no_grad():
        z = x * 2
    results["z = 2x under no_grad"] = z

    # x.detach() * 2 has no grad_fn, so backward() cannot start there; torch.func.grad
    # (torch's jax.grad) differentiates the same expression w.r.t. x and meets the detach.
    results["x.grad through detached x"] = torch.func.grad(lambda x: (x.detach() * 2).sum())(x)

    x.grad.zero_()
    (x * x.detach()).sum().backward()
    results["x.grad of sum(x * x.detach())"] = x.grad
    return results
