"""torch-optimizers: ``torch.optim``'s SGD (momentum, dampening, Nesterov, weight decay,
maximize), Adam and AdamW (weight decay, AMSGrad) and the StepLR and CosineAnnealingLR
schedulers against ``funcgrad.optim``, step by step.

Each configuration trains the same model, ``nn.Linear(2, 3)`` with cross-entropy, on
Iris's first two features (standardised), full batch, for 150 steps, from the same initial
weights; every step's loss, learning rate and parameters are compared. The maximize
configurations climb the negated loss, so they train the same model.

A linear model, because the case proves the optimizers' arithmetic and Adam turns any
gradient that is mostly rounding into a full step of size lr. Both hidden layers tried
do that: with ReLU, a unit whose input sits within rounding of 0 (1.5e-6 at step 145) is
on one side of the kink in one float32 run and on the other in another, and Adam
(weight_decay=0.01) moved a weight 2e-4 off on XLA's SSE4.2 kernels while torch's float32
run stayed on the float64 side; with tanh on raw Iris, saturated units' ``1 - tanh^2``
cancels to a few ulps, and XLA's and torch's tanh differ in those ulps, so Adam's steps
parted by 2.6e-3 from step 3. Neither is rounding growing, and no error model of rounding
bounds them. (mnist-mlp keeps ReLU under plain SGD, which scales such a gradient by lr.)
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F

import funcgrad as fg
from funcgrad.parity import History

NAME = "torch-optimizers"
SOURCE = "beyond the seeds"
NUM_STEPS = 150
NUM_FEATURES, NUM_CLASSES = 2, 3

# (torch.optim class, its keyword arguments, torch scheduler class and arguments or None).
# Both sides are built from the same arguments: funcgrad.optim's function of the class's
# name takes them as torch does (lr first), and its schedule the scheduler's.
CONFIGS = [
    ("SGD", dict(lr=0.1), None),
    ("SGD", dict(lr=0.01, momentum=0.9), None),
    ("SGD", dict(lr=0.01, momentum=0.9, nesterov=True), None),
    ("SGD", dict(lr=0.02, momentum=0.9, dampening=0.5, weight_decay=0.01), None),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.01, maximize=True), None),
    ("Adam", dict(lr=0.01), None),
    ("Adam", dict(lr=0.01, weight_decay=0.01), None),
    ("Adam", dict(lr=0.01, amsgrad=True), None),
    ("Adam", dict(lr=0.01, maximize=True), None),
    ("AdamW", dict(lr=0.01), None),
    ("AdamW", dict(lr=0.01, weight_decay=0.1, amsgrad=True), None),
    ("SGD", dict(lr=0.01, momentum=0.9), ("StepLR", dict(step_size=30, gamma=0.5))),
    # T_max below the run's length: torch's rate climbs back after step 50.
    ("Adam", dict(lr=0.01), ("CosineAnnealingLR", dict(T_max=50, eta_min=1e-4))),
]
SCHEDULES = {"StepLR": fg.optim.step_lr, "CosineAnnealingLR": fg.optim.cosine_annealing_lr}


def label(optimizer: str, kwargs: dict, scheduler) -> str:
    """``Adam(lr=0.01, amsgrad=True) + StepLR(step_size=30, gamma=0.5)``."""
    def call(name, arguments):
        return f"{name}({', '.join(f'{key}={value}' for key, value in arguments.items())})"
    return call(optimizer, kwargs) + (f" + {call(*scheduler)}" if scheduler else "")


def funcgrad_optimizer(optimizer: str, kwargs: dict, scheduler):
    """``fg.optim``'s twin of the configuration, and its schedule (None without a scheduler)."""
    arguments = dict(kwargs)
    rate = arguments.pop("lr")
    schedule = None
    if scheduler:
        name, scheduler_arguments = scheduler
        schedule = SCHEDULES[name](rate, *scheduler_arguments.values())
    return getattr(fg.optim, optimizer.lower())(schedule or rate, **arguments), schedule


