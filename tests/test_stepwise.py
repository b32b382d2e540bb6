"""The step-synchronized verdict's own behaviour: what it accepts, reports and refuses.

Its power against porting bugs (each caught, named by stage and parameter) is in
tests/test_stepwise_mutants.py; a long run whose float32 whole runs part while every step
agrees is examples/port_your_model_stepwise.py (tests/test_examples.py) and the case
digits-mlp-synced (tests/test_parity.py).
"""

import dataclasses
import jax
import numpy as np
import pytest
import torch

import funcgrad as fg

RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(12, 4)).astype(np.float32), RNG.integers(0, 3, 12)
BATCHES = [(X[i:i + 4], Y[i:i + 4]) for i in range(0, 12, 4)]
INITIAL = fg.to_state_dict(fg.linear_init(jax.random.key(0), 4, 3))


def torch_setup(dtype, optimizer=torch.optim.SGD, **settings):
    model = torch.nn.Linear(4, 3).to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({name: torch.tensor(value.astype(dtype)) for name, value in INITIAL.items()})
    return model, optimizer(model.parameters(), **({"lr": 0.1, "momentum": 0.9} | settings))


def torch_loss(model, batch):
    return torch.nn.functional.cross_entropy(model(batch[0]), batch[1])


def jax_loss(params, batch):
    return fg.cross_entropy(fg.linear_apply(params, batch[0]), batch[1])


OPTIMIZER = fg.optim.sgd(0.1, momentum=0.9)


def test_a_correct_port_passes_every_step_in_both_dtypes():
    verdicts = fg.assert_same_steps(jax_loss, OPTIMIZER, torch_setup, torch_loss, BATCHES)
    for dtype, verdict in verdicts.items():
        assert verdict.passed and verdict.synced_steps == 3 and verdict.separation is None
        names = {row.name for row in verdict.synced}
        assert {"forward/loss (synced)", "gradient/weight (synced)", "optimizer/new value of bias (synced)",
                "optimizer/trace of weight (synced)"} <= names, names
        assert f"{dtype}: every synced step agrees (3 steps)" in verdict.summary


def test_every_kth_step_is_synced():
    verdicts = fg.compare_steps(jax_loss, OPTIMIZER, torch_setup, torch_loss, BATCHES, dtypes=["float64"], every=2)
    assert verdicts["float64"].synced_steps == 2  # steps 0 and 2


def test_a_wrong_learning_rate_is_named_as_the_optimizers_new_value_at_step_0():
    with pytest.raises(fg.ParityError, match=r"float64, step 0: the optimizer's new value of bias differs "
                                             r"\(also new value of weight\) \(loss and gradients agree\)"):
        fg.assert_same_steps(jax_loss, fg.optim.sgd(0.1001, momentum=0.9), torch_setup, torch_loss, BATCHES,
                             dtypes=["float64"])


@pytest.mark.parametrize("every, batches, dtypes, message", [
    (0, BATCHES, ["float64"], "every must be a positive number of steps, got 0"),
    (1, [], ["float64"], "no batches"),
    (1, BATCHES, [], "no dtype to train in"),
    (1, BATCHES, ["float16"], "no parity rule for float16"),
])
def test_arguments_that_compare_nothing_are_refused(every, batches, dtypes, message):
    with pytest.raises(ValueError, match=message):
        fg.compare_steps(jax_loss, OPTIMIZER, torch_setup, torch_loss, batches, dtypes=dtypes, every=every)


def test_a_torch_setup_without_an_optimizer_is_refused():
    with pytest.raises(ValueError, match=r"torch_setup must return \(model, optimizer\)"):
        fg.compare_steps(jax_loss, OPTIMIZER, lambda dtype: (torch_setup(dtype)[0],), torch_loss, BATCHES)


def test_a_port_expecting_other_parameter_names_is_refused_naming_torchs():
    def renamed(params, batch):
        return fg.cross_entropy(batch[0] @ params["fc"]["weight"].T, batch[1])

    with pytest.raises(ValueError, match=r"cannot take torch's parameters \(weight \(3, 4\), bias \(3,\)\)"):
        fg.compare_steps(renamed, OPTIMIZER, torch_setup, torch_loss, BATCHES, dtypes=["float64"])


def test_an_optimizer_funcgrad_lacks_is_refused_naming_its_state():
    def rmsprop(dtype):
        return torch_setup(dtype, torch.optim.RMSprop, lr=0.01, momentum=0.0)

    with pytest.raises(ValueError, match="square_avg"):
        fg.compare_steps(jax_loss, OPTIMIZER, rmsprop, torch_loss, BATCHES, dtypes=["float64"], every=2)


def test_param_groups_with_different_settings_are_refused():
    def two_groups(dtype):
        model, _ = torch_setup(dtype)
        return model, torch.optim.SGD([{"params": [model.weight], "lr": 0.1},
                                       {"params": [model.bias], "lr": 0.2}], momentum=0.9)

    with pytest.raises(ValueError, match="lr"):
        fg.compare_steps(jax_loss, OPTIMIZER, two_groups, torch_loss, BATCHES, dtypes=["float64"], every=2)


