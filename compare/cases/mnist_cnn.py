"""mnist-cnn: a LeNet-style CNN with BatchNorm and dropout, AdamW, batch 64, one epoch.

    nn.Sequential(Conv2d(1, 16, 5, padding=2, bias=False), BatchNorm2d(16), ReLU(), MaxPool2d(2),
                  Conv2d(16, 32, 5, padding=2, bias=False), BatchNorm2d(32), ReLU(), MaxPool2d(2),
                  Flatten(), Dropout(0.5), Linear(32 * 7 * 7, 10))

trained in train mode with ``AdamW`` (torch's defaults: lr 1e-3, weight decay 1e-2) on
shuffled batches of 64 (937 full and the short last one), then tested in eval mode. The
JAX port is the same ``fg.layers.Sequential``, in torch's layout and ``state_dict`` names.
Both sides drop the same units: each step's dropout mask is drawn from that step's key
(carried by the batch) and the torch model's own ``nn.Dropout`` replays it
(``fg.layers.replay_dropout``). Every step is judged from torch's exact state
(``fg.compare_steps``): the loss and the BatchNorm buffers it updates (forward), every
gradient, every AdamW update; then the whole runs, their final weights and buffers, and
the trained models' test logits, classes and accuracy.

The convolutions have no bias, as torch's tuning guide advises before a BatchNorm: the
BatchNorm subtracts it again, so its gradient is zero but for rounding, and AdamW's steps
would follow the rounding, which differs between frameworks (tests/test_stepwise_cnn.py
keeps the biases and shows the verdict saying so).

The full epoch (``python -m compare --case mnist-cnn``) takes minutes on a CPU: XLA:CPU's
convolutions are slow (compare.bench's mnist-cnn row). The test suite runs its first
``TEST_STEPS`` steps (``Context.max_steps``) and tests on the first
``SHORT_RUN_TEST_IMAGES`` test images; without MNIST the stand-in digits (8x8,
two pools to 2x2) train one epoch of 28 steps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from torch import nn

import funcgrad as fg
from compare.cases import _mnist
from compare.timed import TORCH_COMPILE, Timed, torch_compiled

NAME = "mnist-cnn"
SOURCE = "beyond the seeds: a CNN with BatchNorm and dropout, every step synced"
READS_MNIST = True
CHANNELS = (16, 32)
KERNEL, PADDING, POOL, DROPOUT = 5, 2, 2, 0.5
NUM_CLASSES = 10
BATCH_SIZE, NUM_EPOCHS = 64, 1
LEARNING_RATE, WEIGHT_DECAY = 1e-3, 1e-2  # torch.optim.AdamW's defaults
TEST_STEPS = 10  # what the test suite runs (Context.max_steps); the CLI runs the epoch
SHORT_RUN_TEST_IMAGES = 1000  # a short run tests its models on the first 1 000 test images
TEST_BATCH_SIZE = 1000


def jax_model(image_size: tuple[int, int]) -> fg.layers.Layer:
    """The CNN as funcgrad layers, for ``image_size`` (height, width) inputs."""
    L = fg.layers
    c1, c2 = CHANNELS
    return L.Sequential(L.Conv2d(1, c1, KERNEL, padding=PADDING, bias=False), L.BatchNorm2d(c1), L.ReLU(),
                        L.MaxPool2d(POOL),
                        L.Conv2d(c1, c2, KERNEL, padding=PADDING, bias=False), L.BatchNorm2d(c2), L.ReLU(),
                        L.MaxPool2d(POOL),
                        L.Flatten(), L.Dropout(DROPOUT), L.Linear(flat_features(image_size), NUM_CLASSES))


def torch_model(image_size: tuple[int, int]) -> nn.Sequential:
    """The same CNN as torch writes it."""
    c1, c2 = CHANNELS
    return nn.Sequential(nn.Conv2d(1, c1, KERNEL, padding=PADDING, bias=False), nn.BatchNorm2d(c1), nn.ReLU(),
                         nn.MaxPool2d(POOL),
                         nn.Conv2d(c1, c2, KERNEL, padding=PADDING, bias=False), nn.BatchNorm2d(c2), nn.ReLU(),
                         nn.MaxPool2d(POOL),
                         nn.Flatten(), nn.Dropout(DROPOUT), nn.Linear(flat_features(image_size), NUM_CLASSES))


def flat_features(image_size: tuple[int, int]) -> int:
    height, width = image_size
    return CHANNELS[1] * (height // POOL // POOL) * (width // POOL // POOL)


def data_name(ctx) -> str:
    """What the report names as this case's data: real MNIST or its stand-in."""
    return ctx.mnist()[0]


