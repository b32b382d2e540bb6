"""data-parallel-mnist (seed 002, data parallel): mnist-softmax's epoch with every batch
split over the local devices and the params replicated, against the plain single-device
torch twin.

The JAX side is mnist-softmax's own, fed sharded inputs: the data and initial params
replicated, the batch order split over the mesh's ``"data"`` axis. The devices are those
of ``ctx.jax_device``'s platform: all of them when their number divides the batch (100; 20 on the digits stand-in),
else the most that does (8 GPUs run on 5), as the report's ``devices`` says. On one
device the case is mnist-softmax itself, and its ``batch sharding`` reads ``P()``: there
is nothing to split.
"""

import jax
import jax.numpy as jnp
import optax

import funcgrad as fg
from compare.cases import _seed_002 as single_device
from funcgrad.tutorials import mnist_softmax as tutorial

NAME = "data-parallel-mnist"
SOURCE = "002 (data parallel)"
READS_MNIST = True  # real MNIST when a folder is given, else the stand-in digits


def run(ctx):
    # mnist-softmax's set-up: both cases train the same model on the same batches.
    data_name, data, initial, order = single_device.setup(ctx)

    local_devices = jax.devices(ctx.jax_device.platform)
    mesh = fg.data_mesh(local_devices[:devices_for_batch(len(local_devices), order.shape[1])])
    replicated_data, replicated_initial = fg.replicate((data, initial), mesh)
    sharded_order = fg.shard_batch_indices(order, mesh)

    jax_results = single_device.jax_side(replicated_data, replicated_initial, sharded_order)
    torch_results = single_device.torch_side(ctx, data, initial, order)
    info = {
        "data": data_name,
        "devices": mesh.size,
        "local devices": len(local_devices),
        "batch sharding": str(images_sharding(replicated_data, replicated_initial, sharded_order).spec),
        "trained params replicated": all(
            jax_results[name].sharding.is_fully_replicated for name in ("trained W", "trained b")
        ),
    }
    return jax_results, torch_results, info


def devices_for_batch(num_devices: int, batch_size: int) -> int:
    """The most devices, at most ``num_devices``, over which ``batch_size`` splits evenly."""
    return max(n for n in range(1, num_devices + 1) if batch_size % n == 0)


def images_sharding(data, initial, sharded_order) -> jax.sharding.Sharding:
    """The sharding that the compiled epoch gives each batch of images."""
    optimizer = optax.sgd(tutorial.LEARNING_RATE)
    params = fg.from_state_dict(initial)
    train_data = (data["train_images"], data["train_labels"].astype(jnp.int32))
    images, _ = fg.batch_sharding(tutorial.loss_fn, optimizer, params, optimizer.init(params),
                                  train_data, sharded_order)
    return images
