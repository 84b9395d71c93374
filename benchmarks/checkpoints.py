"""sample_checkpoints against a loop of separate sample calls: wall time and agreement.

    python -m benchmarks.checkpoints [--repeats 3] [--checkpoints 10] [--draws 2000]

A 16→64→32→1 tanh MLP (3,201 parameters) is trained with Adam on a random teacher's noisy data
(n = 1000); ``--checkpoints`` checkpoints are saved along the way (log-spaced steps). Each
repeat times (a) one ``sample_checkpoints`` call and (b) the loop of separate ``sample`` calls
with the documented per-checkpoint keys (SGLD, batch 100, γ = 100, 4 chains), alternating the
two so that load on a shared machine hits both; later repeats hit the cache. In that process the
first repeat's collection runs first and pays for the small programs both share (the posterior's
set-up at w*, ...), so the first-call comparison is made separately: each of the two, from
training on, in its own fresh Python process (``--repeats`` times, alternating the order).
Prints the medians and the ratios, the largest |Δλ̂| between the two (0 for SGLD: the draws are
bit-identical), and writes benchmarks/results/checkpoints.json (``checkpoints_draws<N>.json``
for another ``--draws``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import lambda_hat as lh
from benchmarks.problems import tanh_mlp_apply as apply

SIZES = [(16, 64), (64, 32), (32, 1)]


def loss_fn(params, batch):
    x, y = batch
    return jnp.mean((apply(params, x) - y) ** 2)


def trained_checkpoints(num: int, steps: int = 3000, n: int = 1000, seed: int = 0):
    rng = np.random.default_rng(seed)

    def init(scale):
        return [
            (jnp.asarray(scale * rng.standard_normal(s) / np.sqrt(s[0]), jnp.float32), jnp.zeros(s[1], jnp.float32))
            for s in SIZES
        ]

    x = jnp.asarray(rng.standard_normal((n, 16)), jnp.float32)
    y = apply(init(1.5), x) + 0.1 * jnp.asarray(rng.standard_normal((n, 1)), jnp.float32)
    params = init(1.0)
    opt = optax.adam(3e-3)
    state = opt.init(params)

    @jax.jit
    def step(params, state):
        grads = jax.grad(loss_fn)(params, (x, y))
        updates, state = opt.update(grads, state)
        return optax.apply_updates(params, updates), state

    save_at = sorted(set(np.unique(np.geomspace(10, steps, num).astype(int)).tolist()))
    checkpoints, labels = [], []
    for t in range(1, steps + 1):
        params, state = step(params, state)
        if t in save_at:
            checkpoints.append(params)
            labels.append(t)
    return checkpoints, labels, (x, y)


def _settings(draws: int) -> dict:
    return dict(
        kernel="sgld", batch_size=100, gamma=100.0, step_size=1e-4, num_chains=4, num_draws=draws, num_warmup=200
    )


def _first_call(mode: str, num: int, draws: int) -> None:
    """In a fresh process: train, then time one first call of ``mode`` (everything it compiles
    included, nothing shared with the other mode), and print the seconds as JSON."""
    checkpoints, labels, data = trained_checkpoints(num)
    kw = _settings(draws)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)
        start = time.perf_counter()
        if mode == "collection":
            lh.sample_checkpoints(loss_fn, checkpoints, data, steps=labels, key=0, **kw)
        else:
            for k, c in enumerate(checkpoints):
                lh.sample(loss_fn, c, data, key=jax.random.fold_in(jax.random.key(0), k), **kw)
        print(json.dumps({"mode": mode, "seconds": time.perf_counter() - start}))


def _fresh_first_calls(num: int, draws: int, repeats: int) -> dict:
    """Median first-call seconds of each mode, each in its own fresh process (alternating order),
    so that neither pays for compilations the other has already cached."""
    times: dict[str, list[float]] = {"collection": [], "loop": []}
    for i in range(repeats):
        for mode in ("collection", "loop") if i % 2 == 0 else ("loop", "collection"):
            out = subprocess.run(
                [sys.executable, "-m", "benchmarks.checkpoints", "--first-call", mode, "--checkpoints", str(num),
                 "--draws", str(draws)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            times[mode].append(json.loads(out.stdout.strip().splitlines()[-1])["seconds"])
    return {f"{mode}_s": statistics.median(v) for mode, v in times.items()} | {"repeats": repeats, "runs": times}


def main(argv=None):
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--checkpoints", type=int, default=10)
    parser.add_argument("--draws", type=int, default=2000)
    parser.add_argument("--first-call", choices=["collection", "loop"], help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.first_call:
        _first_call(args.first_call, args.checkpoints, args.draws)
        return
    checkpoints, labels, data = trained_checkpoints(args.checkpoints)
    dim = sum(int(np.size(x)) for x in jax.tree.leaves(checkpoints[0]))
    kw = _settings(args.draws)
    rows = []
    for i in range(args.repeats):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lh.LLCWarning)
            start = time.perf_counter()
            runs = lh.sample_checkpoints(loss_fn, checkpoints, data, steps=labels, key=i, **kw)
            collection = time.perf_counter() - start
            start = time.perf_counter()
            loop = [
                lh.sample(loss_fn, c, data, key=jax.random.fold_in(jax.random.key(i), k), **kw)
                for k, c in enumerate(checkpoints)
            ]
            looped = time.perf_counter() - start
        diff = max(abs(a.llc - b.llc) for a, b in zip(runs.results, loop, strict=True))
        rows.append(dict(collection_s=collection, loop_s=looped, max_abs_diff=diff, compile_s=runs.compile_s))
        print(f"repeat {i}: sample_checkpoints {collection:.2f} s, loop {looped:.2f} s, max |Δλ̂| {diff:.3g}")
    steady = rows[1:] or rows
    result = dict(
        dim=dim,
        checkpoints=len(checkpoints),
        steps=labels,
        settings=kw,
        llc=runs.llc.tolist(),
        llc_se=runs.llc_se.tolist(),
        first=rows[0],
        median_collection_s=statistics.median(r["collection_s"] for r in steady),
        median_loop_s=statistics.median(r["loop_s"] for r in steady),
        rows=rows,
    )
    result["ratio"] = result["median_collection_s"] / result["median_loop_s"]
    fresh = _fresh_first_calls(args.checkpoints, args.draws, args.repeats)
    result["fresh_first_call"] = fresh
    print(runs.table())
    print(
        f"d = {dim}, {len(checkpoints)} checkpoints: first call in a fresh process, medians of {fresh['repeats']}: "
        f"{fresh['collection_s']:.1f} s vs loop {fresh['loop_s']:.1f} s (ratio {fresh['collection_s'] / fresh['loop_s']:.2f}); "
        f"in this process (the collection first, paying what both share) {rows[0]['collection_s']:.1f} s vs "
        f"{rows[0]['loop_s']:.1f} s; cached, medians of {len(steady)}: {result['median_collection_s']:.2f} s vs "
        f"{result['median_loop_s']:.2f} s (ratio {result['ratio']:.2f})"
    )
    out = (
        Path(__file__).parent
        / "results"
        / ("checkpoints.json" if args.draws == 2000 else f"checkpoints_draws{args.draws}.json")
    )
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
