"""Per-step cost of lambda_hat.sample(kernel="sgld") against the floor: a bare jitted, vmapped
lax.scan doing the same gradient work (same problem, chains, steps, batch size).

    python -m benchmarks.floor [--repeats 5]

Prints medians of several runs (steady state, compile excluded; lambda_hat and floor calls
alternate so that load on a shared machine hits both) and the ratio, and writes
benchmarks/results/floor.json. Compile time is reported separately; the second call with the
same shapes must not compile again.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp

import lambda_hat as lh
from benchmarks.problems import tanh_mlp_problem

EPS = 1e-4
GAMMA = 100.0


def bare_sgld(loss_fn, w_star, data, *, num_chains, num_steps, batch_size, nbeta):
    """The floor: the same SGLD update, written as plainly as possible."""
    flat, unravel = jax.flatten_util.ravel_pytree(w_star)
    n = jax.tree.leaves(data)[0].shape[0]
    loss_star = loss_fn(w_star, data)

    def logp(w, batch):
        return -nbeta * (loss_fn(unravel(w), batch) - loss_star) - 0.5 * GAMMA * jnp.sum((w - flat) ** 2)

    def step(w, key):
        kb, kn = jax.random.split(key)
        if batch_size is None:
            batch = data
        else:
            idx = jax.random.randint(kb, (batch_size,), 0, n)
            batch = jax.tree.map(lambda a: a[idx], data)
        val, g = jax.value_and_grad(logp)(w, batch)
        return w + 0.5 * EPS * g + jnp.sqrt(EPS) * jax.random.normal(kn, w.shape), val

    @jax.jit
    def run(key):
        keys = jax.random.split(key, (num_steps, num_chains))
        ws = jnp.broadcast_to(flat, (num_chains, flat.size))
        _, vals = jax.lax.scan(lambda ws, k: jax.vmap(step)(ws, k), ws, keys)
        return vals

    return run


def interleaved(lib_call, floor_call, repeats):
    """Alternate lambda_hat and floor calls (so load changes on a shared machine hit both);
    returns per-repeat (whole call s, run_s, floor s)."""
    rows = []
    for i in range(repeats):
        start = time.perf_counter()
        result = lib_call(i)
        call = time.perf_counter() - start
        start = time.perf_counter()
        jax.block_until_ready(floor_call(i))
        rows.append((call, result.timings["run_s"], time.perf_counter() - start))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "floor.json")
    args = parser.parse_args(argv)
    warnings.filterwarnings("ignore", category=lh.LLCWarning)  # short runs warn about R-hat; timing only
    loss_fn, params, data = tanh_mlp_problem()
    n = data[0].shape[0]
    nbeta = n / math.log(n)
    rows = []
    for batch_size in (None, 100):
        for draws in (200, 2000):
            kw = dict(
                kernel="sgld",
                num_chains=4,
                num_draws=draws,
                num_warmup=0,
                nbeta=nbeta,
                gamma=GAMMA,
                step_size=EPS,
                batch_size=batch_size,
            )
            t0 = time.perf_counter()
            first = lh.sample(loss_fn, params, data, key=0, **kw)
            first_total = time.perf_counter() - t0
            second_compile = lh.sample(loss_fn, params, data, key=99, **kw).timings["compile_s"]
            floor_fn = bare_sgld(
                loss_fn, params, data, num_chains=4, num_steps=draws, batch_size=batch_size, nbeta=nbeta
            )
            t0 = time.perf_counter()
            jax.block_until_ready(floor_fn(jax.random.key(0)))
            floor_first = time.perf_counter() - t0
            runs = interleaved(
                lambda i, kw=kw: lh.sample(loss_fn, params, data, key=i + 1, **kw),
                lambda i, f=floor_fn: f(jax.random.key(i + 1)),
                args.repeats,
            )
            lib, lib_run, floor = (statistics.median(col) for col in zip(*runs))
            pair_ratio = statistics.median(r / f for _, r, f in runs)
            row = dict(
                batch_size=batch_size or n,
                draws=draws,
                chains=4,
                lambda_hat_call_s=lib,
                lambda_hat_run_s=lib_run,
                floor_s=floor,
                ratio_call=lib / floor,
                ratio_run=lib_run / floor,
                ratio_run_paired_median=pair_ratio,
                load_avg_1min=os.getloadavg()[0],
                lambda_hat_first_call_s=first_total,
                lambda_hat_compile_s=first.timings["compile_s"],
                floor_first_call_s=floor_first,
                second_call_compile_s=second_compile,
                chain_steps_per_s=4 * draws / lib_run,
                llc=first.llc,
            )
            rows.append(row)
            print(
                f"batch {row['batch_size']:>5} draws {draws:>5}: lambda_hat run {lib_run * 1e3:8.2f} ms "
                f"(whole call {lib * 1e3:8.2f} ms), floor {floor * 1e3:8.2f} ms, ratio run/floor {row['ratio_run']:.2f} "
                f"(paired median {pair_ratio:.2f}, call/floor {row['ratio_call']:.2f}); compile {row['lambda_hat_compile_s']:.2f} s, "
                f"second compile {second_compile:.2f} s",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(dict(device=str(jax.devices()[0]), repeats=args.repeats, rows=rows), indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
