"""``python -m compare.matrix``: the comparison on every CPU instruction-set corner, one verdict.

    python -m compare.matrix                       # 3 XLA ISAs x 3 ATen ISAs x {all cores, 1 thread}
    python -m compare.matrix --corners --case iris-softmax --case sweep-iris

XLA and PyTorch pick their CPU kernels by instruction set (SSE4.2, AVX2, AVX-512), and so
round float32 sums differently on different machines. Each configuration runs
``python -m compare`` in a fresh process with ``XLA_FLAGS=--xla_cpu_max_isa=...`` and
``ATEN_CPU_CAPABILITY=...`` set (and, for one thread, both frameworks held to one), then
this prints and writes one table: per case and configuration, the worst error as a
multiple of what the rule allows, and the largest ratio of JAX's to PyTorch's float32
distance to float64 seen anywhere (the least band factor each quantity needed), which is
what ``funcgrad.parity.BAND_FACTOR`` is chosen from.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from funcgrad.parity.report import INFORMATION

XLA_ISAS = ("SSE4_2", "AVX2", None)  # None: XLA's own choice for this CPU
ATEN_ISAS = ("default", "avx2", None)  # None: ATen's own choice ("default" means no SIMD dispatch)
CORNERS = (("SSE4_2", "default"), ("AVX2", "avx2"), (None, None))
ONE_THREAD = {
    "OMP_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_THREAD_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
RESULTS = Path(__file__).parent / "results"


def configurations(corners_only: bool, threads: tuple[str, ...]) -> list[dict]:
    """Every (XLA ISA, ATen ISA, threads) to run, as a dict of labels."""
    pairs = CORNERS if corners_only else tuple(itertools.product(XLA_ISAS, ATEN_ISAS))
    return [{"xla": xla, "aten": aten, "threads": t} for (xla, aten), t in itertools.product(pairs, threads)]


def environment(config: dict) -> dict[str, str]:
    """The process environment that puts both frameworks in ``config``."""
    env = {k: v for k, v in os.environ.items() if k not in ("XLA_FLAGS", "ATEN_CPU_CAPABILITY")}
    xla_flags = [f"--xla_cpu_max_isa={config['xla']}"] if config["xla"] else []
    if config["threads"] == "1":
        env |= {k: v for k, v in ONE_THREAD.items() if k != "XLA_THREAD_FLAGS"}
        xla_flags.append(ONE_THREAD["XLA_THREAD_FLAGS"])
    if xla_flags:
        env["XLA_FLAGS"] = " ".join(xla_flags)
    if config["aten"]:
        env["ATEN_CPU_CAPABILITY"] = config["aten"]
    return env


def label(config: dict) -> str:
    return (f"xla {config['xla'] or '(own)'} / aten {config['aten'] or '(own)'} / "
            f"{'1 thread' if config['threads'] == '1' else 'all cores'}")


def run_configuration(config: dict, case_args: list[str]) -> dict:
    """``python -m compare --json`` in a fresh process under ``config``; its report."""
    with tempfile.TemporaryDirectory() as tmp:
        report_path = Path(tmp) / "report.json"
        completed = subprocess.run(
            [sys.executable, "-m", "compare", *case_args, "--json", str(report_path)],
            env=environment(config), cwd=Path(__file__).parents[1], capture_output=True, text=True,
        )
        if completed.returncode not in (0, 1) or not report_path.exists():
            raise RuntimeError(f"{label(config)}: python -m compare exited {completed.returncode}\n"
                               f"{completed.stdout[-2000:]}{completed.stderr[-2000:]}")
        return json.loads(report_path.read_text())


def factors_needed(report: dict, synced: bool = False) -> list[float]:
    """Per float32 quantity under the error model, the least band factor that would pass it:
    the whole-run quantities (judged with factor 4), or with ``synced`` the step-synchronized
    ones (one step from a shared state, factor 8). A whole run shown for information beside
    synced steps that agree is neither."""
    return [
        q["factor_needed"]
        for case in report["cases"] if "float32" in case
        for q in case["float32"]["quantities"]
        if q["factor_needed"] is not None and not q["rule"].endswith(INFORMATION)
        and q["name"].endswith("(synced)") == synced
    ]


def markdown(runs: list[tuple[dict, dict]]) -> str:
    """The results file: one row per case, one column per configuration."""
    first = runs[0][1]
    cases = [case["name"] for case in first["cases"]]
    dtypes = first["dtypes"]
    lines = [
        f"# Portability matrix, {first['date'][:10]}",
        "",
        f"Device: {first['device']['name']}, {first['device']['cpu_count']} cores. "
        + ", ".join(f"{k} {v}" for k, v in first["versions"].items()) + ".",
        f"Error model: each float32 element within {first['error_model']['band_factor']:g}x PyTorch's "
        f"own noise at its scale + {first['error_model']['floor_ulps']:g} ulps of itself; float64 within "
        "1e-10 + 1e-10 |torch|. Each cell: worst error as a multiple of what its rule allows "
        "(passes at <= 1), float64 / float32; FAIL marks a failed case.",
        "",
        "Regenerate: `python -m compare.matrix` (every configuration) or "
        "`python -m compare.matrix --corners` (the three CI corners).",
        "",
    ]
    header = ["case"] + [f"{i + 1}" for i in range(len(runs))]
    lines += ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for index, name in enumerate(cases):
        cells = [name]
        for _, report in runs:
            case = report["cases"][index]
            ratios = " / ".join(f"{case[d]['worst_band_ratio']:.2f}" for d in dtypes)
            cells.append(ratios + ("" if case["passed"] else " FAIL"))
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Configurations:", ""]
    for i, (config, report) in enumerate(runs):
        ratios, synced = factors_needed(report), factors_needed(report, synced=True)
        passed = sum(case["passed"] for case in report["cases"])
        lines.append(f"{i + 1}. {label(config)}: {passed} passed, {len(report['cases']) - passed} failed; "
                     f"least band factor that passes every whole-run float32 quantity "
                     f"{max(ratios, default=0):.2f} ({len(ratios)} quantities, against 4)"
                     + (f", every synced step {max(synced):.2f} ({len(synced)}, against 8)" if synced else ""))
    for what, synced in (("quantity", False), ("synced step's quantity", True)):
        ratios = sorted(r for _, report in runs for r in factors_needed(report, synced))
        if ratios:
            lines += ["", f"Over all configurations, the least band factor that passes a {what}: largest "
                          f"{ratios[-1]:.2f}, 99th percentile {ratios[int(0.99 * (len(ratios) - 1))]:.2f}, "
                          f"median {ratios[len(ratios) // 2]:.2f} ({len(ratios)} quantities)."]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m compare.matrix", description=__doc__.splitlines()[0])
    parser.add_argument("--corners", action="store_true",
                        help="only SSE4_2+default, AVX2+avx2 and both frameworks' own choice")
    parser.add_argument("--threads", choices=("all", "1", "both"), default="both")
    parser.add_argument("--case", action="append", metavar="NAME", help="passed on to python -m compare")
    parser.add_argument("--output", metavar="PATH",
                        help=f"results file (default {RESULTS}/DATE-matrix.md, with a .json beside it)")
    args = parser.parse_args(argv)
    threads = ("all", "1") if args.threads == "both" else (args.threads,)
    case_args = [arg for name in args.case or [] for arg in ("--case", name)]

    runs = []
    for config in configurations(args.corners, threads):
        report = run_configuration(config, case_args)
        failed = [case["name"] for case in report["cases"] if not case["passed"]]
        print(f"{label(config):<40} {len(report['cases']) - len(failed)} passed, {len(failed)} failed"
              + (f": {', '.join(failed)}" if failed else ""), flush=True)
        runs.append((config, report))

    output = Path(args.output or RESULTS / f"{datetime.date.today().isoformat()}-matrix.md")
    output.write_text(markdown(runs))
    output.with_suffix(".json").write_text(json.dumps(
        [{"configuration": config, "report": report} for config, report in runs], indent=1, default=float))
    print(markdown(runs))
    print(f"written to {output}")
    failed_runs = sum(not report["passed"] for _, report in runs)
    print(f"{len(runs) - failed_runs} passed, {failed_runs} failed")
    return 0 if failed_runs == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
