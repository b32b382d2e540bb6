"""mnist-batch-64: ``DataLoader(batch_size=64, shuffle=True)`` semantics on MNIST.

``nn.Linear(784, 10)``, cross-entropy, ``SGD(lr=0.1)``, batches of 64 for 2 epochs. 64
does not divide 60 000: each epoch is 937 full batches and a short one of 32 (torch's
``drop_last=False``), 1 876 steps, and each epoch draws a fresh permutation. Both sides
train on the same orders (``funcgrad.loader_batches``); the JAX side runs every epoch in
one compiled loop (``funcgrad.fit_epochs``). Without MNIST the 1 500 stand-in digits make
23 full batches and one of 28 an epoch.
"""


import funcgrad as fg
from compare.cases._linear import torch_linear
from compare.cases import _mnist

NAME = "mnist-batch-64"
SOURCE = "beyond the seeds (002's model as nn.Linear)"
READS_MNIST = True  # real MNIST when a folder is given, else the stand-in digits
BATCH_SIZE = 64
NUM_EPOCHS = 2
LEARNING_RATE = 0.1
NUM_CLASSES = 10


def setup(ctx):
    """The data, nn.Linear's initial weights (drawn once in float32) and both epochs' order."""
    data_name, data = ctx.mnist()
    num_pixels = data["train_images"][0].size
    initial = ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(64), num_pixels, NUM_CLASSES)))
    batches = fg.loader_batches(ctx.key(65), len(data["train_labels"]), BATCH_SIZE, NUM_EPOCHS)
    return data_name, data, initial, batches


run, timed = _mnist.case_functions(setup, fg.linear_apply, torch_linear, LEARNING_RATE)
