"""one-sample-logistic (seed 003): z = w x + b, sigmoid, BCE; gradients two ways."""

import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch.autograd import grad

from funcgrad.tutorials.one_sample_logistic import forward, partials_one_at_a_time, partials_together

NAME = "one-sample-logistic"
SOURCE = "003"


def run(ctx):
    values = {name: np.array([v], ctx.dtype) for name, v in
              {"y": 1.0, "x1": 1.3, "w1": 2.0, "b1": 0.5}.items()}
    return jax_side(**values), torch_side(ctx, **values)


def jax_side(y, x1, w1, b1):
    y, x1, w1, b1 = map(jnp.asarray, (y, x1, w1, b1))
    z1, y_hat = forward(w1, b1, x1)
    grad_w, grad_b = partials_one_at_a_time(w1, b1, x1, y)
    loss, (backward_w, backward_b) = partials_together(w1, b1, x1, y)
    return {
        "z1": z1, "y_hat": y_hat, "loss": loss,
        "grad(loss, w1)": grad_w, "grad(loss, b1)": grad_b,
        "w1.grad via backward()": backward_w, "b1.grad via backward()": backward_b,
    }


def torch_side(ctx, y, x1, w1, b1):
    y, x1 = ctx.to_torch(y), ctx.to_torch(x1)
    w1 = ctx.to_torch(w1).requires_grad_(True)
    b1 = ctx.to_torch(b1).requires_grad_(True)
    z1 = w1 * x1 + b1
    y_hat = torch.sigmoid(z1)
    loss = F.binary_cross_entropy(y_hat, y)
    grad_L_w1 = grad(loss, w1, retain_graph=True)
    grad_L_b1 = grad(loss, b1, retain_graph=True)
    loss.backward()
    return {
        "z1": z1, "y_hat": y_hat, "loss": loss,
        "grad(loss, w1)": grad_L_w1[0], "grad(loss, b1)": grad_L_b1[0],
        "w1.grad via backward()": w1.grad, "b1.grad via backward()": b1.grad,
    }
