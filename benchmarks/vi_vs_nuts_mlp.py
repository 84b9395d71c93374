"""VI against NUTS on a 3,466-parameter classifier: wall time, gradient evaluations and λ̂.

    python -m benchmarks.vi_vs_nuts_mlp [--repeats 3] [--gamma 100]

Needs scikit-learn. The digits MLP of ``benchmarks.basin_gamma`` (64→32→32→10, trained to a
training cross-entropy of about 1e-4) at γ = 100 (at γ = 1 its chains leave the basin). Each
repeat runs, alternately and with a fresh key,

- ``kernel="nuts"``: 4 chains × 1,000 draws after 500 warmup (``benchmarks.calibrate_mlp``'s
  reference run);
- ``kernel="vi"`` at its defaults (``rank="auto"``, convergence-based stopping under a
  20,000-step cap, 4 fits × 1,000 evaluation draws).

The compiled programs are cleared before every run, so each wall time includes compilation, as
a user's first call does; ``run_s`` (sampling alone) is reported beside it. Medians over the
repeats; every line carries the load average (the machine may be shared). Writes
benchmarks/results/vi_vs_nuts_mlp.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

import lambda_hat as lh
from benchmarks.basin_gamma import loss_fn, trained_digits_mlp
from benchmarks.meta import run_metadata

RESULTS = Path(__file__).parent / "results" / "vi_vs_nuts_mlp.json"
SETTINGS = {
    "nuts": dict(num_chains=4, num_draws=1000, num_warmup=500),
    "vi": dict(num_chains=4),
}


def one_run(kernel: str, params: Any, data: Any, gamma: float, key: int) -> dict[str, Any]:
    lh.clear_cache()
    load = os.getloadavg()[0]
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lh.LLCWarning)
        r = lh.sample(loss_fn, params, data, kernel=kernel, gamma=gamma, key=key, **SETTINGS[kernel])
    wall = time.perf_counter() - start
    d = r.diagnostics
    row = dict(
        kernel=kernel,
        key=key,
        llc=float(r.llc),
        llc_se=float(r.llc_se),
        wall_s=wall,
        compile_s=float(r.timings["compile_s"]),
        run_s=float(r.timings["run_s"]),
        grad_evals=int(r.grad_evals),
        virial=float(d["virial"]["ratio"]),
        load=load,
        warnings=[str(w.message) for w in caught],
    )
    if kernel == "vi":
        row.update(
            llc_source=d["llc_source"],
            llc_raw=float(d["llc_raw"]),
            llc_is=float(d["llc_is"]),
            pareto_k=np.asarray(d["pareto_k"]).tolist(),
            ranks=[x["rank"] for x in d.get("refits", [])] or [int(r.config["rank"])],
            rank=int(r.config["rank"]),
            steps=np.asarray(d["optimization_steps"]).tolist(),
        )
    return row


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--gamma", type=float, default=100.0)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    params, data, train_loss = trained_digits_mlp()
    dim = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    print(f"digits MLP: d = {dim}, training loss {train_loss:.3g}, γ = {args.gamma}", flush=True)
    rows = []
    for rep in range(args.repeats):
        for kernel in ("nuts", "vi"):
            row = one_run(kernel, params, data, args.gamma, key=rep)
            rows.append(row)
            extra = f" k̂ max {max(row['pareto_k']):.2f}, ranks {row['ranks']}" if kernel == "vi" else ""
            print(
                f"{kernel:5s} key {rep}: λ̂ {row['llc']:.3f} ± {row['llc_se']:.3f}, wall {row['wall_s']:.0f} s "
                f"(compile {row['compile_s']:.0f} s), {row['grad_evals']:,} grads, virial {row['virial']:.3f},"
                f"{extra} warnings {len(row['warnings'])}, load {row['load']:.1f}",
                flush=True,
            )
    summary = {}
    for kernel in ("nuts", "vi"):
        mine = [r for r in rows if r["kernel"] == kernel]
        summary[kernel] = {
            k: statistics.median(r[k] for r in mine) for k in ("llc", "wall_s", "run_s", "compile_s", "grad_evals")
        }
        summary[kernel]["warned"] = sum(bool(r["warnings"]) for r in mine) / len(mine)
    summary["vi_over_nuts_wall"] = summary["vi"]["wall_s"] / summary["nuts"]["wall_s"]
    summary["vi_over_nuts_grad_evals"] = summary["vi"]["grad_evals"] / summary["nuts"]["grad_evals"]
    print(json.dumps(summary, indent=1))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    meta = run_metadata(dim=dim, gamma=args.gamma, repeats=args.repeats, train_loss=train_loss, settings=SETTINGS)
    args.out.write_text(json.dumps({"meta": meta, "summary": summary, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
