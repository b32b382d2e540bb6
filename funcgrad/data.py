"""The source material's datasets as plain numpy arrays, ready for either framework.

Everything the seeds draw at random is drawn here from an explicit seed, so the JAX port
and its PyTorch twin can start from the same arrays. MNIST lives in :mod:`funcgrad.mnist`.
scikit-learn, which holds the bundled sets, is imported on first use, not with funcgrad.
"""

from __future__ import annotations

import numpy as np

from funcgrad import _checks


def iris_first_two_features(dtype=np.float32) -> dict[str, np.ndarray]:
    """Iris split as seed 000 splits it, keeping sepal length and width.

    ``train_test_split(test_size=0.2, random_state=42)`` on all four features, then the
    first two columns: 120 training rows, 30 test rows, labels ``int64`` in 0..2.

    >>> iris = iris_first_two_features()
    >>> iris["x_train"].shape, iris["x_test"].shape
    ((120, 2), (30, 2))
    """
    _checks.check_dtype_argument("iris_first_two_features", dtype)
    from sklearn.datasets import load_iris
    from sklearn.model_selection import train_test_split

    iris = load_iris()
    x_train, x_test, y_train, y_test = train_test_split(
        iris.data, iris.target, test_size=0.2, random_state=42
    )
    return {
        "x_train": x_train[:, :2].astype(dtype),
        "x_test": x_test[:, :2].astype(dtype),
        "y_train": y_train.astype(np.int64),
        "y_test": y_test.astype(np.int64),
    }


def linear_regression_data(seed: int = 1, num_examples: int = 30, dtype=np.float32):
    """Seed 001's regression set: x ~ N(0, 1)^2, y = 2 x1 - 1.5 x2 + 5, y shaped (N, 1).

    >>> x, y = linear_regression_data()
    >>> x.shape, y.shape
    ((30, 2), (30, 1))
    """
    _checks.check_dtype_argument("linear_regression_data", dtype)
    x = np.random.default_rng(seed).standard_normal((num_examples, 2))
    y = x @ np.array([2.0, -1.5]) + 5.0
    return x.astype(dtype), y.reshape(-1, 1).astype(dtype)


def gaussian_blobs(seed: int = 1, num_per_class: int = 15, dtype=np.float32):
    """Seed 001's classification set: two 3-D Gaussian blobs, positives first.

    Positives are N(0, 1) around (2, -2, 0), negatives around (-2, 2, 0); targets are
    1.0 then 0.0, shaped (N, 1) for ``BCEWithLogitsLoss``.

    >>> x, y = gaussian_blobs()
    >>> x.shape, y.shape, y.sum()
    ((30, 3), (30, 1), 15.0)
    """
    _checks.check_dtype_argument("gaussian_blobs", dtype)
    rng = np.random.default_rng(seed)
    positives = rng.standard_normal((num_per_class, 3)) + np.array([2.0, -2.0, 0.0])
    negatives = rng.standard_normal((num_per_class, 3)) + np.array([-2.0, 2.0, 0.0])
    x = np.concatenate([positives, negatives])
    y = np.concatenate([np.ones(num_per_class), np.zeros(num_per_class)]).reshape(-1, 1)
    return x.astype(dtype), y.astype(dtype)


def digits_as_mnist(num_train: int = 1500) -> dict[str, np.ndarray]:
    """scikit-learn's bundled 8x8 digits in MNIST's form: uint8 images in 0..255.

    The stand-in when no MNIST is at hand: same keys as :func:`funcgrad.load_mnist`,
    pixels rescaled from 0..16 to 0..255 so the same ``/ 255`` pipeline applies. The
    split is stratified and shuffled with a fixed seed: the set's last rows come from
    other writers, so a split at ``num_train`` would test on a different population.

    >>> digits = digits_as_mnist()
    >>> digits["train_images"].shape, digits["test_images"].shape
    ((1500, 8, 8), (297, 8, 8))
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.uint8)
    train_images, test_images, train_labels, test_labels = train_test_split(
        images, labels, train_size=num_train, random_state=0, stratify=labels
    )
    return {
        "train_images": train_images,
        "train_labels": train_labels,
        "test_images": test_images,
        "test_labels": test_labels,
    }
