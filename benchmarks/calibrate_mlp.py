"""calibrate's recommended SGLD step size on a 3,466-parameter classifier, checked against NUTS.

    python -m benchmarks.calibrate_mlp [--gamma 100] [--batch-size 100] [--calibrate-draws 16000]

Needs scikit-learn. The digits MLP of ``benchmarks.basin_gamma`` (64→32→32→10, trained to a
training cross-entropy of about 1e-4) at γ = 100 (at the default γ = 1 its chains leave the
basin: see that benchmark). ``lambda_hat.calibrate`` sweeps its default ε grid (scaled to the
problem's curvature) with minibatches, ``recommended()`` picks ε, and SGLD at that ε (minibatch,
4 chains × 4,000 draws after 1,000 warmup) is compared with full-batch NUTS (4 chains × 1,000
draws after 500 warmup). The target: |λ̂_SGLD − λ̂_NUTS| ≤ 5% of λ̂_NUTS. Writes
benchmarks/results/calibrate_mlp.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import lambda_hat as lh
from benchmarks.basin_gamma import loss_fn, trained_digits_mlp
from benchmarks.meta import run_metadata


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gamma", type=float, default=100.0)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--calibrate-draws", type=int, default=16000, help="draws per chain in each cell of the sweep")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "calibrate_mlp.json")
    args = parser.parse_args(argv)
    params, data, train_loss = trained_digits_mlp()
    dim = sum(int(np.size(x)) for x in jax.tree.leaves(params))
    print(f"digits MLP: d = {dim}, training loss {train_loss:.3g}", flush=True)
    row: dict = {}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        cal = lh.calibrate(
            loss_fn, params, data, gamma=args.gamma, batch_size=args.batch_size, num_draws=args.calibrate_draws, key=0
        )
        row["calibrate_s"] = time.perf_counter() - t0
        print(cal.table(), flush=True)
        rec = cal.recommended()
        row["calibrate_warnings"] = [str(w.message) for w in caught]
    row["step_sizes"] = np.asarray(cal.step_sizes).tolist()
    row["virial"] = np.asarray(cal.virial)[:, 0, 0].tolist()
    row["llc_grid"] = np.asarray(cal.llc)[:, 0, 0].tolist()
    if rec is None:
        print("calibrate recommended nothing:", row["calibrate_warnings"])
    else:
        ((_, eps),) = rec.items()
        row["recommended_step_size"] = float(eps)
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sgld = lh.sample(
                loss_fn, params, data, kernel="sgld", step_size=eps, gamma=args.gamma, batch_size=args.batch_size,
                num_draws=4000, num_warmup=1000, key=1,
            )  # fmt: skip
        row.update(sgld_llc=sgld.llc, sgld_se=sgld.llc_se, sgld_s=time.perf_counter() - t0,
                   sgld_virial=sgld.diagnostics["virial"]["ratio"], sgld_warnings=[str(w.message) for w in caught])  # fmt: skip
        print(f"SGLD at ε = {eps:.3g}: λ̂ = {sgld.llc:.4g} ± {sgld.llc_se:.2g} [{row['sgld_s']:.0f} s]", flush=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        nuts = lh.sample(loss_fn, params, data, kernel="nuts", gamma=args.gamma, num_draws=1000, num_warmup=500, key=2)
    row.update(nuts_llc=nuts.llc, nuts_se=nuts.llc_se, nuts_s=time.perf_counter() - t0,
               nuts_virial=nuts.diagnostics["virial"]["ratio"], nuts_warnings=[str(w.message) for w in caught])  # fmt: skip
    print(f"NUTS: λ̂ = {nuts.llc:.4g} ± {nuts.llc_se:.2g} [{row['nuts_s']:.0f} s]", flush=True)
    if "sgld_llc" in row:
        row["relative_difference"] = (row["sgld_llc"] - row["nuts_llc"]) / row["nuts_llc"]
        print(f"SGLD − NUTS: {100 * row['relative_difference']:+.1f}% (target within ±5%)")
    meta = run_metadata(
        gamma=args.gamma,
        batch_size=args.batch_size,
        calibrate_draws=args.calibrate_draws,
        dim=dim,
        train_loss=train_loss,
    )
    args.out.write_text(json.dumps({"meta": meta, "result": row}, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
