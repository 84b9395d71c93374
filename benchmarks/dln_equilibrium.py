"""The equilibrium E[λ̂] of dln_accuracy's two-layer networks, beside rank/2 and each method's λ̂.

    JAX_ENABLE_X64=1 python -m benchmarks.dln_equilibrium                       # 1e3 bucket
    JAX_ENABLE_X64=1 python -m benchmarks.dln_equilibrium --seeds 38 45 --out results.json    # two networks
    JAX_ENABLE_X64=1 python -m benchmarks.dln_equilibrium --results benchmarks/results/dln_accuracy_1e4.json --bucket 10000

dln_accuracy scores every method against the local λ = rank D/2. That is the n → ∞ limit; what a
sampler of the protocol's posterior (nβ = n/log n, γ = 1, localized at the teacher) estimates is
E[λ̂] at that (nβ, γ). For a two-layer network :func:`lambda_hat.targets.dln_two_layer_expected_llc`
computes it exactly up to Monte Carlo error (W_1 integrated out in closed form, W_2 sampled with
NUTS). This script reads a dln_accuracy results file, computes that value for each two-layer
network in it, and reports each method's relative error against both references, with its virial
ratio (1 for an equilibrated sampler). Writes benchmarks/results/dln_equilibrium[_<bucket>].json.
Run it in float64 (the oracle's linear algebra has condition numbers up to ~1e6).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax

from benchmarks.meta import run_metadata
from lambda_hat import targets

RESULTS = Path(__file__).parent / "results"


def reference(
    bucket: int, seed: int, gamma: float, num_warmup: int, num_samples: int, integrate: str = "auto"
) -> dict[str, Any]:
    """The oracle's E[λ̂] for one network of dln_accuracy, with its local λ and timings."""
    target = targets.random_deep_linear_network(bucket, seed=seed)
    start = time.perf_counter()
    value = targets.dln_two_layer_expected_llc(
        target, gamma=gamma, num_warmup=num_warmup, num_samples=num_samples, seed=seed, integrate=integrate
    )
    local = float(target.info["local_lam"])
    return dict(
        bucket=bucket,
        seed=seed,
        widths=target.info["widths"],
        lam_local=local,
        expected_llc=value.mean,
        expected_llc_se=value.se,
        ess=value.ess,
        rhat=value.rhat,
        at_wstar=value.at_wstar,
        gap=(value.mean - local) / local,
        wall_s=time.perf_counter() - start,
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", type=Path, default=RESULTS / "dln_accuracy.json", help="a dln_accuracy JSON")
    parser.add_argument("--bucket", type=int, default=1_000)
    parser.add_argument("--seeds", nargs="+", type=int, default=None, help="default: every two-layer network")
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument(
        "--integrate", choices=("auto", "first", "second"), default="auto", help="layer to integrate out"
    )
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    if not jax.config.jax_enable_x64:
        print("warning: float32 run; set JAX_ENABLE_X64=1 for the oracle's linear algebra", file=sys.stderr)
    runs = [r for r in json.loads(args.results.read_text())["runs"] if r["bucket"] == args.bucket]
    gamma = {r["settings"]["gamma"] for r in runs}
    if len(gamma) != 1:
        raise SystemExit(f"--results: expected one gamma across the runs, got {sorted(gamma)}")
    (gamma_value,) = gamma
    seeds = sorted({r["seed"] for r in runs if len(r["widths"]) == 3})
    if args.seeds is not None:
        missing = sorted(set(args.seeds) - set(seeds))
        if missing:
            raise SystemExit(f"--seeds: {missing} are not two-layer networks of bucket {args.bucket} in {args.results}")
        seeds = [s for s in seeds if s in args.seeds]
    out = args.out or RESULTS / (
        "dln_equilibrium.json" if args.bucket == 1_000 else f"dln_equilibrium_{args.bucket}.json"
    )
    doc: dict[str, Any] = {
        "meta": run_metadata(
            results=str(args.results),
            bucket=args.bucket,
            warmup=args.warmup,
            samples=args.samples,
            integrate=args.integrate,
        ),
        "networks": [],
        "methods": [],
    }
    for seed in seeds:
        ref = reference(args.bucket, seed, gamma_value, args.warmup, args.samples, args.integrate)
        doc["networks"].append(ref)
        print(
            f"seed {seed:3d} widths {ref['widths']}  rank/2 = {ref['lam_local']:7.1f}  "
            f"E[λ̂] = {ref['expected_llc']:8.2f} ± {ref['expected_llc_se']:.2f} ({ref['gap']:+.1%})  "
            f"R-hat {ref['rhat']:.3f}  {ref['wall_s']:.0f} s",
            flush=True,
        )
        for r in runs:
            if r["seed"] == seed and r["llc"] is not None:
                doc["methods"].append(
                    dict(
                        seed=seed,
                        method=r["method"],
                        llc=r["llc"],
                        rel_error_local=r["rel_error"],
                        rel_error_equilibrium=(r["llc"] - ref["expected_llc"]) / ref["expected_llc"],
                        virial_ratio=r.get("virial_ratio"),
                    )
                )
                m = doc["methods"][-1]
                print(
                    f"    {m['method']:13s} λ̂ = {m['llc']:8.2f}  vs rank/2 {m['rel_error_local']:+7.1%}  "
                    f"vs E[λ̂] {m['rel_error_equilibrium']:+7.1%}  virial {m['virial_ratio'] or float('nan'):.2f}",
                    flush=True,
                )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