def synced(ctx) -> dict:
    """The arguments of :func:`funcgrad.compare_steps`: the port, the torch original, and
    every step's ``(uint8 images, int64 labels, dropout key data)``."""
    data_name, data = ctx.mnist()
    images, labels = data["train_images"], data["train_labels"].astype(np.int64)
    image_size = images.shape[1:]
    model = jax_model(image_size)
    initial = fg.to_state_dict(*model.init(ctx.key(300)))  # drawn once, in float32
    order = fg.loader_batches(ctx.key(301), len(labels), BATCH_SIZE, NUM_EPOCHS).in_order()[:ctx.max_steps]
    dropout_keys = jax.random.key_data(jax.random.split(ctx.key(302), len(order)))
    batches = [(images[i], labels[i], np.asarray(key)) for i, key in zip(order, dropout_keys)]
    loss_fn = train_loss(model)

    def jax_loss(params, buffers, batch):
        images, labels, key = batch
        return loss_fn(params, buffers, images, labels, jax.random.wrap_key_data(key))

    def torch_setup(dtype):
        return torch_net_and_optimizer(ctx, image_size, initial, dtype)

    def torch_loss(net, batch):
        images, labels, key = batch
        weight = next(net.parameters())
        inputs = images.to(weight.device).to(weight.dtype).div(255).unsqueeze(1)
        with fg.layers.replay_dropout(net, key.numpy()):
            return F.cross_entropy(net(inputs), labels.to(weight.device))

    return {"jax_loss": jax_loss, "jax_optimizer": fg.optim.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY),
            "torch_setup": torch_setup, "torch_loss": torch_loss, "batches": batches, "stateful": True}


def train_loss(model: fg.layers.Layer):
    """``loss(params, buffers, images, labels, key) -> (loss, new_buffers)``: the model in
    train mode on uint8 images, its cross-entropy."""
    def loss(params, buffers, images, labels, key):
        logits, new_buffers = model.apply(params, buffers, pixels(images, jax.tree.leaves(params)[0].dtype),
                                          train=True, key=key)
        return fg.cross_entropy(logits, labels), new_buffers

    return loss


def torch_net_and_optimizer(ctx, image_size, initial: dict, dtype):
    """The torch CNN holding ``initial`` (its floats in ``dtype``) on ``ctx``'s device, and its AdamW."""
    net = torch_model(image_size).to(device=ctx.torch_device, dtype=torch_dtype(dtype))
    net.load_state_dict({name: ctx.to_torch(value.astype(dtype) if value.dtype.kind == "f" else value)
                         for name, value in initial.items()})
    return net, torch.optim.AdamW(net.parameters(), lr=LEARNING_RATE, weight_decay=WEIGHT_DECAY)


def pixels(images: jax.Array, dtype) -> jax.Array:
    """uint8 ``(N, H, W)`` images as ``(N, 1, H, W)`` floats in [0, 1], as ``ToTensor()`` gives them."""
    return (jnp.asarray(images).astype(dtype) / 255)[:, None]


def torch_dtype(dtype) -> torch.dtype:
    return torch.float64 if np.dtype(dtype) == np.float64 else torch.float32


