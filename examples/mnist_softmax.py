"""Seed 002: MNIST logistic regression from raw arrays, one epoch of minibatch SGD.

W = randn(784, 10) / sqrt(784), b = 0, ``F.cross_entropy``, ``SGD(lr=0.1)``, shuffled
batches of 100. The images stay uint8 on the device and each batch is converted to
[0, 1] floats inside the compiled loop (``ToTensor``'s ``/ 255``).

    python examples/mnist_softmax.py --mnist-dir ../shared/data/mnist
"""

import argparse
import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm import tqdm

import funcgrad as fg

BATCH_SIZE = 100
LEARNING_RATE = 0.1
PROGRESS_CHUNKS = 10


def init_params(key: jax.Array, num_pixels: int = 784, num_classes: int = 10, dtype=jnp.float32):
    """The seed's ``W = torch.randn(784, 10) / np.sqrt(784)`` and ``b = torch.zeros(10)``."""
    weights = jax.random.normal(key, (num_pixels, num_classes), dtype) / math.sqrt(num_pixels)
    return {"W": weights, "b": jnp.zeros(num_classes, dtype)}


def logits(params: dict, images: jax.Array) -> jax.Array:
    """``images.view(-1, 784) @ W + b`` on uint8 images scaled to [0, 1]."""
    x = images.reshape(images.shape[0], -1).astype(params["W"].dtype) / 255
    return x @ params["W"] + params["b"]


def loss_fn(params: dict, batch) -> jax.Array:
    images, labels = batch
    return fg.cross_entropy(logits(params, images), labels)


def train_epoch(params: dict, images, labels, batch_indices, lr=LEARNING_RATE, progress=False):
    """One epoch over ``batch_indices`` (``(num_batches, batch_size)``).

    With ``progress`` the epoch runs as consecutive compiled chunks under a tqdm bar;
    the result is the same as one compiled call. Returns params and the loss per batch.
    """
    optimizer = optax.sgd(lr)
    opt_state = optimizer.init(params)
    data = (jnp.asarray(images), jnp.asarray(labels, dtype=jnp.int32))
    chunks = np.array_split(batch_indices, PROGRESS_CHUNKS) if progress else [batch_indices]
    losses = []
    with tqdm(total=len(batch_indices), unit="batch", disable=not progress) as bar:
        for chunk in chunks:
            params, opt_state, chunk_losses = fg.fit_minibatches(
                loss_fn, optimizer, params, opt_state, data, chunk
            )
            losses.append(chunk_losses)
            bar.update(len(chunk))
    return params, jnp.concatenate(losses)


def load_data(mnist_dir: str | None):
    """Real MNIST from ``mnist_dir`` or $FUNCGRAD_MNIST_DIR; else sklearn's 8x8 digits, said so."""
    if mnist_dir or os.environ.get(fg.MNIST_ENV_VAR):
        return "MNIST", fg.load_mnist(mnist_dir)
    print(
        f"No MNIST directory given (--mnist-dir or ${fg.MNIST_ENV_VAR}): running on "
        "scikit-learn's bundled 8x8 digits instead."
    )
    return "sklearn 8x8 digits (MNIST stand-in)", fg.digits_as_mnist()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mnist-dir", help=f"folder of the four IDX files (or ${fg.MNIST_ENV_VAR})")
    parser.add_argument("--seed", type=int, default=0, help="PRNG seed of W and the batch order")
    args = parser.parse_args()

    name, data = load_data(args.mnist_dir)
    init_key, order_key = jax.random.split(jax.random.key(args.seed))
    num_pixels = data["train_images"][0].size
    params = init_params(init_key, num_pixels)
    order = fg.shuffled_batch_indices(order_key, len(data["train_labels"]), BATCH_SIZE)

    params, _ = train_epoch(params, data["train_images"], data["train_labels"], order, progress=True)
    test_logits = logits(params, jnp.asarray(data["test_images"]))
    test_accuracy = fg.accuracy(test_logits, jnp.asarray(data["test_labels"], jnp.int32))
    print(f"Test accuracy ({name}): {test_accuracy}")


if __name__ == "__main__":
    main()
