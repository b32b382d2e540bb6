"""``nn.Conv2d`` as an init/apply pair, in torch's NCHW layout with torch's defaults."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from funcgrad import _checks
from funcgrad.layers.base import uniform_fan_in
from funcgrad.types import Params


def conv2d_init(
    key: jax.Array, in_channels: int, out_channels: int, kernel_size: int | tuple[int, int], *,
    groups: int = 1, bias: bool = True, dtype=jnp.float32,
) -> Params:
    """Draw ``nn.Conv2d(in_channels, out_channels, kernel_size, groups=groups, bias=bias)``'s
    default initial parameters.

    torch's layout (``weight`` is ``(out, in / groups, kh, kw)``, ``bias`` is ``(out,)``;
    no ``bias`` key when ``bias=False``) and distribution: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    for both, ``fan_in = in / groups * kh * kw``, as torch's ``kaiming_uniform_(a=sqrt(5))``.
    The draws come from a JAX key, so they are not torch's draws.

    >>> params = conv2d_init(jax.random.key(0), 3, 8, 5)
    >>> params["weight"].shape, params["bias"].shape
    ((8, 3, 5, 5), (8,))
    """
    what = "conv2d_init"
    _checks.check_dtype_argument(what, dtype)
    kh, kw = _checks.int_pair(what, "kernel_size", kernel_size)
    for name, value in (("in_channels", in_channels), ("out_channels", out_channels), ("groups", groups),
                        ("kernel_size", (kh, kw))):
        _checks.check_positive_int(what, name, value)
    if in_channels % groups or out_channels % groups:
        raise ValueError(
            f"{what}: in_channels ({in_channels}) and out_channels ({out_channels}) must both be "
            f"divisible by groups ({groups})"
        )
    fan_in = in_channels // groups * kh * kw
    weight_key, bias_key = jax.random.split(key)
    params = {"weight": uniform_fan_in(weight_key, (out_channels, in_channels // groups, kh, kw), fan_in, dtype)}
    if bias:
        params["bias"] = uniform_fan_in(bias_key, (out_channels,), fan_in, dtype)
    return params


def conv2d_apply(
    params: Params, x: jax.Array, *, stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | str = 0, dilation: int | tuple[int, int] = 1, groups: int = 1,
) -> jax.Array:
    """``torch.nn.functional.conv2d(x, weight, bias, stride, padding, dilation, groups)``.

    ``x`` is ``(N, C, H, W)``, or unbatched ``(C, H, W)`` as torch allows. ``padding`` is an
    int, an ``(h, w)`` pair, ``"valid"`` (none) or ``"same"`` (stride 1 only; as torch, a
    total of ``dilation * (kernel - 1)`` zeros per axis, the odd one at the bottom/right).
    Zero padding only (torch's ``padding_mode="zeros"``).

    >>> params = conv2d_init(jax.random.key(0), 3, 8, 5)
    >>> conv2d_apply(params, jnp.ones((2, 3, 28, 28)), padding="same").shape
    (2, 8, 28, 28)
    """
    what = "conv2d_apply"
    _checks.check_float_leaves(what, params, "params")
    x = jnp.asarray(x)
    _checks.check_float_dtype(what, x.dtype, "x")
    weight = params["weight"]
    if x.dtype != weight.dtype:
        raise TypeError(f"{what}: x has dtype {x.dtype} but weight has dtype {weight.dtype}; "
                        f"torch refuses mixed dtypes too: cast x with x.astype(weight.dtype)")
    if x.ndim not in (3, 4):
        raise ValueError(f"{what}: x must be (N, C, H, W) or unbatched (C, H, W), got shape {x.shape}")
    stride = _checks.int_pair(what, "stride", stride)
    dilation = _checks.int_pair(what, "dilation", dilation)
    for name, value in (("stride", stride), ("dilation", dilation), ("groups", groups)):
        _checks.check_positive_int(what, name, value)
    _check_weight_and_input(what, weight, x, groups)
    if set(params) - {"weight", "bias"}:
        raise ValueError(f"{what}: params must hold 'weight' and optionally 'bias' (nn.Conv2d's state_dict), "
                         f"got {sorted(params)}")
    if "bias" in params and jnp.shape(params["bias"]) != weight.shape[:1]:
        raise ValueError(f"{what}: bias has shape {jnp.shape(params['bias'])} but weight {weight.shape} has "
                         f"{weight.shape[0]} output channels: bias must be ({weight.shape[0]},)")
    kernel = weight.shape[2:]
    padding_pairs = _padding_pairs(what, padding, kernel, stride, dilation)
    padded = tuple(size + lo + hi for size, (lo, hi) in zip(x.shape[-2:], padding_pairs))
    dilated = tuple(d * (k - 1) + 1 for d, k in zip(dilation, kernel))
    if any(p < k for p, k in zip(padded, dilated)):
        raise ValueError(
            f"{what}: padded input size per channel ({padded[0]} x {padded[1]}) is smaller than the "
            f"kernel ({dilated[0]} x {dilated[1]}, dilation {dilation} counted): the kernel can't be "
            f"greater than the input; pad more or use a smaller kernel"
        )
    y = _conv(x if x.ndim == 4 else x[None], weight, stride, padding_pairs, dilation, groups)
    y = y if x.ndim == 4 else y[0]
    return y + params["bias"][:, None, None] if "bias" in params else y


def _conv(x, weight, stride, padding_pairs, dilation, groups):
    """The convolution itself, NCHW input and OIHW weight, no bias (one place to swap it).

    At stride 1 the convolution pads, which XLA:CPU runs as one kernel: mnist-cnn's step
    took 26.6 ms against 36.4 with the zeros padded apart (interleaved rounds on the 2-core
    EPYC, 2026-12-03). A strided convolution's zeros are padded before it: with its own
    padding, jaxlib 0.10.2's XLA aborts the whole process (a failed check in its algebraic
    simplifier) compiling the input gradient of some strided convolutions, e.g. x
    (1, 1, 6, 5), weight (1, 1, 2, 4), stride 2, padding (1, 0), eagerly and under jit alike
    (47 of 246 such shapes; none once padded apart).
    """
    if tuple(stride) != (1, 1):
        x, padding_pairs = jnp.pad(x, ((0, 0), (0, 0), *padding_pairs)), "VALID"
    return jax.lax.conv_general_dilated(
        x, weight, window_strides=stride, padding=padding_pairs, rhs_dilation=dilation,
        dimension_numbers=("NCHW", "OIHW", "NCHW"), feature_group_count=groups,
    )


def _check_weight_and_input(what, weight, x, groups) -> None:
    if weight.ndim != 4:
        raise ValueError(f"{what}: weight must be (out, in / groups, kh, kw), got shape {weight.shape}")
    if weight.shape[0] % groups:
        raise ValueError(f"{what}: weight of shape {weight.shape} has {weight.shape[0]} output channels, "
                         f"not divisible by groups={groups}")
    expected = weight.shape[1] * groups
    if x.shape[-3] != expected:
        layouts = ("NHWC", "NCHW", "(0, 3, 1, 2)") if x.ndim == 4 else ("HWC", "CHW", "(2, 0, 1)")
        hint = (f"; x looks like {layouts[0]}; torch's layout is {layouts[1]}: x.transpose{layouts[2]}"
                if x.shape[-1] == expected else "")
        raise ValueError(
            f"{what}: x of shape {x.shape} has {x.shape[-3]} channels, but weight of shape "
            f"{weight.shape} with groups={groups} expects {expected} (the C of (N, C, H, W)){hint}"
        )


def _padding_pairs(what, padding, kernel, stride, dilation) -> tuple[tuple[int, int], ...]:
    """torch's ``padding`` argument as ``((top, bottom), (left, right))``."""
    if isinstance(padding, str):
        if padding == "valid":
            return ((0, 0), (0, 0))
        if padding != "same":
            raise ValueError(f"{what}: invalid padding string {padding!r}; torch's are 'valid' and 'same'")
        if stride != (1, 1):
            raise ValueError(f"{what}: padding='same' is not supported for strided convolutions "
                             f"(stride {stride}), as in torch; give the padding as numbers")
        totals = [d * (k - 1) for d, k in zip(dilation, kernel)]
        return tuple((total // 2, total - total // 2) for total in totals)
    pads = _checks.int_pair(what, "padding", padding)
    if min(pads) < 0:
        raise ValueError(f"{what}: negative padding {padding} is not supported")
    return tuple((p, p) for p in pads)

