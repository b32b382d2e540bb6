"""Data parallel: the MNIST epoch with its batches split over devices trains as on one device.

Several CPU devices exist only if ``XLA_FLAGS`` asks for them before jax is imported, so
the multi-device checks run this module as a script in a subprocess with 8 devices
(``python -m tests.test_data_parallel``) and read the JSON it prints.
"""

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import compare.cases
import funcgrad as fg
from funcgrad import parity
from compare.cases import data_parallel_mnist
from compare.run import run_case
from funcgrad.tutorials import mnist_softmax as tutorial
from tests.conftest import REPO_ROOT, case_reports, cpu_context, failures

NUM_DEVICES = 8
# 1440 training digits in batches of 80: 18 steps of 10 examples per device.
NUM_TRAIN = 1440
BATCH_SIZE = 80


def train_and_evaluate(params, data, order) -> tuple[dict, dict]:
    """One epoch of the MNIST port; its trained params and the quantities to compare."""
    params, losses = tutorial.train_epoch(params, data["train_images"], data["train_labels"], order)
    test_logits = tutorial.logits(params, jnp.asarray(data["test_images"]))
    return params, {
        "loss per batch": losses,
        "trained W": params["W"],
        "trained b": params["b"],
        "test classes": parity.Logits(test_logits),
        "test accuracy": parity.Exact(float(fg.accuracy(test_logits, data["test_labels"]))),
    }


def multi_device_report() -> dict:
    """What the subprocess prints: the epoch sharded and unsharded, shardings, and the case."""
    mesh = fg.data_mesh()
    data = fg.digits_as_mnist(NUM_TRAIN)
    params = tutorial.init_params(jax.random.key(0), data["train_images"][0].size)
    order = fg.shuffled_batch_indices(jax.random.key(1), NUM_TRAIN, BATCH_SIZE)

    _, single_device = train_and_evaluate(params, data, order)
    replicated_params, replicated_data = fg.replicate((params, data), mesh)
    sharded_order = fg.shard_batch_indices(order, mesh)
    trained, sharded = train_and_evaluate(replicated_params, replicated_data, sharded_order)

    optimizer = optax.sgd(tutorial.LEARNING_RATE)
    train_data = (replicated_data["train_images"], replicated_data["train_labels"].astype(jnp.int32))
    images, labels = fg.batch_sharding(tutorial.loss_fn, optimizer, replicated_params,
                                       optimizer.init(replicated_params), train_data, sharded_order)
    with pytest.raises(ValueError) as indivisible_batch:
        fg.shard_batch_indices(fg.shuffled_batch_indices(jax.random.key(1), 1500, 100), mesh)

    compare.cases.CASES[data_parallel_mnist.NAME] = data_parallel_mnist
    return {
        "devices": mesh.size,
        "sharded vs single device": [
            {"name": q.name, "max_abs_err": q.max_abs_err, "passed": q.passed, "note": q.note}
            for q in parity.compare_results(sharded, single_device, np.float32)
        ],
        "batch images shard shape": images.shard_shape((BATCH_SIZE, 8, 8)),
        "batch labels shard shape": labels.shard_shape((BATCH_SIZE,)),
        "batch devices": len(images.device_set),
        "trained params on devices": [len(leaf.sharding.device_set) for leaf in jax.tree.leaves(trained)],
        "trained params replicated": [leaf.sharding.is_fully_replicated for leaf in jax.tree.leaves(trained)],
        "indivisible batch error": str(indivisible_batch.value),
        "case": run_case(data_parallel_mnist.NAME, cpu_context(np.float32)),
    }


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> dict:
    env = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS=(
        f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={NUM_DEVICES}"))
    env.pop(fg.MNIST_ENV_VAR, None)  # the digits keep the subprocess quick
    env["XDG_CACHE_HOME"] = str(tmp_path_factory.mktemp("no-cache"))  # nor a downloaded MNIST
    completed = subprocess.run(
        [sys.executable, "-m", "tests.test_data_parallel"],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    return json.loads(completed.stdout.splitlines()[-1])


def test_epoch_sharded_over_eight_devices_trains_as_on_one(eight_devices):
    assert eight_devices["devices"] == NUM_DEVICES
    rows = eight_devices["sharded vs single device"]
    assert {row["name"] for row in rows} == {
        "loss per batch", "trained W", "trained b", "test classes", "test accuracy"}
    assert all(row["passed"] for row in rows), rows


def test_each_batch_is_split_over_the_eight_devices(eight_devices):
    per_device = BATCH_SIZE // NUM_DEVICES
    assert eight_devices["batch devices"] == NUM_DEVICES
    assert eight_devices["batch images shard shape"] == [per_device, 8, 8]
    assert eight_devices["batch labels shard shape"] == [per_device]


def test_params_stay_replicated_on_every_device(eight_devices):
    assert eight_devices["trained params on devices"] == [NUM_DEVICES, NUM_DEVICES]
    assert all(eight_devices["trained params replicated"])


def test_a_batch_that_does_not_split_over_the_devices_is_refused(eight_devices):
    assert "batch size 100 does not split evenly over 8 devices" in eight_devices["indivisible batch error"]


def test_case_on_several_devices_matches_torch(eight_devices):
    report = eight_devices["case"]
    assert report["passed"], failures(report)
    assert (report["devices"], report["local devices"]) == (5, NUM_DEVICES)  # 100 splits over 5
    assert report["batch sharding"] == str(jax.sharding.PartitionSpec("data"))
    assert report["trained params replicated"] is True


def test_case_on_one_device_is_mnist_softmax_unsplit(request):
    report = case_reports(data_parallel_mnist.NAME, request.getfixturevalue("mnist_dir"))["float32"]
    assert report["devices"] == 1 and report["batch sharding"] == str(jax.sharding.PartitionSpec())
    assert report["trained params replicated"] is True


@pytest.mark.parametrize("num_devices, expected", [(1, 1), (4, 4), (8, 5), (16, 10)])
def test_case_uses_the_most_devices_that_split_the_batch_of_100(num_devices, expected):
    assert data_parallel_mnist.devices_for_batch(num_devices, 100) == expected


def test_a_mesh_needs_devices():
    with pytest.raises(ValueError, match="no devices given"):
        fg.data_mesh([])


def test_batch_indices_must_be_steps_by_batch():
    with pytest.raises(ValueError, match=r"shape \(100,\).*\(num_steps, batch_size\)"):
        fg.shard_batch_indices(np.arange(100), fg.data_mesh())


if __name__ == "__main__":
    print(json.dumps(multi_device_report()))
