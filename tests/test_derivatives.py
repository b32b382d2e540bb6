"""Second derivatives, Newton's method and per-example gradients (their cases: tests/test_parity.py)."""

import runpy
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

import funcgrad as fg
from funcgrad.tutorials import binary_logistic, iris_softmax
from funcgrad.tutorials import newton_logistic as newton
from tests.conftest import REPO_ROOT


def iris_loss_and_params():
    iris = fg.iris_first_two_features(np.float64)
    batch = (jnp.asarray(iris["x_train"]), jnp.asarray(iris["y_train"], jnp.int32))
    params = jax.tree.map(lambda leaf: leaf.astype(jnp.float64), iris_softmax.init_params(jax.random.key(0)))
    return (lambda p: iris_softmax.loss_fn(p, batch)), params


def test_hvp_is_the_hessian_times_the_vector_on_a_params_pytree():
    with jax.enable_x64(True):
        loss, params = iris_loss_and_params()
        theta, unravel = ravel_pytree(params)
        vector = jax.random.normal(jax.random.key(1), theta.shape, jnp.float64)
        hessian = jax.jit(jax.hessian(lambda theta: loss(unravel(theta))))(theta)
        product = jax.jit(fg.hvp, static_argnums=0)(loss, params, unravel(vector))
        assert jax.tree.structure(product) == jax.tree.structure(params)
        np.testing.assert_allclose(ravel_pytree(product)[0], hessian @ vector, rtol=1e-13, atol=1e-15)


def test_hvp_of_a_cubic_is_six_x_times_v_with_and_without_jit():
    def cubic(x):
        return jnp.sum(x**3)

    x, v = jnp.array([1.0, -2.0, 0.5]), jnp.array([1.0, 3.0, -4.0])
    np.testing.assert_array_equal(fg.hvp(cubic, x, v), 6 * x * v)
    np.testing.assert_array_equal(jax.jit(fg.hvp, static_argnums=0)(cubic, x, v), 6 * x * v)


def test_hvp_names_the_leaf_whose_shape_differs():
    with pytest.raises(ValueError, match=r"vector\['a'\] has shape \(4,\) but params\['a'\] has shape \(3,\)"):
        fg.hvp(lambda p: jnp.sum(p["a"] ** 2), {"a": jnp.ones(3)}, {"a": jnp.ones(4)})


def blobs_and_initial_params(dtype):
    x, y = fg.gaussian_blobs(seed=1, dtype=dtype)
    params = jax.tree.map(lambda leaf: leaf.astype(dtype), fg.linear_init(jax.random.key(1), 3, 1))
    return x, y, params


def test_newton_reaches_a_gradient_norm_below_1e_6_within_ten_steps_in_float64():
    assert newton.NUM_NEWTON_STEPS <= 10
    with jax.enable_x64(True):
        x, y, initial = blobs_and_initial_params(np.float64)
        _, objectives, gradient_norm = newton.fit_newton(initial, x, y)
        assert gradient_norm < 1e-6
        assert np.all(np.diff(objectives) <= 1e-15), objectives  # every step goes downhill


def test_newton_ends_below_where_300_sgd_steps_end_on_the_ridge_objective():
    x, y, initial = blobs_and_initial_params(np.float32)
    newton_params, _, _ = newton.fit_newton(initial, x, y)
    sgd_params, _ = binary_logistic.train(initial, x, y)
    assert newton.objective(newton_params, (x, y)) < newton.objective(sgd_params, (x, y))


def test_newton_example_prints_both_runs(monkeypatch, capsys):
    monkeypatch.setattr(sys, "argv", ["newton_logistic"])
    runpy.run_path(str(REPO_ROOT / "examples" / "newton_logistic.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert out.count("before step") == newton.NUM_NEWTON_STEPS
    assert "training accuracy 1.0000" in out and "after 300 steps: loss" in out
