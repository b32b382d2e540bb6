"""A torch CNN with LayerNorm, Embedding and attention, ported to Flax NNX and linen by name:
the state_dict round-trips bit for bit and the Flax model computes torch's output."""

import numpy as np
import pytest

flax = pytest.importorskip("flax")
torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from flax import linen, nnx  # noqa: E402
from flax.nnx.nn.attention import dot_product_attention_weights  # noqa: E402

from funcgrad.interop import flax_linen, flax_nnx, rules  # noqa: E402
from tests.helpers_torch import DTYPES, jax_precision  # noqa: E402

TOLERANCE = {np.float32: 2e-5, np.float64: 1e-12}
NNX_MODULES = {"features.0": "conv1", "features.1": "bn1", "features.4": "conv2", "features.5": "bn2"}
# linen's own names, asked of a function (linen path -> torch path)
LINEN_TO_TORCH = {"Conv_0": "features.0", "BatchNorm_0": "features.1", "Conv_1": "features.4",
                  "BatchNorm_1": "features.5", "Dense_0": "fc", "LayerNorm_0": "norm", "Embed_0": "embed",
                  "MultiHeadDotProductAttention_0": "attn"}.get
# torch flattens the conv output as (C, H, W), NNX below as (H, W, C): fc's kernel rows follow
HWC_FLATTEN = rules.chain(rules.reshape((8, 24), (8, 6, 2, 2)), rules.transpose(0, 2, 3, 1),
                          rules.reshape((8, 2, 2, 6), (8, 24)), rules.transpose(1, 0))


class TorchNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        nn = torch.nn
        self.features = nn.Sequential(
            nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(4, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten())
        self.fc = nn.Linear(24, 8)
        self.norm = nn.LayerNorm(8)
        self.embed = nn.Embedding(10, 8)
        self.attn = nn.MultiheadAttention(8, 2, batch_first=True)

    def forward(self, images, tokens):
        h = self.norm(self.fc(self.features(images)))
        seq = torch.cat([h[:, None], self.embed(tokens)], dim=1)
        return self.attn(seq, seq, seq, need_weights=False)[0]


def attention_in_input_dtype(query, key, value, mask=None, **_):
    """NNX's default attention calls jax.nn.dot_product_attention, whose softmax runs in float32
    whatever the inputs (4e-8 from torch in float64); this is the same attention in the input dtype."""
    return jnp.einsum("...hqk,...khd->...qhd", dot_product_attention_weights(query, key, mask=mask), value)


class NnxNet(nnx.Module):
    def __init__(self, dtype, rngs):
        kw = dict(dtype=dtype, param_dtype=dtype, rngs=rngs)
        self.conv1 = nnx.Conv(1, 4, (3, 3), padding=1, **kw)
        self.bn1 = nnx.BatchNorm(4, use_running_average=True, **kw)
        self.conv2 = nnx.Conv(4, 6, (3, 3), padding=1, **kw)
        self.bn2 = nnx.BatchNorm(6, use_running_average=True, **kw)
        self.fc = nnx.Linear(24, 8, **kw)
        self.norm = nnx.LayerNorm(8, epsilon=1e-5, **kw)
        self.embed = nnx.Embed(10, 8, **kw)
        self.attn = nnx.MultiHeadAttention(num_heads=2, in_features=8, decode=False,
                                           attention_fn=attention_in_input_dtype, **kw)

    def __call__(self, images, tokens):
        x = nnx.max_pool(nnx.relu(self.bn1(self.conv1(images))), (2, 2), (2, 2))
        x = nnx.max_pool(nnx.relu(self.bn2(self.conv2(x))), (2, 2), (2, 2))
        h = self.norm(self.fc(x.reshape(x.shape[0], -1)))
        seq = jnp.concatenate([h[:, None], self.embed(tokens)], axis=1)
        return self.attn(seq)


class LinenNet(linen.Module):
    dtype: type

    @linen.compact
    def __call__(self, images, tokens):
        kw = dict(dtype=self.dtype, param_dtype=self.dtype)
        x = images
        for channels in (4, 6):
            x = linen.Conv(channels, (3, 3), padding=1, **kw)(x)
            x = linen.max_pool(linen.relu(linen.BatchNorm(use_running_average=True, **kw)(x)), (2, 2), (2, 2))
        x = x.transpose(0, 3, 1, 2).reshape(x.shape[0], -1)  # torch's (C, H, W) order: Dense_0 takes fc.weight as it is
        h = linen.LayerNorm(epsilon=1e-5, **kw)(linen.Dense(8, **kw)(x))
        seq = jnp.concatenate([h[:, None], linen.Embed(10, 8, **kw)(tokens)], axis=1)
        return linen.MultiHeadDotProductAttention(num_heads=2, **kw)(seq)


def _abstract_nnx_net(dtype):
    """NnxNet's shapes and dtypes without drawing its weights (from_torch fills every leaf)."""
    return nnx.eval_shape(lambda: NnxNet(dtype, nnx.Rngs(0)))


def _torch_net(dtype):
    """A torch net with random BatchNorm affines and running statistics from two training batches."""
    torch.manual_seed(0)
    net = TorchNet().to(torch.float64 if dtype == np.float64 else torch.float32)
    with torch.no_grad():
        for bn in (net.features[1], net.features[5]):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.5, 0.5)
        for _ in range(2):
            net(*_batch(dtype, torch_side=True))
    return net.eval()


