"""Device and precision selection, the GPU path included, checked without a GPU."""

import jax
import numpy as np
import pytest
import torch

from compare import runtime


def test_cpu_is_cpu_on_both_sides():
    jax_device, torch_device = runtime.select_devices("cpu")
    assert jax_device.platform == "cpu" and torch_device == torch.device("cpu")


def test_auto_falls_back_to_cpu_when_either_side_has_no_gpu(monkeypatch):
    monkeypatch.setattr(runtime, "_jax_gpus", lambda: ["a jax gpu"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    jax_device, torch_device = runtime.select_devices("auto")
    assert jax_device.platform == "cpu" and torch_device.type == "cpu"


def test_gpu_without_a_gpu_says_what_each_side_sees(monkeypatch):
    monkeypatch.setattr(runtime, "_jax_gpus", lambda: [])
    with pytest.raises(SystemExit, match=r"jax sees 0 GPU\(s\), torch.cuda.is_available\(\) is"):
        runtime.select_devices("gpu")


@pytest.mark.parametrize("requested", ["gpu", "auto"])
def test_gpu_when_both_sides_have_one(requested, monkeypatch):
    monkeypatch.setattr(runtime, "_jax_gpus", lambda: ["first jax gpu", "second"])
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert runtime.select_devices(requested) == ("first jax gpu", torch.device("cuda", 0))


def test_matmul_precision_is_full_float32_on_both_sides_and_reported():
    before = (jax.config.jax_default_matmul_precision, torch.get_float32_matmul_precision())
    torch.backends.cuda.matmul.allow_tf32 = True  # as a user's setting might leave it
    try:
        reported = runtime.set_matmul_precision()
        assert jax.config.jax_default_matmul_precision == "highest"
        assert torch.backends.cuda.matmul.allow_tf32 is False and torch.backends.cudnn.allow_tf32 is False
        assert reported == {"jax_default_matmul_precision": "highest",
                            "torch_float32_matmul_precision": "highest", "torch_allow_tf32": "False"}
    finally:
        jax.config.update("jax_default_matmul_precision", before[0])
        torch.set_float32_matmul_precision(before[1])


def test_a_gpu_run_reports_the_gpus_name(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "NVIDIA H100 80GB HBM3")
    ctx = runtime.Context(np.dtype(np.float32), jax.devices("cpu")[0], torch.device("cuda", 0))
    device = runtime.describe_environment(ctx)["device"]
    assert device["kind"] == "gpu" and device["name"] == "NVIDIA H100 80GB HBM3"
