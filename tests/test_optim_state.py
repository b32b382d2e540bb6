"""fg.optim's state to and from torch's ``optimizer.state_dict()``: exact round trips both
ways, and runs that change framework after K updates landing where the unbroken run lands
after M more (float64 to 1e-10; float32 judged by the error model against torch in float64)."""

import copy
import functools

import jax
import numpy as np
import optax
import pytest
import torch

import funcgrad as fg
from funcgrad.parity import compare_results, format_failures
from tests.helpers_torch import DTYPES, jax_precision

K, M = 4, 4  # updates before the switch, and after it
NAMES = ["0.weight", "0.bias", "2.weight", "2.bias"]  # nn.Sequential(Linear, ReLU, Linear)
SIZES = (4, 8, 3)
# torch.optim.lr_scheduler class: (its arguments, fg.optim's schedule from lr and those arguments)
SCHEDULERS = {
    "StepLR": (dict(step_size=3, gamma=0.5), fg.optim.step_lr),
    "CosineAnnealingLR": (dict(T_max=6, eta_min=1e-3),
                          lambda lr, T_max, eta_min: fg.optim.cosine_annealing_lr(lr, T_max, eta_min)),
}
# (torch.optim class, its arguments, scheduler stepped after every update or None)
CONFIGS = [
    ("SGD", dict(lr=0.1), "StepLR"),
    ("SGD", dict(lr=0.1, momentum=0.9), "StepLR"),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True), None),
    ("SGD", dict(lr=0.1, momentum=0.8, dampening=0.3), None),
    ("SGD", dict(lr=0.1, momentum=0.5, weight_decay=0.05), "CosineAnnealingLR"),
    ("Adam", dict(lr=0.01), None),
    ("Adam", dict(lr=0.01, amsgrad=True), "StepLR"),
    ("AdamW", dict(lr=0.01), "CosineAnnealingLR"),
    ("AdamW", dict(lr=0.01, weight_decay=0.2, amsgrad=True), None),
]
EACH_CONFIG = pytest.mark.parametrize("config", CONFIGS, ids=[f"{n}{kw}{s or ''}" for n, kw, s in CONFIGS])
# Continuing a run across frameworks: SGD with momentum under StepLR, a dampened momentum
# (DampenedTraceState's count), AMSGrad (Adam's step and maximum), AdamW under the cosine.
CONTINUED = pytest.mark.parametrize("config", [CONFIGS[i] for i in (1, 4, 6, 7)],
                                    ids=[f"{CONFIGS[i][0]}{CONFIGS[i][2] or ''}" for i in (1, 4, 6, 7)])


@functools.cache
def initial_weights() -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(*SIZES[:2]), torch.nn.ReLU(), torch.nn.Linear(*SIZES[1:]))
    return {name: value.detach().numpy().copy() for name, value in model.state_dict().items()}


@functools.cache
def batches() -> list[tuple[np.ndarray, np.ndarray]]:
    """One (x, y) batch per update, float32 values (so float64 runs see the same inputs)."""
    rng = np.random.default_rng(0)
    return [(rng.standard_normal((16, SIZES[0])).astype(np.float32),
             rng.standard_normal((16, SIZES[-1])).astype(np.float32)) for _ in range(K + M)]


def torch_setup(config, dtype, weights):
    name, kwargs, scheduler = config
    model = torch.nn.Sequential(torch.nn.Linear(*SIZES[:2]), torch.nn.ReLU(), torch.nn.Linear(*SIZES[1:]))
    model.to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({n: torch.tensor(np.asarray(w, dtype)) for n, w in weights.items()})
    optimizer = getattr(torch.optim, name)(model.parameters(), **kwargs)
    schedule = scheduler and getattr(torch.optim.lr_scheduler, scheduler)(optimizer, **SCHEDULERS[scheduler][0])
    return model, optimizer, schedule


def torch_steps(model, optimizer, scheduler, steps):
    """The torch loop over ``steps`` batches; returns the weights it ends with."""
    for x, y in steps:
        optimizer.zero_grad()
        dtype = model[0].weight.dtype
        torch.nn.functional.mse_loss(model(torch.tensor(x, dtype=dtype)), torch.tensor(y, dtype=dtype)).backward()
        optimizer.step()
        if scheduler:
            scheduler.step()
    return {n: value.detach().numpy().copy() for n, value in model.state_dict().items()}


