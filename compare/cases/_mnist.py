"""What the MNIST training cases (mnist-batch-64, mnist-mlp, mnist-cnn, per-example-grads)
share: ``ToTensor``'s pixels, SGD over a ``DataLoader``'s epochs on both sides, the same
test pass.

    results = jax_train(fg.mlp_apply, params, data, batches, LEARNING_RATE)
    losses, first_grads = torch_train(model, optimizer, torch_dataset(ctx, data, "train"), batches)
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import funcgrad as fg
from compare.timed import TORCH_COMPILE, Timed, torch_compiled
from funcgrad.parity import Exact, History, Logits
from funcgrad.tutorials import mnist_softmax as tutorial

TEST_BATCH_SIZE = 1000


def to_tensor(ctx, images):
    """``transforms.ToTensor()``: uint8 pixels to floats in [0, 1], divided by 255."""
    return ctx.to_torch(images).to(ctx.torch_dtype).div(255)


def jax_train(apply, params, data, batches: fg.EpochBatches, learning_rate: float) -> dict:
    """SGD with cross-entropy over every epoch of ``batches`` (one compiled loop): the first
    step's gradients, every step's loss, the trained params (``state_dict`` keys) and the
    test results."""
    loss_fn, train = jax_setup(apply, data)
    first_batch = jax.tree.map(lambda leaf: leaf[batches.epoch(0)[0]], train)
    first_grads = jax.grad(loss_fn)(params, first_batch)
    trained, losses = jax_fit(loss_fn, params, train, batches, learning_rate)
    return training_results(fg.to_state_dict(first_grads), losses, fg.to_state_dict(trained)) | jax_test(
        apply, trained, data)


def jax_fit(loss_fn, params, train, batches: fg.EpochBatches, learning_rate: float):
    """``SGD(lr)`` over every epoch of ``batches``, one compiled loop; trained params and losses."""
    optimizer = fg.optim.sgd(learning_rate)
    trained, _, losses = fg.fit_epochs(loss_fn, optimizer, params, optimizer.init(params), train, batches)
    return trained, losses


def jax_setup(apply, data):
    """The cross-entropy of ``apply`` on uint8 images scaled in the params' dtype, and the
    training set on the device."""
    return pixel_loss(apply), (jnp.asarray(data["train_images"]), jnp.asarray(data["train_labels"], jnp.int32))


def pixel_loss(apply):
    """The cross-entropy of ``apply`` on a batch of uint8 images, scaled in the params' dtype."""
    def loss_fn(params, batch):
        images, labels = batch
        return fg.cross_entropy(apply(params, tutorial.pixels(images, jax.tree.leaves(params)[0].dtype)), labels)

    return loss_fn


def run(ctx, setup, apply, torch_model, learning_rate: float) -> tuple:
    """An MNIST case's ``run``: both sides from ``setup = (data name, data, initial, batches)``,
    the model ``apply(params, x)`` in JAX and ``torch_model(ctx, initial)`` in torch."""
    data_name, data, initial, batches = setup
    jax_results = jax_train(apply, fg.from_state_dict(initial), data, batches, learning_rate)
    torch_results = torch_train_and_test(ctx, torch_model, initial, data, batches, learning_rate)
    info = {"data": data_name, "steps per epoch": batches.steps_per_epoch, "short batch": int(batches.last.shape[1])}
    return jax_results, torch_results, info


def case_functions(setup, apply, torch_model, learning_rate: float):
    """An MNIST SGD case's ``run(ctx)`` and ``timed(ctx)``, from its ``setup(ctx)``, its model
    (``apply(params, x)``; ``torch_model(ctx, initial)``) and its learning rate."""
    return (lambda ctx: run(ctx, setup(ctx), apply, torch_model, learning_rate),
            lambda ctx: timed_case(ctx, setup(ctx), apply, torch_model, learning_rate))


