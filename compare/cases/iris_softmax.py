"""iris-softmax (seed 000 afternoon): Linear(2, 3), cross-entropy, SGD lr 0.01, 10 000 epochs."""

import jax
import jax.numpy as jnp
import torch
import torch.nn as nn

import funcgrad as fg
from compare.cases._linear import LogisticRegression, grads_at_init, torch_full_batch
from compare.timed import TORCH_COMPILE, Timed, torch_compiled
from funcgrad.parity import Exact, History, Logits
from funcgrad.tutorials import iris_softmax as tutorial

NAME = "iris-softmax"
SOURCE = "000 afternoon"


def setup(ctx):
    """Iris and the initial weights, drawn once in float32."""
    return fg.iris_first_two_features(ctx.dtype), ctx.cast(fg.to_state_dict(tutorial.init_params(ctx.key(4))))


def run(ctx):
    iris, initial = setup(ctx)
    return jax_side(iris, initial), torch_side(ctx, iris, initial)


def timed(ctx) -> Timed:
    """Each side's training loop alone, on inputs already converted; the torch loop also
    with its model compiled."""
    iris, initial = setup(ctx)
    params, x, y = fg.from_state_dict(initial), jnp.asarray(iris["x_train"]), jnp.asarray(iris["y_train"], jnp.int32)
    model, x_t, y_t = torch_model(ctx, initial), ctx.to_torch(iris["x_train"]), ctx.to_torch(iris["y_train"])
    compiled = torch_compiled(torch_model(ctx, initial))
    return Timed(tutorial.NUM_EPOCHS, {"funcgrad": lambda: tutorial.train(params, x, y),
                                       "torch-eager": lambda: torch_train(model, x_t, y_t),
                                       TORCH_COMPILE: lambda: torch_train(compiled, x_t, y_t)})


def jax_side(iris, initial):
    params = fg.from_state_dict(initial)
    batch = (jnp.asarray(iris["x_train"]), jnp.asarray(iris["y_train"], jnp.int32))
    grads = jax.grad(tutorial.loss_fn)(params, batch)
    params, losses = tutorial.train(params, iris["x_train"], iris["y_train"])
    test_logits = tutorial.logits(params, jnp.asarray(iris["x_test"]))
    correct = int(jnp.sum(fg.predict_classes(test_logits) == iris["y_test"]))
    return {
        "weight grad at init": grads["linear"]["weight"],
        "bias grad at init": grads["linear"]["bias"],
        "loss per epoch": History(losses),
        "trained weight": params["linear"]["weight"],
        "trained bias": params["linear"]["bias"],
        "test logits": test_logits,
        "test classes": Logits(test_logits),
        "test accuracy": Exact(correct / len(iris["y_test"])),
    }


def torch_model(ctx, initial) -> LogisticRegression:
    model = LogisticRegression(2, 3).to(ctx.torch_device, ctx.torch_dtype)
    model.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    return model


def torch_train(model, X_train_2d, y_train) -> torch.Tensor:
    """The seed's loop: forward, cross-entropy, zero_grad, backward, step, every epoch; the losses."""
    return torch_full_batch(model, nn.CrossEntropyLoss(), X_train_2d, y_train, tutorial.LEARNING_RATE,
                            tutorial.NUM_EPOCHS)


def torch_side(ctx, iris, initial):
    X_train_2d, X_test_2d = ctx.to_torch(iris["x_train"]), ctx.to_torch(iris["x_test"])
    y_train, y_test = ctx.to_torch(iris["y_train"]), ctx.to_torch(iris["y_test"])

    model = torch_model(ctx, initial)
    grads = grads_at_init(model, nn.CrossEntropyLoss(), X_train_2d, y_train)
    losses = torch_train(model, X_train_2d, y_train)

    with torch.no_grad():
        outputs = model(X_test_2d)
        _, predicted = torch.max(outputs.data, 1)
        correct = (predicted == y_test).sum().item()
    return {
        "weight grad at init": grads["linear.weight"],
        "bias grad at init": grads["linear.bias"],
        "loss per epoch": History(losses),
        "trained weight": model.linear.weight,
        "trained bias": model.linear.bias,
        "test logits": outputs,
        "test classes": Logits(outputs),
        "test accuracy": Exact(correct / y_test.size(0)),
    }
