"""Bad input at the public boundary: refused by name (the argument, what was expected, what came),
or done as torch does it. One test per input a new user was seen to try; docs/errors.md lists them."""

import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

import funcgrad as fg
from tests.conftest import REPO_ROOT

L = fg.layers
KEY = jax.random.key(0)


def mlp():
    return fg.mlp_init(KEY, (4, 8, 3))


def test_an_mlp_missing_a_bias_is_refused_naming_it():
    params = mlp()
    del params["2"]["bias"]
    with pytest.raises(ValueError, match=r"layer 2 must hold 'weight' and 'bias'.*missing 2\.bias"):
        fg.mlp_apply(params, jnp.ones((2, 4)))


@pytest.mark.parametrize("extra, message", [
    (lambda p: p | {"3": p["2"]}, r"params hold layers \['0', '2', '3'\], but mlp_init's are \['0', '2', '4'\]"),
    (lambda p: p | {"0": p["0"] | {"scale": jnp.ones(8)}}, r"layer 0 must hold 'weight' and 'bias', got \['bias', 'scale', 'weight'\]"),
])
def test_an_mlp_with_extra_keys_is_refused(extra, message):
    with pytest.raises(ValueError, match=message):
        fg.mlp_apply(extra(mlp()), jnp.ones((2, 4)))


def test_a_linear_layer_refuses_an_extra_key_and_a_bias_that_would_broadcast():
    params = fg.linear_init(KEY, 4, 8)
    with pytest.raises(ValueError, match=r"must hold 'weight' and optionally 'bias'.*got \['bias', 'extra', 'weight'\]"):
        fg.linear_apply(params | {"extra": jnp.ones(1)}, jnp.ones((2, 4)))
    with pytest.raises(ValueError, match=r"bias has shape \(1,\) but weight \(8, 4\) has 8 outputs: bias must be \(8,\)"):
        fg.linear_apply(params | {"bias": jnp.ones(1)}, jnp.ones((2, 4)))


def test_a_sequential_refuses_params_that_its_init_does_not_build_as_torch_strict_loading_does():
    model = L.Sequential(L.Linear(4, 8), L.ReLU(), L.Linear(8, 3))
    params, buffers = model.init(KEY)
    missing = {"0": params["0"], "2": {"weight": params["2"]["weight"]}}
    with pytest.raises(ValueError, match=r"missing key\(s\) in params: '2.bias'"):
        model.apply(missing, buffers, jnp.ones((2, 4)), train=False)
    with pytest.raises(ValueError, match=r"unexpected key\(s\) in params: '1.weight'"):
        model.apply(params | {"1": {"weight": jnp.ones(3)}}, buffers, jnp.ones((2, 4)), train=False)


def test_a_conv_layer_given_a_kernel_of_another_size_is_refused_not_run_as_that_kernel():
    conv = L.Conv2d(1, 4, 3)
    params, buffers = conv.init(KEY)
    five = {"weight": jnp.ones((4, 1, 5, 5)), "bias": params["bias"]}
    with pytest.raises(ValueError, match=r"size mismatch for weight: got shape \(4, 1, 5, 5\), the layer's is \(4, 1, 3, 3\)"):
        conv.apply(five, buffers, jnp.ones((1, 1, 8, 8)), train=False)


def test_conv2d_init_refuses_a_kernel_size_of_zero_by_name():
    with pytest.raises(ValueError, match=r"conv2d_init: kernel_size must be a positive int, got \(0, 0\)"):
        L.conv2d_init(KEY, 1, 4, 0)


def test_batch_norm_buffers_of_the_wrong_size_are_refused_naming_them():
    params, state = L.batch_norm_init(4)
    state = state | {"running_var": jnp.ones(3)}
    with pytest.raises(ValueError, match=r"running_var has shape \(3,\), but the layer has num_features=4"):
        L.batch_norm_apply(params, state, jnp.ones((2, 4)), train=False)


def test_fit_epochs_refuses_data_whose_arrays_differ_in_length():
    params = fg.linear_init(KEY, 3, 2)
    optimizer = fg.optim.sgd(0.1)
    batches = fg.loader_batches(KEY, 90, 10)
    data = (jnp.ones((100, 3)), jnp.zeros(90, jnp.int32))
    with pytest.raises(ValueError, match=r"lengths differ: data\[0\] 100, data\[1\] 90"):
        fg.fit_epochs(lambda p, b: fg.cross_entropy(fg.linear_apply(p, b[0]), b[1]), optimizer, params,
                      optimizer.init(params), data, batches)