def timed_case(ctx, setup, apply, torch_model, learning_rate: float) -> Timed:
    """An MNIST case's ``timed``: both training loops alone, on data already converted; the
    torch loop also with its model compiled, a model and optimizer of its own."""
    data_name, data, initial, batches = setup
    params = fg.from_state_dict(initial)
    loss_fn, train = jax_setup(apply, data)
    model, optimizer = torch_setup(ctx, torch_model, initial, learning_rate)
    uncompiled, compiled_optimizer = torch_setup(ctx, torch_model, initial, learning_rate)
    compiled = torch_compiled(uncompiled)
    train_set = torch_dataset(ctx, data, "train")
    return Timed(batches.num_steps, {"funcgrad": lambda: jax_fit(loss_fn, params, train, batches, learning_rate),
                                     "torch-eager": lambda: torch_train(model, optimizer, train_set, batches),
                                     TORCH_COMPILE: lambda: torch_train(compiled, compiled_optimizer, train_set,
                                                                        batches)},
                 {"funcgrad": data_name})


def training_results(first_grads, losses, trained) -> dict:
    return {
        **{f"{name} grad on first batch": grad for name, grad in first_grads.items()},
        "loss per step": History(losses),
        **{f"trained {name}": value for name, value in trained.items()},
    }


def torch_train_and_test(ctx, torch_model, initial, data, batches, learning_rate: float) -> dict:
    """``torch_model(ctx, initial)`` trained with ``SGD(lr)`` over ``batches``, then tested:
    the results :func:`jax_train` reports, from torch."""
    model, optimizer = torch_setup(ctx, torch_model, initial, learning_rate)
    losses, first_grads = torch_train(model, optimizer, torch_dataset(ctx, data, "train"), batches)
    return training_results(first_grads, losses, model.state_dict()) | torch_test(model, torch_dataset(ctx, data, "test"))


def torch_setup(ctx, torch_model, initial, learning_rate: float):
    """``torch_model(ctx, initial)`` (which loads ``initial``) and its ``SGD(lr)``."""
    model = torch_model(ctx, initial)
    return model, torch.optim.SGD(model.parameters(), lr=learning_rate)


def torch_dataset(ctx, data, split: str) -> TensorDataset:
    """A split as a ``TensorDataset`` of ``ToTensor``-scaled, flattened pixels and int64 labels."""
    images = to_tensor(ctx, data[f"{split}_images"]).flatten(1)
    return TensorDataset(images, ctx.to_torch(data[f"{split}_labels"].astype(np.int64)))


def torch_train(model, optimizer, train_set, batches: fg.EpochBatches):
    """The torch loop, a fresh ``DataLoader`` per epoch over that epoch's order (its
    ``shuffle=True``, with the permutation handed over); every step's loss, and the
    gradients of the first step (``state_dict`` keys)."""
    losses, first_grads = [], None
    for epoch in range(len(batches.full)):
        loader = DataLoader(train_set, batch_size=batches.full.shape[2],
                            sampler=batches.permutation(epoch).tolist(), drop_last=False)
        for images, labels in loader:
            optimizer.zero_grad()
            loss = F.cross_entropy(model(images), labels)
            loss.backward()
            if first_grads is None:
                first_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
            optimizer.step()
            losses.append(loss.detach())
    return torch.stack(losses), first_grads


def torch_test(model, test_set) -> dict:
    """Test logits, classes and accuracy, in batches under ``no_grad``."""
    with torch.no_grad():
        logits = torch.cat([model(images) for images, _ in DataLoader(test_set, batch_size=TEST_BATCH_SIZE)])
    correct = (logits.argmax(dim=1) == test_set.tensors[1]).sum().item()
    return test_results(logits, correct / len(test_set))


def jax_test(apply, params, data) -> dict:
    """The JAX side of :func:`torch_test`."""
    logits = apply(params, tutorial.pixels(jnp.asarray(data["test_images"]), jax.tree.leaves(params)[0].dtype))
    correct = int(jnp.sum(fg.predict_classes(logits) == jnp.asarray(data["test_labels"])))
    return test_results(logits, correct / len(data["test_labels"]))


def test_results(logits, accuracy) -> dict:
    return {"test logits": logits, "test classes": Logits(logits), "test accuracy": Exact(accuracy)}


# ---- the parity checks a port's own test runs, on a case's set-up (compare.bench times them) ----

