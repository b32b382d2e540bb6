"""``python -m compare``: run every case on JAX and PyTorch, in float64 and float32, and judge them.

    python -m compare                         # every case, float64 then float32, CPU
    python -m compare --case iris-softmax --details --json report.json
    python -m compare --dtype float64 --mnist-dir ../shared/data/mnist

Prints a header, then one line per case as it finishes (the worst error as a multiple of
what its rule allows, and the first step where a history leaves its band), then the
summary. ``--details`` adds every quantity. Exits 1 if any quantity of any case is out of
bounds, 2 on bad input (an unknown case, a missing or corrupt MNIST folder or text file), naming it.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

import funcgrad as fg
from compare.cases import CASES
from compare.plots import plot_case, write_index
from compare.run import run_in_dtypes
from compare.runtime import (Context, check_output_path, describe_environment, mnist_source, select_devices,
                             set_matmul_precision, text_source)
from funcgrad import parity
from funcgrad.parity.report import INFORMATION


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m compare", description=__doc__.splitlines()[0])
    parser.add_argument("--case", action="append", choices=list(CASES), metavar="NAME",
                        help=f"run only this case (repeatable): {', '.join(CASES)}")
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument("--dtype", choices=("both", "float32", "float64"), default="both",
                           help="float64 (proves the algorithm), float32 (judged by the error model "
                                "against the float64 run), or both (default)")
    precision.add_argument("--x64", action="store_const", const="float64", dest="dtype",
                           help="same as --dtype float64")
    parser.add_argument("--device", choices=("cpu", "gpu", "auto"), default="cpu",
                        help="where both frameworks run (auto: GPU when both see one)")
    parser.add_argument("--details", action="store_true", help="also print every quantity of every case")
    parser.add_argument("--json", metavar="PATH", help="write the machine-readable report here")
    parser.add_argument("--plots", metavar="DIR",
                        help="write a PNG per training case (both runs and the band) and an index.md here")
    parser.add_argument("--mnist-dir", metavar="DIR",
                        help="folder of the four MNIST IDX files (else $FUNCGRAD_MNIST_DIR; "
                             "with neither, sklearn's 8x8 digits stand in)")
    parser.add_argument("--text", metavar="FILE",
                        help="char-gpt's corpus, tinyshakespeare's input.txt (else $FUNCGRAD_TEXT; with neither, "
                             "an excerpt shipped with funcgrad stands in)")
    parser.add_argument("--download", action="store_true",
                        help="fetch real MNIST and tinyshakespeare (md5-checked) into the cache folder "
                             "($XDG_CACHE_HOME/funcgrad/), used from then on when no folder or file is named")
    parser.add_argument("--seed", type=int, default=0, help="seed of every random draw")
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="train at most N steps in the cases that take minutes (mnist-cnn, char-gpt); "
                             "default: their full run")
    args = parser.parse_args(argv)
    if args.max_steps is not None and args.max_steps < 1:
        parser.error(f"--max-steps must be a positive number of steps, got {args.max_steps}")
    check_output_path(parser, "--json", args.json)
    return args


def case_line(entry: dict, dtypes: list[str]) -> str:
    """``iris-softmax   8   0.00x   0.27x  -   12.3 s  ok``: worst per dtype, divergence, time, verdict."""
    reports = [entry[dtype] for dtype in dtypes]
    cells = [f"{entry['name']:<22}", f"{len(reports[0]['quantities']):>3}"]
    cells += [f"{parity.format_ratio(entry[dtype]['worst_band_ratio']):>15}" for dtype in dtypes]
    divergences = [
        f"{report['dtype']}: {report['first_divergence']['quantity']} at step "
        + f"{report['first_divergence']['step']:,}".replace(",", " ")
        for report in reports if report["first_divergence"]
    ]
    failing = [f"{report['dtype']}: {q['name']}" for report in reports for q in report["quantities"]
               if not q["passed"] and q["first_divergence"] is None and not q["rule"].endswith(INFORMATION)]
    cells.append(f"{'; '.join(divergences + failing) or '-':<30}")
    cells.append(f"{sum(report['seconds'] for report in reports):6.1f} s")
    cells.append("ok" if entry["passed"] else "FAIL")
    return "  ".join(cells)


def details_table(report: dict) -> str:
    """Every quantity of one case in one dtype, one row each."""
    return f"{report['name']} ({report['dtype']})\n" + parity.format_table(report["quantities"])


def header(environment: dict, dtypes: list[str], mnist_dir: str | None, text_file: str | None = None) -> str:
    versions = environment["versions"]
    data, text = mnist_source(mnist_dir), text_source(text_file)
    return "\n".join([
        f"funcgrad comparison on {environment['device']['jax']} / {environment['device']['torch']} "
        f"({environment['device']['name']}), {' then '.join(dtypes)}",
        f"jax {versions['jax']}, optax {versions['optax']}, torch {versions['torch']}, "
        f"python {versions['python']}",
        "MNIST cases: " + (f"real MNIST from {data}" if data else
                           "sklearn's 8x8 digits stand in, 20 a batch for 10 epochs (no MNIST folder: "
                           "--mnist-dir DIR, $FUNCGRAD_MNIST_DIR or --download)"),
        "char-gpt: " + (f"the text of {text}" if text else
                        "an excerpt of tinyshakespeare stands in, its first 49 980 characters (no text file: "
                        "--text FILE, $FUNCGRAD_TEXT or --download)"),
        f"float64: |jax - torch| <= 1e-10 + 1e-10 |torch|; float32: each element's distance to the "
        f"float64 run within {parity.BAND_FACTOR:g}x PyTorch's own noise at its scale + "
        f"{parity.FLOOR_ULPS:g} ulps of itself",
        "worst: the largest error of a case as a multiple of what its rule allows (ok up to 1.00x)",
        f"{'case':<22}  {'qty':>3}  " + "  ".join(f"{d + ' worst':>15}" for d in dtypes)
        + f"  {'first divergence':<30}  {'time':>8}  verdict",
    ])


def main(argv=None) -> int:
    started = time.perf_counter()
    args = parse_args(argv)
    if args.download:
        try:
            print(f"MNIST downloaded and checked: {fg.download_mnist(fg.mnist_cache_dir())}")
            print(f"tinyshakespeare downloaded and checked: {fg.download_tinyshakespeare(fg.text_cache_dir())}")
        except (OSError, fg.MnistError, fg.TextDataError) as error:
            print(f"error: --download: {error}", file=sys.stderr)
            return 2
    dtypes = ["float64", "float32"] if args.dtype == "both" else [args.dtype]
    jax_device, torch_device = select_devices(args.device)
    precision = set_matmul_precision()
    ctx = Context(dtype=np.dtype(dtypes[-1]), jax_device=jax_device, torch_device=torch_device,
                  seed=args.seed, mnist_dir=args.mnist_dir, max_steps=args.max_steps,
                  text_file=args.text)
    environment = describe_environment(ctx)
    summary = [header(environment, dtypes, args.mnist_dir, args.text)]
    print(summary[0], flush=True)
    if args.plots:
        Path(args.plots).mkdir(parents=True, exist_ok=True)

    cases, images = [], []
    for name in args.case or CASES:
        try:
            entry = run_in_dtypes(name, ctx, dtypes, keep_sides=bool(args.plots))
        except (FileNotFoundError, fg.MnistError, fg.TextDataError) as error:
            print(f"error: {name}: {error}", file=sys.stderr)
            return 2
        if args.plots:
            images += [path for path in [plot_case(entry, Path(args.plots))] if path]
        entry.pop("sides", None)
        summary.append(case_line(entry, dtypes))
        print(summary[-1], flush=True)
        for dtype in dtypes:
            for q in entry[dtype]["quantities"]:
                if q["note"] and not q["first_divergence"]:
                    print(f"    note: {dtype} {q['name']}: {q['note']}")
        cases.append(entry)

    if args.details:
        for entry in cases:
            for dtype in dtypes:
                print("\n" + details_table(entry[dtype]))
    data_notes = {entry[dtypes[0]]["data"] for entry in cases if "data" in entry[dtypes[0]]}
    for note in sorted(data_notes):
        print(f"data: {note}")
    failed = [entry["name"] for entry in cases if not entry["passed"]]
    summary.append(f"{len(cases) - len(failed)} passed, {len(failed)} failed in {time.perf_counter() - started:.1f} s")
    print(summary[-1])
    if failed:
        print(f"failed: {', '.join(failed)} (rerun with --details to see every quantity)")

    if args.json:
        report = {
            "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "dtypes": dtypes,
            "seed": args.seed,
            "matmul_precision": precision,
            "error_model": {"band_factor": parity.BAND_FACTOR, "floor_ulps": parity.FLOOR_ULPS,
                            "reference": "the PyTorch side in float64, from the same inputs"},
            "environment_variables": {name: os.environ.get(name) for name in
                                      ("XLA_FLAGS", "ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS")},
            **environment,
            "passed": not failed,
            "cases": cases,
        }
        with open(args.json, "w") as f:
            json.dump(report, f, indent=2, default=float)
        print(f"report written to {args.json}")
    if args.plots:
        print(f"plots: {write_index(Path(args.plots), summary, images)} ({len(images)} images)")
    return 0 if not failed else 1


if __name__ == "__main__":
    sys.exit(main())