def run(ctx):
    iris = fg.iris_first_two_features()
    x = iris["x_train"].astype(np.float64)
    x, y = ctx.cast((x - x.mean(axis=0)) / x.std(axis=0)), iris["y_train"]
    initial = ctx.cast(fg.to_state_dict(fg.linear_init(ctx.key(23), NUM_FEATURES, NUM_CLASSES)))
    jax_results, torch_results = {}, {}
    for config in CONFIGS:
        optimizer, schedule = funcgrad_optimizer(*config)
        sign = -1 if config[1].get("maximize") else 1
        jax_results |= jax_side(label(*config), optimizer, schedule, sign, initial, x, y)
        torch_results |= torch_side(ctx, config, sign, initial, x, y)
    return jax_results, torch_results


def linear_loss(params, batch):
    x, y = batch
    return fg.cross_entropy(fg.linear_apply(params, x), y)


def negated_linear_loss(params, batch):
    return -linear_loss(params, batch)


@functools.partial(jax.jit, static_argnames=("loss_fn", "optimizer"))
def trajectory(loss_fn, optimizer, params, batch, steps):
    """Every step's loss and the parameters after it (flattened in ``state_dict`` order)."""

    def step(carry, _):
        params, opt_state = carry
        params, opt_state, loss = fg.train_step(loss_fn, optimizer, params, opt_state, batch)
        return (params, opt_state), (loss, flat_state(params))

    _, (losses, params_after) = jax.lax.scan(step, (params, optimizer.init(params)), steps)
    return losses, params_after


def flat_state(params) -> jax.Array:
    """The parameters as one vector, in ``state_dict`` order sorted by name."""
    return jnp.concatenate([jnp.ravel(params[name]) for name in sorted(params)])


def jax_side(name, optimizer, schedule, sign, initial, x, y):
    loss_fn = linear_loss if sign > 0 else negated_linear_loss
    batch = (jnp.asarray(x), jnp.asarray(y, jnp.int32))
    losses, params = trajectory(loss_fn, optimizer, fg.from_state_dict(initial), batch, jnp.arange(NUM_STEPS))
    results = {f"{name} / loss per step": History(losses), f"{name} / params per step": History(params)}
    if schedule is not None:
        dtype = np.asarray(x).dtype
        results[f"{name} / lr per step"] = History(schedule(jnp.arange(NUM_STEPS)).astype(dtype))
    return results


def torch_side(ctx, config, sign, initial, x, y):
    model = torch.nn.Linear(NUM_FEATURES, NUM_CLASSES)
    model = model.to(device=ctx.torch_device, dtype=ctx.torch_dtype)
    model.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    inputs, targets = ctx.to_torch(x), ctx.to_torch(y)
    optimizer_name, kwargs, scheduler_config = config
    optimizer = getattr(torch.optim, optimizer_name)(model.parameters(), **kwargs)
    scheduler = None
    if scheduler_config:
        scheduler_name, scheduler_kwargs = scheduler_config
        scheduler = getattr(torch.optim.lr_scheduler, scheduler_name)(optimizer, **scheduler_kwargs)
    losses, params, rates = [], [], []
    for _ in range(NUM_STEPS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.zero_grad()
        loss = sign * F.cross_entropy(model(inputs), targets)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        losses.append(loss.detach())
        state = model.state_dict()
        params.append(torch.cat([state[name].detach().ravel() for name in sorted(state)]))
    name = label(*config)
    results = {f"{name} / loss per step": History(torch.stack(losses)),
               f"{name} / params per step": History(torch.stack(params))}
    if scheduler is not None:
        # torch keeps the rate as a Python float and casts it to the parameters' dtype.
        results[f"{name} / lr per step"] = History(np.asarray(rates, dtype=ctx.dtype))
    return results
