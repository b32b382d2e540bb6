"""jacobian-hessian (seeds 000-003, second order): Jacobians, Hessians and Hessian-vector
products of four seed losses with respect to their parameters.

Per model, at its initial parameters: the Jacobian of the per-example losses by
``jax.jacrev`` and by ``jax.jacfwd`` against ``torch.autograd.functional.jacobian`` in
reverse and in forward mode; the Hessian of the mean loss, ``jax.hessian`` against
``torch.autograd.functional.hessian``; and its product with a random vector,
``funcgrad.hvp`` against ``torch.autograd.functional.hvp``.

The parameters are one flat vector θ in ``jax.flatten_util.ravel_pytree``'s layout: the
params dict's leaves in sorted-key order (``bias`` before ``weight``, ``b`` before
``w``), each flattened row-major. The torch twins slice θ the same way.

Two of the losses have second derivatives written by hand on one side or the other:

- ``binary_cross_entropy`` (seed 003) is a ``jax.custom_jvp`` carrying torch's gradient
  formula ``(p - y) / max(p (1 - p), 1e-12)``; JAX differentiates that rule into
  ``(p² - 2py + y) / (p (1 - p))²``. torch's double backward writes the same expression
  with ``(p + 1e-12)² (1 - p + 1e-12)²`` below the line, smaller by about
  ``2e-12 / p + 2e-12 / (1 - p)``: 4.9e-11 at seed 003's p = 0.9569. That term is a
  twentieth of the Hessian with respect to (b, w), ``p (1 - p) [1, x; x, x²]``, so
  torch's float64 Hessian sits 2.2e-12 (relative) below it, 1.5e-13 absolute, while
  JAX's matches it to 1e-17. Far inside float64's tolerance; invisible in float32.
- ``bce_with_logits`` is optax's ``-y log σ(z) - (1 - y) log σ(-z)``, whose second
  derivative JAX forms as ``σ(z) σ(-z)``; torch differentiates its backward
  ``σ(z) - y`` into ``σ(z) (1 - σ(z))``, which loses the tail to cancellation once
  ``σ(z)`` rounds to 1: in float32 torch's is 0 from |z| ≈ 17 on, and 5e-4 off (relative)
  at |z| = 10. At these initial weights |z| < 3, and the two agree to the last bits.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from jax.flatten_util import ravel_pytree
from torch.autograd.functional import hessian, hvp, jacobian

import funcgrad as fg
from funcgrad.tutorials import binary_logistic, iris_softmax, linear_regression, one_sample_logistic

NAME = "jacobian-hessian"
SOURCE = "000-003 (second order)"


def run(ctx):
    problems = {
        "binary-logistic": binary_logistic_problem(ctx),
        "iris-softmax": iris_softmax_problem(ctx),
        "linear-regression": linear_regression_problem(ctx),
        "one-sample-logistic": one_sample_logistic_problem(ctx),
    }
    jax_results, torch_results = {}, {}
    for model, (jax_loss_fn, torch_losses, initial, batch) in problems.items():
        theta = np.asarray(ravel_pytree(fg.from_state_dict(initial))[0])
        tangent = ctx.cast(np.random.default_rng(ctx.seed).standard_normal(theta.shape))
        for name, value in jax_side(jax_loss_fn, initial, batch, tangent).items():
            jax_results[f"{model}: {name}"] = value
        for name, value in torch_side(ctx, torch_losses, theta, batch, tangent).items():
            torch_results[f"{model}: {name}"] = value
    return jax_results, torch_results


def jax_side(loss_fn, initial, batch, tangent):
    theta, unravel = ravel_pytree(fg.from_state_dict(initial))

    def mean_loss(theta):
        return loss_fn(unravel(theta), batch)

    def per_example_losses(theta):
        def loss_of_one(example):
            return loss_fn(unravel(theta), jax.tree.map(lambda leaf: leaf[None], example))

        return jax.vmap(loss_of_one)(batch)

    @jax.jit
    def derivatives(theta, tangent):
        return {
            "jacobian of per-example losses (reverse)": jax.jacrev(per_example_losses)(theta),
            "jacobian of per-example losses (forward)": jax.jacfwd(per_example_losses)(theta),
            "hessian of the loss": jax.hessian(mean_loss)(theta),
            "hessian-vector product": fg.hvp(mean_loss, theta, tangent),
        }

    return derivatives(theta, jnp.asarray(tangent))


def torch_side(ctx, losses, theta, batch, tangent):
    """``losses(theta, batch, reduction)``: the model's loss as the seed computes it."""
    batch = tuple(ctx.to_torch(leaf) for leaf in batch)
    theta, tangent = ctx.to_torch(theta), ctx.to_torch(tangent)

    def per_example_losses(theta):
        return losses(theta, batch, reduction="none").view(-1)

    def mean_loss(theta):
        return losses(theta, batch, reduction="mean")

    return {
        "jacobian of per-example losses (reverse)": jacobian(per_example_losses, theta, vectorize=True),
        "jacobian of per-example losses (forward)": jacobian(
            per_example_losses, theta, vectorize=True, strategy="forward-mode"
        ),
        "hessian of the loss": hessian(mean_loss, theta),
        "hessian-vector product": hvp(mean_loss, theta, tangent)[1],
    }


