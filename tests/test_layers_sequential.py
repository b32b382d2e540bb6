"""fg.layers.Sequential against torch's nn.Sequential: the same state_dict names (buffers
included, both ways, strict), the same forward pass in eval and train mode (dropout masks
replayed into torch's own modules), the same gradients and BatchNorm updates."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from torch import nn

import funcgrad as fg
from tests.helpers_torch import DTYPES, jax_precision

L = fg.layers
IMAGE = (1, 12, 12)


def funcgrad_cnn():
    return L.Sequential(L.Conv2d(1, 4, 3, padding=1), L.BatchNorm2d(4), L.ReLU(), L.MaxPool2d(2),
                        L.Conv2d(4, 6, 3, stride=1, padding="same"), L.BatchNorm2d(6), L.GELU(), L.AvgPool2d(2),
                        L.Flatten(), L.Dropout(0.3), L.Linear(6 * 3 * 3, 5))


def torch_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(4, 6, 3, stride=1, padding="same"), nn.BatchNorm2d(6), nn.GELU(), nn.AvgPool2d(2),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(6 * 3 * 3, 5))


def initial_state_dict() -> dict:
    params, buffers = funcgrad_cnn().init(jax.random.key(0))
    return fg.to_state_dict(params, buffers)


def loaded_torch_cnn(state_dict, dtype) -> nn.Sequential:
    model = torch_cnn().to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({name: torch.tensor(value.astype(dtype) if value.dtype.kind == "f" else value)
                           for name, value in state_dict.items()}, strict=True)
    return model


def test_init_has_torch_state_dict_names_shapes_and_buffers():
    ours = initial_state_dict()
    theirs = torch_cnn().state_dict()
    assert list(ours) == [name for name in theirs if not name.endswith(fg.BUFFER_NAMES)] + [
        name for name in theirs if name.endswith(fg.BUFFER_NAMES)]
    assert {name: value.shape for name, value in ours.items()} == {name: tuple(t.shape) for name, t in theirs.items()}
    assert ours["1.num_batches_tracked"].dtype.kind == "i" and ours["1.running_var"].dtype == np.float32


def test_a_trained_torch_cnn_loads_into_funcgrad_and_back_strictly():
    model = torch_cnn()
    model(torch.randn(8, *IMAGE))  # train mode: the running statistics move
    theirs = {name: value.numpy() for name, value in model.state_dict().items()}
    params, buffers = map(fg.from_state_dict, fg.split_buffers(theirs))
    assert set(buffers["1"]) == set(fg.BUFFER_NAMES) and "running_mean" not in params["1"]
    back = fg.to_state_dict(params, buffers)
    fresh = torch_cnn()
    fresh.load_state_dict({name: torch.tensor(value) for name, value in back.items()}, strict=True)
    for name, value in fresh.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), theirs[name], err_msg=name)


@DTYPES
def test_eval_mode_forward_matches_torch(dtype):
    state_dict = initial_state_dict()
    x = np.random.default_rng(0).normal(size=(7, *IMAGE))
    outputs = {}
    for side_dtype in {np.dtype(dtype), np.dtype(np.float64)}:
        model = loaded_torch_cnn(state_dict, side_dtype).eval()
        with torch.no_grad():
            outputs[side_dtype] = model(torch.tensor(x.astype(side_dtype))).numpy()
    with jax_precision(dtype):
        params, buffers = (fg.from_state_dict({k: v.astype(dtype) if v.dtype.kind == "f" else v
                                               for k, v in tree.items()})
                           for tree in fg.split_buffers(state_dict))
        logits, new_buffers = funcgrad_cnn().apply(params, buffers, jnp.asarray(x, dtype), train=False)
    assert jax.tree.all(jax.tree.map(lambda a, b: bool(jnp.all(a == b)), new_buffers, buffers))
    rows = fg.parity.compare_results({"logits": np.asarray(logits)}, {"logits": outputs[np.dtype(dtype)]}, dtype,
                                     {"logits": outputs[np.dtype(np.float64)]})
    assert all(row.passed for row in rows), fg.parity.format_failures(rows)


def train_step_results(framework: str, state_dict, x, y, key, dtype) -> dict:
    """One train-mode forward and backward: logits, loss gradients, the new buffers."""
    if framework == "torch":
        model = loaded_torch_cnn(state_dict, dtype)
        with L.replay_dropout(model, key):
            logits = model(torch.tensor(x.astype(dtype)))
        torch.nn.functional.cross_entropy(logits, torch.tensor(y)).backward()
        return {"logits": logits.detach().numpy(),
                **{f"grad {n}": p.grad.numpy() for n, p in model.named_parameters()},
                **{f"new {n}": b.numpy() for n, b in model.named_buffers() if b.dtype.is_floating_point},
                **{f"new {n}": fg.parity.Exact(b.numpy()) for n, b in model.named_buffers()
                   if not b.dtype.is_floating_point}}
    with jax_precision(dtype):
        params, buffers = (fg.from_state_dict({k: v.astype(dtype) if v.dtype.kind == "f" else v
                                               for k, v in tree.items()})
                           for tree in fg.split_buffers(state_dict))

        def loss_fn(params):
            logits, new = funcgrad_cnn().apply(params, buffers, jnp.asarray(x, dtype), train=True, key=key)
            return fg.cross_entropy(logits, jnp.asarray(y)), (logits, new)

        grads, (logits, new) = jax.grad(loss_fn, has_aux=True)(params)
    flat_new = fg.to_state_dict(new)
    return {"logits": np.asarray(logits),
            **{f"grad {n}": g for n, g in fg.to_state_dict(grads).items()},
            **{f"new {n}": v if v.dtype.kind == "f" else fg.parity.Exact(v.astype(np.int64))
               for n, v in flat_new.items()}}


@DTYPES
def test_train_mode_step_matches_torch_with_replayed_dropout(dtype):
    state_dict = initial_state_dict()
    rng = np.random.default_rng(1)
    x, y, key = rng.normal(size=(9, *IMAGE)), rng.integers(0, 5, 9), jax.random.key(7)
    ours = train_step_results("jax", state_dict, x, y, key, dtype)
    theirs = train_step_results("torch", state_dict, x, y, key, dtype)
    reference = train_step_results("torch", state_dict, x, y, key, np.float64)
    rows = fg.parity.compare_results(ours, theirs, dtype, reference)
    assert all(row.passed for row in rows), fg.parity.format_failures(rows)
    assert np.mean(ours["logits"] == 0) < 0.5  # a real forward pass, not a dropped-out one


def test_other_dropout_masks_fail_the_same_check():
    """The check above could fail: torch's own dropout draw (no replay) differs."""
    state_dict = initial_state_dict()
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(9, *IMAGE)), rng.integers(0, 5, 9)
    ours = train_step_results("jax", state_dict, x, y, jax.random.key(7), np.float64)
    theirs = train_step_results("torch", state_dict, x, y, jax.random.key(8), np.float64)
    rows = fg.parity.compare_results(ours, theirs, np.float64)
    assert not next(row for row in rows if row.name == "logits").passed


