"""``python -m compare``: the interface other tools read (flags, JSON report, exit status)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import compare.__main__ as cli
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


def test_cli_prints_the_table_and_writes_the_json_report(tmp_path):
    completed, report = run_cli(*FAST_CASES, "--device", "cpu", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "max abs err" in completed.stdout and "2 passed, 0 failed" in completed.stdout
    assert report["dtype"] == "float32" and report["passed"] is True
    assert {"jax", "jaxlib", "optax", "torch"} <= set(report["versions"])
    assert report["device"]["kind"] == "cpu"
    assert report["matmul_precision"]["jax_default_matmul_precision"] == "highest"
    assert [case["name"] for case in report["cases"]] == ["grad-poly-trig", "one-sample-logistic"]
    for case in report["cases"]:
        assert case["passed"] is True and case["seed"] == 0
        for q in case["quantities"]:
            assert {"name", "max_abs_err", "max_rel_err", "rtol", "atol", "passed"} <= set(q)


def test_cli_x64_runs_float64_on_both_sides(tmp_path):
    completed, report = run_cli(*FAST_CASES, "--x64", tmp_path=tmp_path)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert report["dtype"] == "float64"
    assert all(q["rtol"] <= 1e-10 for case in report["cases"] for q in case["quantities"])


def test_cli_exits_nonzero_on_a_mismatch(monkeypatch, capsys):
    honest_jax_side = grad_poly_trig.jax_side

    def off_by_a_little(x, y):
        results = honest_jax_side(x, y)
        return results | {"z": results["z"] + np.float32(1e-3)}

    monkeypatch.setattr(grad_poly_trig, "jax_side", off_by_a_little)
    assert cli.main(["--case", "grad-poly-trig"]) == 1
    assert "FAIL" in capsys.readouterr().out


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
