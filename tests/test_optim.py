"""funcgrad.optim against torch.optim, update by update: each optimizer is fed the same
stream of gradients on both sides for 120 steps, in float64 (to 1e-12) and float32
(assert_close's tolerances). The model-level proof is the torch-optimizers case."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

import funcgrad as fg
from funcgrad.parity import TOLERANCES
from tests.helpers_torch import DTYPES, jax_precision

NUM_STEPS = 120
# (torch.optim class, keyword arguments): funcgrad.optim's function of the same name takes
# the same arguments, lr first.
CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3)),
    ("SGD", dict(lr=0.1, weight_decay=0.05)),
    ("SGD", dict(lr=0.1, momentum=0.5, dampening=0.1, weight_decay=0.01, maximize=True)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("Adam", dict(lr=0.01, maximize=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.2, amsgrad=True)),
]


def funcgrad_optimizer(name, kwargs):
    arguments = dict(kwargs)
    return getattr(fg.optim, name.lower())(arguments.pop("lr"), **arguments)


def gradient_stream(dtype, shape=(7,), seed=0):
    """Gradients that shrink and change sign, so AMSGrad's maximum and momentum both matter."""
    rng = np.random.default_rng(seed)
    scale = np.geomspace(1.0, 1e-3, NUM_STEPS)[:, None]
    return (rng.standard_normal((NUM_STEPS, *shape)) * scale).astype(dtype)


def funcgrad_trajectory(optimizer, initial, grads):
    params, state, out = jnp.asarray(initial), optimizer.init(jnp.asarray(initial)), []
    for grad in grads:
        updates, state = optimizer.update(jnp.asarray(grad), state, params)
        params = optax.apply_updates(params, updates)
        out.append(np.asarray(params))
    return np.stack(out)


def torch_trajectory(optimizer_class, kwargs, initial, grads, scheduler=None):
    param = torch.nn.Parameter(torch.tensor(initial))
    optimizer = optimizer_class([param], **kwargs)
    schedule = scheduler(optimizer) if scheduler else None
    out = []
    for grad in grads:
        param.grad = torch.tensor(grad)
        optimizer.step()
        if schedule:
            schedule.step()
        out.append(param.detach().numpy().copy())
    return np.stack(out)


@DTYPES
@pytest.mark.parametrize("name, kwargs", CONFIGS, ids=[f"{name}{kwargs}" for name, kwargs in CONFIGS])
def test_optimizer_matches_torch_update_by_update(name, kwargs, dtype):
    initial = np.linspace(-1, 1, 7).astype(dtype)
    grads = gradient_stream(dtype)
    with jax_precision(dtype):
        ours = funcgrad_trajectory(funcgrad_optimizer(name, kwargs), initial, grads)
    theirs = torch_trajectory(getattr(torch.optim, name), kwargs, initial, grads)
    rtol, atol = TOLERANCES[np.dtype(dtype)] if dtype == np.float32 else (1e-12, 1e-12)
    np.testing.assert_allclose(ours, theirs, rtol=rtol, atol=atol)


@DTYPES
@pytest.mark.parametrize("name", ["step_lr", "cosine_annealing_lr"])
def test_schedules_match_torch_schedulers_past_t_max(name, dtype):
    schedule, scheduler = {
        "step_lr": (fg.optim.step_lr(0.1, step_size=7, gamma=0.3),
                    lambda opt: torch.optim.lr_scheduler.StepLR(opt, step_size=7, gamma=0.3)),
        "cosine_annealing_lr": (fg.optim.cosine_annealing_lr(0.1, t_max=20, eta_min=1e-3),
                                lambda opt: torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=20, eta_min=1e-3)),
    }[name]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    torch_schedule = scheduler(optimizer)
    rates = []
    for _ in range(NUM_STEPS):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        torch_schedule.step()
    with jax_precision(dtype):
        ours = np.asarray(jax.vmap(schedule)(jnp.arange(NUM_STEPS, dtype=jnp.int32)))
    assert ours.dtype == dtype
    if dtype == np.float64:
        np.testing.assert_allclose(ours, rates, rtol=1e-12, atol=0)
        return
    # torch's rate is a double, cast to float32 when applied. In float32, StepLR's
    # gamma ** k starts from gamma rounded to float32 (up to half an ulp off) and each of
    # its k factors adds that again: k + 2 ulps. The cosine's sine keeps a few ulps.
    decays = np.arange(NUM_STEPS) // 7 if name == "step_lr" else np.zeros(NUM_STEPS)
    allowed = (decays + 4) * np.finfo(np.float32).eps * np.abs(rates)
    assert np.all(np.abs(ours - np.asarray(rates)) <= allowed)


