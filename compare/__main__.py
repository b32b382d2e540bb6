"""``python -m compare``: run every case on JAX and PyTorch, print the table, write JSON.

    python -m compare                         # every case, float32, CPU (or --device auto)
    python -m compare --case iris-softmax --x64 --json report.json
    python -m compare --mnist-dir ../shared/data/mnist

Exits 1 if any quantity of any case disagrees beyond its tolerance, 2 on bad input (an
unknown case, a missing or corrupt MNIST folder), naming the problem.
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys

import numpy as np

import funcgrad as fg
from compare.cases import CASES
from compare.run import run_case
from compare.runtime import Context, describe_environment, select_devices, set_matmul_precision

COLUMNS = ("case", "quantity", "JAX", "PyTorch", "max abs err", "max rel err", "tol (rtol/atol)", "pass")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m compare", description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=list(CASES), metavar="NAME",
                        help=f"run only this case (repeatable): {', '.join(CASES)}")
    parser.add_argument("--x64", action="store_true",
                        help="float64 on both sides (jax x64, torch.float64) instead of float32")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                        help="where both frameworks run (auto: GPU when both see one)")
    parser.add_argument("--json", metavar="PATH", help="write the machine-readable report here")
    parser.add_argument("--mnist-dir", metavar="DIR",
                        help="folder of the four MNIST IDX files (else $FUNCGRAD_MNIST_DIR; "
                             "with neither, sklearn's 8x8 digits stand in)")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    return parser.parse_args(argv)


def format_table(cases: list[dict]) -> str:
    rows = [COLUMNS]
    for case in cases:
        for q in case["quantities"]:
            tolerance = "exact" if q["kind"] == "exact" else f"{q['rtol']:.1e}/{q['atol']:.1e}"
            rows.append((
                case["name"], q["name"], q["jax"], q["torch"],
                f"{q['max_abs_err']:.2e}", f"{q['max_rel_err']:.2e}", tolerance,
                "ok" if q["passed"] else "FAIL",
            ))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(COLUMNS))]
    lines = [" | ".join(str(cell).ljust(w) for cell, w in zip(row, widths)) for row in rows]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    jax_device, torch_device = select_devices(args.device)
    precision = set_matmul_precision()
    ctx = Context(
        dtype=np.dtype(np.float64 if args.x64 else np.float32),
        jax_device=jax_device, torch_device=torch_device,
        seed=args.seed, mnist_dir=args.mnist_dir,
    )
    environment = describe_environment(ctx)
    print(f"funcgrad comparison: {ctx.dtype.name} on {environment['device']['jax']} / "
          f"{environment['device']['torch']} ({environment['device']['name']})")

    cases = []
    for name in args.case or CASES:
        try:
            case = run_case(name, ctx)
        except (FileNotFoundError, fg.MnistError) as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            return 2
        if "data" in case:
            print(f"{name}: data = {case['data']}")
        cases.append(case)
    for case in cases:
        for q in case["quantities"]:
            if q["note"]:
                print(f"note: {case['name']} / {q['name']}: {q['note']}")

    print(format_table(cases))
    passed = all(case["passed"] for case in cases)
    failed = [case["name"] for case in cases if not case["passed"]]
    print(f"{len(cases) - len(failed)} passed, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else ""))

    if args.json:
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "dtype": ctx.dtype.name,
            "seed": args.seed,
            "matmul_precision": precision,
            **environment,
            "passed": passed,
            "cases": cases,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=float)
        print(f"report written to {args.json}")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
