"""sweep-iris (seed 000 afternoon, swept): 3 seeds x 4 learning rates of the Iris model at once.

JAX: ``fit_full_batch_sweep``. PyTorch: the model-ensembling recipe of ``torch.func``,
``stack_module_state`` + ``functional_call`` + ``vmap(grad)``, with a per-model SGD step.
2 000 epochs rather than the seed's 10 000: the torch.func loop costs ~1.5 ms a step on
two CPU cores whatever the number of models, so 10 000 would take ~15 s per run. The
rates stay below the edge of stability (near 0.16 here, see examples/sweep_iris.py):
above it the loss oscillates, and last-bit float32 differences are amplified, not damped.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import optax
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad_and_value, stack_module_state, vmap

import funcgrad as fg
from compare.timed import Timed
from compare.cases._linear import LogisticRegression
from funcgrad.parity import Exact, History, Logits
from funcgrad.tutorials import iris_softmax as tutorial

NAME = "sweep-iris"
SOURCE = "000 afternoon (sweep)"
NUM_SEEDS = 3
LEARNING_RATES = (0.001, 0.01, 0.03, 0.1)
NUM_EPOCHS = 2_000


def setup(ctx):
    """Iris, every model's initial weights (drawn once in float32) and its learning rate."""
    iris = fg.iris_first_two_features(ctx.dtype)
    inits = fg.init_many(tutorial.init_params, jax.random.split(ctx.key(9), NUM_SEEDS))
    params, rates = fg.sweep_grid(inits, np.asarray(LEARNING_RATES, ctx.dtype))
    return iris, ctx.cast(fg.to_state_dict(params)), np.asarray(rates)


def run(ctx):
    args = setup(ctx)
    return jax_side(*args), torch_side(ctx, *args)


def timed(ctx) -> Timed:
    """funcgrad's one vmapped run, against the torch twin's (which adds a test pass of 12
    models on 30 rows, a rounding error beside 2 000 steps)."""
    iris, initial, learning_rates = args = setup(ctx)
    batch = (jnp.asarray(iris["x_train"]), jnp.asarray(iris["y_train"], jnp.int32))
    params, rates = fg.from_state_dict(initial), jnp.asarray(learning_rates)
    models = f"{len(learning_rates)} models in one call"
    return Timed(NUM_EPOCHS, {"funcgrad": lambda: fg.fit_full_batch_sweep(tutorial.loss_fn, optax.sgd, params, rates,
                                                                          batch, NUM_EPOCHS),
                              "torch-func": lambda: torch_side(ctx, *args)},
                 {"funcgrad": models, "torch-func": f"{models}: vmap(grad_and_value) over stacked modules"})


def jax_side(iris, initial, learning_rates):
    batch = (jnp.asarray(iris["x_train"]), jnp.asarray(iris["y_train"], jnp.int32))
    params, losses = fg.fit_full_batch_sweep(
        tutorial.loss_fn, optax.sgd, fg.from_state_dict(initial), learning_rates, batch, NUM_EPOCHS
    )
    test_logits = jax.vmap(tutorial.logits, in_axes=(0, None))(params, jnp.asarray(iris["x_test"]))
    correct = jnp.sum(fg.predict_classes(test_logits) == iris["y_test"], axis=1)
    return {
        "loss per epoch": History(losses, step_axis=1),
        "trained weight": params["linear"]["weight"],
        "trained bias": params["linear"]["bias"],
        "test logits": test_logits,
        "test classes": Logits(test_logits.reshape(-1, test_logits.shape[-1])),
        "test accuracy": Exact(np.asarray(correct) / len(iris["y_test"])),
    }


def torch_side(ctx, iris, initial, learning_rates):
    X_train_2d, X_test_2d = ctx.to_torch(iris["x_train"]), ctx.to_torch(iris["x_test"])
    y_train, y_test = ctx.to_torch(iris["y_train"]), ctx.to_torch(iris["y_test"])
    lr = ctx.to_torch(learning_rates)

    models = [LogisticRegression(2, 3).to(ctx.torch_device, ctx.torch_dtype) for _ in lr]
    for i, model in enumerate(models):
        model.load_state_dict({name: ctx.to_torch(value[i]) for name, value in initial.items()})
    params, buffers = stack_module_state(models)
    base_model = copy.deepcopy(models[0]).to("meta")

    def forward(params, buffers, x):
        return functional_call(base_model, (params, buffers), (x,))

    def compute_loss(params, buffers, x, y):
        return F.cross_entropy(forward(params, buffers, x), y)

    grads_and_losses = vmap(grad_and_value(compute_loss), in_dims=(0, 0, None, None))

    losses = []
    for epoch in range(NUM_EPOCHS):
        grads, loss = grads_and_losses(params, buffers, X_train_2d, y_train)
        with torch.no_grad():
            params = {
                name: p - lr.view(-1, *[1] * (p.dim() - 1)) * grads[name]
                for name, p in params.items()
            }
        losses.append(loss)

    with torch.no_grad():
        outputs = vmap(forward, in_dims=(0, 0, None))(params, buffers, X_test_2d)
        predicted = outputs.argmax(dim=2)
        correct = (predicted == y_test).sum(dim=1)
    return {
        "loss per epoch": History(torch.stack(losses, dim=1), step_axis=1),
        "trained weight": params["linear.weight"],
        "trained bias": params["linear.bias"],
        "test logits": outputs,
        "test classes": Logits(outputs.reshape(-1, outputs.shape[-1])),
        "test accuracy": Exact(correct.cpu().numpy() / y_test.size(0)),
    }
