"""``torch.nn``'s layers as ``Layer(init, apply)`` pairs, composed as ``nn.Sequential`` is,
with its ``state_dict`` names, so a torch model's weights and buffers load as they are.

    model = Sequential(Conv2d(1, 8, 5, padding=2), BatchNorm2d(8), ReLU(), MaxPool2d(2),
                       Flatten(), Dropout(0.5), Linear(8 * 14 * 14, 10))
    params, buffers = model.init(jax.random.key(0))          # {"0": {"weight", "bias"}, "1": ...}
    logits, buffers = model.apply(params, buffers, x, train=True, key=step_key)

``init(key, dtype=jnp.float32) -> (params, buffers)``: the parameters (torch's default
initialisation, from a JAX key) and the buffers (BatchNorm's running statistics), each a
pytree keyed by torch's module names; a layer without parameters or buffers holds no key,
as in torch's ``state_dict``. ``apply(params, buffers, x, *, train, key=None) -> (y,
new_buffers)``: ``train`` is required, since torch's modules start in train mode and
JAX functions have no mode to forget; ``key`` draws dropout masks, one per layer from
its name (:func:`funcgrad.layers.layer_key`), the masks
:func:`funcgrad.layers.replay_dropout` makes torch's model use.

Each constructor takes torch's arguments and defaults; the plain functions they call
(``conv2d_apply``, ``batch_norm_apply``, ...) are public too.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcgrad import _checks
from funcgrad.layers import activations, conv, embedding, norm, pool
from funcgrad.layers.base import Layer, layer, stateless, torch_repr
from funcgrad.layers.dropout import dropout, layer_key
from funcgrad.layers.linear import linear_apply, linear_init


def Sequential(*layers: Layer) -> Layer:
    """``nn.Sequential(*layers)``: each layer's params and buffers under its index, ``"0"``,
    ``"1"``..., the layers applied in order, each under ``jax.named_scope`` of its index. A
    params tree that is not what ``init`` builds (a key missing or extra, a shape that
    differs) is refused before anything runs, naming every key as torch's
    ``load_state_dict(strict=True)`` would.

    >>> model = Sequential(Linear(4, 8), ReLU(), Linear(8, 2))
    >>> params, buffers = model.init(jax.random.key(0))
    >>> sorted(fg.to_state_dict(params))
    ['0.bias', '0.weight', '2.bias', '2.weight']
    """
    if not layers or not all(isinstance(child, Layer) for child in layers):
        raise TypeError(f"Sequential: give one or more layers (fg.layers.Linear(...), ...), got {layers!r}")

    def init(key, dtype=jnp.float32):
        params, buffers = {}, {}
        for index, (child, child_key) in enumerate(zip(layers, jax.random.split(key, len(layers)))):
            child_params, child_buffers = child.init(child_key, dtype)
            if child_params:
                params[str(index)] = child_params
            if child_buffers:
                buffers[str(index)] = child_buffers
        return params, buffers

    def apply(params, buffers, x, *, train: bool, key=None, name: str = ""):
        new_buffers = {}
        for index, child in enumerate(layers):
            index = str(index)
            x, child_buffers = child.apply(params.get(index, {}), buffers.get(index, {}), x, train=train,
                                           key=key, name=f"{name}.{index}" if name else index)
            if child_buffers:
                new_buffers[index] = child_buffers
        return x, new_buffers

    lines = [f"({index}): " + repr(child).replace("\n", "\n  ") for index, child in enumerate(layers)]
    return layer(init, apply, "Sequential(\n" + "".join(f"  {line}\n" for line in lines) + ")")


# ---- layers with parameters ----

def Linear(in_features: int, out_features: int, bias: bool = True) -> Layer:
    """``nn.Linear``: ``weight (out, in)``, ``bias (out,)``, U(±1/√in) as torch draws them."""
    return stateless(linear_apply, torch_repr("Linear", in_features=in_features, out_features=out_features,
                                              bias=bias),
                     lambda key, dtype=jnp.float32: (linear_init(key, in_features, out_features, dtype, bias=bias), {}))


def Conv2d(in_channels: int, out_channels: int, kernel_size, stride=1, padding=0, dilation=1, groups: int = 1,
           bias: bool = True) -> Layer:
    """``nn.Conv2d``: NCHW input, ``weight (out, in/groups, kh, kw)``, torch's padding and init."""
    what = "Conv2d"
    pairs = {name: _checks.int_pair(what, name, value) for name, value in
             (("kernel_size", kernel_size), ("stride", stride), ("dilation", dilation))}
    shown = {"padding": padding if isinstance(padding, str) else _checks.int_pair(what, "padding", padding)}
    options = {"kernel_size": pairs["kernel_size"], "stride": pairs["stride"]} | (
        shown if shown["padding"] != (0, 0) else {}) | (
        {"dilation": pairs["dilation"]} if pairs["dilation"] != (1, 1) else {}) | (
        {"groups": groups} if groups != 1 else {}) | ({} if bias else {"bias": False})
    return stateless(
        lambda params, x: conv.conv2d_apply(params, x, stride=stride, padding=padding, dilation=dilation,
                                            groups=groups),
        torch_repr(what, in_channels, out_channels, **options),
        lambda key, dtype=jnp.float32: (conv.conv2d_init(key, in_channels, out_channels, kernel_size,
                                                         groups=groups, bias=bias, dtype=dtype), {}))