def test_optax_cosine_decay_matches_torch_only_up_to_t_max():
    ours = fg.optim.cosine_annealing_lr(0.1, t_max=20, eta_min=1e-3)
    optax_schedule = optax.cosine_decay_schedule(0.1, decay_steps=20, alpha=1e-3 / 0.1)
    steps = jnp.arange(40)
    np.testing.assert_allclose(optax_schedule(steps[:21]), ours(steps[:21]), rtol=1e-5)
    assert float(ours(30)) > 0.04 > float(optax_schedule(30)) == pytest.approx(1e-3)


def first_adam_step_error(transform):
    """Relative error of Adam's first update in float32 against the same step in float64."""
    grad = np.array([0.3, -2.0, 1e-3], np.float32)

    def direction(dtype):
        with jax_precision(dtype):
            updates, _ = transform.update(jnp.asarray(grad, dtype), transform.init(jnp.zeros(3, dtype)))
            return np.asarray(updates, np.float64)

    exact = direction(np.float64)
    return np.max(np.abs(direction(np.float32) - exact) / np.abs(exact))


def test_optax_adam_bias_correction_cancels_in_float32_and_ours_does_not():
    # 1 - 0.999 ** 1 in float32 is 1 - 0.99900001 = 9.9998713e-4: 1.3e-5 relative. torch
    # computes it in double. This is why funcgrad.optim.adam is not optax.adam.
    assert first_adam_step_error(optax.scale_by_adam()) > 3e-6
    assert first_adam_step_error(fg.optim.scale_by_torch_adam()) < 3e-7


def test_optax_amsgrad_is_not_torchs():
    initial, grads = np.linspace(-1, 1, 7), gradient_stream(np.float64)
    with jax.enable_x64(True):
        optax_run = funcgrad_trajectory(optax.amsgrad(0.01), initial, grads)
    torch_run = torch_trajectory(torch.optim.Adam, dict(lr=0.01, amsgrad=True), initial, grads)
    assert np.max(np.abs(optax_run - torch_run)) > 1e-4


@pytest.mark.parametrize("make, message", [
    (lambda: fg.optim.sgd(0.1, nesterov=True), "Nesterov momentum requires"),
    (lambda: fg.optim.sgd(0.1, momentum=0.9, dampening=0.1, nesterov=True), "zero dampening"),
    (lambda: fg.optim.sgd(0.1, momentum=-0.1), "momentum must be >= 0"),
    (lambda: fg.optim.sgd(-0.1), "learning_rate must be >= 0"),  # torch: "Invalid learning rate"
    (lambda: fg.optim.adam(0.01, weight_decay=-1.0), "weight_decay must be >= 0"),
    (lambda: fg.optim.adam(0.01, betas=(0.9, 1.0)), r"betas\[1\] must lie in"),
    (lambda: fg.optim.step_lr(0.1, step_size=0), "step_size must be a positive int"),
    (lambda: fg.optim.cosine_annealing_lr(0.1, t_max=0), "t_max must be a positive int"),
])
def test_bad_arguments_are_refused_by_name(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_the_same_arguments_give_the_same_optimizer_so_compiled_loops_are_reused():
    assert fg.optim.sgd(0.1, momentum=0.9) is fg.optim.sgd(0.1, momentum=0.9)
    assert fg.optim.adamw(1e-3, amsgrad=True) is not fg.optim.adamw(1e-3)
    assert fg.optim.sgd(0.1) is fg.optim.sgd(learning_rate=0.1, momentum=0.0)  # keyed by the bound arguments
    # Equal to 0.1, but under x64 its update is float64 before it meets float32 params.
    assert fg.optim.sgd(np.float64(0.1)) is not fg.optim.sgd(0.1)
    rate = jnp.float32(0.1)  # unhashable: built afresh, not refused
    assert fg.optim.sgd(rate) is not fg.optim.sgd(rate)
