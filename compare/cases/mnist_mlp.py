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
from compare.cases import _mnist

NAME = "mnist-mlp"
SOURCE = "beyond the seeds (002's data, a hidden layer)"
READS_MNIST = True  # real MNIST when a folder is given, else the stand-in digits
HIDDEN = 128
NUM_CLASSES = 10
BATCH_SIZE, NUM_EPOCHS = 100, 1
STAND_IN_BATCH_SIZE, STAND_IN_EPOCHS = 20, 10
LEARNING_RATE = 0.1


def setup(ctx):
    """The data, the MLP's initial weights (drawn once in float32) and every epoch's order."""
    data_name, data = ctx.mnist()
    sizes = (data["train_images"][0].size, HIDDEN, NUM_CLASSES)
    initial = ctx.cast(fg.to_state_dict(fg.mlp_init(ctx.key(128), sizes)))
    batch_size, num_epochs = ((BATCH_SIZE, NUM_EPOCHS) if data_name == "MNIST"
                              else (STAND_IN_BATCH_SIZE, STAND_IN_EPOCHS))
    batches = fg.loader_batches(ctx.key(129), len(data["train_labels"]), batch_size, num_epochs)
    return data_name, data, initial, batches



def torch_model(ctx, initial) -> torch.nn.Sequential:
    """The seed-style ``Sequential`` holding ``initial``, in the run's dtype, on its device."""
    num_pixels = initial["0.weight"].shape[1]
    model = torch.nn.Sequential(torch.nn.Linear(num_pixels, HIDDEN), torch.nn.ReLU(),
                                torch.nn.Linear(HIDDEN, NUM_CLASSES))
    model = model.to(device=ctx.torch_device, dtype=ctx.torch_dtype)
    model.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    return model


run, timed = _mnist.case_functions(setup, fg.mlp_apply, torch_model, LEARNING_RATE)
# What a port's own test pays to prove this model: the whole-run and synced checks (compare.bench).
timed_checks, synced_check = _mnist.check_functions(setup, fg.mlp_apply, torch_model, LEARNING_RATE)
