"""funcgrad.porting: the assertion a porting engineer puts in their own test suite."""

import subprocess
import sys

import jax
import numpy as np
import pytest
import torch

import funcgrad as fg
from funcgrad import parity

NUM_STEPS = 40


def data(dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((64, 5)).astype(dtype)
    return x, (x[:, 0] > 0).astype(np.int64) + (x[:, 1] > 0)


INITIAL = fg.to_state_dict(fg.linear_init(jax.random.key(0), 5, 3))  # float32, cast per run


def torch_train(dtype, lr=0.5):
    model = torch.nn.Linear(5, 3).to(torch.float64 if dtype == np.float64 else torch.float32)
    model.load_state_dict({k: torch.tensor(v.astype(dtype)) for k, v in INITIAL.items()})
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, dampening=0.1)
    x, y = (torch.tensor(a) for a in data(dtype))

    def loop():
        for _ in range(NUM_STEPS):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y, label_smoothing=0.1)
            loss.backward()
            optimizer.step()
            yield loss

    return fg.record_torch_run(model, loop())


def jax_train(dtype, lr=0.5):
    params = fg.from_state_dict({k: v.astype(dtype) for k, v in INITIAL.items()})
    optimizer = fg.optim.sgd(lr, momentum=0.9, dampening=0.1)

    def loss_fn(params, batch):
        return fg.cross_entropy(fg.linear_apply(params, batch[0]), batch[1], label_smoothing=0.1)

    params, _, losses = fg.fit_full_batch(loss_fn, optimizer, params, optimizer.init(params), data(dtype), NUM_STEPS)
    return fg.record_jax_run(losses, params)


def test_a_faithful_port_passes_in_both_dtypes():
    verdicts = fg.assert_same_training(jax_train, torch_train)
    assert set(verdicts) == {"float64", "float32"}
    names = {row.name for row in verdicts["float32"]}
    assert names == {"loss per step", "final parameters/weight", "final parameters/bias"}
    assert all(row.rule == "float32 band" for row in verdicts["float32"])
    assert "loss per step" in parity.format_table(verdicts["float64"])


def test_a_wrong_learning_rate_is_named_with_its_first_step():
    with pytest.raises(fg.ParityError, match=r"differs? in float64; first divergence: loss per step at step 1") as error:
        fg.assert_same_training(lambda dtype: jax_train(dtype, lr=0.501), torch_train, dtypes=["float64"])
    assert any(not row.passed for row in error.value.rows)


def test_float32_alone_runs_its_float64_reference_itself():
    calls = []

    def counting_torch_train(dtype):
        calls.append(np.dtype(dtype).name)
        return torch_train(dtype)

    fg.assert_same_training(jax_train, counting_torch_train, dtypes=["float32"])
    assert sorted(calls) == ["float32", "float64"]


def test_recorded_runs_compare_key_by_key():
    torch_run, jax_run = torch_train(np.float64), None
    with jax.enable_x64(True):
        jax_run = jax_train(np.float64)
    rows = fg.assert_same_run(jax_run, torch_run)
    assert {row.rule for row in rows} == {"float64 direct"}
    with pytest.raises(ValueError, match="different quantities"):
        fg.assert_same_run({"loss per step": jax_run["loss per step"]}, torch_run)


def test_a_loop_that_yields_nothing_is_an_error():
    with pytest.raises(ValueError, match="yielded no loss"):
        fg.record_torch_run(torch.nn.Linear(2, 2), iter([]))


def test_import_funcgrad_loads_neither_torch_nor_sklearn():
    check = "import funcgrad, sys; assert 'torch' not in sys.modules and 'sklearn' not in sys.modules, sorted(sys.modules)"
    subprocess.run([sys.executable, "-c", check], check=True)


def test_the_parity_engine_imports_where_torch_is_missing():
    # sys.modules["torch"] = None makes any "import torch" raise ImportError: a venv without torch.
    check = ("import sys; sys.modules['torch'] = None; import funcgrad, funcgrad.parity, funcgrad.parity.runs, funcgrad.parity.steps; "
             "rows = funcgrad.parity.compare_results({'a': 1.0}, {'a': 1.0}, 'float64'); assert rows[0].passed")
    subprocess.run([sys.executable, "-c", check], check=True)
