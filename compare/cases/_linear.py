"""What the cases of one ``nn.Linear`` share (iris-softmax, linear-regression,
binary-logistic, sweep-iris, mnist-batch-64): the torch layer holding the initial weights,
the seeds' eager loop, the gradients at the initial weights, and the timing of a
full-batch run.

    losses = torch_full_batch(model, nn.MSELoss(), xs, ys, learning_rate=0.1, num_steps=300)
"""

import jax.numpy as jnp
import torch
import torch.nn as nn
import torch.optim as optim

import funcgrad as fg
from compare.timed import TORCH_COMPILE, Timed, torch_compiled


class LogisticRegression(nn.Module):
    """Seed 000's model: one ``nn.Linear`` under the name ``linear``."""

    def __init__(self, input_dim, output_dim):
        super(LogisticRegression, self).__init__()
        self.linear = nn.Linear(input_dim, output_dim)

    def forward(self, x):
        return self.linear(x)


def torch_linear(ctx, initial) -> nn.Linear:
    """An ``nn.Linear`` holding ``initial`` (its state_dict), in the run's dtype, on its device."""
    out_features, in_features = initial["weight"].shape
    linear = nn.Linear(in_features, out_features).to(ctx.torch_device, ctx.torch_dtype)
    linear.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    return linear


def torch_full_batch(model, criterion, xs, ys, learning_rate: float, num_steps: int) -> torch.Tensor:
    """The seeds' loop: forward, loss, zero_grad, backward, SGD step, every step on the
    whole batch; every step's loss."""
    optimizer = optim.SGD(model.parameters(), lr=learning_rate)
    losses = []
    for epoch in range(num_steps):
        outputs = model(xs)
        loss = criterion(outputs, ys)

        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    return torch.stack(losses)


def grads_at_init(model, criterion, x, y) -> dict:
    """``criterion(model(x), y).backward()`` once, before training: each parameter's ``.grad``."""
    criterion(model(x), y).backward()
    return {name: p.grad.clone() for name, p in model.named_parameters()}


def timed_full_batch(ctx, steps: int, train, torch_train, xs, ys, initial) -> Timed:
    """Each side's training loop alone, on inputs already converted: ``train(params, x, y)``
    (the tutorial's) against ``torch_train(linear, x, y)`` (the case's twin), eager and with
    the layer compiled."""
    params, x, y = fg.from_state_dict(initial), jnp.asarray(xs), jnp.asarray(ys)
    linear, x_t, y_t = torch_linear(ctx, initial), ctx.to_torch(xs), ctx.to_torch(ys)
    compiled = torch_compiled(torch_linear(ctx, initial))
    return Timed(steps, {"funcgrad": lambda: train(params, x, y), "torch-eager": lambda: torch_train(linear, x_t, y_t),
                         TORCH_COMPILE: lambda: torch_train(compiled, x_t, y_t)})
