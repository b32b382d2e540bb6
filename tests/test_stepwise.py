"""The step-synchronized verdict's own behaviour: what it accepts, reports and refuses.

Its power against porting bugs (each caught, named by stage and parameter) is in
tests/test_stepwise_mutants.py; a long run whose float32 whole runs part while every step
agrees is examples/port_your_model_stepwise.py (tests/test_examples.py) and the case
digits-mlp-synced (tests/test_parity.py).
"""

import jax
import numpy as np
import optax
import pytest
import torch

import funcgrad as fg
from funcgrad.parity.quantities import StepJudge
from funcgrad.parity.steps import _verdict as verdict_of

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


def test_the_floor_runs_every_step_a_verdict_runs_and_judges_nothing():
    assert fg.parity.steps.floor(jax_loss, OPTIMIZER, torch_setup, torch_loss, BATCHES) is None
    with pytest.raises(ValueError, match="no batches"):
        fg.parity.steps.floor(jax_loss, OPTIMIZER, torch_setup, torch_loss, [])


def test_a_verdict_compiles_the_ports_step_once_a_dtype_for_its_synced_steps_and_whole_runs():
    compiled = []

    def listen(event, duration, fun_name=None, **_):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(fun_name)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        verdicts = fg.compare_steps(jax_loss, OPTIMIZER, torch_setup, torch_loss, BATCHES)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert all(verdict.passed for verdict in verdicts.values())
    assert compiled.count("jit(step)") == 2, compiled  # float32 and float64 (the float32 steps' twin too)


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


def two_groups(dtype):
    model, _ = torch_setup(dtype)
    return model, torch.optim.SGD([{"params": [model.weight], "lr": 0.1},
                                   {"params": [model.bias], "lr": 0.2}], momentum=0.9)


def test_torch_param_groups_against_one_setting_fail_at_the_optimizer_naming_the_parameter():
    with pytest.raises(fg.ParityError, match=r"float64, step 0: the optimizer's new value of bias differs"):
        fg.assert_same_steps(jax_loss, OPTIMIZER, two_groups, torch_loss, BATCHES, dtypes=["float64"])


def test_torch_param_groups_pass_against_fg_param_groups_every_step_in_both_dtypes():
    optimizer = fg.optim.param_groups(fg.optim.sgd, [{"params": ["weight"], "lr": 0.1},
                                                     {"params": ["bias"], "lr": 0.2}], momentum=0.9)
    verdicts = fg.assert_same_steps(jax_loss, optimizer, two_groups, torch_loss, BATCHES)
    names = {row.name for row in verdicts["float32"].synced}
    assert {"optimizer/trace of weight (synced)", "optimizer/trace of bias (synced)"} <= names, names


def synced_steps_that_agree(dtype):
    """One synced step on which both sides agree exactly, judged as compare_steps judges it."""
    judge = StepJudge(dtype)
    one, exact = {"forward/loss": np.asarray(1.0, dtype)}, {"forward/loss": np.asarray(1.0)}
    judge.add(0, one, one, *((exact, exact) if dtype == np.float32 else (None, None)))
    return judge


def torch_whole_run(dtype):
    return {"loss per step": fg.parity.History(np.ones(10, dtype)), "final parameters": {"w": np.ones(2, dtype)}}


def whole_runs_parting_at_step_4(dtype):
    losses = np.ones(10, dtype)
    losses[4:] += 0.5
    return {"loss per step": fg.parity.History(losses), "final parameters": {"w": np.ones(2, dtype)}}


def test_float32_whole_runs_that_part_while_every_step_agrees_pass_and_say_where():
    reference = {"loss per step": fg.parity.History(np.ones(10)), "final parameters": {"w": np.ones(2)}}
    verdict = verdict_of("float32", synced_steps_that_agree(np.float32), torch_whole_run(np.float32),
                         whole_runs_parting_at_step_4(np.float32), reference)
    assert verdict.passed and verdict.separation == 4 and verdict.first_failure is None
    assert verdict.summary.startswith("float32: whole runs separate after step 4: rounding amplified by the model")
    (loss_row,) = [row for row in verdict.whole_run if not row.passed]
    assert loss_row.rule.endswith(fg.parity.INFORMATION) and "every synced step agrees" in loss_row.note


def test_float64_whole_runs_that_part_fail_even_where_every_step_agrees():
    verdict = verdict_of("float64", synced_steps_that_agree(np.float64), torch_whole_run(np.float64),
                         whole_runs_parting_at_step_4(np.float64), None)
    assert not verdict.passed
    assert "every synced step agrees, but the whole runs differ" in verdict.summary and "step 4" in verdict.summary