def funcgrad_optimizer(config):
    """fg.optim's twin of the config, and its schedule (None without one)."""
    name, kwargs, scheduler = config
    arguments = dict(kwargs)
    lr = arguments.pop("lr")
    schedule = scheduler and SCHEDULERS[scheduler][1](lr, **SCHEDULERS[scheduler][0])
    return getattr(fg.optim, name.lower())(schedule or lr, **arguments), schedule


def loss_fn(params, batch):
    return fg.mse_loss(fg.mlp_apply(params, batch[0]), batch[1])


def funcgrad_steps(optimizer, params, opt_state, steps):
    # Eager train_step: a compiled loop would compile once per configuration and dtype,
    # longer than these few steps take.
    dtype = params["0"]["weight"].dtype
    for x, y in steps:
        params, opt_state, _ = fg.train_step(loss_fn, optimizer, params, opt_state, (x.astype(dtype), y.astype(dtype)))
    return params, opt_state


@functools.cache
def unbroken_torch_run(index, dtype):
    model, optimizer, scheduler = torch_setup(CONFIGS[index], dtype, initial_weights())
    return torch_steps(model, optimizer, scheduler, batches())


def assert_lands_where_the_unbroken_run_lands(run, unbroken, dtype, config):
    """float64: ``run`` within 1e-10 of ``unbroken``. float32: the error model, ``run``'s
    distance to torch's float64 run within the band of torch's own unbroken float32 run's
    (the band is calibrated by a run known to be good, never by the one judged)."""
    index = CONFIGS.index(config)
    if dtype == np.float32:
        rows = compare_results({"params": run}, {"params": unbroken_torch_run(index, np.float32)}, dtype,
                               reference={"params": unbroken_torch_run(index, np.float64)})
    else:
        rows = compare_results({"params": run}, {"params": unbroken}, dtype)
    assert all(row.passed for row in rows), format_failures(rows)


@DTYPES
@CONTINUED
def test_a_torch_run_continues_in_funcgrad_where_torch_continues(config, dtype):
    model, optimizer, scheduler = torch_setup(config, dtype, initial_weights())
    weights = torch_steps(model, optimizer, scheduler, batches()[:K])
    torch_state = copy.deepcopy(optimizer.state_dict())
    torch_final = torch_steps(model, optimizer, scheduler, batches()[K:])
    with jax_precision(dtype):
        fg_optimizer, _ = funcgrad_optimizer(config)
        params = fg.from_state_dict(weights)
        opt_state = fg.optim.state_from_torch(fg_optimizer.init(params), torch_state, NAMES, K)
        params, _ = funcgrad_steps(fg_optimizer, params, opt_state, batches()[K:])
    assert_lands_where_the_unbroken_run_lands(fg.to_state_dict(params), torch_final, dtype, config)


@DTYPES
@CONTINUED
def test_a_funcgrad_run_continues_in_torch_where_funcgrad_continues(config, dtype):
    with jax_precision(dtype):
        fg_optimizer, schedule = funcgrad_optimizer(config)
        params = fg.from_state_dict({n: w.astype(dtype) for n, w in initial_weights().items()})
        params, opt_state = funcgrad_steps(fg_optimizer, params, fg_optimizer.init(params), batches()[:K])
        fg_final, _ = funcgrad_steps(fg_optimizer, params, opt_state, batches()[K:])
    model, optimizer, scheduler = torch_setup(config, dtype, fg.to_state_dict(params))
    optimizer.load_state_dict(fg.optim.state_to_torch(opt_state, NAMES, optimizer.state_dict(), schedule=schedule))
    if scheduler:
        scheduler.load_state_dict(scheduler.state_dict() | {"last_epoch": K})
    continued = torch_steps(model, optimizer, scheduler, batches()[K:])
    assert_lands_where_the_unbroken_run_lands(continued, fg.to_state_dict(fg_final), dtype, config)