def binary_logistic_problem(ctx):
    """Seed 001: Linear(3, 1) + BCEWithLogitsLoss on the two blobs."""

    def losses(theta, batch, reduction):
        xs, ys_true = batch
        bias, weight = theta[:1], theta[1:].view(1, 3)
        return F.binary_cross_entropy_with_logits(F.linear(xs, weight, bias), ys_true,
                                                  reduction=reduction)

    initial = ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(6), 3, 1)))
    return binary_logistic.loss_fn, losses, initial, fg.gaussian_blobs(seed=1, dtype=ctx.dtype)


def iris_softmax_problem(ctx):
    """Seed 000 afternoon: Linear(2, 3) + CrossEntropyLoss on Iris's first two features."""

    def losses(theta, batch, reduction):
        x_train, y_train = batch
        bias, weight = theta[:3], theta[3:].view(3, 2)
        return F.cross_entropy(F.linear(x_train, weight, bias), y_train, reduction=reduction)

    iris = fg.iris_first_two_features(ctx.dtype)
    initial = ctx.cast(fg.to_state_dict(iris_softmax.init_params(ctx.key(4))))
    return iris_softmax.loss_fn, losses, initial, (iris["x_train"], iris["y_train"])


def linear_regression_problem(ctx):
    """Seed 001: Linear(2, 1) + MSELoss on y = 2 x1 - 1.5 x2 + 5."""

    def losses(theta, batch, reduction):
        xs, ys_true = batch
        bias, weight = theta[:1], theta[1:].view(1, 2)
        return F.mse_loss(F.linear(xs, weight, bias), ys_true, reduction=reduction)

    initial = ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(5), 2, 1)))
    return linear_regression.loss_fn, losses, initial, fg.linear_regression_data(seed=1, dtype=ctx.dtype)


def one_sample_logistic_problem(ctx):
    """Seed 003: z = w x + b, sigmoid, binary_cross_entropy on probabilities, one sample."""

    def jax_loss_fn(params, batch):
        x, y = batch
        return one_sample_logistic.loss(params["w"], params["b"], x, y)

    def losses(theta, batch, reduction):
        x1, y = batch
        b1, w1 = theta[:1], theta[1:]
        y_hat = torch.sigmoid(w1 * x1 + b1)
        return F.binary_cross_entropy(y_hat, y, reduction=reduction)

    initial = {"w": np.array([2.0], ctx.dtype), "b": np.array([0.5], ctx.dtype)}
    batch = (np.array([1.3], ctx.dtype), np.array([1.0], ctx.dtype))
    return jax_loss_fn, losses, initial, batch
