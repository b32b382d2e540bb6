"""Models with buffers end to end: a stateful loss trained by train_step and the fit_* loops,
recorded in the torch run's layout, judged whole and step by step, and a torch checkpoint
continued under the synced verdict."""

import jax
import numpy as np
import pytest
import torch

import funcgrad as fg

L = fg.layers
# No bias before the BatchNorm: it would subtract it again, and AdamW would steer it by rounding alone.
MODEL = L.Sequential(L.Linear(4, 6, bias=False), L.BatchNorm1d(6), L.ReLU(), L.Linear(6, 3))
RNG = np.random.default_rng(0)
X, Y = RNG.normal(size=(48, 4)).astype(np.float32), RNG.integers(0, 3, 48)
PARAMS, BUFFERS = MODEL.init(jax.random.key(0))
INITIAL = fg.to_state_dict(PARAMS, BUFFERS)
ORDER = fg.loader_batches(jax.random.key(1), 48, 8, num_epochs=2)
OPTIMIZER = fg.optim.adamw(1e-2)


def loss_fn(params, buffers, batch):
    logits, buffers = MODEL.apply(params, buffers, batch[0], train=True)
    return fg.cross_entropy(logits, batch[1]), buffers


def torch_setup(dtype, steps_before: int = 0):
    net = torch.nn.Sequential(torch.nn.Linear(4, 6, bias=False), torch.nn.BatchNorm1d(6), torch.nn.ReLU(), torch.nn.Linear(6, 3))
    net = net.to(torch.float64 if dtype == np.float64 else torch.float32)
    net.load_state_dict({k: torch.tensor(v.astype(dtype) if v.dtype.kind == "f" else v) for k, v in INITIAL.items()})
    optimizer = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for x, y in batches()[:steps_before]:
        optimizer.zero_grad()
        torch_loss(net, (torch.tensor(x.astype(dtype)), torch.tensor(y))).backward()
        optimizer.step()
    return net, optimizer


def torch_loss(net, batch):
    return torch.nn.functional.cross_entropy(net(batch[0]), batch[1])


def batches():
    return [(X[i], Y[i]) for i in ORDER.in_order()]


def test_fit_epochs_with_buffers_is_a_loop_of_stateful_train_steps():
    state = OPTIMIZER.init(PARAMS)
    params, opt_state, losses, buffers = fg.fit_epochs(loss_fn, OPTIMIZER, PARAMS, state, (X, Y), ORDER,
                                                       buffers=BUFFERS)
    loop_params, loop_state, loop_buffers, loop_losses = PARAMS, state, BUFFERS, []
    for x, y in batches():
        loop_params, loop_state, loss, loop_buffers = fg.train_step(loss_fn, OPTIMIZER, loop_params, loop_state,
                                                                    (x, y), buffers=loop_buffers)
        loop_losses.append(loss)
    np.testing.assert_allclose(losses, loop_losses, rtol=1e-6)
    assert int(buffers["1"]["num_batches_tracked"]) == ORDER.num_steps == int(loop_buffers["1"]["num_batches_tracked"])
    np.testing.assert_allclose(buffers["1"]["running_mean"], loop_buffers["1"]["running_mean"], rtol=1e-5, atol=1e-7)


def test_fit_full_batch_and_fit_minibatches_thread_the_buffers():
    state = OPTIMIZER.init(PARAMS)
    *_, buffers = fg.fit_full_batch(loss_fn, OPTIMIZER, PARAMS, state, (X, Y), 5, buffers=BUFFERS)
    assert int(buffers["1"]["num_batches_tracked"]) == 5
    order = fg.shuffled_batch_indices(jax.random.key(2), 48, 8)
    *_, buffers = fg.fit_minibatches(loss_fn, OPTIMIZER, PARAMS, state, (X, Y), order, buffers=BUFFERS)
    assert int(buffers["1"]["num_batches_tracked"]) == len(order)


def test_a_stateful_loss_that_returns_no_buffers_is_refused_by_train_step():
    with pytest.raises(TypeError, match=r"with buffers=, loss_fn\(params, buffers, batch\) must return \(loss, new_buffers\)"):
        fg.train_step(lambda p, b, batch: loss_fn(p, b, batch)[0], OPTIMIZER, PARAMS, OPTIMIZER.init(PARAMS),
                      (X[:8], Y[:8]), buffers=BUFFERS)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_recorded_runs_with_buffers_line_up_and_the_counter_is_exact(dtype):
    torch_net, torch_optimizer = torch_setup(np.dtype(dtype))

    def loop():
        for x, y in batches():
            torch_optimizer.zero_grad()
            loss = torch_loss(torch_net, (torch.tensor(x.astype(dtype)), torch.tensor(y)))
            loss.backward()
            torch_optimizer.step()
            yield loss

    torch_run = fg.record_torch_run(torch_net, loop())
    with jax.enable_x64(dtype == "float64"):
        params, buffers = (jax.tree.map(lambda v: v.astype(dtype) if v.dtype.kind == "f" else v, tree)
                           for tree in (PARAMS, BUFFERS))
        params, _, losses, buffers = fg.fit_epochs(loss_fn, OPTIMIZER, params, OPTIMIZER.init(params),
                                                   (X.astype(dtype), Y), ORDER, buffers=buffers)
    jax_run = fg.record_jax_run(losses, params, buffers)
    assert fg.parity.flatten(jax_run).keys() == fg.parity.flatten(torch_run).keys()
    counter = torch_run["final buffers"]["1.num_batches_tracked"]
    assert isinstance(counter, fg.parity.Exact) and counter.value.dtype == np.int64
    rows = fg.parity.compare_results(jax_run, torch_run, dtype)
    assert {row.name for row in rows} >= {"final buffers/1.num_batches_tracked", "final buffers/1.running_var"}
    by_name = {row.name: row for row in rows}
    assert by_name["final buffers/1.num_batches_tracked"].passed
    if dtype == "float64":
        assert all(row.passed for row in rows), fg.parity.format_failures(rows)


def test_a_torch_checkpoint_continues_under_the_synced_verdict():
    start = 6
    verdicts = fg.assert_same_steps(loss_fn, OPTIMIZER, lambda dtype: torch_setup(dtype, steps_before=start),
                                    torch_loss, batches()[start:], stateful=True, start_step=start)
    for verdict in verdicts.values():
        assert verdict.passed and verdict.synced_steps == len(batches()) - start, verdict.summary
        counts = [row for row in verdict.synced if row.name.startswith("optimizer/count")]
        assert counts and all(row.passed for row in counts)


def test_a_checkpoint_given_the_wrong_start_step_is_refused_naming_torchs_step():
    with pytest.raises(ValueError, match=r"torch's step for 0.weight is 6, but step=2"):
        fg.compare_steps(loss_fn, OPTIMIZER, lambda dtype: torch_setup(dtype, steps_before=6), torch_loss,
                         batches()[6:], dtypes="float64", stateful=True, start_step=2)