def check_functions(setup, apply, torch_model, learning_rate: float):
    """An MNIST SGD case's ``timed_checks(ctx)`` and ``synced_check(ctx)`` (the arguments of
    ``fg.compare_steps``), from the same pieces as :func:`case_functions`."""
    def synced_check(ctx) -> dict:
        jax_loss, jax_optimizer, torch_setup_, torch_loss, batches = step_check(ctx, setup(ctx), apply, torch_model,
                                                                                 learning_rate)
        return dict(jax_loss=jax_loss, jax_optimizer=jax_optimizer, torch_setup=torch_setup_, torch_loss=torch_loss,
                    batches=batches)

    return lambda ctx: timed_checks(ctx, setup(ctx), apply, torch_model, learning_rate), synced_check


def timed_checks(ctx, setup, apply, torch_model, learning_rate: float) -> Timed:
    """The whole-run check (``fg.assert_same_training``) and the synced one
    (``fg.assert_same_steps``, every step and every 10th), both dtypes each, on the case's
    data, initial weights and batch order; each call returns its verdict in one line."""
    training = training_check(ctx, setup, apply, torch_model, learning_rate)
    steps = step_check(ctx, setup, apply, torch_model, learning_rate)
    return Timed(setup[3].num_steps, {
        "whole-run check": lambda: outcome(fg.assert_same_training, *training),
        "synced check": lambda: outcome(fg.assert_same_steps, *steps),
        "synced check, every 10th step": lambda: outcome(fg.assert_same_steps, *steps, every=10)})


def training_check(ctx, setup, apply, torch_model, learning_rate: float):
    """``fg.assert_same_training``'s ``(jax_train, torch_train)``: the case's two loops in a dtype."""
    _, data, initial, batches = setup

    def jax_run(dtype):
        params = fg.from_state_dict(in_dtype(ctx, dtype).cast(initial))
        loss_fn, train = jax_setup(apply, data)
        trained, losses = jax_fit(loss_fn, params, train, batches, learning_rate)
        return fg.record_jax_run(losses, trained)

    def torch_run(dtype):
        model, optimizer = torch_setup(in_dtype(ctx, dtype), torch_model, initial, learning_rate)
        losses, _ = torch_train(model, optimizer, torch_dataset(in_dtype(ctx, dtype), data, "train"), batches)
        return fg.record_torch_run(model, losses)

    return jax_run, torch_run


def step_check(ctx, setup, apply, torch_model, learning_rate: float):
    """``fg.assert_same_steps``'s ``(jax_loss, jax_optimizer, torch_setup, torch_loss, batches)``:
    the case's model and ``SGD(lr)``, its forward pass (``ToTensor``'s scaling, then the model)
    and every batch in the order its ``DataLoader`` meets them (uint8 images, int64 labels)."""
    _, data, initial, batches = setup
    images, labels = data["train_images"], data["train_labels"].astype(np.int64)
    steps = [(images[i], labels[i]) for i in batches.in_order()]

    def model_and_optimizer(dtype):
        return torch_setup(in_dtype(ctx, dtype), torch_model, initial, learning_rate)

    def forward_loss(model, batch):
        images, labels = batch
        weight = next(model.parameters())
        pixels = images.to(weight.device).to(weight.dtype).div(255).flatten(1)
        return F.cross_entropy(model(pixels), labels.to(weight.device))

    return pixel_loss(apply), fg.optim.sgd(learning_rate), model_and_optimizer, forward_loss, steps


def in_dtype(ctx, dtype):
    """``ctx`` in another dtype: the case's set-up, converted as the comparison converts it."""
    return dataclasses.replace(ctx, dtype=np.dtype(dtype))


def outcome(check, *args, **kwargs) -> str:
    """Run a parity check; its outcome in one line, a failure's too (the bench times what a
    check costs, whatever it finds)."""
    try:
        verdicts = check(*args, **kwargs)
    except fg.ParityError as error:
        return "FAILED: " + str(error).splitlines()[0]
    return "; ".join(verdict.summary if isinstance(verdict, fg.StepVerdict) else f"{dtype}: the whole runs agree"
                     for dtype, verdict in verdicts.items())
