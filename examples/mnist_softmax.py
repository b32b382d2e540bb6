"""Seed 002: MNIST logistic regression from raw arrays, one epoch of minibatch SGD.

W = randn(784, 10) / sqrt(784), b = 0, ``F.cross_entropy``, ``SGD(lr=0.1)``, shuffled
batches of 100. The images stay uint8 on the device and each batch is converted to
[0, 1] floats inside the compiled loop (``ToTensor``'s ``/ 255``).

    python examples/mnist_softmax.py --mnist-dir ../shared/data/mnist
"""

import argparse
import os

import jax
import jax.numpy as jnp
from tqdm import tqdm

import funcgrad as fg
from funcgrad.tutorials.mnist_softmax import BATCH_SIZE, init_params, logits, train_epoch

PROGRESS_CHUNKS = 10  # compiled calls, one progress-bar update each


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

    with tqdm(total=len(order), unit="batch") as bar:
        params, _ = train_epoch(params, data["train_images"], data["train_labels"], order,
                                num_chunks=PROGRESS_CHUNKS, on_chunk=bar.update)
    test_logits = logits(params, jnp.asarray(data["test_images"]))
    test_accuracy = fg.accuracy(test_logits, jnp.asarray(data["test_labels"], jnp.int32))
    print(f"Test accuracy ({name}): {test_accuracy}")


if __name__ == "__main__":
    main()
