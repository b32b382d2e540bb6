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
from compare.timed import Timed
from compare.cases._mnist import to_tensor
from funcgrad.tutorials import mnist_softmax as tutorial

NAME = "per-example-grads"
SOURCE = "002 (per-example gradients)"
READS_MNIST = True  # real MNIST when a folder is given, else the stand-in digits
NUM_EXAMPLES = 100


def setup(ctx):
    """The first NUM_EXAMPLES training images and labels, and the initial W and b."""
    data_name, data = ctx.mnist()
    images, labels = data["train_images"][:NUM_EXAMPLES], data["train_labels"][:NUM_EXAMPLES]
    initial = ctx.cast(fg.to_state_dict(tutorial.init_params(ctx.key(12), images[0].size)))
    return data_name, images, labels, initial


def run(ctx):
    data_name, images, labels, initial = setup(ctx)
    return jax_side(images, labels, initial), torch_side(ctx, images, labels, initial), {"data": data_name}


def timed(ctx) -> Timed:
    """One call of each side's per-example gradients, on inputs already in memory: no
    conversion, and not the batch backward that torch_side adds to check the mean."""
    data_name, images, labels, initial = setup(ctx)
    inputs = (fg.from_state_dict(initial), jnp.asarray(images), jnp.asarray(labels, jnp.int32))
    torch_grads = torch_per_example_grads(ctx, initial)
    torch_inputs = (ctx.to_torch(images), ctx.to_torch(labels.astype(np.int64)))
    return Timed(1, {"funcgrad": lambda: per_example_grads(*inputs), "torch-func": lambda: torch_grads(*torch_inputs)},
                 {"funcgrad": f"{NUM_EXAMPLES} examples of {data_name}, one call",
                  "torch-func": "vmap(grad) as torch.func's per-sample-gradients recipe, one call"})


def loss_of_one_example(params: dict, image: jax.Array, label: jax.Array) -> jax.Array:
    """The seed's loss on a batch of one."""
    return tutorial.loss_fn(params, (image[None], label[None]))


per_example_grads = jax.jit(jax.vmap(jax.grad(loss_of_one_example), in_axes=(None, 0, 0)))


def jax_side(images, labels, initial):
    params = fg.from_state_dict(initial)
    per_example = per_example_grads(params, jnp.asarray(images), jnp.asarray(labels, jnp.int32))
    return {
        "per-example W grads": per_example["W"],
        "per-example b grads": per_example["b"],
        "batch W grad (jax: mean of per-example)": jnp.mean(per_example["W"], axis=0),
        "batch b grad (jax: mean of per-example)": jnp.mean(per_example["b"], axis=0),
    }


def torch_per_example_grads(ctx, initial: dict):
    """torch.func's per-sample-gradients recipe over the seed's model, at ``initial``:
    ``grads = torch_per_example_grads(ctx, initial)(uint8_images, labels)``, ``{"W": (n,
    784, 10), "b": (n, 10)}``; the images are scaled to [0, 1] inside, as ``ToTensor``."""
    params = {"W": ctx.to_torch(initial["W"]), "b": ctx.to_torch(initial["b"])}
    num_pixels = params["W"].shape[0]

    def compute_loss(params, image, label):
        x = image.view(-1, num_pixels)
        y = torch.matmul(x, params["W"]) + params["b"]
        return F.cross_entropy(y, label.unsqueeze(0))

    per_sample_grads = vmap(grad(compute_loss), in_dims=(None, 0, 0))

    def run(images: torch.Tensor, labels: torch.Tensor) -> dict:
        return per_sample_grads(params, images.to(params["W"].dtype).div(255), labels)

    return run


def torch_side(ctx, images, labels, initial):
    labels = ctx.to_torch(labels.astype(np.int64))
    per_sample_grads = torch_per_example_grads(ctx, initial)(ctx.to_torch(images), labels)
    images = to_tensor(ctx, images)
    num_pixels = images[0].numel()
    W = ctx.to_torch(initial["W"]).requires_grad_()
    b = ctx.to_torch(initial["b"]).requires_grad_()
    F.cross_entropy(torch.matmul(images.view(-1, num_pixels), W) + b, labels).backward()
    return {
        "per-example W grads": per_sample_grads["W"],
        "per-example b grads": per_sample_grads["b"],
        "batch W grad (jax: mean of per-example)": W.grad,
        "batch b grad (jax: mean of per-example)": b.grad,
    }