def test_adam_refuses_betas_that_are_not_a_pair():
    with pytest.raises(ValueError, match=r"adam: betas must be a pair \(beta1, beta2\), got \(0.9,\)"):
        fg.optim.adam(1e-3, betas=(0.9,))


@pytest.mark.parametrize("make", [
    lambda: fg.optim.sgd(np.float32(-0.1)),
    lambda: fg.optim.adam(jnp.asarray(-1e-3)),
    lambda: fg.optim.step_lr(-0.1, step_size=10),
    lambda: fg.optim.cosine_annealing_lr(-0.1, t_max=10),
])
def test_a_negative_learning_rate_of_any_type_is_refused(make):
    with pytest.raises(ValueError, match=r"learning_rate must be >= 0"):
        make()


def linear_problem():
    x, y = np.random.default_rng(0).normal(size=(8, 4)).astype(np.float32), np.arange(8) % 3
    initial = fg.to_state_dict(fg.linear_init(KEY, 4, 3))

    def torch_setup(dtype):
        model = torch.nn.Linear(4, 3).to(torch.float64 if dtype == np.float64 else torch.float32)
        model.load_state_dict({k: torch.tensor(v.astype(dtype)) for k, v in initial.items()})
        return model, torch.optim.SGD(model.parameters(), lr=0.1)

    return torch_setup, lambda model, batch: torch.nn.functional.cross_entropy(model(batch[0]), batch[1]), [(x, y)]


def test_compare_steps_takes_one_dtype_as_a_string():
    torch_setup, torch_loss, batches = linear_problem()
    verdicts = fg.compare_steps(lambda p, b: fg.cross_entropy(fg.linear_apply(p, b[0]), b[1]), fg.optim.sgd(0.1),
                                torch_setup, torch_loss, batches, dtypes="float64")
    assert list(verdicts) == ["float64"] and verdicts["float64"].passed


def test_a_jax_loss_returning_a_vector_is_named_as_such():
    torch_setup, torch_loss, batches = linear_problem()
    per_example = lambda p, b: -jax.nn.log_softmax(fg.linear_apply(p, b[0]))[jnp.arange(8), b[1]]  # noqa: E731
    with pytest.raises(ValueError, match=r"the JAX loss must return the batch's scalar loss .*got shape \(8,\)"):
        fg.compare_steps(per_example, fg.optim.sgd(0.1), torch_setup, torch_loss, batches, dtypes="float64")


def test_a_stateful_loss_returning_only_a_loss_is_named_as_such():
    model = L.Sequential(L.Linear(4, 4), L.BatchNorm1d(4), L.Linear(4, 3))
    params, buffers = model.init(KEY)
    initial = fg.to_state_dict(params, buffers)

    def torch_setup(dtype):
        net = torch.nn.Sequential(torch.nn.Linear(4, 4), torch.nn.BatchNorm1d(4), torch.nn.Linear(4, 3))
        net = net.to(torch.float64 if dtype == np.float64 else torch.float32)
        net.load_state_dict({k: torch.tensor(v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in initial.items()})
        return net, torch.optim.SGD(net.parameters(), lr=0.1)

    _, torch_loss, batches = linear_problem()
    scalar_only = lambda p, b, batch: fg.cross_entropy(model.apply(p, b, batch[0], train=True)[0], batch[1])  # noqa: E731
    with pytest.raises(ValueError, match=r"stateful=True: jax_loss\(params, buffers, batch\) must return \(loss, new_buffers\)"):
        fg.compare_steps(scalar_only, fg.optim.sgd(0.1), torch_setup, torch_loss, batches, dtypes="float64",
                         stateful=True)


def test_from_state_dict_takes_tensors_that_require_grad_and_refuses_bfloat16_by_name():
    linear = torch.nn.Linear(4, 3)
    params = fg.from_state_dict(dict(linear.named_parameters()))
    np.testing.assert_array_equal(params["weight"], linear.weight.detach().numpy())
    with pytest.raises(TypeError, match=r"weight is a torch.bfloat16 tensor; funcgrad computes in float32 or float64"):
        fg.from_state_dict(linear.to(torch.bfloat16).state_dict())


@pytest.mark.parametrize("argv, message", [
    (["--x64", "--dtype", "float32"], "argument --dtype: not allowed with argument --x64"),
    (["--json", "no-such-folder/report.json"], "no-such-folder does not exist"),
])
def test_the_comparison_refuses_contradicting_or_unwritable_arguments_before_it_runs(argv, message):
    completed = subprocess.run([sys.executable, "-m", "compare", "--case", "grad-mean", *argv], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=120)
    assert completed.returncode == 2 and message in completed.stderr, completed.stderr