def _batch(dtype, torch_side=False):
    rng = np.random.default_rng(1)
    images, tokens = rng.standard_normal((3, 1, 8, 8)).astype(dtype), rng.integers(0, 10, (3, 4))
    return (torch.from_numpy(images), torch.from_numpy(tokens)) if torch_side else (images, tokens)


def _state_dict(net):
    return {key: value.numpy() for key, value in net.state_dict().items()}


def _assert_round_trip(net, state_dict, back):
    assert sorted(back) == sorted(state_dict)
    for key, value in state_dict.items():
        assert back[key].dtype == value.dtype and back[key].shape == value.shape, key
        assert np.array_equal(back[key], value), key
    net.load_state_dict({key: torch.from_numpy(value) for key, value in back.items()}, strict=True)


@DTYPES
def test_nnx_port_round_trips_bit_for_bit_and_computes_torch_output(dtype):
    net = _torch_net(dtype)
    state_dict = _state_dict(net)
    images, tokens = _batch(dtype)
    with jax_precision(dtype):
        model = flax_nnx.from_torch(_abstract_nnx_net(dtype), state_dict, NNX_MODULES, {"fc.kernel": HWC_FLATTEN})
        back = flax_nnx.to_torch(model, NNX_MODULES, {"fc.kernel": HWC_FLATTEN}, num_batches_tracked=state_dict)
        nhwc = jnp.asarray(images.transpose(0, 2, 3, 1))
        out = np.asarray(nnx.jit(NnxNet.__call__)(model, nhwc, jnp.asarray(tokens)))
    _assert_round_trip(net, state_dict, back)
    with torch.no_grad():
        expected = net(*_batch(dtype, torch_side=True)).numpy()
    assert out.dtype == dtype
    np.testing.assert_allclose(out, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


@DTYPES
def test_linen_port_round_trips_bit_for_bit_and_computes_torch_output(dtype):
    net = _torch_net(dtype)
    state_dict = _state_dict(net)
    images, tokens = _batch(dtype)
    with jax_precision(dtype):
        x = jnp.asarray(images.transpose(0, 2, 3, 1))
        shapes = jax.eval_shape(LinenNet(dtype).init, jax.random.key(0), x, jnp.asarray(tokens))
        variables = flax_linen.from_torch(shapes, state_dict, LINEN_TO_TORCH)
        back = flax_linen.to_torch(variables, LINEN_TO_TORCH, num_batches_tracked=2)
        out = np.asarray(jax.jit(LinenNet(dtype).apply)(variables, x, jnp.asarray(tokens)))
    _assert_round_trip(net, state_dict, back)
    with torch.no_grad():
        expected = net(*_batch(dtype, torch_side=True)).numpy()
    np.testing.assert_allclose(out, expected, rtol=TOLERANCE[dtype], atol=TOLERANCE[dtype])


def test_linen_layer_kinds_come_from_leaf_names():
    x, tokens = jnp.zeros((1, 8, 8, 1)), jnp.zeros((1, 4), int)
    variables = jax.eval_shape(LinenNet(np.float32).init, jax.random.key(0), x, tokens)
    lines = rules.describe(flax_linen.pairs(variables, LINEN_TO_TORCH)).splitlines()
    for line in ("features.0.weight (4, 1, 3, 3) -> Conv_0.kernel (3, 3, 1, 4): transpose(2, 3, 1, 0)",
                 "features.1.weight (4,) -> BatchNorm_0.scale (4,): copy",
                 "features.1.running_var (4,) -> BatchNorm_0.var (4,): copy",
                 "fc.weight (8, 24) -> Dense_0.kernel (24, 8): transpose(1, 0)",
                 "norm.weight (8,) -> LayerNorm_0.scale (8,): copy",
                 "embed.weight (10, 8) -> Embed_0.embedding (10, 8): copy",
                 "attn.in_proj_bias[8:16] (8,) -> MultiHeadDotProductAttention_0.key.bias (2, 4): reshape(2, 4)",
                 "attn.out_proj.weight (8, 8) -> MultiHeadDotProductAttention_0.out.kernel (2, 4, 8): "
                 "transpose(1, 0), reshape(2, 4, 8)"):
        assert line in lines


def test_nnx_describe_covers_every_torch_key_once():
    pairs = flax_nnx.pairs(_abstract_nnx_net(np.float32), NNX_MODULES)
    assert "features.0.weight (4, 1, 3, 3) -> conv1.kernel (3, 3, 1, 4): transpose(2, 3, 1, 0)" in rules.describe(pairs)
    assert sorted({pair.torch_key for pair in pairs}) == sorted(_state_dict(_torch_net(np.float32)))


@pytest.mark.parametrize("change, modules, message", [
    (lambda s: s.update({"head.weight": np.zeros((2, 8), np.float32)}), NNX_MODULES,
     r"torch keys with no counterpart: \['head.weight'\]; flax keys with no counterpart: \[\]"),
    (lambda s: s.pop("fc.bias"), NNX_MODULES,
     r"torch keys with no counterpart: \[\]; flax keys with no counterpart: \['fc.bias'\]"),
    (lambda s: None, None,
     r"torch keys with no counterpart: \['features.0.bias', 'features.0.weight', .*flax keys with no "
     r"counterpart: \['bn1.bias', 'bn1.mean', 'bn1.scale', 'bn1.var', 'bn2.bias'"),
    (lambda s: s.update({"fc.weight": np.zeros((8, 25), np.float32)}), NNX_MODULES,
     r"fc.weight has shape \(8, 25\), but fc.kernel \(24, 8\) needs \(8, 24\) \(transpose\(1, 0\)\)"),
    (lambda s: s.update({"embed.weight": s["embed.weight"].astype(np.float64)}), NNX_MODULES,
     r"JAX would change dtypes: \['embed.embedding float64 -> float32'\]; turn on 64-bit mode"),
], ids=["extra torch key", "missing torch key", "no module mapping", "shape", "float64 without x64"])
def test_nnx_from_torch_refuses_by_name(change, modules, message):
    state_dict = _state_dict(_torch_net(np.float32))
    change(state_dict)
    with pytest.raises(ValueError, match=message):
        flax_nnx.from_torch(_abstract_nnx_net(np.float32), state_dict, modules)


def test_to_torch_without_the_batchnorm_counters_is_refused_by_name():
    model = flax_nnx.from_torch(_abstract_nnx_net(np.float32), _state_dict(_torch_net(np.float32)), NNX_MODULES)
    with pytest.raises(ValueError, match=r"\['features.1.num_batches_tracked', 'features.5.num_batches_tracked'\]"):
        flax_nnx.to_torch(model, NNX_MODULES)
    assert flax_nnx.to_torch(model, NNX_MODULES, num_batches_tracked=0)["features.5.num_batches_tracked"] == 0


def test_nnx_from_torch_leaves_the_model_passed_unchanged():
    model = nnx.Linear(3, 2, rngs=nnx.Rngs(0))
    before = np.asarray(model.kernel[...])
    weight = np.arange(6, dtype=np.float32).reshape(2, 3)
    ported = flax_nnx.from_torch(model, {"weight": weight, "bias": np.zeros(2, np.float32)})
    assert np.array_equal(np.asarray(model.kernel[...]), before)
    assert np.array_equal(np.asarray(ported.kernel[...]), weight.T)
