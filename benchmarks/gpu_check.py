"""One-shot accelerator check: every kernel against the exact λ on a GPU, chain scaling, and a
1e5-parameter deep linear network.

    python -m benchmarks.gpu_check [--out DIR]

Prints a table and writes gpu_check.json. Not part of CI (CI has no GPU); the numbers from the
last run are in docs/benchmarks.md.
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
from lambda_hat.targets import linear_regression, random_deep_linear_network

KERNELS = {
    "sgld": dict(step_size=1e-4, num_draws=20000, num_warmup=2000, batch_size=100),
    "rmsprop_sgld": dict(step_size=1e-3, num_draws=8000, num_warmup=2000),
    "adam_sgld": dict(step_size=1e-4, num_draws=40000, num_warmup=2000),
    "hmc": dict(),
    "nuts": dict(),
    "mclmc": dict(num_draws=4000),
    "vi": dict(),
}


def accuracy(rows: list) -> None:
    t = linear_regression(d=5, seed=1)
    for kernel, kw in KERNELS.items():
        r = lh.sample(t.loss_fn, t.params, t.data, kernel=kernel, key=0, num_chains=8, **kw)
        exact = t.expected_llc(r.nbeta, r.gamma)
        rows.append(
            dict(
                part="accuracy",
                kernel=kernel,
                llc=r.llc,
                se=r.llc_se,
                exact=exact,
                rel_err=r.llc / exact - 1,
                z=(r.llc - exact) / r.llc_se,
                **r.timings,
            )
        )
        print(
            f"{kernel:>13}: λ̂ {r.llc:.3f} ± {r.llc_se:.3f} (exact {exact:.3f}, {100 * (r.llc / exact - 1):+.1f}%)"
            f"  compile {r.timings['compile_s']:.1f} s run {r.timings['run_s']:.2f} s",
            flush=True,
        )


def chain_scaling(rows: list) -> None:
    t = linear_regression(d=50, n=10000, seed=0)
    for chains in (4, 64, 1024):
        kw = dict(key=0, num_chains=chains, num_draws=2000, num_warmup=0, step_size=1e-4, batch_size=100)
        lh.sample(t.loss_fn, t.params, t.data, **kw)
        r = lh.sample(t.loss_fn, t.params, t.data, **{**kw, "key": 1})
        rate = chains * 2000 / r.timings["run_s"]
        rows.append(dict(part="chains", chains=chains, run_s=r.timings["run_s"], chain_steps_per_s=rate))
        print(f"sgld d=50 batch 100, {chains:>5} chains: {rate:,.0f} chain-steps/s", flush=True)


def dln_scale(rows: list) -> None:
    t = random_deep_linear_network(bucket=100000, seed=0)
    d = sum(int(np.size(x)) for x in jax.tree.leaves(t.params))
    start = time.perf_counter()
    r = lh.sample(
        t.loss_fn,
        t.params,
        t.data,
        key=0,
        num_chains=4,
        num_draws=8000,
        num_warmup=2000,
        batch_size=500,
        step_size=float(t.info["suggested_step_size"]),
    )
    total = time.perf_counter() - start
    rows.append(
        dict(
            part="dln",
            d=d,
            n=t.n,
            llc=r.llc,
            se=r.llc_se,
            lam=float(t.lam),
            whole_call_s=total,
            compile_s=r.timings["compile_s"],
            run_s=r.timings["run_s"],
        )
    )
    print(
        f"DLN d={d}, n={t.n}: λ̂ {r.llc:.1f} ± {r.llc_se:.1f} (Aoyagi λ {float(t.lam):.1f}); "
        f"1e4 steps × 4 chains: compile {r.timings['compile_s']:.1f} s, run {r.timings['run_s']:.1f} s, "
        f"whole call {total:.1f} s",
        flush=True,
    )


def main(argv=None) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path("."))
    parser.add_argument("--parts", nargs="+", default=["accuracy", "chain_scaling", "dln_scale"])
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore")
    print(f"jax {jax.__version__}, devices {jax.devices()}", flush=True)
    rows: list = []
    for part in [globals()[name] for name in args.parts]:
        try:
            part(rows)
        except Exception as err:  # report and go on: one device session, every part counts
            rows.append(dict(part=part.__name__, error=repr(err)))
            print(f"{part.__name__}: ERROR {err!r}", flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "gpu_check.json").write_text(
        json.dumps(dict(devices=str(jax.devices()), jax=jax.__version__, rows=rows), indent=1, default=float)
    )


if __name__ == "__main__":
    main()
