"""Accuracy at scale: λ̂ against the local λ of random deep linear networks, per size bucket.

    python -m benchmarks.dln_accuracy                 # buckets 1e3 (N=20), 1e4 (N=20), 1e5 (N=5)
    python -m benchmarks.dln_accuracy --quick         # bucket 1e3, N = 5, sgld_lit and rmsprop_curv
    python -m benchmarks.dln_accuracy --buckets 1000 --networks 20 --methods sgld_lit sgld_curv

Protocol (Furman & Lau 2024; Hitchcock & Hoogland 2025). Networks come from
``targets.random_deep_linear_network(bucket, seed)``: architecture uniform in the bucket's ranges,
each teacher layer's rank cut with probability 1/2, inputs uniform on [−10, 10], a noiseless
teacher, n = 1e5 (the literature uses 1e6 for the 1e5 bucket; 1e5 keeps the data in memory),
batch 500, γ = 1, nβ = n/log n, 4 chains.

Ground truth. Aoyagi's λ is the *global* coefficient of the DLN; the λ the estimators target is
the *local* one at the teacher w*. It is known in closed form when the product map has its
generic Jacobian rank at w* (``targets.dln_local_lam``: λ_local = rank/2), and unknown
otherwise. Seeds are screened in order (0, 1, 2, …) and only teachers with a known local λ are
run; the JSON records how many were screened, how many had a known local λ and how many of those
differ from Aoyagi's λ. Relative errors are against the local λ.

Methods, all at the same budget per bucket (steps per chain × 4 chains, warmup included):

- ``sgld_lit``: SGLD at the literature's ε (5e-7 for the 1e3 and 1e4 buckets, 1e-7 for 1e5) and
  step count (1e4; 5e4 for 1e5), every step a draw (no burn-in discarded);
- ``sgld_curv``: SGLD at ε = 0.04/(nβ·a_max + γ) (``info["suggested_step_size"]``, a_max the top
  Hessian eigenvalue at w*: the stiffest direction moves 2% of its width per step), the first
  20% of the steps as warmup;
- ``rmsprop_curv``: RMSProp-SGLD at ε = 0.04/√(nβ·a_max + γ), warmup 20% (v adapted, then frozen);
- ``adam_curv``: Adam-SGLD at that ε/20 (its documented ratio to RMSProp-SGLD), warmup 20%.

The literature's RMSProp-/Adam-SGLD step sizes are not reproduced (not available to us); the
``*_curv`` rules are lambda_hat's. Per run we record λ̂, MCSE, relative error, the virial ratio
(the library's self-check; 1 for an exact sampler), whether the library warned, wall time and
gradient evaluations. Writes benchmarks/results/dln_accuracy.json (or dln_accuracy_quick.json)
and, with matplotlib, a log-log plot of λ̂ against λ_local.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import lambda_hat as lh
from benchmarks.meta import run_metadata
from lambda_hat import targets, theory
from lambda_hat.targets.dln import dln_product

RESULTS = Path(__file__).parent / "results"
BATCH = 500
GAMMA = 1.0
CHAINS = 4
LIT_EPS = {1_000: 5e-7, 10_000: 5e-7, 100_000: 1e-7}
LIT_STEPS = {1_000: 10_000, 10_000: 10_000, 100_000: 50_000}
DEFAULT_NETWORKS = {1_000: 20, 10_000: 20, 100_000: 5}
METHODS = ("sgld_lit", "sgld_curv", "rmsprop_curv", "adam_curv")
WARMUP_FRACTION = 0.2


def method_settings(method: str, bucket: int, target, steps: int) -> tuple[str, dict[str, Any]]:
    """(kernel, sample() options) of a method on a target, for a budget of ``steps`` per chain."""
    nbeta = target.n / math.log(target.n)
    kappa_max = nbeta * target.info["hessian_top_eigenvalue"] + GAMMA
    warmup = int(WARMUP_FRACTION * steps)
    common = dict(batch_size=BATCH, num_chains=CHAINS, gamma=GAMMA)
    if method == "sgld_lit":
        return "sgld", dict(common, step_size=LIT_EPS[bucket], num_warmup=0, num_draws=steps)
    if method == "sgld_curv":
        return "sgld", dict(common, step_size=0.04 / kappa_max, num_warmup=warmup, num_draws=steps - warmup)
    eps = 0.04 / math.sqrt(kappa_max)
    if method == "rmsprop_curv":
        return "rmsprop_sgld", dict(common, step_size=eps, num_warmup=warmup, num_draws=steps - warmup)
    if method == "adam_curv":
        return "adam_sgld", dict(common, step_size=eps / 20, num_warmup=warmup, num_draws=steps - warmup)
    raise ValueError(f"method: expected one of {METHODS}, got {method!r}")


def screen(bucket: int, wanted: int, max_seeds: int = 2000) -> dict[str, Any]:
    """The first ``wanted`` seeds whose teacher has a known local λ, and the screening counts."""
    chosen, screened, differ = [], 0, 0
    for seed in range(max_seeds):
        if len(chosen) == wanted:
            break
        screened += 1
        widths, _, layers = targets.random_dln_teacher(bucket, seed)
        local = targets.dln_local_lam(layers)
        if local is None:
            continue
        rank = int(np.linalg.matrix_rank(dln_product(layers)))
        differ += local != theory.deep_linear_network_coefficient(widths, rank).lam
        chosen.append(seed)
    return dict(seeds=chosen, screened=screened, known=len(chosen), known_differs_from_aoyagi=int(differ))


def run_network(bucket: int, seed: int, methods: list[str]) -> list[dict[str, Any]]:
    t0 = time.perf_counter()
    target = targets.random_deep_linear_network(bucket, seed=seed)
    build_s = time.perf_counter() - t0
    info = target.info
    local = float(info["local_lam"])
    rows = []
    for method in methods:
        kernel, settings = method_settings(method, bucket, target, LIT_STEPS[bucket])
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", lh.LLCWarning)
            try:
                result = lh.sample(target.loss_fn, target.params, target.data, kernel=kernel, key=seed, **settings)
            except FloatingPointError as err:  # every chain diverged
                result, failure = None, str(err)
        wall = time.perf_counter() - start
        row = dict(
            bucket=bucket,
            seed=seed,
            method=method,
            kernel=kernel,
            dim=target.dim,
            widths=info["widths"],
            layer_ranks=info["layer_ranks"],
            lam_aoyagi=float(target.lam),
            lam_local=local,
            build_s=build_s,
            settings={k: (float(v) if isinstance(v, float) else v) for k, v in settings.items()},
            wall_s=wall,
            warnings=[str(w.message)[:200] for w in caught],
        )
        if result is None:
            row.update(llc=None, llc_se=None, rel_error=None, failure=failure)
        else:
            virial = result.diagnostics.get("virial") or {}
            row.update(
                llc=result.llc,
                llc_se=result.llc_se,
                rel_error=(result.llc - local) / local,
                rhat=result.diagnostics.get("rhat"),
                virial_ratio=virial.get("ratio"),
                virial_worst=None if not virial else virial["groups"][virial["worst_group"]]["ratio"],
                grad_evals=result.grad_evals,
                run_s=result.timings["run_s"],
                valid_chains=int(np.sum(result.valid_chains)),
            )
        rows.append(row)
        shown = "diverged" if result is None else f"λ̂ = {result.llc:9.2f} ({row['rel_error']:+7.2%})"
        print(
            f"bucket {bucket:>6} seed {seed:3d} d = {target.dim:6d} λ_local = {local:9.1f} {method:13s} {shown} "
            f"r = {row.get('virial_ratio') or math.nan:.3f} warned = {bool(caught)} {wall:5.1f}s",
            flush=True,
        )
    return rows


def summarize(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per (bucket, method): median and 90th-percentile |relative error|, fraction within 10%,
    signed bias (mean relative error), median virial ratio, wall time and gradient evaluations."""
    out = []
    for bucket in sorted({r["bucket"] for r in rows}):
        for method in METHODS:
            sel = [r for r in rows if r["bucket"] == bucket and r["method"] == method]
            if not sel:
                continue
            ok = [r for r in sel if r["llc"] is not None]
            err = np.array([r["rel_error"] for r in ok])
            absolute = np.abs(err)
            nan = math.nan
            out.append(
                dict(
                    bucket=bucket,
                    method=method,
                    networks=len(sel),
                    diverged=len(sel) - len(ok),
                    median_abs_rel_error=float(np.median(absolute)) if ok else nan,
                    p90_abs_rel_error=float(np.percentile(absolute, 90)) if ok else nan,
                    within_10pct=float(np.sum(absolute <= 0.10) / len(sel)),
                    mean_rel_error=float(np.mean(err)) if ok else nan,
                    median_virial=float(np.median([r["virial_ratio"] for r in ok if r.get("virial_ratio")]))
                    if ok
                    else nan,
                    warned=float(np.mean([bool(r["warnings"]) for r in sel])),
                    median_wall_s=float(np.median([r["wall_s"] for r in sel])),
                    grad_evals=float(np.median([r["grad_evals"] for r in ok])) if ok else nan,
                )
            )
    return out