def evaluate(ctx, weights: dict, side: str, follow: dict | None = None) -> dict:
    """A trained model (``weights``: its state_dict) tested in eval mode on the test set,
    by ``side``'s framework: logits, classes, accuracy (``follow``, torch's results, unused)."""
    _, data = ctx.mnist()
    count = None if ctx.max_steps is None else SHORT_RUN_TEST_IMAGES
    images, labels = data["test_images"][:count], data["test_labels"][:count]
    if side == "jax":
        params, buffers = (fg.from_state_dict(ctx.cast(tree)) for tree in fg.split_buffers(weights))
        model = jax_model(images.shape[1:])
        forward = jax.jit(lambda x: model.apply(params, buffers, pixels(x, ctx.dtype), train=False)[0])
        logits = jnp.concatenate([forward(images[i:i + TEST_BATCH_SIZE])
                                  for i in range(0, len(labels), TEST_BATCH_SIZE)])
        correct = int(jnp.sum(fg.predict_classes(logits) == jnp.asarray(labels)))
        return _mnist.test_results(logits, correct / len(labels))
    net = torch_model(images.shape[1:]).to(device=ctx.torch_device, dtype=ctx.torch_dtype).eval()
    net.load_state_dict({name: ctx.to_torch(value) for name, value in ctx.cast(weights).items()})
    with torch.no_grad():
        inputs = ctx.to_torch(images).to(ctx.torch_dtype).div(255).unsqueeze(1)
        logits = torch.cat([net(inputs[i:i + TEST_BATCH_SIZE]) for i in range(0, len(labels), TEST_BATCH_SIZE)])
    correct = (logits.argmax(dim=1).cpu().numpy() == labels).sum().item()
    return _mnist.test_results(logits, correct / len(labels))


# ---- python -m compare.bench: each side's training loop alone ----

BENCH_STEPS = 50  # a call: the epoch's first 50 steps (a full epoch per call would take minutes)


def timed(ctx) -> Timed:
    """funcgrad's training steps (one compiled step, driven from Python as torch's loop is),
    torch eager's and torch.compile's, over the epoch's first ``BENCH_STEPS`` batches, each
    side with its own dropout (no replay: the mask is drawn where each framework draws it)."""
    data_name, data = ctx.mnist()
    images, labels = data["train_images"], data["train_labels"].astype(np.int64)
    image_size = images.shape[1:]
    model = jax_model(image_size)
    params, buffers = ctx.cast(model.init(ctx.key(300)))
    order = fg.loader_batches(ctx.key(301), len(labels), BATCH_SIZE, NUM_EPOCHS).in_order()[:BENCH_STEPS]
    jax_batches = [(jnp.asarray(images[i]), jnp.asarray(labels[i], jnp.int32)) for i in order]
    torch_batches = [(ctx.to_torch(images[i]).to(ctx.torch_dtype).div(255).unsqueeze(1), ctx.to_torch(labels[i]))
                     for i in order]
    optimizer = fg.optim.adamw(LEARNING_RATE, weight_decay=WEIGHT_DECAY)
    step = jax_train_step(model, optimizer)

    def jax_run():
        state = (params, buffers, optimizer.init(params))
        losses = []
        for t, batch in enumerate(jax_batches):
            *state, loss = step(*state, batch, jax.random.fold_in(ctx.key(302), t))
            losses.append(loss)
        return np.asarray(jnp.stack(losses))

    initial = fg.to_state_dict(params, buffers)
    eager, compiled = (torch_net_and_optimizer(ctx, image_size, initial, ctx.dtype) for _ in range(2))
    compiled = (torch_compiled(compiled[0]), compiled[1])
    return Timed(len(order), {"funcgrad": jax_run, "torch-eager": lambda: torch_train(*eager, torch_batches),
                              TORCH_COMPILE: lambda: torch_train(*compiled, torch_batches)},
                 {"funcgrad": f"{data_name}; one jitted step a batch", "torch-eager": "oneDNN convolutions"})


def jax_train_step(model, optimizer):
    """One compiled train-mode step: ``(params, buffers, opt_state, batch, key) -> (params,
    buffers, opt_state, loss)``."""
    loss_fn = train_loss(model)

    @jax.jit
    def step(params, buffers, opt_state, batch, key):
        (loss, new_buffers), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, buffers, *batch, key)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_buffers, opt_state, loss

    return step


def torch_train(net, optimizer, batches):
    """The torch loop, train mode, its own dropout; every step's loss."""
    losses = []
    for inputs, targets in batches:
        optimizer.zero_grad()
        loss = F.cross_entropy(net(inputs), targets)
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses).cpu().numpy()
