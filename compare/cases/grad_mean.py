"""grad-mean (seed 000 §1): d/dx mean(2x) for a random x of 3."""

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad.tutorials.grad_mean import grad_mean_of_double, mean_of_double

NAME = "grad-mean"
SOURCE = "000 §1"


def run(ctx):
    x = ctx.cast(np.asarray(jax.random.normal(ctx.key(1), (3,), jnp.float32)))
    return jax_side(x), torch_side(ctx, x)


def jax_side(x):
    x = jnp.asarray(x)
    return {"z = mean(2x)": mean_of_double(x), "x.grad": grad_mean_of_double(x)}


def torch_side(ctx, x):
    x = ctx.to_torch(x).requires_grad_(True)
    y = x * 2
    z = y.mean()
    z.backward()
    return {"z = mean(2x)": z, "x.grad": x.grad}
