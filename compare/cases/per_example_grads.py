"""per-example-grads (seed 002's model): one gradient per example, for 100 MNIST images.

JAX: ``vmap(grad(loss of one example), in_axes=(None, 0, 0))``, the params shared.
PyTorch: torch.func's per-sample-gradients recipe, ``vmap(grad(compute_loss),
in_dims=(None, 0, 0))``. The batch-gradient rows check that the mean of the per-example
gradients is the gradient of the batch's mean loss: JAX reports the mean of its
per-example gradients, torch the ``.grad`` that ``loss.backward()`` leaves on the batch.
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch.func import grad, vmap

import funcgrad as fg
from compare.cases.mnist_softmax import to_tensor
from funcgrad.tutorials import mnist_softmax as tutorial

NAME = "per-example-grads"
SOURCE = "002 (per-example gradients)"
NUM_EXAMPLES = 100


def run(ctx):
    data_name, data = ctx.mnist()
    images, labels = data["train_images"][:NUM_EXAMPLES], data["train_labels"][:NUM_EXAMPLES]
    initial = ctx.cast(fg.to_state_dict(tutorial.init_params(ctx.key(12), images[0].size)))
    return jax_side(images, labels, initial), torch_side(ctx, images, labels, initial), {"data": data_name}


def loss_of_one_example(params: dict, image: jax.Array, label: jax.Array) -> jax.Array:
    """The seed's loss on a batch of one."""
    return tutorial.loss_fn(params, (image[None], label[None]))


def jax_side(images, labels, initial):
    params = fg.from_state_dict(initial)
    per_example = jax.jit(jax.vmap(jax.grad(loss_of_one_example), in_axes=(None, 0, 0)))(
        params, jnp.asarray(images), jnp.asarray(labels, jnp.int32)
    )
    return {
        "per-example W grads": per_example["W"],
        "per-example b grads": per_example["b"],
        "batch W grad (jax: mean of per-example)": jnp.mean(per_example["W"], axis=0),
        "batch b grad (jax: mean of per-example)": jnp.mean(per_example["b"], axis=0),
    }


def torch_side(ctx, images, labels, initial):
    images, labels = to_tensor(ctx, images), ctx.to_torch(labels.astype(np.int64))
    num_pixels = images[0].numel()
    W = ctx.to_torch(initial["W"]).requires_grad_()
    b = ctx.to_torch(initial["b"]).requires_grad_()

    def compute_loss(params, image, label):
        x = image.view(-1, num_pixels)
        y = torch.matmul(x, params["W"]) + params["b"]
        return F.cross_entropy(y, label.unsqueeze(0))

    per_sample_grads = vmap(grad(compute_loss), in_dims=(None, 0, 0))(
        {"W": W.detach(), "b": b.detach()}, images, labels
    )
    F.cross_entropy(torch.matmul(images.view(-1, num_pixels), W) + b, labels).backward()
    return {
        "per-example W grads": per_sample_grads["W"],
        "per-example b grads": per_sample_grads["b"],
        "batch W grad (jax: mean of per-example)": W.grad,
        "batch b grad (jax: mean of per-example)": b.grad,
    }
