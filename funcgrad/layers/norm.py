"""``nn.BatchNorm1d``/``2d`` and ``nn.LayerNorm`` as init/apply pairs, their running
statistics an explicit ``state`` that goes in and comes back out.

    params, state = batch_norm_init(16)                                # nn.BatchNorm2d(16)
    y, state = batch_norm_apply(params, state, x, train=True)          # x: (N, 16, H, W)
    y, _ = batch_norm_apply(params, state, x, train=False)             # model.eval()
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from funcgrad import _checks
from funcgrad.types import Params

# The input ranks torch's layers accept, by spatial_dims (None: whichever x has).
_BATCH_NORM_NDIMS = {None: (2, 3, 4), 1: (2, 3), 2: (4,)}
_BATCH_NORM_LAYOUTS = {2: "(N, C)", 3: "(N, C, L)", 4: "(N, C, H, W)"}


def batch_norm_init(
    num_features: int, *, affine: bool = True, bias: bool = True, track_running_stats: bool = True,
    dtype=jnp.float32,
) -> tuple[Params, dict[str, jax.Array]]:
    """``nn.BatchNorm1d/2d(num_features)``'s initial parameters and running statistics.

    ``params`` is ``{"weight": ones, "bias": zeros}`` (no ``bias`` with ``bias=False``, as
    torch 2.13's BatchNorm takes it; empty when ``affine=False``);
    ``state`` is ``{"running_mean": zeros, "running_var": ones, "num_batches_tracked": 0}``
    (empty when ``track_running_stats=False``): together, the module's ``state_dict``.
    ``num_batches_tracked`` is JAX's default integer, int32 unless x64 is on (torch's is
    int64; ``load_state_dict`` converts it).

    >>> params, state = batch_norm_init(3)
    >>> sorted(params), sorted(state)
    (['bias', 'weight'], ['num_batches_tracked', 'running_mean', 'running_var'])
    """
    _checks.check_dtype_argument("batch_norm_init", dtype)
    _checks.check_positive_int("batch_norm_init", "num_features", num_features)
    params = {"weight": jnp.ones(num_features, dtype)} if affine else {}
    if affine and bias:
        params["bias"] = jnp.zeros(num_features, dtype)
    state = {
        "running_mean": jnp.zeros(num_features, dtype),
        "running_var": jnp.ones(num_features, dtype),
        "num_batches_tracked": jnp.zeros((), int),
    } if track_running_stats else {}
    return params, state


def batch_norm_apply(
    params: Params, state: dict[str, jax.Array], x: jax.Array, *, train: bool,
    momentum: float | None = 0.1, eps: float = 1e-5, spatial_dims: int | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """``nn.BatchNorm1d``/``2d``'s forward pass, returning ``(y, new_state)``; channels on axis 1.

    ``train=True`` (``model.train()``) normalizes with the batch's mean and biased variance,
    gradients flowing through both, and, when ``state`` holds running statistics, updates
    them as torch does: ``(1 - momentum) * running + momentum * batch``, the variance
    unbiased (``n / (n - 1)``), ``num_batches_tracked + 1``; ``momentum=None`` is torch's
    cumulative average (``1 / num_batches_tracked``). The new state carries no gradient.
    ``train=False`` (``model.eval()``) normalizes with the running statistics and returns
    ``state`` unchanged. ``momentum`` weighs the new batch, as torch's does; Flax's
    ``BatchNorm(momentum=0.99)`` weighs the old statistic (torch's 0.1 is Flax's 0.9), and
    Flax tracks the biased variance.

    ``spatial_dims``: 1 is ``BatchNorm1d`` (x ``(N, C)`` or ``(N, C, L)``), 2 is
    ``BatchNorm2d`` (``(N, C, H, W)``), None either, by x's rank.

    ``y = (x - mean) / sqrt(var + eps) * weight + bias``; torch's CPU kernel folds this into
    ``x * alpha + (bias - mean * alpha)``, equal in exact arithmetic. The gradient follows
    torch's backward formula and order (a custom JVP rule), and can be differentiated again.

    >>> params, state = batch_norm_init(3)
    >>> y, state = batch_norm_apply(params, state, jnp.arange(24.0).reshape(4, 3, 2), train=True)
    >>> state["num_batches_tracked"]
    Array(1, dtype=int32)
    """
    what = "batch_norm_apply"
    _checks.check_float_leaves(what, params, "params")
    _checks.check_float_leaves(what, state, "state")
    _checks.check_float_leaves(what, x, "x")
    shape = jnp.shape(x)
    _check_batch_norm_input(shape, params, state, spatial_dims)
    reduced = (0, *range(2, len(shape)))
    per_channel = (1, shape[1]) + (1,) * (len(shape) - 2)
    if train:
        count = shape[0] * math.prod(shape[2:])
        if count == 1:
            raise ValueError(
                f"{what}: Expected more than 1 value per channel when training, got input size {shape} "
                f"(torch's message): a batch of one value per channel has no variance; use a larger "
                f"batch, or train=False"
            )
        x_hat, mean, var_sum = _standardize(x, reduced, eps)
        new_state = _updated_running_stats(state, mean.ravel(), var_sum.ravel() / (count - 1), momentum) \
            if state else state
    elif not state:
        raise ValueError(
            f"{what}: eval mode (train=False) normalizes with the running statistics, but state is "
            f"empty (the layer was made with track_running_stats=False). torch's BatchNorm without "
            f"running stats normalizes with the batch's statistics in eval mode too: pass train=True "
            f"for that (it updates no state)"
        )
    else:
        running_mean, running_var = (jax.lax.stop_gradient(state[name]).reshape(per_channel)
                                     for name in ("running_mean", "running_var"))
        scale = 1 / jnp.sqrt(running_var + eps)
        if "weight" in params:
            # One factor, as torch's alpha: the weight's gradient is then sum(g * (x - mean)) * scale,
            # a rounding less per term than sum(g * x_hat).
            scale = scale * params["weight"].reshape(per_channel)
        y = (x - running_mean) * scale
        return (y + params["bias"].reshape(per_channel) if "bias" in params else y), state
    y = x_hat * params["weight"].reshape(per_channel) if "weight" in params else x_hat
    return (y + params["bias"].reshape(per_channel) if "bias" in params else y), new_state


@functools.partial(jax.custom_jvp, nondiff_argnums=(1, 2))
def _standardize(x, axes, eps):
    """``(x - mean) / sqrt(var + eps)`` over ``axes`` (biased variance), with the mean and the
    sum of squared deviations around it (two passes, as torch's kernels).

    torch's CPU kernel sums in double even for float32; a float32 sum of many values carries
    several ulps of its total, so the mean is corrected once by the mean of what remains."""
    rough_mean = jnp.mean(x, axis=axes, keepdims=True)
    mean = rough_mean + jnp.mean(x - rough_mean, axis=axes, keepdims=True)
    centered = x - mean
    var_sum = jnp.sum(centered * centered, axis=axes, keepdims=True)
    count = math.prod(jnp.shape(x)[axis] for axis in axes)
    return centered * (1 / jnp.sqrt(var_sum / count + eps)), mean, var_sum


@_standardize.defjvp
def _standardize_jvp(axes, eps, primals, tangents):
    """The derivative written so that its transpose, the reverse pass, runs in the order of
    torch's hand-written backward, ``(g - mean(g) - x_hat * mean(x_hat * g)) * invstd``.

    Autodiff of the forward pass subtracts ``x_hat``'s part before the mean of ``g``, so its
    terms cancel at ``|mean(g)|`` rather than at ``|g - mean(g)|``: on small batches up to
    ten times torch's float32 error (found by the parity tests). A custom VJP could fix the
    order too, but would refuse forward mode (``fg.hvp``); this rule is ordinary JAX code,
    differentiable again.
    """
    (x,), (dx,) = primals, tangents
    x_hat, mean, var_sum = _standardize(x, axes, eps)
    count = math.prod(jnp.shape(x)[axis] for axis in axes)
    scaled = dx * (1 / jnp.sqrt(var_sum / count + eps))
    # Transposed, these two steps run last-first: the mean of g is taken out before x_hat's part.
    projected = scaled - x_hat * jnp.mean(x_hat * scaled, axis=axes, keepdims=True)
    dx_hat = projected - jnp.mean(projected, axis=axes, keepdims=True)
    d_var_sum = 2 * jnp.sum((x - mean) * dx, axis=axes, keepdims=True)
    return (x_hat, mean, var_sum), (dx_hat, jnp.mean(dx, axis=axes, keepdims=True), d_var_sum)


def _updated_running_stats(state, mean, unbiased_var, momentum) -> dict[str, jax.Array]:
    count = state["num_batches_tracked"] + 1
    factor = 1 / count.astype(mean.dtype) if momentum is None else momentum
    mean, unbiased_var = jax.lax.stop_gradient(mean), jax.lax.stop_gradient(unbiased_var)
    return {
        "running_mean": factor * mean + (1 - factor) * state["running_mean"],
        "running_var": factor * unbiased_var + (1 - factor) * state["running_var"],
        "num_batches_tracked": count,
    }


def _check_batch_norm_input(shape, params, state, spatial_dims) -> None:
    what = "batch_norm_apply"
    if spatial_dims not in _BATCH_NORM_NDIMS:
        raise ValueError(f"{what}: spatial_dims must be 1 (BatchNorm1d), 2 (BatchNorm2d) or None (either, "
                         f"by x's rank), got {spatial_dims!r}")
    ranks = _BATCH_NORM_NDIMS[spatial_dims]
    if len(shape) not in ranks:
        layer = {None: "BatchNorm1d or BatchNorm2d", 1: "BatchNorm1d", 2: "BatchNorm2d"}[spatial_dims]
        expected = " or ".join(f"{rank}-D {_BATCH_NORM_LAYOUTS[rank]}" for rank in ranks)
        raise ValueError(f"{what}: {layer} expects a {expected} input, got a {len(shape)}-D input of "
                         f"shape {shape}")
    for tree, kind, names in ((params, "params", ("weight", "bias")),
                              (state, "state", ("running_mean", "running_var", "num_batches_tracked"))):
        unexpected = sorted(set(tree) - set(names))
        if unexpected:
            raise ValueError(f"{what}: {kind} hold {unexpected}, which BatchNorm has not (its {kind}: {list(names)})")
    if state and set(state) != {"running_mean", "running_var", "num_batches_tracked"}:
        raise ValueError(f"{what}: state must hold running_mean, running_var and num_batches_tracked "
                         f"(or be empty, track_running_stats=False), got {sorted(state)}")
    stats = params.get("weight", state.get("running_mean"))
    if stats is None:
        return  # affine=False without running stats: nothing says how many channels
    if jnp.ndim(stats) != 1:
        raise ValueError(f"{what}: BatchNorm's weight and running statistics are (num_features,), got shape "
                         f"{jnp.shape(stats)}")
    num_features = jnp.shape(stats)[0]
    for name, value in list(params.items()) + list(state.items()):
        expected = () if name == "num_batches_tracked" else (num_features,)
        if jnp.shape(value) != expected:
            raise ValueError(f"{what}: {name} has shape {jnp.shape(value)}, but the layer has "
                             f"num_features={num_features}: it must be {expected}")
    if shape[1] != num_features:
        hint = ""
        if len(shape) == 4 and shape[-1] == num_features:
            hint = (f"; its last axis has {num_features}: it looks like NHWC (channels last), but torch's "
                    f"BatchNorm2d takes NCHW: pass x.transpose(0, 3, 1, 2)")
        raise ValueError(f"{what}: x of shape {shape} has {shape[1]} channels on axis 1 but the layer has "
                         f"num_features={num_features}{hint}")


def layer_norm_init(
    normalized_shape: int | tuple[int, ...], *, elementwise_affine: bool = True, bias: bool = True,
    dtype=jnp.float32,
) -> Params:
    """``nn.LayerNorm(normalized_shape)``'s initial parameters: ``weight`` ones and ``bias``
    zeros of ``normalized_shape`` (no ``bias`` when ``bias=False``; ``{}`` when
    ``elementwise_affine=False``).

    >>> {name: value.shape for name, value in layer_norm_init(8).items()}
    {'weight': (8,), 'bias': (8,)}
    """
    _checks.check_dtype_argument("layer_norm_init", dtype)
    shape = _as_shape(normalized_shape)
    if not elementwise_affine:
        return {}
    params = {"weight": jnp.ones(shape, dtype)}
    if bias:
        params["bias"] = jnp.zeros(shape, dtype)
    return params


def layer_norm_apply(
    params: Params, x: jax.Array, normalized_shape: int | tuple[int, ...], *, eps: float = 1e-5
) -> jax.Array:
    """``nn.LayerNorm(normalized_shape, eps)``'s forward pass: each sample normalized over its
    trailing ``normalized_shape`` dims by their mean and biased variance, then scaled and shifted.

    ``eps`` defaults to torch's 1e-5 (Flax's ``LayerNorm`` defaults to 1e-6). ``y = (x - mean)
    / sqrt(var + eps) * weight + bias``, differentiated as :func:`batch_norm_apply` is.

    >>> params = layer_norm_init(8)
    >>> layer_norm_apply(params, jnp.ones((2, 5, 8)), 8).shape
    (2, 5, 8)
    """
    what = "layer_norm_apply"
    _checks.check_float_leaves(what, params, "params")
    _checks.check_float_leaves(what, x, "x")
    shape = _as_shape(normalized_shape)
    x_shape = jnp.shape(x)
    if len(x_shape) < len(shape) or x_shape[len(x_shape) - len(shape):] != shape:
        raise ValueError(f"{what}: x has shape {x_shape}, whose trailing dims must be normalized_shape "
                         f"{shape}")
    for name, value in params.items():
        if jnp.shape(value) != shape:
            raise ValueError(f"{what}: params[{name!r}] has shape {jnp.shape(value)} but normalized_shape "
                             f"is {shape}")
    axes = tuple(range(len(x_shape) - len(shape), len(x_shape)))
    y = _standardize(x, axes, eps)[0]
    if "weight" in params:
        y = y * params["weight"]
    if "bias" in params:
        y = y + params["bias"]
    return y


def _as_shape(normalized_shape) -> tuple[int, ...]:
    return (normalized_shape,) if isinstance(normalized_shape, int) else tuple(normalized_shape)
