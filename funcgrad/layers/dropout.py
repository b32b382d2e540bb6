"""``nn.Dropout`` as a pure function of a key, and the masks both frameworks can share.

torch draws dropout masks from its global generator and JAX from an explicit key, so no
seed makes the two drop the same units. Here a mask is a function of a key and the
layer's name (torch's module path, e.g. ``"3"`` or ``"classifier.1"``):
:func:`dropout_mask` draws it, :func:`dropout` applies it in JAX, and
:func:`funcgrad.layers.replay_dropout` makes a torch model's own ``nn.Dropout`` modules
apply the same masks, so a model with dropout trains identically on both sides.

    y = dropout(x, 0.5, key=layer_key(step_key, "3"), train=True)
"""

from __future__ import annotations

import functools

import zlib

import jax
import jax.numpy as jnp
import numpy as np

from funcgrad import _checks
from funcgrad.layers.base import uniform


def layer_key(key: jax.Array, name: str) -> jax.Array:
    """The key of the layer at torch's module path ``name``, from a step's key.

    A stable hash of the name (CRC-32), so both frameworks derive the same key from the
    same name, in any process.

    >>> layer_key(jax.random.key(0), "3").shape
    ()
    """
    return jax.random.fold_in(key, zlib.crc32(name.encode()))


def dropout_mask(key: jax.Array, shape: tuple[int, ...], p: float, dtype=jnp.float32) -> jax.Array:
    """The scaled keep-mask of ``nn.Dropout(p)``: ``1/(1-p)`` where a unit is kept (with
    probability ``1-p``), 0 where it is dropped, in ``dtype``.

    The scale is computed once in Python's float64 and rounded to ``dtype``, so a torch
    tensor multiplied by this mask equals the JAX result bit for bit; which units are kept
    does not depend on ``dtype`` or on x64.

    >>> dropout_mask(jax.random.key(0), (2, 3), 0.5)
    Array(...)
    """
    _checks.check_probability("dropout_mask", p)
    _checks.check_dtype_argument("dropout_mask", dtype)
    if p == 1.0:  # torch returns zeros; 1/(1-p) would be inf
        return jnp.zeros(shape, dtype)
    # Drawn in float32 whatever the precision, so that a float32 run and its float64 twin
    # (the error model's reference) drop the same units: jax.random.bernoulli draws in the
    # default float, whose bits differ once x64 is on.
    keep = uniform(key, shape, jnp.float32, 0.0, 1.0) < jnp.float32(1.0 - p)
    return jnp.where(keep, jnp.asarray(1.0 / (1.0 - p), dtype), jnp.zeros((), dtype))


def dropout(x: jax.Array, p: float = 0.5, *, key: jax.Array | None = None, train: bool) -> jax.Array:
    """``nn.Dropout(p)``'s forward pass: in train mode each element is zeroed with
    probability ``p`` and the rest scaled by ``1/(1-p)``; in eval mode ``x`` unchanged.

    ``key`` (required in train mode with ``p > 0``) chooses the mask; give
    :func:`layer_key` of the step's key and the layer's name to share masks with torch.

    >>> dropout(jnp.ones((2, 4)), 0.5, key=jax.random.key(0), train=True)
    Array(...)
    """
    _checks.check_probability("dropout", p)
    _checks.check_float_leaves("dropout", x, "x")
    if not train or p == 0.0:
        return x
    if key is None:
        raise ValueError(f"dropout: train mode with p={p} needs a key (dropout(x, p, key=key, train=True)); "
                         "pass train=False to evaluate")
    return x * dropout_mask(key, jnp.shape(x), p, jnp.result_type(x))


def replay_dropout(model, key):
    """Make a torch model's ``nn.Dropout`` modules drop what funcgrad drops, for one forward pass.

    A context manager: inside it, every ``nn.Dropout`` of ``model`` (at any depth) is
    replaced by a twin that, in train mode, multiplies its input by
    ``dropout_mask(layer_key(key, name), shape, p)`` (``name`` its path in
    ``model.named_modules()``); on exit the originals are put back. The user's model is
    unchanged otherwise, and its other layers run as torch runs them. ``key`` is a JAX key
    or its ``jax.random.key_data`` (as a batch can carry it).

    >>> with replay_dropout(model, jax.random.fold_in(key, step)):
    ...     loss = criterion(model(x), y)
    >>> loss.backward()
    """
    import contextlib

    import torch

    if not isinstance(key, jax.Array) or not jax.dtypes.issubdtype(key.dtype, jax.dtypes.prng_key):
        key = jax.random.wrap_key_data(np.asarray(key, dtype=np.uint32))

    class ReplayDropout(torch.nn.Module):
        """``nn.Dropout(p)`` whose mask is funcgrad's for this layer's name and the step's key."""

        def __init__(self, original: torch.nn.Dropout, name: str):
            super().__init__()
            self.p, self.inplace, self.name = original.p, original.inplace, name
            self.train(original.training)

        def forward(self, x):
            if not self.training or self.p == 0.0:
                return x
            dtype = {torch.float32: np.float32, torch.float64: np.float64}.get(x.dtype)
            if dtype is None:
                raise TypeError(f"replay_dropout: {self.name} got a {x.dtype} input; masks are drawn in "
                                "float32 or float64")
            with jax.enable_x64(dtype == np.float64):
                mask = np.array(_compiled_mask(layer_key(key, self.name), tuple(x.shape), self.p, dtype))
            return x * torch.from_numpy(mask).to(x.device)

    @contextlib.contextmanager
    def replaced():
        originals = [(name, module) for name, module in model.named_modules() if type(module) is torch.nn.Dropout]
        for name, module in originals:
            _set_submodule(model, name, ReplayDropout(module, name))
        try:
            yield model
        finally:
            for name, module in originals:
                _set_submodule(model, name, module)

    return replaced()


# dropout_mask compiled once per shape and dtype: a replayed forward pass draws its masks
# without an eager dispatch per operation (the same draws: the same operations on the same key).
_compiled_mask = functools.partial(jax.jit, static_argnums=(1, 2, 3))(dropout_mask)


def _set_submodule(model, name: str, module) -> None:
    *parents, leaf = name.split(".")
    parent = model
    for part in parents:
        parent = getattr(parent, part)
    setattr(parent, leaf, module)