@DTYPES
@EACH_CONFIG
def test_torch_state_comes_back_from_funcgrad_unchanged(config, dtype):
    model, optimizer, scheduler = torch_setup(config, dtype, initial_weights())
    weights = torch_steps(model, optimizer, scheduler, batches()[:K])
    theirs = optimizer.state_dict()
    with jax_precision(dtype):
        fg_optimizer, schedule = funcgrad_optimizer(config)
        ours = fg.optim.state_from_torch(fg_optimizer.init(fg.from_state_dict(weights)), theirs, NAMES, K)
        back = fg.optim.state_to_torch(ours, NAMES, theirs)
        scheduled = fg.optim.state_to_torch(ours, NAMES, theirs, schedule=schedule) if schedule else back
    assert back["param_groups"] == theirs["param_groups"]
    assert {i: sorted(s) for i, s in back["state"].items()} == {i: sorted(s) for i, s in theirs["state"].items()}
    for i, per_param in theirs["state"].items():
        for key, value in per_param.items():
            assert back["state"][i][key].dtype == value.dtype and torch.equal(back["state"][i][key], value), (i, key)
    # The rate torch's scheduler reached after K steps, from fg.optim's schedule.
    assert scheduled["param_groups"][0]["lr"] == pytest.approx(theirs["param_groups"][0]["lr"], rel=1e-14, abs=0)


@DTYPES
@EACH_CONFIG
def test_funcgrad_state_comes_back_from_torch_unchanged(config, dtype):
    with jax_precision(dtype):
        fg_optimizer, _ = funcgrad_optimizer(config)
        params = fg.from_state_dict({n: w.astype(dtype) for n, w in initial_weights().items()})
        params, ours = funcgrad_steps(fg_optimizer, params, fg_optimizer.init(params), batches()[:K])
        _, optimizer, _ = torch_setup(config, dtype, initial_weights())
        theirs = fg.optim.state_to_torch(ours, NAMES, optimizer.state_dict())
        optimizer.load_state_dict(theirs)  # torch accepts it as its own
        back = fg.optim.state_from_torch(fg_optimizer.init(params), optimizer.state_dict(), NAMES, K)
    assert jax.tree.structure(back) == jax.tree.structure(ours)
    for mine, returned in zip(jax.tree.leaves(ours), jax.tree.leaves(back)):
        assert returned.dtype == mine.dtype and np.array_equal(returned, mine)


def torch_state(optimizer_class, steps=K, groups=None, **kwargs):
    """``optimizer_class(model.parameters(), **kwargs).state_dict()`` after ``steps`` updates."""
    model, _, _ = torch_setup(("SGD", dict(lr=0.1), None), np.float32, initial_weights())
    optimizer = optimizer_class(groups(model) if groups else model.parameters(), **kwargs)
    torch_steps(model, optimizer, None, batches()[:steps])
    return optimizer.state_dict()


def momentum_state(**kwargs):
    return torch_state(torch.optim.SGD, lr=0.1, momentum=0.9, **kwargs)


def edited(state_dict, index, key=None, value=None):
    """A copy with parameter ``index``'s ``key`` set to ``value``, or its whole state deleted."""
    state_dict = copy.deepcopy(state_dict)
    if key is None:
        del state_dict["state"][index]
    else:
        state_dict["state"][index][key] = value
    return state_dict


def from_torch(optimizer, torch_state_dict, names=NAMES, step=K):
    return fg.optim.state_from_torch(optimizer.init(fg.from_state_dict(initial_weights())), torch_state_dict, names, step)


def to_torch(optimizer, names, torch_template, **kwargs):
    return fg.optim.state_to_torch(optimizer.init(fg.from_state_dict(initial_weights())), names, torch_template, **kwargs)


SGD, DAMPENED, ADAM = fg.optim.sgd(0.1, momentum=0.9), fg.optim.sgd(0.1, momentum=0.9, dampening=0.1), fg.optim.adam()


def two_learning_rates(model):
    return [{"params": model[0].parameters()}, {"params": model[2].parameters(), "lr": 0.01}]