def synced_steps_that_agree(dtype):
    """One synced step on which both sides agree exactly, judged as compare_steps judges it."""
    judge, per_step, _ = fg.stepwise._step_judge(np.dtype(dtype))
    one, exact = {"forward/loss": np.asarray(1.0, dtype)}, {"forward/loss": np.asarray(1.0)}
    judge(0, one, one, *((exact, exact) if dtype == np.float32 else (None, None)))
    return per_step


def torch_whole_run(dtype):
    return {"loss per step": fg.parity.History(np.ones(10, dtype)), "final parameters": {"w": np.ones(2, dtype)}}


def whole_runs_parting_at_step_4(dtype):
    losses = np.ones(10, dtype)
    losses[4:] += 0.5
    return {"loss per step": fg.parity.History(losses), "final parameters": {"w": np.ones(2, dtype)}}


def test_float32_whole_runs_that_part_while_every_step_agrees_pass_and_say_where():
    reference = {"loss per step": fg.parity.History(np.ones(10)), "final parameters": {"w": np.ones(2)}}
    verdict = fg.stepwise._verdict("float32", synced_steps_that_agree(np.float32), torch_whole_run(np.float32),
                                   whole_runs_parting_at_step_4(np.float32), reference, {})
    assert verdict.passed and verdict.separation == 4 and verdict.first_failure is None
    assert verdict.summary.startswith("float32: whole runs separate after step 4: rounding amplified by the model")
    (loss_row,) = [row for row in verdict.whole_run if not row.passed]
    assert loss_row.rule.endswith(fg.stepwise.INFORMATION) and "every synced step agrees" in loss_row.note


def test_float64_whole_runs_that_part_fail_even_where_every_step_agrees():
    verdict = fg.stepwise._verdict("float64", synced_steps_that_agree(np.float64), torch_whole_run(np.float64),
                                   whole_runs_parting_at_step_4(np.float64), None, {})
    assert not verdict.passed
    assert "every synced step agrees, but the whole runs differ" in verdict.summary and "step 4" in verdict.summary


@pytest.mark.parametrize("gradient, hint", [(1e-17, True), (0.3, False)])
def test_float64_final_values_that_part_while_every_loss_agrees_are_information(gradient, hint):
    """A parameter the loss does not depend on (a bias before a BatchNorm) walks apart
    under Adam in float64 too: every step agrees, every step's loss agrees; said, not failed."""
    torch_run = torch_whole_run(np.float64)
    jax_run = torch_run | {"final parameters": {"w": np.array([1.0, 1.0 + 1e-6])}}
    verdict = fg.stepwise._verdict("float64", synced_steps_that_agree(np.float64), torch_run, jax_run, None,
                                   {"w": gradient})
    assert verdict.passed, verdict.summary
    assert "final w differ while every synced step agrees (1 steps) and so does every step's loss" in verdict.summary
    assert ("the gradient of w is zero but for rounding" in verdict.summary) == hint
    (row,) = [row for row in verdict.whole_run if not row.passed]
    assert row.rule.endswith(fg.stepwise.INFORMATION)


def synced_steps_with_failures(num_steps, failing_steps, name="gradient/0.weight", note=""):
    """``num_steps`` judged float32 steps; at ``failing_steps`` quantity ``name`` leaves its band."""
    judge, per_step, _ = fg.stepwise._step_judge(np.dtype(np.float32))
    one, exact = {"forward/loss": np.asarray(1.0, np.float32)}, {"forward/loss": np.asarray(1.0)}
    side = one | {name: np.asarray([1.0], np.float32)} if name != "forward/loss" else one
    reference = {key: np.asarray(value, np.float64) for key, value in side.items()}
    for t in range(num_steps):
        judge(t, side, side, reference, reference)
    for t in failing_steps:
        per_step[t] = (t, [dataclasses.replace(row, passed=False, band_ratio=364.0, note=note)
                           if row.name == name else row for row in per_step[t][1]])
    return per_step


@pytest.mark.parametrize("failing, name, note, excused", [
    ([32], "gradient/0.weight", "", True),                      # one step at a max-pool near-tie
    ([3, 9, 14, 20], "gradient/0.weight", "", False),           # too many steps for chance
    ([32], "forward/loss", "", False),                          # a loss is continuous at a tie
    ([32], "gradient/0.weight", "JAX's and torch's float64 results from the same inputs differ", False),
])
def test_a_lone_float32_gradient_out_of_band_is_a_discontinuity_only_where_float64_agrees(failing, name, note,
                                                                                         excused):
    per_step = synced_steps_with_failures(40, failing, name, note)
    run = torch_whole_run(np.float32)
    reference = {"loss per step": fg.parity.History(np.ones(10)), "final parameters": {"w": np.ones(2)}}
    verdict = fg.stepwise._verdict("float32", per_step, run, run, reference, {})
    assert verdict.passed == excused, verdict.summary
    if excused:
        assert "at 1 synced step(s) (32) only a gradient left its band" in verdict.summary
        (row,) = [row for row in verdict.synced if row.name == f"{name} (synced)"]
        assert row.passed and "discontinuity" in row.note
    else:
        assert f"step {failing[0]}" in verdict.first_failure
