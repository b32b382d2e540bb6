"""grad-poly-trig (seed 000 §2): z = x^3 y^2 + sin x cos y at (1, 2) and both partials."""

import jax.numpy as jnp
import numpy as np
import torch

from funcgrad.tutorials.grad_poly_trig import value_and_partials

NAME = "grad-poly-trig"
SOURCE = "000 §2"


def run(ctx):
    # 0-d: jax.grad needs a scalar output, as z.backward() needs a one-element z.
    x, y = np.array(1.0, ctx.dtype), np.array(2.0, ctx.dtype)
    return jax_side(x, y), torch_side(ctx, x, y)


def jax_side(x, y):
    z, (dz_dx, dz_dy) = value_and_partials(jnp.asarray(x), jnp.asarray(y))
    return {"z": z, "dz/dx": dz_dx, "dz/dy": dz_dy}


def torch_side(ctx, x, y):
    x = ctx.to_torch(x).requires_grad_(True)
    y = ctx.to_torch(y).requires_grad_(True)
    z = x**3 * y**2 + torch.sin(x) * torch.cos(y)
    z.backward()
    return {"z": z, "dz/dx": x.grad, "dz/dy": y.grad}