def test_replay_puts_torch_dropout_back_and_passes_through_in_eval_mode():
    model = nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.Dropout(0.5)))
    x = torch.ones(3, 4)
    with L.replay_dropout(model, jax.random.key(0)):
        assert type(model[1][1]) is not nn.Dropout
        train_out = model(x)
        model.eval()
        np.testing.assert_array_equal(model(x).detach().numpy(), model[0](x).relu().detach().numpy())
        model.train()
    assert type(model[1][1]) is nn.Dropout
    mask = np.asarray(L.dropout_mask(L.layer_key(jax.random.key(0), "1.1"), (3, 4), 0.5))
    np.testing.assert_array_equal(train_out.detach().numpy(), model[0](x).relu().detach().numpy() * mask)


def test_dropout_masks_keep_one_minus_p_and_scale_the_kept():
    mask = np.asarray(L.dropout_mask(jax.random.key(0), (200, 500), 0.3))
    assert set(np.unique(mask)) == {0.0, np.float32(1 / 0.7)}
    assert abs(np.mean(mask > 0) - 0.7) < 0.01
    x = jnp.ones((3, 5))
    assert jnp.all(L.dropout(x, 0.3, key=jax.random.key(0), train=False) == x)
    assert jnp.all(L.dropout(x, 0.0, key=jax.random.key(0), train=True) == x)
    assert jnp.all(L.dropout(x, 1.0, key=jax.random.key(0), train=True) == 0)


def test_dropout_masks_keep_the_same_units_in_float32_and_float64():
    """A float32 run and its float64 twin (the error model's reference) must drop alike."""
    single = np.asarray(L.dropout_mask(jax.random.key(5), (50, 40), 0.5))
    with jax.enable_x64(True):
        double = np.asarray(L.dropout_mask(jax.random.key(5), (50, 40), 0.5, jnp.float64))
    np.testing.assert_array_equal(single > 0, double > 0)


@pytest.mark.parametrize("shape", [(6, 1, 5, 5), (2, 3, 4), (7, 3), (), (0, 3)])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inits_and_masks_are_jax_randoms_own_draws_for_their_shape(shape, dtype):
    """fg.layers draws flat and reshapes (XLA:CPU compiles that faster): the numbers must be
    those ``jax.random.uniform`` draws for the shape itself, in each dtype."""
    key = jax.random.key(3)
    with jax.enable_x64(dtype == "float64"):
        drawn = L.base.uniform(key, shape, jnp.dtype(dtype), -0.5, 0.5)
        assert drawn.shape == shape and drawn.dtype == jnp.dtype(dtype)
        np.testing.assert_array_equal(drawn, jax.random.uniform(key, shape, jnp.dtype(dtype), -0.5, 0.5))
        mask = L.dropout_mask(key, shape, 0.4, jnp.dtype(dtype))
        np.testing.assert_array_equal(mask > 0, jax.random.uniform(key, shape, jnp.float32) < jnp.float32(0.6))
    assert L.dropout_mask(key, 5, 0.4).shape == L.dropout_mask(key, [np.int64(5)], 0.4).shape == (5,)


