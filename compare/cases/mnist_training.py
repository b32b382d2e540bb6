"""What the MNIST training cases (mnist-batch-64, mnist-mlp) share: SGD over a
``DataLoader``'s epochs on both sides, the same pixels, the same test pass.

    results = jax_train(fg.mlp_apply, params, data, batches, LEARNING_RATE)
    datasets = torch_datasets(ctx, data)
    losses, first_grads = torch_train(model, optimizer, datasets["train"], batches)
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

import funcgrad as fg
from compare.runtime import Timed
from funcgrad.parity import Exact, History, Logits

TEST_BATCH_SIZE = 1000


def jax_pixels(images, dtype) -> jnp.ndarray:
    """uint8 images as ``(N, pixels)`` floats in [0, 1]: ``ToTensor()`` then ``view(-1, 784)``."""
    return images.reshape(images.shape[0], -1).astype(dtype) / 255


def jax_train(apply, params, data, batches: fg.EpochBatches, learning_rate: float) -> dict:
    """SGD with cross-entropy over every epoch of ``batches`` (one compiled loop): the first
    step's gradients, every step's loss, the trained params (``state_dict`` keys) and the
    test results."""
    dtype = jax.tree.leaves(params)[0].dtype
    loss_fn = pixel_loss(apply, dtype)

    train = (jnp.asarray(data["train_images"]), jnp.asarray(data["train_labels"], jnp.int32))
    first_batch = jax.tree.map(lambda leaf: leaf[batches.epoch(0)[0]], train)
    first_grads = jax.grad(loss_fn)(params, first_batch)
    trained, losses = jax_fit(loss_fn, params, train, batches, learning_rate)
    return training_results(fg.to_state_dict(first_grads), losses, fg.to_state_dict(trained)) | jax_test(
        apply, trained, data, dtype)


def jax_fit(loss_fn, params, train, batches: fg.EpochBatches, learning_rate: float):
    """``SGD(lr)`` over every epoch of ``batches``, one compiled loop; trained params and losses."""
    optimizer = fg.optim.sgd(learning_rate)
    trained, _, losses = fg.fit_epochs(loss_fn, optimizer, params, optimizer.init(params), train, batches)
    return trained, losses


def pixel_loss(apply, dtype):
    """Cross-entropy of ``apply`` on uint8 images scaled to [0, 1] in ``dtype``."""
    def loss_fn(params, batch):
        images, labels = batch
        return fg.cross_entropy(apply(params, jax_pixels(images, dtype)), labels)
    return loss_fn


def run(ctx, setup, apply, torch_model, learning_rate: float) -> tuple:
    """An MNIST case's ``run``: both sides from ``setup = (data name, data, initial, batches)``,
    the model ``apply(params, x)`` in JAX and ``torch_model(ctx, initial)`` in torch."""
    data_name, data, initial, batches = setup
    jax_results = jax_train(apply, fg.from_state_dict(initial), data, batches, learning_rate)
    torch_results = torch_train_and_test(ctx, torch_model(ctx, initial), initial, data, batches, learning_rate)
    info = {"data": data_name, "steps per epoch": batches.steps_per_epoch, "short batch": int(batches.last.shape[1])}
    return jax_results, torch_results, info


def case_functions(setup, apply, torch_model, learning_rate: float):
    """An MNIST SGD case's ``run(ctx)`` and ``timed(ctx)``, from its ``setup(ctx)``, its model
    (``apply(params, x)``; ``torch_model(ctx, initial)``) and its learning rate."""
    return (lambda ctx: run(ctx, setup(ctx), apply, torch_model, learning_rate),
            lambda ctx: timed_case(ctx, setup(ctx), apply, torch_model, learning_rate))


def timed_case(ctx, setup, apply, torch_model, learning_rate: float) -> Timed:
    """An MNIST case's ``timed``: both training loops alone, on data already converted."""
    data_name, data, initial, batches = setup
    model = torch_model(ctx, initial)
    params = fg.from_state_dict(initial)
    loss_fn = pixel_loss(apply, jax.tree.leaves(params)[0].dtype)
    train = (jnp.asarray(data["train_images"]), jnp.asarray(data["train_labels"], jnp.int32))
    model.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    train_set = torch_datasets(ctx, data)["train"]
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    return Timed(batches.num_steps, {"funcgrad": lambda: jax_fit(loss_fn, params, train, batches, learning_rate),
                                     "torch-eager": lambda: torch_train(model, optimizer, train_set, batches)},
                 {"funcgrad": data_name})


def training_results(first_grads, losses, trained) -> dict:
    return {
        **{f"{name} grad on first batch": grad for name, grad in first_grads.items()},
        "loss per step": History(losses),
        **{f"trained {name}": value for name, value in trained.items()},
    }


def torch_train_and_test(ctx, model, initial, data, batches, learning_rate: float) -> dict:
    """``model`` loaded with ``initial``, trained with ``SGD(lr)`` over ``batches``, then
    tested: the results :func:`jax_train` reports, from torch."""
    model.load_state_dict({name: ctx.to_torch(value) for name, value in initial.items()})
    datasets = torch_datasets(ctx, data)
    optimizer = torch.optim.SGD(model.parameters(), lr=learning_rate)
    losses, first_grads = torch_train(model, optimizer, datasets["train"], batches)
    return training_results(first_grads, losses, model.state_dict()) | torch_test(model, datasets["test"])


def torch_datasets(ctx, data) -> dict[str, TensorDataset]:
    """Train and test sets as ``TensorDataset``s of ``ToTensor``-scaled pixels and int64 labels."""
    def dataset(split):
        images = ctx.to_torch(data[f"{split}_images"]).to(ctx.torch_dtype).div(255)
        return TensorDataset(images.flatten(1), ctx.to_torch(data[f"{split}_labels"].astype(np.int64)))

    return {"train": dataset("train"), "test": dataset("test")}


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


def jax_test(apply, params, data, dtype) -> dict:
    """The JAX side of :func:`torch_test`."""
    logits = apply(params, jax_pixels(jnp.asarray(data["test_images"]), dtype))
    correct = int(jnp.sum(fg.predict_classes(logits) == jnp.asarray(data["test_labels"])))
    return test_results(logits, correct / len(data["test_labels"]))


def test_results(logits, accuracy) -> dict:
    return {"test logits": logits, "test classes": Logits(logits), "test accuracy": Exact(accuracy)}
