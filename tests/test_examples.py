"""The examples print what the seeds print; the seeds' figures are asserted here."""

import ast
import re
import runpy
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import funcgrad as fg
from funcgrad.tutorials import grad_mean, grad_poly_trig, mnist_softmax, one_sample_logistic, vjp_and_stop_gradient
from tests.conftest import REPO_ROOT


def test_grad_of_mean_of_double_is_two_over_n():
    np.testing.assert_allclose(grad_mean.grad_mean_of_double(jnp.array([0.8177, -0.8083, 1.7062])),
                               [2 / 3] * 3, rtol=1e-7)


def test_poly_trig_reproduces_seed_000_figures():
    z, (dz_dx, dz_dy) = grad_poly_trig.value_and_partials(jnp.float32(1.0), jnp.float32(2.0))
    assert z.item() == pytest.approx(3.649824619, abs=5e-7)
    assert dz_dx.item() == pytest.approx(11.775155067, abs=5e-6)
    assert dz_dy.item() == pytest.approx(3.234852552, abs=5e-7)


def test_vjp_reproduces_seed_000_x_grad():
    _, x_grad = vjp_and_stop_gradient.vjp_of_double(jnp.array([1.0, 2.0, 3.0]), jnp.array([1.0, 0.1, 0.01]))
    np.testing.assert_allclose(x_grad, [2.0, 0.2, 0.02], rtol=1e-7)


def test_stop_gradient_removes_a_factor_from_the_gradient():
    x = jnp.array([1.0, 2.0, 3.0])
    np.testing.assert_array_equal(vjp_and_stop_gradient.grad_through_stopped(x), [0.0, 0.0, 0.0])
    np.testing.assert_array_equal(vjp_and_stop_gradient.grad_of_x_times_stopped_x(x), x)


def test_one_sample_logistic_reproduces_seed_003_figures():
    y, x, w, b = jnp.array([1.0]), jnp.array([1.3]), jnp.array([2.0]), jnp.array([0.5])
    z, y_hat = one_sample_logistic.forward(w, b, x)
    loss, (grad_w, grad_b) = one_sample_logistic.partials_together(w, b, x, y)
    assert z.item() == pytest.approx(3.1, abs=1e-6)
    assert round(y_hat.item(), 4) == 0.9569
    assert loss.item() == pytest.approx(0.0440639853, rel=1e-7)
    assert round(grad_w.item(), 4) == -0.0560 and round(grad_b.item(), 4) == -0.0431
    assert (grad_w, grad_b) == one_sample_logistic.partials_one_at_a_time(w, b, x, y)


def run_example(name, *args, monkeypatch, capsys) -> str:
    monkeypatch.setattr(sys, "argv", [name, *args])
    runpy.run_path(str(REPO_ROOT / "examples" / f"{name}.py"), run_name="__main__")
    return capsys.readouterr().out


@pytest.mark.parametrize("name, expected", [
    ("grad_mean", "[0.6666667 0.6666667 0.6666667]"),
    ("grad_poly_trig", "Value of z: 3.6498246"),
    ("vjp_and_stop_gradient", "x.grad: [2.   0.2  0.02]"),
    ("one_sample_logistic", "Loss: 0.04406398"),
    ("linear_regression", "learned bias (true 5): [5.0000"),
    ("binary_logistic", "training accuracy: 1.0000"),
])
def test_example_script_prints_the_seeds_result(name, expected, monkeypatch, capsys):
    assert expected in run_example(name, monkeypatch=monkeypatch, capsys=capsys)


def test_iris_example_prints_loss_every_100_epochs_and_writes_the_plot(tmp_path, monkeypatch, capsys):
    plot = tmp_path / "boundary.png"
    out = run_example("iris_softmax", "--plot", str(plot), monkeypatch=monkeypatch, capsys=capsys)
    assert out.count("Epoch [") == 100 and "Epoch [10000/10000], Loss: " in out
    assert "Accuracy on the test set: " in out
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_mnist_example_trains_one_epoch_on_real_mnist(mnist_dir, monkeypatch, capsys):
    out = run_example("mnist_softmax", "--mnist-dir", mnist_dir, monkeypatch=monkeypatch, capsys=capsys)
    accuracy = float(out.strip().rsplit(" ", 1)[-1])
    assert "Test accuracy (MNIST)" in out and 0.89 <= accuracy <= 0.915


def test_chunked_epoch_with_progress_updates_equals_one_compiled_epoch():
    data = fg.digits_as_mnist()
    params = mnist_softmax.init_params(jax.random.key(0), 64)
    order = fg.shuffled_batch_indices(jax.random.key(1), 1500, 100)
    whole, whole_losses = mnist_softmax.train_epoch(params, data["train_images"], data["train_labels"], order)
    updates = []
    chunked, chunked_losses = mnist_softmax.train_epoch(
        params, data["train_images"], data["train_labels"], order, num_chunks=10, on_chunk=updates.append)
    assert sum(updates) == len(order) and len(updates) == 10
    np.testing.assert_array_equal(whole_losses, chunked_losses)
    np.testing.assert_array_equal(whole["W"], chunked["W"])