def test_layer_keys_differ_by_name_and_agree_across_calls():
    key = jax.random.key(3)
    assert jnp.all(jax.random.key_data(L.layer_key(key, "3")) == jax.random.key_data(L.layer_key(key, "3")))
    assert not jnp.all(jax.random.key_data(L.layer_key(key, "3")) == jax.random.key_data(L.layer_key(key, "9")))


@pytest.mark.parametrize("call, message", [
    (lambda m, p, b, x: m.apply(p, b, x, train=True), r"Dropout at '9' needs a key"),
    (lambda m, p, b, x: m.apply(p, {}, x, train=True, key=jax.random.key(0)),
     r"missing key\(s\) in buffers: '1.num_batches_tracked', '1.running_mean'"),
    (lambda m, p, b, x: m.apply(p | {"11": {"weight": jnp.ones(2)}}, b, x, train=False),
     r"unexpected key\(s\) in params: '11.weight'"),
    (lambda m, p, b, x: m.apply(p, b, x), r"train"),
    (lambda m, p, b, x: m.apply(p, b, jnp.ones((2, 12, 12, 1)), train=False), r"NHWC"),
])
def test_sequential_refuses_what_it_cannot_run(call, message):
    model = funcgrad_cnn()
    params, buffers = model.init(jax.random.key(0))
    with pytest.raises((ValueError, TypeError), match=message):
        call(model, params, buffers, jnp.ones((2, *IMAGE)))


@pytest.mark.parametrize("p", [-0.1, 1.5])
def test_dropout_refuses_a_probability_outside_0_1(p):
    with pytest.raises(ValueError, match="between 0 and 1"):
        L.Dropout(p)


@pytest.mark.parametrize("ours, theirs", [
    (lambda: L.Linear(4, 8, bias=False), lambda: nn.Linear(4, 8, bias=False)),
    (lambda: L.Conv2d(1, 8, 3, padding=1), lambda: nn.Conv2d(1, 8, 3, padding=1)),
    (lambda: L.Conv2d(2, 4, (3, 5), stride=2, padding=(1, 0), dilation=2, groups=2, bias=False),
     lambda: nn.Conv2d(2, 4, (3, 5), stride=2, padding=(1, 0), dilation=2, groups=2, bias=False)),
    (lambda: L.Conv2d(1, 8, 3, padding="same"), lambda: nn.Conv2d(1, 8, 3, padding="same")),
    (lambda: L.BatchNorm2d(8, momentum=None, affine=False), lambda: nn.BatchNorm2d(8, momentum=None, affine=False)),
    (lambda: L.BatchNorm1d(8, eps=1e-3, bias=False), lambda: nn.BatchNorm1d(8, eps=1e-3, bias=False)),
    (lambda: L.LayerNorm((2, 3), eps=1e-6, bias=False), lambda: nn.LayerNorm((2, 3), eps=1e-6, bias=False)),
    (lambda: L.Embedding(10, 3, padding_idx=0), lambda: nn.Embedding(10, 3, padding_idx=0)),
    (lambda: L.Dropout(0.1), lambda: nn.Dropout(0.1)),
    (lambda: L.MaxPool2d((2, 3), stride=1, padding=1, ceil_mode=True),
     lambda: nn.MaxPool2d((2, 3), stride=1, padding=1, ceil_mode=True)),
    (lambda: L.AvgPool2d(3, 2, 1), lambda: nn.AvgPool2d(3, 2, 1)),
    (lambda: L.Flatten(), lambda: nn.Flatten()),
    (lambda: L.GELU("tanh"), lambda: nn.GELU("tanh")),
    (lambda: L.LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2)),
    (lambda: L.Sequential(L.Linear(2, 3), L.ReLU(), L.Sequential(L.Tanh(), L.ELU())),
     lambda: nn.Sequential(nn.Linear(2, 3), nn.ReLU(), nn.Sequential(nn.Tanh(), nn.ELU()))),
])
def test_a_layer_prints_as_its_torch_twin(ours, theirs):
    assert repr(ours()) == repr(theirs())


def test_each_child_of_a_sequential_runs_under_its_state_dict_name():
    model = L.Sequential(L.Linear(4, 8), L.ReLU(), L.Sequential(L.Linear(8, 2)))
    params, buffers = model.init(jax.random.key(0))
    hlo = jax.jit(lambda p, x: model.apply(p, buffers, x, train=False)[0]).lower(params, jnp.ones((2, 4))).as_text(
        debug_info=True)
    scopes = set(re.findall(r'loc\("jit\(<lambda>\)/([^"]+)/[^/"]+"', hlo))
    assert {"Sequential/0", "Sequential/2/2.0"} <= scopes, scopes
