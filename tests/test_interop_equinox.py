"""A torch CNN with LayerNorm, Embedding and attention, ported to Equinox by name: the
state_dict round-trips bit for bit through (module, state) and the module computes torch's output."""

import warnings

import numpy as np
import pytest

eqx = pytest.importorskip("equinox")
torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from funcgrad.interop import equinox as eqx_bridge  # noqa: E402
from funcgrad.interop import rules  # noqa: E402
from tests.helpers_torch import DTYPES, jax_precision  # noqa: E402

TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}
MODULES = {"features": "features.layers"}  # eqx.nn.Sequential keeps its layers in .layers
MODES = pytest.mark.parametrize("mode", ["ema", "batch"])


class TorchNet(torch.nn.Module):
    def __init__(self, attention_bias=True):
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.fc = nn.Linear(24, 8)
        self.norm = nn.LayerNorm(8)
        self.embed = nn.Embedding(10, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True, bias=attention_bias)

    def forward(self, images, tokens):
        h = self.norm(self.fc(self.features(images)))
        seq = torch.cat([h[:, None], self.embed(tokens)], dim=1)
        return self.attn(seq, seq, seq, need_weights=False)[0]


class EqxNet(eqx.Module):
    """TorchNet for one sample: (C, H, W) images, as torch's layout; vmap it for a batch."""

    features: eqx.nn.Sequential
    fc: eqx.nn.Linear
    norm: eqx.nn.LayerNorm
    embed: eqx.nn.Embedding
    attn: eqx.nn.MultiheadAttention

    def __init__(self, dtype, mode, key, attention_bias=True):
        keys = jax.random.split(key, 5)
        relu, pool = eqx.nn.Lambda(jax.nn.relu), eqx.nn.MaxPool2d(2, 2)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # equinox's note that mode="batch" is its new default
            self.features = eqx.nn.Sequential([
                eqx.nn.Conv2d(1, 4, 3, padding=1, dtype=dtype, key=keys[0]),
                eqx.nn.BatchNorm(4, "batch", mode=mode, dtype=dtype), relu, pool,
                eqx.nn.Conv2d(4, 6, 3, padding=1, dtype=dtype, key=keys[1]),
                eqx.nn.BatchNorm(6, "batch", mode=mode, dtype=dtype), relu, pool, eqx.nn.Lambda(jnp.ravel)])
        self.fc = eqx.nn.Linear(24, 8, dtype=dtype, key=keys[2])
        self.norm = eqx.nn.LayerNorm(8, dtype=dtype)
        self.embed = eqx.nn.Embedding(10, 8, dtype=dtype, key=keys[3])
        self.attn = eqx.nn.MultiheadAttention(2, 8, use_query_bias=attention_bias, use_key_bias=attention_bias,
                                              use_value_bias=attention_bias, use_output_bias=attention_bias,
                                              dtype=dtype, key=keys[4])

    def __call__(self, image, tokens, state):
        x, state = self.features(image, state)
        h = self.norm(self.fc(x))
        seq = jnp.concatenate([h[None], jax.vmap(self.embed)(tokens)])
        return self.attn(seq, seq, seq), state


def _eqx_net(dtype, mode="ema", attention_bias=True):
    """EqxNet and its state as shapes and dtypes, no weights drawn (from_torch fills every leaf)."""
    return eqx.filter_eval_shape(eqx.nn.make_with_state(EqxNet), dtype, mode, jax.random.key(0), attention_bias)