@pytest.mark.parametrize("convert, message", [
    (lambda: from_torch(SGD, momentum_state(), names=NAMES[:3] + ["2.b"]),
     r"the state has \['2.bias'\] that param_names lacks, param_names has \['2.b'\]"),
    (lambda: from_torch(SGD, edited(momentum_state(), 2, "momentum_buffer", torch.zeros(3, 7))),
     r"momentum_buffer for 2.weight has shape \(3, 7\), but the parameter's is \(3, 8\)"),
    (lambda: from_torch(SGD, torch_state(torch.optim.RMSprop, lr=0.01)),
     r"torch's state holds \['square_avg', 'step'\], which the fg.optim state \(TraceState, EmptyState\) has no place"),
    (lambda: from_torch(ADAM, momentum_state()),
     r"holds \['momentum_buffer'\], which the fg.optim state \(TorchAdamState, EmptyState\)"),
    (lambda: from_torch(ADAM, torch_state(torch.optim.Adam), step=K + 1),
     r"torch's step for 0.weight is 4, but step=5"),
    (lambda: from_torch(ADAM, torch_state(torch.optim.Adam), step=0),
     r"step is 0 but torch holds state"),
    (lambda: from_torch(DAMPENED, edited(momentum_state(dampening=0.1), 1)),
     r"after 4 steps torch holds no \{'0.bias': \['momentum_buffer'\]\}"),
    (lambda: from_torch(optax.chain(optax.scale_by_rms(), optax.scale(-1e-3)), torch_state(torch.optim.Adam)),
     r"holds ScaleByRmsState, which has no torch counterpart"),
    (lambda: to_torch(SGD, NAMES[:2], momentum_state()),
     r"the state has \['2.bias', '2.weight'\] that param_names lacks"),
    (lambda: to_torch(fg.optim.sgd(0.1), NAMES[:2], momentum_state()),
     r"torch's param_groups hold 4 parameters \(indices \[0, 1, 2, 3\]\) but param_names names 2"),
    (lambda: to_torch(SGD, NAMES, momentum_state(), schedule=fg.optim.step_lr(0.1, 3)),
     r"a schedule was passed but the state holds 0 schedule counts"),
], ids=["names", "shape", "rmsprop", "other optimizer", "step", "step 0", "missing buffer",
        "optax.rmsprop's state", "names to torch", "parameter count to torch", "schedule to torch"])
def test_bad_input_is_refused_naming_the_problem(convert, message):
    with pytest.raises(ValueError, match=message):
        convert()


def test_the_state_is_a_copy_that_torchs_next_step_leaves_alone():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

    def torch_step():
        optimizer.zero_grad()
        model(torch.ones(1, 2)).sum().backward()
        optimizer.step()

    torch_step()
    params = fg.from_state_dict({n: p.detach().numpy().copy() for n, p in model.named_parameters()})
    optimizer_fg = fg.optim.sgd(0.1, momentum=0.9)
    state = fg.optim.state_from_torch(optimizer_fg.init(params), optimizer.state_dict(), ["weight", "bias"], 1)
    before = [np.array(leaf) for leaf in jax.tree.leaves(state)]
    torch_step()  # updates torch's momentum buffers in place
    assert all(np.array_equal(a, np.asarray(b)) for a, b in zip(before, jax.tree.leaves(state)))


def test_optax_adams_own_state_holds_torchs_moments_and_step():
    state = from_torch(optax.adam(1e-3), torch_state(torch.optim.Adam))
    adam_state = state[0]
    held = torch_state(torch.optim.Adam)["state"]
    assert int(adam_state.count) == K
    np.testing.assert_array_equal(adam_state.mu["0"]["weight"], held[0]["exp_avg"].numpy())
    np.testing.assert_array_equal(adam_state.nu["2"]["bias"], held[3]["exp_avg_sq"].numpy())


def test_torch_param_groups_with_their_own_rates_convert_per_parameter():
    state = from_torch(SGD, momentum_state(groups=two_learning_rates))
    held = momentum_state(groups=two_learning_rates)["state"]
    np.testing.assert_array_equal(state[0].trace["2"]["weight"], held[2]["momentum_buffer"].numpy())
