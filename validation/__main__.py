"""python -m validation --profile quick|full [--kernel K ...] [--case C ...] [--x64] --out DIR [--resume]"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation", description=__doc__)
    parser.add_argument("--profile", choices=("quick", "full"), default="quick")
    parser.add_argument("--kernel", action="append", help="kernel to run (repeatable); default: all")
    parser.add_argument("--case", action="append", help="case to run (repeatable); default: the profile's")
    parser.add_argument("--x64", action="store_true", help="run in float64 (JAX_ENABLE_X64=1)")
    parser.add_argument("--out", type=Path, default=Path("validation_out"))
    parser.add_argument("--resume", action="store_true", help="keep finished results in OUT/results.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--report", type=Path, default=None, help="also render the Markdown/PNG report into this folder (default: OUT)"
    )
    args = parser.parse_args(argv)
    if args.x64:
        os.environ["JAX_ENABLE_X64"] = "1"
    import jax

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import lambda_hat as lh
    from validation import records, report, runner
    from validation.cases import cases_for

    kernels = args.kernel or sorted(lh.KERNELS)
    unknown = [k for k in kernels if k not in lh.KERNELS]
    if unknown:
        parser.error(f"--kernel: unknown kernel(s) {unknown}; expected some of {sorted(lh.KERNELS)}")
    try:
        cases = cases_for(args.profile, args.case)
        if args.resume:  # checked before any work: a bad file is an argument error (exit 2)
            records.load_for_resume(
                args.out / "results.json", profile=args.profile, x64=bool(jax.config.jax_enable_x64)
            )
    except ValueError as err:
        parser.error(str(err))
    print(
        f"validation: profile {args.profile}, {len(cases)} cases × {len(kernels)} kernels, "
        f"{'float64' if jax.config.jax_enable_x64 else 'float32'}, results in {args.out / 'results.json'}",
        flush=True,
    )
    doc = runner.run(cases, kernels, args.out, profile=args.profile, resume=args.resume, seed=args.seed)
    path = report.render(doc, args.report or args.out)
    if args.report is not None and args.report.resolve() != args.out.resolve():
        records.save(args.report / "results.json", doc)  # the report's own source, for regeneration
    statuses = [r["status"] for r in doc["results"]]
    print(
        f"report: {path}; "
        + ", ".join(f"{statuses.count(s)} {s}" for s in ("pass", "fail", "flagged", "info", "error"))
    )
    return 0 if all(s in ("pass", "info", "flagged") for s in statuses) else 1


if __name__ == "__main__":
    sys.exit(main())