@pytest.mark.parametrize("gradient, hint", [(1e-17, True), (0.3, False)])
def test_float64_final_values_that_part_while_every_loss_agrees_are_information(gradient, hint):
    """A parameter the loss does not depend on (a bias before a BatchNorm) walks apart
    under Adam in float64 too: every step agrees, every step's loss agrees; said, not failed."""
    torch_run = torch_whole_run(np.float64)
    jax_run = torch_run | {"final parameters": {"w": np.array([1.0, 1.0 + 1e-6])}}
    judge = synced_steps_that_agree(np.float64)
    judge.largest_gradient = {"w": gradient}
    verdict = verdict_of("float64", judge, torch_run, jax_run, None)
    assert verdict.passed, verdict.summary
    assert "final w differ while every synced step agrees (1 steps) and so does every step's loss" in verdict.summary
    assert ("the gradient of w is zero but for rounding" in verdict.summary) == hint
    (row,) = [row for row in verdict.whole_run if not row.passed]
    assert row.rule.endswith(fg.parity.INFORMATION)


def synced_steps_with_failures(num_steps, failing_steps, name="gradient/0.weight", algorithm_differs=False):
    """``num_steps`` judged float32 steps; at ``failing_steps`` quantity ``name`` leaves its
    band (JAX's float32 value off), or JAX's float64 step differs from torch's."""
    judge = StepJudge(np.float32)
    torch_side = {"forward/loss": np.asarray(1.0, np.float32), name: np.asarray([1.0], np.float32)}
    reference = {key: value.astype(np.float64) for key, value in torch_side.items()}
    for t in range(num_steps):
        jax_side, jax_reference = dict(torch_side), dict(reference)
        if t in failing_steps and algorithm_differs:
            jax_reference[name] = reference[name] + 1e-6
        elif t in failing_steps:
            jax_side[name] = torch_side[name] + np.float32(0.1)
        judge.add(t, jax_side, torch_side, reference, jax_reference)
    return judge


@pytest.mark.parametrize("failing, name, algorithm_differs, excused", [
    ([32], "gradient/0.weight", False, True),                   # one step at a max-pool near-tie
    ([3, 9, 14, 20], "gradient/0.weight", False, False),        # too many steps for chance
    ([32], "forward/loss", False, False),                       # a loss is continuous at a tie
    ([32], "gradient/0.weight", True, False),                   # float64 says the algorithm differs
])
def test_a_lone_float32_gradient_out_of_band_is_a_discontinuity_only_where_float64_agrees(
        failing, name, algorithm_differs, excused):
    judge = synced_steps_with_failures(40, failing, name, algorithm_differs)
    run = torch_whole_run(np.float32)
    reference = {"loss per step": fg.parity.History(np.ones(10)), "final parameters": {"w": np.ones(2)}}
    verdict = verdict_of("float32", judge, run, run, reference)
    assert verdict.passed == excused, verdict.summary
    if excused:
        assert "at 1 synced step(s) (32) only a gradient left its band" in verdict.summary
        (row,) = [row for row in verdict.synced if row.name == f"{name} (synced)"]
        assert row.passed and "discontinuity" in row.note
    else:
        assert f"step {failing[0]}" in verdict.first_failure
    if algorithm_differs:
        assert "the algorithm differs" in " ".join(row.note for row in verdict.synced)


@pytest.mark.parametrize("chunk", [1, 3, 9, 16])
def test_a_synced_steps_envelope_reaches_back_over_the_window_whatever_the_chunk(chunk):
    """Step t's envelope is torch's largest distance over steps t-9..t, however the steps are
    grouped for judging: a distance of 1 at step 5 widens the band of steps 5 to 14 only."""
    judge = StepJudge(np.float32)
    judge._chunk = chunk
    reference = {"gradient/w": np.zeros(1)}
    for t in range(30):
        torch_side = {"gradient/w": np.float32([1.0 if t == 5 else 0.0])}
        jax_side = {"gradient/w": np.float32([0.5])}   # 0.5 from its float64 twin: within 8 x 1, beyond 4 ulps of 0
        judge.add(t, jax_side, torch_side, reference, reference)
    judge.flush()
    assert sorted(judge.failures) == [t for t in range(30) if not 5 <= t <= 14]


def clip(model):
    return torch.nn.utils.clip_grad_norm_(model.parameters(), 0.05)


def test_a_loop_that_clips_after_backward_is_judged_with_the_clip_in_the_optimizer():
    clipped = optax.chain(fg.optim.clip_grad_norm(0.05), fg.optim.sgd(0.1, momentum=0.9))
    verdicts = fg.assert_same_steps(jax_loss, clipped, torch_setup, torch_loss, BATCHES, torch_after_backward=clip)
    assert all(v.passed and v.synced_steps == 3 for v in verdicts.values())


def test_a_port_that_forgets_torchs_clip_is_named_at_the_optimizer_with_its_gradients_agreeing():
    with pytest.raises(fg.ParityError, match=r"float64, step 0: the optimizer.s trace of bias differs .*"
                                             r"\(loss and gradients agree\)"):
        fg.assert_same_steps(jax_loss, OPTIMIZER, torch_setup, torch_loss, BATCHES, dtypes=["float64"],
                             torch_after_backward=clip)


def test_an_after_backward_hook_that_is_not_a_function_is_refused_by_name():
    with pytest.raises(TypeError, match="torch_after_backward must be a function of the torch model"):
        fg.compare_steps(jax_loss, OPTIMIZER, torch_setup, torch_loss, BATCHES, torch_after_backward=1.0)