def Embedding(num_embeddings: int, embedding_dim: int, padding_idx: int | None = None) -> Layer:
    """``nn.Embedding``: ``weight (num, dim)`` from N(0, 1), the ``padding_idx`` row zero and frozen."""
    options = {} if padding_idx is None else {"padding_idx": padding_idx}
    return stateless(
        lambda params, indices: embedding.embedding_apply(params, indices, padding_idx=padding_idx),
        torch_repr("Embedding", num_embeddings, embedding_dim, **options),
        lambda key, dtype=jnp.float32: (embedding.embedding_init(key, num_embeddings, embedding_dim,
                                                                 padding_idx=padding_idx, dtype=dtype), {}))


def LayerNorm(normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True, bias: bool = True) -> Layer:
    """``nn.LayerNorm``: torch's eps 1e-5 (Flax's is 1e-6)."""
    shape = (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
    return stateless(
        lambda params, x: norm.layer_norm_apply(params, x, shape, eps=eps),
        torch_repr("LayerNorm", shape, eps=eps, elementwise_affine=elementwise_affine, bias=bias),
        lambda key, dtype=jnp.float32: (norm.layer_norm_init(shape, elementwise_affine=elementwise_affine,
                                                             bias=bias, dtype=dtype), {}))


def _batch_norm(kind: str, num_features: int, eps: float, momentum: float | None, affine: bool, bias: bool,
                track_running_stats: bool, spatial_dims: int) -> Layer:
    def init(key, dtype=jnp.float32):
        return norm.batch_norm_init(num_features, affine=affine, bias=bias, track_running_stats=track_running_stats,
                                    dtype=dtype)

    def apply(params, buffers, x, *, train, key=None, name=""):
        # Without running statistics torch normalizes with the batch's in eval mode too.
        return norm.batch_norm_apply(params, buffers, x, train=train or not track_running_stats,
                                     momentum=momentum, eps=eps, spatial_dims=spatial_dims)

    return layer(init, apply, torch_repr(kind, num_features, eps=eps, momentum=momentum, affine=affine,
                                         bias=affine and bias, track_running_stats=track_running_stats))


def BatchNorm1d(num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                bias: bool = True, track_running_stats: bool = True) -> Layer:
    """``nn.BatchNorm1d`` on ``(N, C)`` or ``(N, C, L)``: torch's momentum 0.1 weighs the new
    statistic (Flax's 0.99 the old one); the running variance is the unbiased one."""
    return _batch_norm("BatchNorm1d", num_features, eps, momentum, affine, bias, track_running_stats, spatial_dims=1)


def BatchNorm2d(num_features: int, eps: float = 1e-5, momentum: float | None = 0.1, affine: bool = True,
                bias: bool = True, track_running_stats: bool = True) -> Layer:
    """``nn.BatchNorm2d`` on ``(N, C, H, W)``; as :func:`BatchNorm1d`."""
    return _batch_norm("BatchNorm2d", num_features, eps, momentum, affine, bias, track_running_stats, spatial_dims=2)


# ---- layers without parameters ----

def Dropout(p: float = 0.5) -> Layer:
    """``nn.Dropout(p)``: in train mode its mask comes from ``layer_key(key, name)``."""
    def apply(params, buffers, x, *, train, key=None, name=""):
        if train and p > 0 and key is None:
            raise ValueError(f"Dropout at '{name}' needs a key in train mode: "
                             "model.apply(params, buffers, x, train=True, key=step_key)")
        return dropout(x, p, key=None if key is None else layer_key(key, name), train=train), {}

    dropout(jnp.zeros(()), p, train=False)  # refuses a p outside [0, 1] now, not at the first step
    return layer(lambda key, dtype=jnp.float32: ({}, {}), apply, torch_repr("Dropout", p=p, inplace=False))


def MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False) -> Layer:
    """``nn.MaxPool2d``: the stride defaults to the kernel size (Flax's to 1)."""
    return stateless(lambda x: pool.max_pool2d(x, kernel_size, stride, padding, dilation, ceil_mode),
                     torch_repr("MaxPool2d", kernel_size=kernel_size, stride=kernel_size if stride is None else stride,
                                padding=padding, dilation=dilation, ceil_mode=ceil_mode))


def AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode: bool = False, count_include_pad: bool = True,
              divisor_override: int | None = None) -> Layer:
    """``nn.AvgPool2d``: the stride defaults to the kernel size, padding counts in the divisor."""
    return stateless(lambda x: pool.avg_pool2d(x, kernel_size, stride, padding, ceil_mode, count_include_pad,
                                               divisor_override),
                     torch_repr("AvgPool2d", kernel_size=kernel_size,
                                stride=kernel_size if stride is None else stride, padding=padding))


def Flatten(start_dim: int = 1, end_dim: int = -1) -> Layer:
    """``nn.Flatten``: on NCHW it gives torch's (C, H, W) feature order."""
    return stateless(lambda x: pool.flatten(x, start_dim, end_dim),
                     torch_repr("Flatten", start_dim=start_dim, end_dim=end_dim))


def ReLU() -> Layer:
    """``nn.ReLU``."""
    return stateless(activations.relu, "ReLU()")


def GELU(approximate: str = "none") -> Layer:
    """``nn.GELU``: exact (erf) by default, as torch's; ``jax.nn.gelu`` defaults to tanh."""
    activations.gelu(jnp.zeros(()), approximate=approximate)  # refuses an unknown form now
    return stateless(lambda x: activations.gelu(x, approximate=approximate),
                     torch_repr("GELU", approximate=repr(approximate)))


def LeakyReLU(negative_slope: float = 0.01) -> Layer:
    """``nn.LeakyReLU``."""
    return stateless(lambda x: activations.leaky_relu(x, negative_slope),
                     torch_repr("LeakyReLU", negative_slope=negative_slope))


def ELU(alpha: float = 1.0) -> Layer:
    """``nn.ELU``."""
    return stateless(lambda x: activations.elu(x, alpha), torch_repr("ELU", alpha=alpha))


def SiLU() -> Layer:
    """``nn.SiLU``."""
    return stateless(activations.silu, "SiLU()")


def Sigmoid() -> Layer:
    """``nn.Sigmoid``."""
    return stateless(activations.sigmoid, "Sigmoid()")


def Tanh() -> Layer:
    """``nn.Tanh``."""
    return stateless(activations.tanh, "Tanh()")
