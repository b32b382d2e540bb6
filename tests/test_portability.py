"""The verdict holds on other instruction sets: the long-run cases on the CI corners of the
portability matrix (compare/matrix.py), each corner in a fresh process. The cases are dealt
out between the two corners, so each long run meets another instruction set once in the
suite (``python -m compare.matrix`` runs every case on every corner).

The third corner, both frameworks' own choice on this machine, is tests/test_parity.py.
"""

import json
import subprocess
import sys

import pytest

from compare import matrix
from tests.conftest import REPO_ROOT

LONG_RUN_CASES = ["iris-softmax", "sweep-iris", "mnist-softmax", "linear-regression",
                  "binary-logistic", "newton-logistic", "mnist-mlp", "digits-mlp-synced"]
OTHER_CORNERS = [corner for corner in matrix.CORNERS if corner != (None, None)]


@pytest.mark.parametrize("index", range(len(OTHER_CORNERS)),
                         ids=[f"{x}+{a}" for x, a in OTHER_CORNERS])
def test_long_runs_pass_on_another_instruction_set(index, tmp_path, mnist_dir):
    xla, aten = OTHER_CORNERS[index]
    cases = LONG_RUN_CASES[index::len(OTHER_CORNERS)]
    config = {"xla": xla, "aten": aten, "threads": "all"}
    report_path = tmp_path / "report.json"
    completed = subprocess.run(
        [sys.executable, "-m", "compare", *[arg for name in cases for arg in ("--case", name)],
         "--mnist-dir", mnist_dir, "--json", str(report_path)],
        cwd=REPO_ROOT, env=matrix.environment(config), capture_output=True, text=True, timeout=600,
    )
    assert completed.returncode == 0, completed.stdout + completed.stderr
    report = json.loads(report_path.read_text())
    assert report["environment_variables"]["XLA_FLAGS"] == f"--xla_cpu_max_isa={xla}"
    assert report["environment_variables"]["ATEN_CPU_CAPABILITY"] == aten
    assert [case["name"] for case in report["cases"]] == cases


def test_every_long_run_meets_another_instruction_set():
    dealt = [name for index in range(len(OTHER_CORNERS)) for name in LONG_RUN_CASES[index::len(OTHER_CORNERS)]]
    assert sorted(dealt) == sorted(LONG_RUN_CASES) and len(OTHER_CORNERS) == 2


def test_one_thread_holds_both_frameworks_to_one():
    env = matrix.environment({"xla": "AVX2", "aten": None, "threads": "1"})
    assert env["OMP_NUM_THREADS"] == "1" and "ATEN_CPU_CAPABILITY" not in env
    assert env["XLA_FLAGS"].startswith("--xla_cpu_max_isa=AVX2 ")
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]


def test_the_full_matrix_is_every_pair_of_instruction_sets_on_all_cores_and_one_thread():
    configurations = matrix.configurations(corners_only=False, threads=("all", "1"))
    assert len(configurations) == len(matrix.XLA_ISAS) * len(matrix.ATEN_ISAS) * 2 == 18
