"""What the cases of one ``nn.Linear`` share: the torch layer holding the initial weights,
the gradients at the initial weights, and the timing of a full-batch run (iris-softmax,
linear-regression, binary-logistic)."""

import jax.numpy as jnp
import torch.nn as nn

import funcgrad as fg
from compare.runtime import Timed


def torch_linear(ctx, initial) -> nn.Linear:
    """An ``nn.Linear`` holding ``initial`` (its state_dict), in the run's dtype, on its device."""
    out_features, in_features = initial["weight"].shape
    linear = nn.Linear(in_features, out_features).to(ctx.torch_device, ctx.torch_dtype)
    linear.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    return linear


def grads_at_init(model, criterion, x, y) -> dict:
    """``criterion(model(x), y).backward()`` once, before training: each parameter's ``.grad``."""
    criterion(model(x), y).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def timed_full_batch(ctx, steps: int, train, torch_train, xs, ys, initial) -> Timed:
    """Each side's training loop alone, on inputs already converted: ``train(params, x, y)``
    (the tutorial's) against ``torch_train(linear, x, y)`` (the case's twin), eager and with
    the layer compiled (``compare.bench.torch_compiled``, imported here: the bench imports the cases)."""
    from compare.bench import TORCH_COMPILE, torch_compiled

    params, x, y = fg.from_state_dict(initial), jnp.asarray(xs), jnp.asarray(ys)
    linear, x_t, y_t = torch_linear(ctx, initial), ctx.to_torch(xs), ctx.to_torch(ys)
    compiled = torch_compiled(torch_linear(ctx, initial))
    return Timed(steps, {"funcgrad": lambda: train(params, x, y), "torch-eager": lambda: torch_train(linear, x_t, y_t),
                         TORCH_COMPILE: lambda: torch_train(compiled, x_t, y_t)})
