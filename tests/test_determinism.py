"""Same seed, same bits: training is a pure function of its seed, across fresh processes."""

import subprocess
import sys

import jax
import numpy as np

import funcgrad as fg
from tests.conftest import REPO_ROOT

TRAIN_AND_FINGERPRINT = """
import hashlib, sys
import jax, numpy as np
import funcgrad as fg
from funcgrad.tutorials import iris_softmax, mnist_softmax

seed = int(sys.argv[1])
digest = hashlib.sha256()
iris = fg.iris_first_two_features()
params, losses = iris_softmax.train(iris_softmax.init_params(jax.random.key(seed)),
                                    iris["x_train"], iris["y_train"], num_epochs=500)
digits = fg.digits_as_mnist()
init_key, order_key = jax.random.split(jax.random.key(seed))
order = fg.shuffled_batch_indices(order_key, 1500, 100)
mnist_params, mnist_losses = mnist_softmax.train_epoch(
    mnist_softmax.init_params(init_key, 64), digits["train_images"], digits["train_labels"], order)
for leaf in jax.tree.leaves((params, losses, mnist_params, mnist_losses, order)):
    digest.update(np.asarray(leaf).tobytes())
print(digest.hexdigest())
"""


def fingerprint(seed: int) -> str:
    """sha256 of the loss histories, parameters and batch order that one fresh process trains."""
    completed = subprocess.run(
        [sys.executable, "-c", TRAIN_AND_FINGERPRINT, str(seed)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300, check=True,
    )
    return completed.stdout.strip()


def test_same_seed_gives_bit_identical_runs_and_another_seed_does_not():
    first, second, other = fingerprint(3), fingerprint(3), fingerprint(4)
    assert first == second
    assert other != first


def test_different_keys_draw_different_initial_weights():
    first = fg.linear_init(jax.random.key(0), 2, 3)
    second = fg.linear_init(jax.random.key(1), 2, 3)
    assert not np.array_equal(first["weight"], second["weight"])
    np.testing.assert_array_equal(first["weight"], fg.linear_init(jax.random.key(0), 2, 3)["weight"])
