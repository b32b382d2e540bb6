"""Specification of funcgrad.data: the seeds' datasets as numpy arrays, the same on every call."""

import numpy as np
import pytest
from sklearn.datasets import load_iris
from sklearn.model_selection import train_test_split

import funcgrad as fg
from tests.test_mnist import synthetic_files, write_gzipped


def test_iris_first_two_features_has_seed_000s_split():
    iris = fg.iris_first_two_features()
    assert iris["x_train"].shape == (120, 2) and iris["x_test"].shape == (30, 2)
    assert iris["y_train"].shape == (120,) and iris["y_test"].shape == (30,)
    assert iris["x_train"].dtype == np.float32
    assert iris["y_train"].dtype == np.int64
    assert set(np.unique(np.concatenate([iris["y_train"], iris["y_test"]]))) == {0, 1, 2}


def test_iris_first_two_features_equals_sklearns_split_of_sepal_length_and_width():
    source = load_iris()
    split = train_test_split(source.data, source.target, test_size=0.2, random_state=42)
    x_train, x_test, y_train, y_test = split
    iris = fg.iris_first_two_features(np.float64)
    np.testing.assert_array_equal(iris["x_train"], x_train[:, :2])
    np.testing.assert_array_equal(iris["x_test"], x_test[:, :2])
    np.testing.assert_array_equal(iris["y_train"], y_train)
    np.testing.assert_array_equal(iris["y_test"], y_test)


@pytest.mark.parametrize("dtype, rtol", [(np.float32, 1e-6), (np.float64, 1e-15)], ids=["float32", "float64"])
def test_linear_regression_data_follows_the_seeds_plane(dtype, rtol):
    x, y = fg.linear_regression_data(dtype=dtype)
    assert x.shape == (30, 2) and y.shape == (30, 1)
    assert x.dtype == dtype and y.dtype == dtype
    plane = 2.0 * x[:, 0].astype(np.float64) - 1.5 * x[:, 1].astype(np.float64) + 5.0
    np.testing.assert_allclose(y[:, 0], plane, rtol=rtol, atol=rtol)


def test_linear_regression_data_is_a_function_of_its_seed():
    x, y = fg.linear_regression_data(seed=3, num_examples=50)
    again_x, again_y = fg.linear_regression_data(seed=3, num_examples=50)
    other_x, _ = fg.linear_regression_data(seed=4, num_examples=50)
    assert x.shape == (50, 2)
    np.testing.assert_array_equal(x, again_x)
    np.testing.assert_array_equal(y, again_y)
    assert not np.any(x == other_x)


def test_gaussian_blobs_puts_fifteen_positives_first():
    x, y = fg.gaussian_blobs()
    assert x.shape == (30, 3) and y.shape == (30, 1)
    assert x.dtype == np.float32 and y.dtype == np.float32
    np.testing.assert_array_equal(y[:, 0], [1.0] * 15 + [0.0] * 15)


def test_gaussian_blobs_centres_positives_at_plus_two_minus_two():
    x, y = fg.gaussian_blobs()
    positives, negatives = x[y[:, 0] == 1], x[y[:, 0] == 0]
    assert positives[:, 0].mean() > 0 and positives[:, 1].mean() < 0
    assert negatives[:, 0].mean() < 0 and negatives[:, 1].mean() > 0


def test_gaussian_blobs_is_a_function_of_its_seed():
    np.testing.assert_array_equal(fg.gaussian_blobs(seed=2)[0], fg.gaussian_blobs(seed=2)[0])
    assert not np.any(fg.gaussian_blobs(seed=2)[0] == fg.gaussian_blobs(seed=3)[0])


def test_digits_as_mnist_has_mnists_form():
    digits = fg.digits_as_mnist()
    assert digits["train_images"].shape == (1500, 8, 8) and digits["test_images"].shape == (297, 8, 8)
    assert digits["train_labels"].shape == (1500,) and digits["test_labels"].shape == (297,)
    for name, array in digits.items():
        assert array.dtype == np.uint8, name
    images = np.concatenate([digits["train_images"], digits["test_images"]])
    assert images.max() == 255 and images.min() == 0
    assert set(np.unique(digits["train_labels"])) == set(range(10))


def test_digits_as_mnist_has_load_mnists_keys(tmp_path):
    mnist = fg.load_mnist(write_gzipped(tmp_path, synthetic_files()), verify_checksums=False)
    assert list(fg.digits_as_mnist()) == list(mnist)
