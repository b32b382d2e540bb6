"""fg.optim.param_groups: one optimizer whose groups have their own settings, as torch's
param_groups (nanoGPT's: weight decay on the parameters of two or more dimensions only),
proven every step against torch, and a torch checkpoint with two groups continued in JAX
and back."""

import jax
import numpy as np
import pytest
import torch

import funcgrad as fg

SIZES = (6, 16, 4)
STEPS, K = 120, 30
RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(STEPS, 8, SIZES[0])).astype(np.float32), RNG.integers(0, SIZES[-1], (STEPS, 8))
INITIAL = fg.to_state_dict(fg.mlp_init(jax.random.key(0), SIZES))
LR, T_MAX = 3e-3, STEPS


def optimizer():
    """nanoGPT's configure_optimizers: decay 0.1 on the >= 2-D parameters, none on the rest."""
    return fg.optim.param_groups(
        fg.optim.adamw, [{"params": lambda name, p: p.ndim >= 2, "weight_decay": 0.1},
                         {"params": lambda name, p: p.ndim < 2, "weight_decay": 0.0}],
        learning_rate=fg.optim.cosine_annealing_lr(LR, t_max=T_MAX), betas=(0.9, 0.99))


def torch_setup(dtype):
    model = torch.nn.Sequential(torch.nn.Linear(*SIZES[:2]), torch.nn.ReLU(), torch.nn.Linear(*SIZES[1:]))
    model = model.to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.tensor(v.astype(dtype)) for k, v in INITIAL.items()})
    decay = [p for p in model.parameters() if p.dim() >= 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                            lr=LR, betas=(0.9, 0.99))
    return model, opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T_MAX)


def torch_loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def jax_loss(params, batch):
    return fg.cross_entropy(fg.mlp_apply(params, batch[0]), batch[1])


def test_param_groups_train_as_torchs_every_step_in_both_dtypes():
    verdicts = fg.assert_same_steps(jax_loss, optimizer(), torch_setup, torch_loss, list(zip(X, Y)))
    for verdict in verdicts.values():
        assert verdict.passed and verdict.synced_steps == STEPS, verdict.summary


def test_a_decay_on_every_parameter_is_caught_at_the_first_step_naming_a_bias():
    everywhere = fg.optim.adamw(fg.optim.cosine_annealing_lr(LR, t_max=T_MAX), betas=(0.9, 0.99), weight_decay=0.1)
    with pytest.raises(fg.ParityError, match=r"float64, step 0: the optimizer's new value of 2.bias differs"):
        fg.assert_same_steps(jax_loss, everywhere, torch_setup, torch_loss, list(zip(X, Y))[:3], dtypes="float64")


def run_torch(model, opt, scheduler, steps):
    for x, y in steps:
        opt.zero_grad()
        torch_loss(model, (torch.tensor(x, dtype=torch.float64), torch.tensor(y))).backward()
        opt.step()
        scheduler.step()
    return {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}


def run_jax(params, opt_state, steps):
    tx = optimizer()
    for x, y in steps:
        params, opt_state, _ = fg.train_step(jax_loss, tx, params, opt_state, (x.astype(np.float64), y))
    return params, opt_state


def test_a_torch_checkpoint_with_two_groups_continues_in_jax_and_back():
    names = fg.optim.torch_param_names(*torch_setup(np.float64)[:2])
    assert names == ["0.weight", "2.weight", "0.bias", "2.bias"]  # the optimizer's order: group by group
    steps = list(zip(X, Y))
    with jax.enable_x64(True):
        # torch -> JAX: K steps in torch, the rest in JAX, against torch's own continuation.
        model, opt, scheduler = torch_setup(np.float64)
        run_torch(model, opt, scheduler, steps[:K])
        params = fg.from_state_dict(model.state_dict())
        opt_state = fg.optim.state_from_torch(optimizer().init(params), opt.state_dict(), names, step=K)
        jax_params, jax_state = run_jax(params, opt_state, steps[K:])
        torch_final = run_torch(model, opt, scheduler, steps[K:])
        for name, value in fg.to_state_dict(jax_params).items():
            np.testing.assert_allclose(value, torch_final[name], rtol=1e-11, atol=1e-13, err_msg=name)
        # JAX -> torch: the same K steps in JAX, the rest in torch, against JAX's continuation.
        params = fg.from_state_dict({k: v.astype(np.float64) for k, v in INITIAL.items()})
        params, opt_state = run_jax(params, optimizer().init(params), steps[:K])
        model, opt, scheduler = torch_setup(np.float64)
        model.load_state_dict({k: torch.tensor(v) for k, v in fg.to_state_dict(params).items()})
        schedule = fg.optim.cosine_annealing_lr(LR, t_max=T_MAX)
        opt.load_state_dict(fg.optim.state_to_torch(opt_state, names, opt.state_dict(), schedule=schedule))
        scheduler.load_state_dict(scheduler.state_dict() | {"last_epoch": K})
        torch_final = run_torch(model, opt, scheduler, steps[K:])
        jax_params, _ = run_jax(params, opt_state, steps[K:])
        for name, value in fg.to_state_dict(jax_params).items():
            np.testing.assert_allclose(value, torch_final[name], rtol=1e-11, atol=1e-13, err_msg=name)
        assert [group["weight_decay"] for group in opt.param_groups] == [0.1, 0.0]


@pytest.mark.parametrize("groups, message", [
    ([{"params": ["0.weight", "2.weight"]}, {"params": ["0.bias", "2.bias", "2.weight"]}],
     r"2.weight is in groups 0, 1"),
    ([{"params": ["0.weight", "2.weight", "0.bias"]}], r"2.bias is in no group"),
    ([{"params": ["0.weight", "2.weight", "0.bias", "2.bias", "3.weight"]}], r"names \['3.weight'\], which are not"),
    ([{"weight_decay": 0.1}], r"group 0 has no 'params'"),
])
def test_a_parameter_in_two_groups_or_none_or_an_unknown_name_is_refused(groups, message):
    params = fg.mlp_init(jax.random.key(0), SIZES)
    with pytest.raises(ValueError, match=message):
        fg.optim.param_groups(fg.optim.adamw, groups).init(params)
