"""``python -m compare``: the interface other tools read (flags, JSON report, exit status)."""

import functools
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import compare.__main__ as cli
import funcgrad as fg
from compare import runtime
from compare.cases import grad_poly_trig
from tests.conftest import REPO_ROOT

FAST_CASES = ["--case", "grad-poly-trig", "--case", "one-sample-logistic"]


def run_cli(*args, tmp_path):
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-m", "compare", *args, "--json", str(report_path)],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=300,
    )
    return completed, json.loads(report_path.read_text())


def test_cli_prints_one_line_per_case_and_writes_the_json_report(tmp_path):
    completed, report = run_cli(*FAST_CASES, "--device", "cpu", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    lines = completed.stdout.splitlines()
    assert any(re.fullmatch(r"2 passed, 0 failed in \d+\.\d s", line) for line in lines), lines
    assert [line.split()[0] for line in lines if line.endswith(" ok")] == ["grad-poly-trig", "one-sample-logistic"]
    assert report["dtypes"] == ["float64", "float32"] and report["passed"] is True
    assert {"jax", "jaxlib", "optax", "torch"} <= set(report["versions"])
    assert report["device"]["kind"] == "cpu"
    assert report["matmul_precision"]["jax_default_matmul_precision"] == "highest"
    assert report["error_model"]["band_factor"] >= 1
    assert [case["name"] for case in report["cases"]] == ["grad-poly-trig", "one-sample-logistic"]
    for case in report["cases"]:
        assert case["passed"] is True
        for dtype in ("float64", "float32"):
            assert case[dtype]["seed"] == 0 and case[dtype]["dtype"] == dtype
            for q in case[dtype]["quantities"]:
                assert {"name", "rule", "max_abs_err", "max_rel_err", "band_ratio", "passed"} <= set(q)


def test_cli_details_prints_every_quantity(tmp_path):
    completed, _ = run_cli("--case", "grad-poly-trig", "--details", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "dz/dx" in completed.stdout and "torch→f64" in completed.stdout


def test_cli_x64_runs_float64_only(tmp_path):
    completed, report = run_cli(*FAST_CASES, "--x64", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert report["dtypes"] == ["float64"]
    assert all("float32" not in case for case in report["cases"])
    assert all(q["rtol"] <= 1e-10 for case in report["cases"] for q in case["float64"]["quantities"])


def test_cli_exits_nonzero_on_a_mismatch_and_names_the_quantity(monkeypatch, capsys):
    honest_jax_side = grad_poly_trig.jax_side

    def off_by_a_little(x, y):
        results = honest_jax_side(x, y)
        return results | {"z": results["z"] + np.float32(1e-3)}

    monkeypatch.setattr(grad_poly_trig, "jax_side", off_by_a_little)
    assert cli.main(["--case", "grad-poly-trig"]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "float32: z" in out and "float64: z" in out


def test_readme_test_command_is_what_ci_runs():
    ci_lines = (REPO_ROOT / ".ci" / "run").read_text().splitlines()
    readme = (REPO_ROOT / "README.md").read_text()
    test_command = next(line for line in ci_lines if "pytest" in line and not line.startswith("#"))
    assert test_command in readme


def test_cli_names_a_missing_mnist_folder_and_exits_2(tmp_path, capsys):
    assert cli.main(["--case", "mnist-softmax", "--mnist-dir", str(tmp_path / "nowhere")]) == 2
    assert "nowhere" in capsys.readouterr().err


def test_cli_names_a_corrupt_mnist_file_and_exits_2(tmp_path, mnist_dir, capsys):
    for file in Path(mnist_dir).glob("*.gz"):
        shutil.copy(file, tmp_path / file.name)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(b"not gzip at all")
    assert cli.main(["--case", "mnist-softmax", "--mnist-dir", str(tmp_path)]) == 2
    assert "t10k-labels-idx1-ubyte.gz" in capsys.readouterr().err


def test_download_fills_the_cache_which_later_runs_read(tmp_path, mnist_dir, text_file, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(fg.MNIST_ENV_VAR)
    mirror = Path(mnist_dir).resolve().as_uri() + "/"  # a local mirror: the same files, md5-checked
    monkeypatch.setattr(fg, "download_mnist", functools.partial(fg.download_mnist, base_url=mirror))
    monkeypatch.delenv(fg.TEXT_ENV_VAR, raising=False)
    monkeypatch.setattr(fg, "download_tinyshakespeare",
                        functools.partial(fg.download_tinyshakespeare, url=text_file.resolve().as_uri()))
    assert runtime.mnist_source(None) is None and runtime.text_source(None) is None
    assert cli.main(["--download", "--case", "grad-mean"]) == 0
    cache = tmp_path / "funcgrad" / "mnist"
    assert sorted(path.name for path in cache.iterdir()) == sorted(path.name for path in Path(mnist_dir).glob("*.gz"))
    assert runtime.mnist_source(None) == str(cache)
    text = tmp_path / "funcgrad" / "tinyshakespeare" / "input.txt"
    assert runtime.text_source(None) == str(text) and text.read_bytes() == text_file.read_bytes()
    printed = capsys.readouterr().out
    assert f"real MNIST from {cache}" in printed and f"char-gpt: the text of {text}" in printed


def test_download_offline_names_the_fault_and_exits_2(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))

    def offline(directory):
        raise OSError("could not reach https://example.invalid/mnist/train-images-idx3-ubyte.gz")

    monkeypatch.setattr(fg, "download_mnist", offline)
    assert cli.main(["--download", "--case", "grad-mean"]) == 2
    assert "--download" in capsys.readouterr().err


def test_plots_draw_each_training_case_and_an_index(tmp_path):
    plots = tmp_path / "plots"
    completed, _ = run_cli("--case", "linear-regression", "--case", "grad-mean", "--plots", str(plots),
                           tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert sorted(path.name for path in plots.iterdir()) == ["index.md", "linear-regression.png"]
    assert (plots / "linear-regression.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    index = (plots / "index.md").read_text()
    assert "![linear-regression](linear-regression.png)" in index and "2 passed, 0 failed" in index
