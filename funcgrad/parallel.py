"""Data parallelism on JAX's sharding engine: each batch split over a 1-D device mesh.

The training code does not change, only the shardings of its inputs. Put the data and
the params on every device (replicated), split the batch indices over the mesh's
``"data"`` axis, and the gather inside :func:`funcgrad.fit_minibatches` yields batches
split over the devices. XLA then has each device compute the loss and gradient of its
share and sums the shares across devices, so every device takes the same step: the
replicated params stay replicated. It is ``DistributedDataParallel``'s scheme, planned
by the compiler.

    mesh = data_mesh()
    params, data = replicate((params, data), mesh)
    order = shard_batch_indices(shuffled_batch_indices(key, 60_000, 100), mesh)
    params, opt_state, losses = fit_minibatches(loss_fn, opt, params, opt.init(params), data, order)
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from funcgrad import _checks
from funcgrad.train import Batch, LossFn, Params, fit_minibatches

DATA_AXIS = "data"


def data_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh over ``devices`` (all of ``jax.devices()`` by default), its axis named ``"data"``.

    >>> mesh = data_mesh()
    >>> mesh.axis_names, mesh.size == jax.device_count()
    (('data',), True)
    """
    devices = jax.devices() if devices is None else list(devices)
    if not devices:
        raise ValueError("data_mesh: no devices given; pass at least one, e.g. jax.devices()")
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicate(tree, mesh: Mesh):
    """A full copy of every leaf of ``tree`` on every device of ``mesh``.

    >>> params = replicate(params, data_mesh())
    >>> params["W"].sharding.is_fully_replicated
    True
    """
    _checks.check_float_leaves("replicate", tree, "tree")
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch_indices(batch_indices, mesh: Mesh) -> jax.Array:
    """Split every batch of ``batch_indices`` (``(num_steps, batch_size)``) over the ``"data"`` axis.

    Each device holds ``batch_size / num_devices`` indices of every step, so the batch
    gathered from replicated data inside :func:`funcgrad.fit_minibatches` is split the
    same way. ``batch_size`` must be a multiple of the number of devices.

    >>> order = shard_batch_indices(shuffled_batch_indices(key, 60_000, 100), data_mesh())
    >>> order.sharding.spec
    P(None, 'data')
    """
    shape = np.shape(batch_indices)
    num_devices = mesh.shape[DATA_AXIS]
    if len(shape) != 2:
        raise ValueError(
            f"shard_batch_indices: batch_indices has shape {shape}; it must be "
            f"(num_steps, batch_size), e.g. from shuffled_batch_indices"
        )
    if shape[1] % num_devices:
        raise ValueError(
            f"shard_batch_indices: batch size {shape[1]} does not split evenly over "
            f"{num_devices} devices; use a batch size that is a multiple of {num_devices}, "
            f"or a mesh of fewer devices"
        )
    return jax.device_put(batch_indices, NamedSharding(mesh, PartitionSpec(None, DATA_AXIS)))


def batch_sharding(loss_fn: LossFn, optimizer: optax.GradientTransformation, params: Params,
                   opt_state: optax.OptState, data: Batch, batch_indices: jax.Array) -> Batch:
    """How :func:`funcgrad.fit_minibatches`' compiled loop shards each batch, leaf by leaf.

    Runs the loop's first step, sharded as ``batch_indices`` is, with a copy of
    ``loss_fn`` that asks ``jax.debug.inspect_array_sharding`` for the sharding the
    compiler gave the batch it receives; the trained params are thrown away. Use it to
    check that the batch really is split over the devices.

    >>> images, labels = batch_sharding(loss_fn, opt, params, opt.init(params), data, order)
    >>> images.spec, images.shard_shape((100, 28, 28))  # on 4 devices
    (P('data',), (25, 28, 28))
    """
    _checks.check_float_leaves("batch_sharding", params, "params")
    _checks.check_float_leaves("batch_sharding", data, "data")
    found: dict[int, jax.sharding.Sharding] = {}
    batch_structure = []

    def inspected_loss_fn(params, batch):
        leaves, treedef = jax.tree.flatten(batch)
        batch_structure.append(treedef)
        for i, leaf in enumerate(leaves):
            jax.debug.inspect_array_sharding(leaf, callback=functools.partial(found.__setitem__, i))
        return loss_fn(params, batch)

    first_step = batch_indices[:1]
    if isinstance(batch_indices, jax.Array):
        first_step = jax.device_put(first_step, batch_indices.sharding)
    fit_minibatches(inspected_loss_fn, optimizer, params, opt_state, data, first_step)
    return jax.tree.unflatten(batch_structure[0], [found[i] for i in sorted(found)])