def test_port_your_model_proves_its_port(capsys):
    runpy.run_path(str(REPO_ROOT / "examples" / "port_your_model.py"), run_name="__main__")
    printed = capsys.readouterr().out
    assert "float64: all 5 quantities agree" in printed and "float32: all 5 quantities agree" in printed


def test_port_your_model_stepwise_passes_a_correct_port_step_by_step(monkeypatch, capsys):
    # 870 steps of a ReLU MLP. Whether its float32 whole runs part is the kernels' and
    # threads' affair (one torch thread on an AVX2 EPYC: at step 724; two: never); every
    # step synced from torch's state agrees either way, and float64 agrees.
    printed = run_example("port_your_model_stepwise", monkeypatch=monkeypatch, capsys=capsys)
    assert "float64: every synced step agrees (870 steps), and so do the whole runs" in printed
    assert re.search(r"float32: (every synced step agrees \(870 steps\), and so do the whole runs|whole runs "
                     r"separate after step \d+: .* every step agrees from the same state \(870 synced steps\))",
                     printed), printed[-3000:]


def imported_modules(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            yield node.module or ""


@pytest.mark.parametrize("folder", ["compare", "tests", "examples"])
def test_nothing_imports_an_example(folder):
    # An example is a script that prints; what it shares lives in funcgrad.tutorials, so
    # editing an example never changes what the comparison measures.
    importers = [str(path.relative_to(REPO_ROOT)) for path in (REPO_ROOT / folder).rglob("*.py")
                 if any(module == "examples" or module.startswith("examples.") for module in imported_modules(path))]
    assert not importers


AS_SCRIPTS = """
import runpy, sys, traceback
from pathlib import Path
examples = Path.cwd() / "examples"
sys.path.insert(0, str(examples))  # what "python examples/NAME.py" puts first; -P left the root out
stems = {path.stem for path in examples.glob("*.py")}
for path in sorted(examples.glob("*.py")):
    if path.stem == "port_your_model":
        continue  # imports only installed packages; test_port_your_model_proves_its_port runs it
    for name in [name for name in sys.modules if name.split(".")[0] in stems | {"compare", "tests", "examples"}]:
        del sys.modules[name]  # each script imports afresh, as its own process would
    sys.argv = [str(path)] + (["--help"] if "argparse" in path.read_text() else [])
    try:
        runpy.run_path(str(path), run_name="__main__")
    except SystemExit as exit:
        if exit.code not in (0, None):
            print(f"FAILED {path.name}: exit {exit.code}", file=sys.stderr)
    except BaseException:
        print(f"FAILED {path.name}: {traceback.format_exc()}", file=sys.stderr)
"""


def test_every_example_runs_as_a_script_from_the_repository_root():
    # "python examples/NAME.py" puts examples/ (not the root) on sys.path; each example's
    # imports must resolve from there. --help stops the argparse ones before they train. One
    # process runs them all (-P: the root is not on sys.path; the repository's own modules
    # are forgotten between scripts), which spares a start of jax and torch per script.
    completed = subprocess.run([sys.executable, "-P", "-c", AS_SCRIPTS], cwd=REPO_ROOT, capture_output=True,
                               text=True, timeout=300)
    assert completed.returncode == 0 and "FAILED" not in completed.stderr, completed.stderr[-3000:]


def test_the_script_runner_fails_an_example_that_imports_from_the_repository_root(tmp_path):
    (tmp_path / "examples").mkdir()
    (tmp_path / "examples" / "needs_root.py").write_text("import compare\n")
    completed = subprocess.run([sys.executable, "-P", "-c", AS_SCRIPTS], cwd=tmp_path, capture_output=True,
                               text=True, timeout=60)
    assert "FAILED needs_root.py" in completed.stderr and "No module named 'compare'" in completed.stderr


def test_port_your_cnn_proves_every_step_and_a_resumed_checkpoint(monkeypatch, capsys):
    printed = run_example("port_your_cnn", "--steps", "24", "--checkpoint-at", "12", monkeypatch=monkeypatch,
                          capsys=capsys)
    assert re.search(r"^float64: .*every synced step agrees \(24 steps\)", printed, re.M), printed
    assert "float32: every synced step agrees (24 steps)" in printed
    assert "resumed in JAX from torch's step 12:" in printed
    for dtype in ("float64", "float32"):
        assert re.search(rf"from the checkpoint, {dtype}: .*every synced step agrees \(12 steps\)", printed), printed


def test_port_your_gpt_proves_every_step_and_catches_both_traps(monkeypatch, capsys):
    # In float32, six steps of Adam from these weights may already carry a gradient's rounding
    # into a full step of some tiny weight (the whole runs then part); every synced step agrees.
    printed = run_example("port_your_gpt", "--steps", "6", monkeypatch=monkeypatch, capsys=capsys)
    assert "float64: every synced step agrees (6 steps), and so do the whole runs" in printed, printed
    assert re.search(r"float32: (every synced step agrees \(6 steps\), and so do the whole runs|whole runs "
                     r"separate .* every step agrees from the same state \(6 synced steps\))", printed), printed
    for trap in ("the key-padding mask left out", "GELU's tanh form"):
        assert f"trap, {trap}: caught: float64, step 0: the loss differs at the same weights" in printed, printed
