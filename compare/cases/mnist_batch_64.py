"""mnist-batch-64: ``DataLoader(batch_size=64, shuffle=True)`` semantics on MNIST.

``nn.Linear(784, 10)``, cross-entropy, ``SGD(lr=0.1)``, batches of 64 for 2 epochs. 64
does not divide 60 000: each epoch is 937 full batches and a short one of 32 (torch's
``drop_last=False``), 1 876 steps, and each epoch draws a fresh permutation. Both sides
train on the same orders (``funcgrad.loader_batches``); the JAX side runs every epoch in
one compiled loop (``funcgrad.fit_epochs``). Without MNIST the 1 500 stand-in digits make
23 full batches and one of 28 an epoch.
"""

import torch

import funcgrad as fg
from compare.cases import mnist_training

NAME = "mnist-batch-64"
SOURCE = "beyond the seeds (002's model as nn.Linear)"
BATCH_SIZE = 64
NUM_EPOCHS = 2
LEARNING_RATE = 0.1
NUM_CLASSES = 10


def run(ctx):
    data_name, data = ctx.mnist()
    init_key, order_key = ctx.key(64), ctx.key(65)
    num_pixels = data["train_images"][0].size
    initial = ctx.cast(fg.to_state_dict(fg.linear_init(init_key, num_pixels, NUM_CLASSES)))
    batches = fg.loader_batches(order_key, len(data["train_labels"]), BATCH_SIZE, NUM_EPOCHS)

    jax_results = mnist_training.jax_train(fg.linear_apply, fg.from_state_dict(initial), data, batches,
                                           LEARNING_RATE)

    model = torch.nn.Linear(num_pixels, NUM_CLASSES).to(device=ctx.torch_device, dtype=ctx.torch_dtype)
    model.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    datasets = mnist_training.torch_datasets(ctx, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    losses, first_grads = mnist_training.torch_train(model, optimizer, datasets["train"], batches)
    torch_results = mnist_training.training_results(first_grads, losses, model.state_dict()) | (
        mnist_training.torch_test(model, datasets["test"]))
    info = {"data": data_name, "steps per epoch": batches.steps_per_epoch,
            "short batch": int(batches.last.shape[1])}
    return jax_results, torch_results, info
