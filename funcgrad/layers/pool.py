"""torch's pooling and flattening functions on NCHW arrays: the layers between a CNN's convolutions."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from funcgrad import _checks


def max_pool2d(
    x: jax.Array, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0, dilation: int | tuple[int, int] = 1, ceil_mode: bool = False,
) -> jax.Array:
    """``torch.nn.functional.max_pool2d``: each window's largest element.

    ``x`` is ``(N, C, H, W)`` or ``(C, H, W)``; ``stride`` defaults to ``kernel_size`` (not
    to 1, as Flax's pools do); ``padding`` (at most half the kernel) holds -inf. The
    gradient of each window goes to its first largest element in row-major order, as
    torch's does: after a ReLU whole windows are zeros, and the gradient must not be
    shared among them (``jnp.max`` shares it) nor land elsewhere than torch's. Only
    non-finite inputs part from torch: a window holding NaN sends its gradient to its first
    NaN (torch's to its last), one of only -inf values to its first element, padding
    included (torch's to its first input element).

    >>> max_pool2d(jnp.ones((2, 8, 28, 28)), 2).shape
    (2, 8, 14, 14)
    """
    what = "max_pool2d"
    x = _check_input(what, x)
    kernel, stride, padding, dilation, out = _geometry(
        what, x.shape, kernel_size, stride, padding, dilation, ceil_mode)
    padded = _pad(x, -jnp.inf, padding, _span(out, kernel, stride, dilation))
    # Each window's elements along a new last axis, in torch's order (row by row), and the
    # first largest taken by argmax. JAX's own gradient of a reduce_window max goes to the
    # first largest in reverse mode, but not in forward mode (jvp, and so hvp), and it has
    # none with dilation: this formulation picks torch's element in every mode.
    (oh, ow), (sh, sw), (dh, dw) = out, stride, dilation
    windows = jnp.stack([
        padded[..., i * dh:i * dh + (oh - 1) * sh + 1:sh, j * dw:j * dw + (ow - 1) * sw + 1:sw]
        for i in range(kernel[0]) for j in range(kernel[1])
    ], axis=-1)
    first = jnp.argmax(windows, axis=-1, keepdims=True)
    return jnp.take_along_axis(windows, first, axis=-1)[..., 0]


def avg_pool2d(
    x: jax.Array, kernel_size: int | tuple[int, int], stride: int | tuple[int, int] | None = None,
    padding: int | tuple[int, int] = 0, ceil_mode: bool = False, count_include_pad: bool = True,
    divisor_override: int | None = None,
) -> jax.Array:
    """``torch.nn.functional.avg_pool2d``: each window's sum over its divisor.

    The divisor is torch's: the window's size clipped to the padded input (so the zero
    padding counts, with ``count_include_pad``, but the overhang ``ceil_mode`` adds past
    it does not), or only the input elements it covers (``count_include_pad=False``), or
    ``divisor_override``.

    >>> avg_pool2d(jnp.ones((2, 8, 28, 28)), 2).shape
    (2, 8, 14, 14)
    """
    what = "avg_pool2d"
    x = _check_input(what, x)
    kernel, stride, padding, _, out = _geometry(what, x.shape, kernel_size, stride, padding, 1, ceil_mode)
    if divisor_override is not None and (
            not isinstance(divisor_override, int) or isinstance(divisor_override, bool) or divisor_override == 0):
        raise ValueError(f"{what}: divisor_override must be a nonzero int or None (as torch's), "
                         f"got {divisor_override!r}")
    padded = _pad(x, 0, padding, _span(out, kernel, stride, (1, 1)))
    sums = lax.reduce_window(padded, np.array(0, x.dtype), lax.add, (1,) * (x.ndim - 2) + kernel,
                             (1,) * (x.ndim - 2) + stride, "VALID")
    if divisor_override is not None:
        return sums / divisor_override
    counts = []
    for size, k, s, p, o in zip(x.shape[-2:], kernel, stride, padding, out):
        start = np.arange(o) * s - p
        end = np.minimum(start + k, size + p)
        counts.append(end - start if count_include_pad else np.minimum(end, size) - np.maximum(start, 0))
    return sums / jnp.asarray(np.outer(*counts), x.dtype)


def adaptive_avg_pool2d(x: jax.Array, output_size: int | tuple[int | None, int | None]) -> jax.Array:
    """``torch.nn.functional.adaptive_avg_pool2d``: average over torch's windows, output
    cell ``i`` of an axis covering ``floor(i * size / out)`` to ``ceil((i + 1) * size / out)``.
    ``None`` in ``output_size`` keeps that axis's size.

    >>> adaptive_avg_pool2d(jnp.ones((2, 8, 7, 7)), 1).shape
    (2, 8, 1, 1)
    """
    what = "adaptive_avg_pool2d"
    x = _check_input(what, x)
    sizes = tuple(output_size) if isinstance(output_size, (tuple, list)) else (output_size, output_size)
    if len(sizes) != 2:
        raise TypeError(f"{what}: output_size must be an int or a pair of ints or None, got {output_size!r}")
    out = _checks.int_pair(what, "output_size", tuple(size if o is None else o for size, o in zip(x.shape[-2:], sizes)))
    _checks.check_positive_int(what, "output_size", out)
    spans = [[(i * size // o, -(-(i + 1) * size // o)) for i in range(o)] for size, o in zip(x.shape[-2:], out)]
    rows = jnp.stack([x[..., a:b, :].sum(axis=-2) for a, b in spans[0]], axis=-2)
    sums = jnp.stack([rows[..., a:b].sum(axis=-1) for a, b in spans[1]], axis=-1)
    heights, widths = (np.array([b - a for a, b in axis_spans]) for axis_spans in spans)
    # Divided by the height, then the width, as torch's kernel does (one rounding each).
    return sums / jnp.asarray(heights[:, None], x.dtype) / jnp.asarray(widths, x.dtype)


def flatten(x: jax.Array, start_dim: int = 1, end_dim: int = -1) -> jax.Array:
    """``torch.flatten(x, start_dim, end_dim)``, with ``nn.Flatten``'s default ``start_dim=1``
    (``torch.flatten``'s is 0). On an NCHW array the features come in torch's (C, H, W)
    order, the order the next ``nn.Linear``'s weight expects: flattening an NHWC array
    instead gives (H, W, C) and silently scrambles that layer's inputs.

    >>> flatten(jnp.ones((2, 8, 7, 7))).shape
    (2, 392)
    """
    x = jnp.asarray(x)
    shape = x.shape or (1,)  # torch flattens a scalar into one element
    dims = []
    for name, dim in (("start_dim", start_dim), ("end_dim", end_dim)):
        if not -len(shape) <= dim < len(shape):
            raise IndexError(f"flatten: {name}={dim} is out of range for x of shape {x.shape} "
                             f"(valid: {-len(shape)}..{len(shape) - 1})")
        dims.append(dim % len(shape))
    start, end = dims
    if start > end:
        raise ValueError(f"flatten: start_dim ({start_dim}) comes after end_dim ({end_dim}) "
                         f"for x of shape {x.shape}")
    return x.reshape(shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:])


def _check_input(what: str, x) -> jax.Array:
    x = jnp.asarray(x)
    _checks.check_float_dtype(what, x.dtype, "x")
    if x.ndim not in (3, 4) or 0 in x.shape[-3:]:
        raise ValueError(f"{what}: x must be a non-empty (N, C, H, W) or unbatched (C, H, W), "
                         f"got shape {x.shape}")
    return x


def _geometry(what, shape, kernel_size, stride, padding, dilation, ceil_mode):
    """The checked (kernel, stride, padding, dilation) pairs and the output's (H, W), torch's way."""
    kernel = _checks.int_pair(what, "kernel_size", kernel_size)
    stride = kernel if stride is None else _checks.int_pair(what, "stride", stride)
    padding, dilation = _checks.int_pair(what, "padding", padding), _checks.int_pair(what, "dilation", dilation)
    for name, value in (("kernel_size", kernel), ("stride", stride), ("dilation", dilation)):
        _checks.check_positive_int(what, name, value)
    if min(padding) < 0 or any(p > k // 2 for p, k in zip(padding, kernel)):
        raise ValueError(f"{what}: padding {padding} must be between 0 and half the kernel "
                         f"size {kernel}, as torch requires")
    out = []
    for size, k, s, p, d in zip(shape[-2:], kernel, stride, padding, dilation):
        # torch's pooling_output_shape: with ceil_mode, a last window that would start in
        # the right padding or beyond is dropped.
        o = (size + 2 * p - d * (k - 1) - 1 + (s - 1 if ceil_mode else 0)) // s + 1
        out.append(o - 1 if ceil_mode and (o - 1) * s >= size + p else o)
    if min(out) < 1:
        padded = tuple(size + 2 * p for size, p in zip(shape[-2:], padding))
        window = tuple(d * (k - 1) + 1 for k, d in zip(kernel, dilation))
        raise ValueError(
            f"{what}: the window ({window[0]} x {window[1]}, dilation counted) is larger than the "
            f"padded input ({padded[0]} x {padded[1]}) of x of shape {shape}: output size "
            f"({out[0]} x {out[1]}) is too small"
        )
    return kernel, stride, padding, dilation, tuple(out)


def _span(out, kernel, stride, dilation) -> tuple[int, int]:
    """How far along each axis, from the padded input's start, the windows reach."""
    return tuple((o - 1) * s + d * (k - 1) + 1 for o, k, s, d in zip(out, kernel, stride, dilation))


def _pad(x, value, padding, span):
    """``padding`` before each spatial axis, and after it whatever makes it ``span`` long:
    the right padding, less the rows no window reaches, plus ``ceil_mode``'s overhang."""
    config = [(0, 0, 0)] * (x.ndim - 2) + [
        (p, reach - size - p, 0) for size, p, reach in zip(x.shape[-2:], padding, span)]
    return lax.pad(x, np.array(value, x.dtype), config)
