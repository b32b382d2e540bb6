"""mnist-mlp: a hidden layer, ``nn.Sequential(Linear(784, 128), ReLU(), Linear(128, 10))``.

torch's layout and default init (``funcgrad.mlp_init``; the state_dict loads into the
torch model as is), cross-entropy, ``SGD(lr=0.1)``, one epoch of shuffled batches of 100.
The loss is not convex, so float32 runs can part faster than in the linear cases: every
step's loss is held to the error model's band, the test accuracy must be identical.
Without MNIST the stand-in digits (64 pixels) train as mnist-softmax's stand-in does,
batches of 20 for 10 epochs.
"""

import torch

import funcgrad as fg
from compare.cases import mnist_training

NAME = "mnist-mlp"
SOURCE = "beyond the seeds (002's data, a hidden layer)"
HIDDEN = 128
NUM_CLASSES = 10
BATCH_SIZE, NUM_EPOCHS = 100, 1
STAND_IN_BATCH_SIZE, STAND_IN_EPOCHS = 20, 10
LEARNING_RATE = 0.1


def run(ctx):
    data_name, data = ctx.mnist()
    num_pixels = data["train_images"][0].size
    sizes = (num_pixels, HIDDEN, NUM_CLASSES)
    initial = ctx.cast(fg.to_state_dict(fg.mlp_init(ctx.key(128), sizes)))
    batch_size, num_epochs = ((BATCH_SIZE, NUM_EPOCHS) if data_name == "MNIST"
                              else (STAND_IN_BATCH_SIZE, STAND_IN_EPOCHS))
    batches = fg.loader_batches(ctx.key(129), len(data["train_labels"]), batch_size, num_epochs)

    jax_results = mnist_training.jax_train(fg.mlp_apply, fg.from_state_dict(initial), data, batches,
                                           LEARNING_RATE)

    model = torch.nn.Sequential(torch.nn.Linear(num_pixels, HIDDEN), torch.nn.ReLU(),
                                torch.nn.Linear(HIDDEN, NUM_CLASSES))
    model = model.to(device=ctx.torch_device, dtype=ctx.torch_dtype)
    model.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    datasets = mnist_training.torch_datasets(ctx, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=LEARNING_RATE)
    losses, first_grads = mnist_training.torch_train(model, optimizer, datasets["train"], batches)
    torch_results = mnist_training.training_results(first_grads, losses, model.state_dict()) | (
        mnist_training.torch_test(model, datasets["test"]))
    return jax_results, torch_results, {"data": data_name}
