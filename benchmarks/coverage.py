"""Do the reported error bars cover? Coverage of λ̂ ± 1.96·MCSE over many seeds, per kernel.

    python -m benchmarks.coverage                      # 100 seeds × 3 targets × every kernel
    python -m benchmarks.coverage --quick              # 10 seeds (a smoke run, minutes)
    python -m benchmarks.coverage --kernels mclmc vi --seeds 200

Definition (also in docs/benchmarks.md). Each target has an exact finite-n E[λ̂] (the mean of
nβ(L_n(w) − L_n(w*)) under the localized tempered posterior, in closed form for quadratics and by
quadrature for the normal crossing). Each kernel runs with the validation suite's settings for
that target (``validation.cases``, quick profile), once per seed. Seed s is the key
``fold_in(key(base_seed), s)``; the runs are independent and are computed by
``lambda_hat.sample_checkpoints`` with S copies of w* (one compiled program, vmapped over seeds;
each result is what ``lambda_hat.sample`` returns for that key). For every (target, kernel):

- ``coverage``: the fraction of runs with |λ̂ − E[λ̂]| <= 1.96·MCSE (nominal 0.95; with 100 seeds
  its binomial sd is 0.022);
- ``z_rms``: the root mean square of z = (λ̂ − E[λ̂]) / MCSE. 1 when the MCSE is the true sd of λ̂
  and the kernel is unbiased; ``se_ratio`` = sd(λ̂ over seeds) / median(MCSE) separates the two;
- ``bias_se``: mean(λ̂ − E[λ̂]) in units of sd(λ̂)/√S (|bias_se| > 3 is a bias the seeds resolve);
- ``warned``: the fraction of runs that issued a warning (those runs are not confident).

Writes benchmarks/results/coverage.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import lambda_hat as lh
from benchmarks.meta import run_metadata
from validation.cases import CASES, GAMMA

TARGETS = ("quadratic_d5_full", "quadratic_d10_rank4", "nc_w1^2+w2^4")
KERNELS = ("sgld", "rmsprop_sgld", "adam_sgld", "hmc", "nuts", "mclmc", "adjusted_mclmc", "vi")
Z95 = 1.959963984540054
RESULTS = Path(__file__).parent / "results" / "coverage.json"


def summarize(llc: np.ndarray, se: np.ndarray, reference: float, warned: np.ndarray) -> dict[str, Any]:
    """Coverage statistics of S runs' (λ̂, MCSE) against the exact E[λ̂]."""
    llc, se = np.asarray(llc, np.float64), np.asarray(se, np.float64)
    err = llc - reference
    z = err / se
    sd = float(np.std(llc, ddof=1))
    return dict(
        seeds=int(len(llc)),
        reference=float(reference),
        mean_llc=float(np.mean(llc)),
        coverage=float(np.mean(np.abs(err) <= Z95 * se)),
        z_rms=float(np.sqrt(np.mean(z**2))),
        se_ratio=float(sd / np.median(se)),
        sd_llc=sd,
        median_se=float(np.median(se)),
        bias=float(np.mean(err)),
        bias_rel=float(np.mean(err) / reference),
        bias_se=float(np.mean(err) / (sd / math.sqrt(len(llc)))),
        warned=float(np.mean(warned)),
    )


def run_cell(case_name: str, kernel: str, seeds: int, base_seed: int, group_size: int) -> dict[str, Any]:
    case = CASES[case_name]
    target = case.build()
    settings = dict(case.settings(kernel, target, "quick")) if case.settings else {}
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)  # counted per run below
        runs = lh.sample_checkpoints(
            target.loss_fn,
            [target.params] * seeds,
            target.data,
            kernel=kernel,
            key=base_seed,
            gamma=GAMMA,
            group_size=group_size,
            **settings,
        )
    wall = time.perf_counter() - start
    nbeta = runs[0].nbeta
    reference = target.expected_llc(nbeta, GAMMA)
    warned = np.array([bool(r.warnings) for r in runs.results])
    out = summarize(runs.llc, runs.llc_se, reference, warned)
    out.update(
        target=case_name,
        kernel=kernel,
        dim=target.dim,
        settings={k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in settings.items()},
        wall_s=wall,
        compile_s=runs.compile_s,
        llc=[float(x) for x in runs.llc],
        llc_se=[float(x) for x in runs.llc_se],
        warnings=sorted({w.split(":")[0][:120] for r in runs.results for w in r.warnings}),
    )
    return out


def table(cells: list[dict[str, Any]]) -> str:
    lines = [
        "| target | kernel | seeds | E[λ̂] | coverage | z RMS | sd/MCSE | bias (rel) | bias / (sd/√S) | warned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        lines.append(
            f"| {c['target']} | {c['kernel']} | {c['seeds']} | {c['reference']:.4g} | {c['coverage']:.2f} | "
            f"{c['z_rms']:.2f} | {c['se_ratio']:.2f} | {c['bias_rel']:+.2%} | {c['bias_se']:+.1f} | "
            f"{c['warned']:.0%} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="10 seeds per cell (a smoke run)")
    parser.add_argument("--seeds", type=int, default=None, help="runs per (target, kernel); default 100")
    parser.add_argument("--kernels", nargs="+", default=list(KERNELS), choices=KERNELS)
    parser.add_argument("--targets", nargs="+", default=list(TARGETS), choices=sorted(CASES))
    parser.add_argument("--base-seed", type=int, default=0)
    parser.add_argument("--group-size", type=int, default=25, help="seeds per call of the compiled program")
    parser.add_argument("--out", type=Path, default=None, help=f"results JSON (default {RESULTS})")
    args = parser.parse_args(argv)
    seeds = args.seeds or (10 if args.quick else 100)
    out_path = args.out or (RESULTS.with_name("coverage_quick.json") if args.quick else RESULTS)
    doc: dict[str, Any] = {
        "meta": run_metadata(seeds=seeds, base_seed=args.base_seed),
        "cells": [],
    }
    for name in args.targets:
        for kernel in args.kernels:
            cell = run_cell(name, kernel, seeds, args.base_seed, min(args.group_size, seeds))
            doc["cells"].append(cell)
            print(
                f"{name:22s} {kernel:13s} coverage={cell['coverage']:.2f} z_rms={cell['z_rms']:.2f} "
                f"sd/se={cell['se_ratio']:.2f} bias={cell['bias_rel']:+.2%} ({cell['bias_se']:+.1f} se) "
                f"warned={cell['warned']:.0%} wall={cell['wall_s']:.0f}s load={os.getloadavg()[0]:.1f}",
                flush=True,
            )
            out_path.parent.mkdir(parents=True, exist_ok=True)
            out_path.write_text(json.dumps(doc, indent=1))
    print()
    print(table(doc["cells"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
