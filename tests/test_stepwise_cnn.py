"""A torch CNN with BatchNorm and dropout, 100 steps in train mode, every step judged from
torch's exact state (fg.assert_same_steps, stateful): the same dropout masks on both
sides (fg.layers.replay_dropout), the buffers judged beside the loss. And the bugs a
port of such a model makes, each caught at its step, stage and layer."""

import jax
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.datasets import load_digits
from torch import nn

import funcgrad as fg

L = fg.layers
STEPS, BATCH_SIZE = 100, 32


def funcgrad_cnn(momentum=0.1, dropout_name_offset=0):
    return L.Sequential(L.Conv2d(1, 6, 3, padding=1), L.BatchNorm2d(6, momentum=momentum), L.ReLU(), L.MaxPool2d(2),
                        L.Conv2d(6, 8, 3, padding=1), L.BatchNorm2d(8, momentum=momentum), L.ReLU(), L.MaxPool2d(2),
                        L.Flatten(), L.Dropout(0.3), L.Linear(8 * 2 * 2, 10))


def torch_cnn():
    return nn.Sequential(nn.Conv2d(1, 6, 3, padding=1), nn.BatchNorm2d(6), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Dropout(0.3), nn.Linear(8 * 2 * 2, 10))


def arguments(model=None, key_of=lambda key: key, steps=STEPS):
    """compare_steps' arguments for the digits CNN over ``steps`` steps of AdamW."""
    digits = load_digits()
    images, labels = (digits.images / 16.0)[:, None], digits.target.astype(np.int64)
    model = model or funcgrad_cnn()
    params, buffers = model.init(jax.random.key(0))
    initial = fg.to_state_dict(params, buffers)
    order = fg.loader_batches(jax.random.key(1), len(labels), BATCH_SIZE, num_epochs=2).in_order()[:steps]
    keys = jax.random.key_data(jax.random.split(jax.random.key(2), len(order)))
    batches = [(images[i], labels[i], np.asarray(key)) for i, key in zip(order, keys)]

    def jax_loss(params, buffers, batch):
        x, y, key = batch
        logits, buffers = model.apply(params, buffers, x, train=True, key=key_of(jax.random.wrap_key_data(key)))
        return fg.cross_entropy(logits, y), buffers

    def torch_setup(dtype):
        net = torch_cnn().to(torch.float64 if dtype == np.float64 else torch.float32)
        net.load_state_dict({name: torch.tensor(value.astype(dtype) if value.dtype.kind == "f" else value)
                             for name, value in initial.items()})
        return net, torch.optim.AdamW(net.parameters(), lr=3e-3)

    def torch_loss(net, batch):
        x, y, key = batch
        with L.replay_dropout(net, key.numpy()):
            return F.cross_entropy(net(x), y)

    return dict(jax_loss=jax_loss, jax_optimizer=fg.optim.adamw(3e-3), torch_setup=torch_setup,
                torch_loss=torch_loss, batches=batches, stateful=True)


def test_a_cnn_with_batchnorm_and_dropout_trains_alike_every_step():
    verdicts = fg.assert_same_steps(**arguments())
    for dtype, verdict in verdicts.items():
        assert verdict.passed and verdict.synced_steps == STEPS, verdict.summary
        names = {row.name for row in verdict.synced}
        assert {"forward/new 1.running_var (synced)", "forward/new 5.num_batches_tracked (synced)",
                "gradient/0.weight (synced)", "optimizer/new value of 10.bias (synced)"} <= names
        final = verdict.final_weights["torch"]
        assert final["1.num_batches_tracked"] == STEPS
    # The convolutions' biases feed a BatchNorm, which subtracts them again: their gradient is
    # zero but for rounding, and AdamW's steps follow the rounding, which differs between the
    # frameworks. Every step agrees from the same state, the loss agrees at every step, and
    # the verdict says why the biases (and the running means that follow them) part.
    float64 = verdicts["float64"]
    assert "the gradient of 0.bias, 4.bias is zero but for rounding" in float64.summary, float64.summary
    assert {row.name for row in float64.whole_run if row.rule.endswith(fg.parity.INFORMATION)} <= {
        "final parameters/0.bias", "final parameters/4.bias", "final buffers/1.running_mean",
        "final buffers/5.running_mean"}


@pytest.mark.parametrize("bug, model, key_of, where", [
    ("Flax's momentum convention (0.9 = the old statistic's weight)", funcgrad_cnn(momentum=0.9), None,
     "step 0: the forward pass's new 1.running_mean"),
    ("masks drawn from another key", None, lambda key: jax.random.fold_in(key, 1),
     "step 0: the loss differs"),
])
def test_a_port_bug_in_batchnorm_or_dropout_is_caught_at_step_0(bug, model, key_of, where):
    verdicts = fg.compare_steps(**arguments(model, key_of or (lambda key: key), steps=3), dtypes=["float64"])
    assert not verdicts["float64"].passed, bug
    assert where in verdicts["float64"].first_failure, verdicts["float64"].first_failure


def test_a_model_with_buffers_needs_a_stateful_loss():
    args = arguments(steps=1) | {"stateful": False}
    with pytest.raises(ValueError, match=r"buffers \(1.running_mean, 1.running_var, 1.num_batches_tracked"):
        fg.compare_steps(**args, dtypes=["float64"])