def table(summary: list[dict[str, Any]]) -> str:
    lines = [
        "| bucket | method | networks | median abs. rel. error | 90th pct | within 10% | mean rel. error | "
        "median virial | warned | median wall (s) | gradients |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary:
        lines.append(
            f"| {s['bucket']:.0e} | {s['method']} | {s['networks']} | {s['median_abs_rel_error']:.1%} | "
            f"{s['p90_abs_rel_error']:.1%} | {s['within_10pct']:.0%} | {s['mean_rel_error']:+.1%} | "
            f"{s['median_virial']:.3f} | {s['warned']:.0%} | {s['median_wall_s']:.1f} | {s['grad_evals']:.3g} |"
        )
    return "\n".join(lines)


def plot(rows: list[dict[str, Any]], path: Path) -> Path | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    fig, axes = plt.subplots(1, len(methods), figsize=(4 * len(methods), 4), squeeze=False)
    ok = [r for r in rows if r["llc"] is not None]
    lo = min(min(r["lam_local"] for r in ok), min(max(r["llc"], 1e-3) for r in ok))
    hi = max(max(r["lam_local"] for r in ok), max(r["llc"] for r in ok))
    for ax, method in zip(axes[0], methods):
        sel = [r for r in ok if r["method"] == method]
        sc = ax.scatter(
            [r["lam_local"] for r in sel],
            [max(r["llc"], 1e-3) for r in sel],
            c=[math.log10(r["dim"]) for r in sel],
            cmap="viridis",
            s=14,
        )
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set(xscale="log", yscale="log", title=method, xlabel="local λ (exact)", ylabel="λ̂")
    fig.colorbar(sc, ax=axes[0].tolist(), label="log10 d")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="bucket 1e3, 5 networks")
    parser.add_argument("--buckets", nargs="+", type=int, default=None, choices=sorted(LIT_EPS))
    parser.add_argument("--networks", type=int, default=None, help="networks per bucket (default 20, 20, 5)")
    parser.add_argument("--methods", nargs="+", default=None, choices=METHODS, help="default: all (--quick: 2)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    buckets = args.buckets or ([1_000] if args.quick else sorted(LIT_EPS))
    methods = args.methods or (["sgld_lit", "rmsprop_curv"] if args.quick else list(METHODS))
    out = args.out or RESULTS / ("dln_accuracy_quick.json" if args.quick else "dln_accuracy.json")
    doc: dict[str, Any] = {
        "meta": run_metadata(batch=BATCH, gamma=GAMMA, chains=CHAINS, steps=LIT_STEPS),
        "screening": {},
        "runs": [],
    }
    start = time.perf_counter()
    for bucket in buckets:
        wanted = args.networks or (5 if args.quick else DEFAULT_NETWORKS[bucket])
        doc["screening"][str(bucket)] = picked = screen(bucket, wanted)
        print(
            f"bucket {bucket}: {picked['known']} teachers with a known local λ among {picked['screened']} seeds "
            f"({picked['known_differs_from_aoyagi']} of them differ from Aoyagi's λ)",
            flush=True,
        )
        for seed in picked["seeds"]:
            doc["runs"] += run_network(bucket, seed, methods)
            doc["summary"] = summarize(doc["runs"])
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(doc, indent=1))
    doc["meta"]["wall_s"] = time.perf_counter() - start
    out.write_text(json.dumps(doc, indent=1))
    figure = plot(doc["runs"], out.with_suffix(".png"))
    print()
    print(table(doc["summary"]))
    if figure:
        print(f"plot: {figure}")
    print(f"total {doc['meta']['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