def _torch_net(dtype, attention_bias=True):
    """A torch net with random BatchNorm affines and running statistics from two training batches."""
    torch.manual_seed(0)
    net = TorchNet(attention_bias).to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for bn in (net.features[1], net.features[5]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        for _ in range(2):
            net(*(torch.from_numpy(array) for array in _batch(dtype)))
    return net.eval()


def _batch(dtype):
    rng = np.random.default_rng(1)
    return rng.standard_normal((3, 1, 8, 8)).astype(dtype), rng.integers(0, 10, (3, 4))


def _state_dict(net):
    return {key: value.numpy() for key, value in net.state_dict().items()}


@eqx.filter_jit
def _inference(model, state, images, tokens):
    model = eqx.nn.inference_mode(model)
    return jax.vmap(model, in_axes=(0, 0, None), out_axes=(0, None), axis_name="batch")(images, tokens, state)[0]


@DTYPES
@MODES
def test_equinox_port_round_trips_bit_for_bit_and_computes_torch_output(dtype, mode):
    net = _torch_net(dtype)
    state_dict = _state_dict(net)
    images, tokens = _batch(dtype)
    with jax_precision(dtype):
        model, state = eqx_bridge.from_torch(*_eqx_net(dtype, mode), state_dict, MODULES)
        back = eqx_bridge.to_torch(model, state, MODULES, num_batches_tracked=state_dict)
        out = np.asarray(_inference(model, state, jnp.asarray(images), jnp.asarray(tokens)))
    assert sorted(back) == sorted(state_dict)
    for key, value in state_dict.items():
        assert back[key].dtype == value.dtype and np.array_equal(back[key], value), key
    net.load_state_dict({key: torch.from_numpy(value) for key, value in back.items()}, strict=True)
    with torch.no_grad():
        expected = net(*(torch.from_numpy(array) for array in _batch(dtype))).numpy()
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def test_describe_names_both_sides_with_equinox_layouts():
    lines = rules.describe(eqx_bridge.pairs(*_eqx_net(np.float32), MODULES)).splitlines()
    for line in ("features.0.weight (4, 1, 3, 3) -> features.layers.0.weight (4, 1, 3, 3): copy",
                 "features.0.bias (4,) -> features.layers.0.bias (4, 1, 1): reshape(4, 1, 1)",
                 "features.1.running_mean (4,) -> features.layers.1.ema_state_index[0] (4,): copy",
                 "fc.weight (8, 24) -> fc.weight (8, 24): copy",
                 "attn.in_proj_weight[8:16] (8, 8) -> attn.key_proj.weight (8, 8): copy",
                 "attn.out_proj.bias (8,) -> attn.output_proj.bias (8,): copy"):
        assert line in lines


def test_attention_without_equinox_biases_is_refused_with_the_fix():
    state_dict = _state_dict(_torch_net(np.float32))
    refusal = (r"torch keys with no counterpart: \['attn.in_proj_bias', 'attn.out_proj.bias'\]; "
               r"equinox keys with no counterpart: \[\].*use_query_bias=True")
    with pytest.raises(ValueError, match=refusal):
        eqx_bridge.from_torch(*_eqx_net(np.float32, attention_bias=False), state_dict, MODULES)
    model, state = eqx_bridge.from_torch(*_eqx_net(np.float32, attention_bias=False),
                                         _state_dict(_torch_net(np.float32, attention_bias=False)), MODULES)
    assert "attn.in_proj_bias" not in eqx_bridge.to_torch(model, state, MODULES, num_batches_tracked=0)


@pytest.mark.parametrize("change, message", [
    (lambda s: s.pop("fc.bias"),
     r"torch keys with no counterpart: \[\]; equinox keys with no counterpart: \['fc.bias'\]"),
    (lambda s: s.update({"fc.weight": np.zeros((24, 8), np.float32)}),
     r"fc.weight has shape \(24, 8\), but fc.weight \(8, 24\) needs \(8, 24\)"),
], ids=["missing torch key", "shape"])
def test_equinox_from_torch_refuses_by_name(change, message):
    state_dict = _state_dict(_torch_net(np.float32))
    change(state_dict)
    with jax.enable_x64(True), pytest.raises(ValueError, match=message):
        eqx_bridge.from_torch(*_eqx_net(np.float32), state_dict, MODULES)


def test_a_fresh_ema_batchnorm_has_no_statistics_to_give_torch():
    layers, state = eqx.nn.make_with_state(eqx.nn.Sequential)([eqx.nn.BatchNorm(3, "batch", mode="ema")])
    with pytest.raises(ValueError, match=r"BatchNorm layers.0 \(mode='ema'\) has not filled its running statistics"):
        eqx_bridge.to_torch(layers, state, num_batches_tracked=0)


def test_batch_mode_gives_torch_the_statistics_its_inference_uses():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bn, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(3, "batch", momentum=0.9, mode="batch")
    x = jnp.asarray(np.random.default_rng(0).standard_normal((5, 3)), jnp.float32)
    _, state = jax.vmap(bn, in_axes=(0, None), out_axes=(0, None), axis_name="batch")(x, state)
    state_dict = eqx_bridge.to_torch(bn, state, num_batches_tracked=1)  # a root module: torch's bare names
    torch_bn = torch.nn.BatchNorm1d(3).eval()
    torch_bn.load_state_dict({key: torch.from_numpy(value) for key, value in state_dict.items()}, strict=True)
    inference = eqx.nn.inference_mode(bn)
    expected = jax.vmap(inference, in_axes=(0, None), out_axes=(0, None), axis_name="batch")(x, state)[0]
    with torch.no_grad():
        np.testing.assert_allclose(torch_bn(torch.from_numpy(np.array(x))).numpy(), expected, rtol=1e-6, atol=1e-6)


def _torch_trained_bn(x: np.ndarray):
    """A BatchNorm1d(3) with running statistics of its own, and the same after one training step on ``x``."""
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm1d(3).double()
    with torch.no_grad():
        bn.running_mean.uniform_(-1, 1)
        bn.running_var.uniform_(0.5, 2)
    before = {key: value.numpy().copy() for key, value in bn.state_dict().items()}
    bn.train()(torch.from_numpy(x))
    return before, {key: value.numpy().copy() for key, value in bn.state_dict().items()}


def test_a_loaded_batch_mode_batchnorm_trains_on_from_torchs_statistics_in_their_dtype():
    """A module and state made in float32 take a float64 state_dict as float64 (a float32
    step's float64 twin needs that), and a training step then updates torch's statistics as
    torch does, but for the variance equinox keeps biased; at a batch counter of 0 the
    step's statistics would come back divided by 1 - momentum."""
    x = np.random.default_rng(1).standard_normal((6, 3))
    before, after = _torch_trained_bn(x)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        bn, state = eqx.nn.make_with_state(eqx.nn.BatchNorm)(3, "batch", momentum=0.9, mode="batch")
    with jax.enable_x64(True):
        bn, loaded = eqx_bridge.from_torch(bn, state, before)
        assert bn.weight.dtype == loaded.get(bn.batch_state_index)[0].dtype == jnp.float64
        _, trained = jax.vmap(bn, in_axes=(0, None), out_axes=(0, None), axis_name="batch")(jnp.asarray(x), loaded)
        state_dict = eqx_bridge.to_torch(bn, trained, num_batches_tracked=after["num_batches_tracked"])
    np.testing.assert_allclose(state_dict["running_mean"], after["running_mean"], rtol=1e-14)
    biased = 0.9 * before["running_var"] + 0.1 * x.var(axis=0)
    np.testing.assert_allclose(state_dict["running_var"], biased, rtol=1e-14)
    assert not np.allclose(state_dict["running_var"], after["running_var"], rtol=1e-3)  # torch's is unbiased
    state_dict = eqx_bridge.to_torch(bn, state, num_batches_tracked=0)  # the caller's state is still usable
    assert set(state_dict) == set(before)
