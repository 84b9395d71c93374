"""SGLD at scale: deep linear networks of about 1e4 and 1e5 parameters (Furman & Lau 2024 buckets).

    python -m benchmarks.dln_scale [--quick] [--sizes 10000,100000]

For each size: lambda_hat.targets.random_deep_linear_network(bucket, seed=0) (n = 1e5 inputs on
[−10, 10], noiseless teacher, Aoyagi's λ), SGLD with batch 500, 1e4 steps (no warmup: every
step is a kept draw; λ̂ is also reported without the first 20%), ε = info["suggested_step_size"],
γ = 1, nβ = n/log n, 4 chains and 1 chain. Every run is a fresh Python process, so its peak RSS
(resource.getrusage ru_maxrss) is its own; the sampling phase's own peak is read from VmHWM in
/proc/self/status after resetting it (echo 5 > /proc/self/clear_refs) just before sample().

Also measured:
  * memory against num_draws: the same problem with 2,000 and 10,000 draws (4 chains); the only
    thing that should grow is the stored loss trace (chains × draws × 4 bytes on the device, plus
    a few float64 copies on the host), not anything of size d per draw;
  * where the time goes: building the target (data generation, the Gauss–Newton top eigenvalue;
    cProfile's top functions), LocalPosterior construction (the full-batch L_n(w*)), the
    full-batch stationarity check, compile, run, and a bare jitted vmapped lax.scan doing the same
    SGLD work (the floor) for comparison.
Writes benchmarks/results/dln_scale.json.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

BATCH = 500
CHAINS = (4, 1)
SEED = 0


def rss_mb() -> dict:
    """Current RSS and the peak since the last reset (VmHWM), and the process peak (ru_maxrss), in MiB."""
    out = {"ru_maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(("VmHWM:", "VmRSS:")):
                    key, value = line.split(":")
                    out[key.strip().lower() + "_mb"] = int(value.split()[0]) / 1024
    except OSError:
        pass
    return out


def reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# children: each runs in a fresh process and prints one RESULT line


def child_build(args):
    """Build the target (timed, profiled), save params and data for the other children."""
    t0 = time.perf_counter()
    import jax  # noqa: F401

    from lambda_hat.posterior import default_nbeta
    from lambda_hat.targets import random_deep_linear_network

    t_import = time.perf_counter() - t0
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    prof.enable()
    target = random_deep_linear_network(args.size, seed=SEED)
    prof.disable()
    build_s = time.perf_counter() - t0
    stream = io.StringIO()
    pstats.Stats(prof, stream=stream).sort_stats("cumulative").print_stats(25)
    x, y = target.data
    np.savez(
        args.work / f"dln{args.size}.npz",
        x=np.asarray(x),
        y=np.asarray(y),
        **{f"w{i}": np.asarray(w) for i, w in enumerate(target.params)},
    )
    info = target.info
    meta = dict(
        size=args.size,
        dim=target.dim,
        n=target.n,
        widths=info["widths"],
        layer_ranks=info["layer_ranks"],
        product_rank=info["product_rank"],
        lam=float(target.lam),
        lam_fraction=str(target.lam),
        m=target.m,
        local_lam=None if info.get("local_lam") is None else float(info["local_lam"]),
        lam_is_local=info.get("lam_is_local"),
        step_size=info["suggested_step_size"],
        hessian_top_eigenvalue=info["hessian_top_eigenvalue"],
        finite_n_bias=float(target.finite_n_bias(default_nbeta(target.n))),
        import_s=t_import,
        build_s=build_s,
        memory=rss_mb(),
        build_profile=stream.getvalue(),
    )
    (args.work / f"dln{args.size}.json").write_text(json.dumps(meta))
    meta["build_profile_top"] = meta["build_profile"].splitlines()[:24]
    print("RESULT " + json.dumps({k: v for k, v in meta.items() if k != "build_profile"}), flush=True)


def _load(args):
    import jax.numpy as jnp

    with np.load(args.work / f"dln{args.size}.npz") as f:
        arrays = {k: f[k] for k in f.files}
    layers = [jnp.asarray(arrays[f"w{i}"]) for i in range(sum(k.startswith("w") for k in arrays))]
    data = (jnp.asarray(arrays["x"]), jnp.asarray(arrays["y"]))
    meta = json.loads((args.work / f"dln{args.size}.json").read_text())
    return layers, data, meta


def child_sample(args):
    """One lambda_hat.sample call, nothing else: timings, peak memory, λ̂."""
    import warnings

    import jax

    import lambda_hat as lh
    from lambda_hat.diagnostics import llc_statistics
    from lambda_hat.targets.dln import dln_loss

    layers, data, meta = _load(args)
    jax.block_until_ready(data)
    before = rss_mb()
    reset = reset_peak()
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = lh.sample(
            dln_loss,
            layers,
            data,
            kernel="sgld",
            key=args.seed,
            num_chains=args.chains,
            num_draws=args.draws,
            num_warmup=0,
            batch_size=BATCH,
            step_size=meta["step_size"],
        )
    wall = time.perf_counter() - t0
    after = rss_mb()
    burn = args.draws // 5
    tail = llc_statistics(np.asarray(res.llc_trace)[:, burn:])
    out = dict(
        size=args.size,
        chains=args.chains,
        draws=args.draws,
        wall_s=wall,
        compile_s=res.timings["compile_s"],
        run_s=res.timings["run_s"],
        other_s=wall - res.timings["compile_s"] - res.timings["run_s"],
        steps_per_s=args.draws / res.timings["run_s"],
        chain_steps_per_s=args.chains * args.draws / res.timings["run_s"],
        llc=float(res.llc),
        llc_se=float(res.llc_se),
        llc_after_burnin=tail["llc"],
        llc_after_burnin_se=tail["llc_se"],
        rhat=float(res.diagnostics["rhat"]),
        warnings=[str(w.message)[:200] for w in caught],
        rss_before_mb=before.get("vmrss_mb"),
        sampling_peak_mb=after.get("vmhwm_mb") if reset else None,
        process_peak_mb=after["ru_maxrss_mb"],
        peak_reset=reset,
        trace_bytes_device=args.chains * args.draws * 4,
        trace_bytes_host=3 * args.chains * args.draws * 8,
    )
    print("RESULT " + json.dumps(out), flush=True)


def child_pieces(args):
    """Where the time goes outside the SGLD loop, and the loop against a bare scan (the floor)."""
    import warnings

    import jax
    import jax.flatten_util
    import jax.numpy as jnp

    import lambda_hat as lh
    import lambda_hat.api as api
    from lambda_hat.posterior import LocalPosterior
    from lambda_hat.targets.dln import dln_loss

    layers, data, meta = _load(args)
    jax.block_until_ready(data)
    out = dict(size=args.size)
    t0 = time.perf_counter()
    post = LocalPosterior(dln_loss, layers, data)
    jax.block_until_ready(post.loss_at_wstar)
    out["posterior_init_first_s"] = time.perf_counter() - t0  # includes compiling and running L_n(w*)
    t0 = time.perf_counter()
    post = LocalPosterior(dln_loss, layers, data)
    jax.block_until_ready(post.loss_at_wstar)
    out["posterior_init_second_s"] = time.perf_counter() - t0
    stationarity = getattr(api, "_stationarity", None) or jax.jit(LocalPosterior.stationarity)
    t0 = time.perf_counter()
    jax.block_until_ready(stationarity(post))
    out["stationarity_first_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(stationarity(post))
    out["stationarity_second_s"] = time.perf_counter() - t0
    full = jax.jit(LocalPosterior.full_loss)
    jax.block_until_ready(full(post, post.w_star))
    t0 = time.perf_counter()
    jax.block_until_ready(full(post, post.w_star))
    out["full_loss_pass_s"] = time.perf_counter() - t0

    # the floor: SGLD written plainly, same batch, chains and gradient work
    flat, unravel = jax.flatten_util.ravel_pytree(layers)
    x, y = data
    n = x.shape[0]
    nbeta, eps = n / math.log(n), meta["step_size"]

    def logp(w, batch):
        return -nbeta * dln_loss(unravel(w), batch) - 0.5 * jnp.sum((w - flat) ** 2)

    def make_run(noise):
        def step(w, key):
            kb, kn = jax.random.split(key)
            idx = jax.random.randint(kb, (BATCH,), 0, n)
            val, g = jax.value_and_grad(logp)(w, (x[idx], y[idx]))
            z = jax.random.normal(kn, w.shape) if noise else 0.0
            return w + 0.5 * eps * g + jnp.sqrt(eps) * z, val

        @jax.jit
        def run(key):
            keys = jax.random.split(key, (args.floor_steps, args.chains))
            ws = jnp.broadcast_to(flat, (args.chains, flat.size))
            return jax.lax.scan(lambda ws, k: jax.vmap(step)(ws, k), ws, keys)  # final ws kept: no dead code

        return run

    def lambda_hat_run(key):  # the same steps through lambda_hat.sample; its run_s (compile cached after the first)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            res = lh.sample(
                dln_loss,
                layers,
                data,
                kernel="sgld",
                key=int(jax.random.randint(key, (), 0, 2**30)),
                num_chains=args.chains,
                num_draws=args.floor_steps,
                num_warmup=0,
                batch_size=BATCH,
                step_size=eps,
            )
        return res.timings["run_s"]

    # side by side, interleaved: lambda_hat's loop, the floor, and the floor without the Gaussian
    # noise (what drawing d normals per step costs)
    runs = {"lambda_hat": lambda_hat_run, "floor": make_run(True), "floor_no_noise": make_run(False)}
    for name, run in runs.items():
        t0 = time.perf_counter()
        jax.block_until_ready(run(jax.random.key(0)))
        out[f"{name}_first_s"] = time.perf_counter() - t0
    times = {name: [] for name in runs}
    for r in range(3):
        for name, run in runs.items():
            t0 = time.perf_counter()
            value = jax.block_until_ready(run(jax.random.key(r + 1)))
            times[name].append(value if name == "lambda_hat" else time.perf_counter() - t0)
    chain_steps = args.floor_steps * args.chains
    for name in runs:
        out[f"{name}_run_s"] = statistics.median(times[name])
        out[f"{name}_chain_steps_per_s"] = chain_steps / out[f"{name}_run_s"]
    out["lambda_hat_run_over_floor"] = out["lambda_hat_run_s"] / out["floor_run_s"]
    out["noise_share_of_step"] = 1 - out["floor_no_noise_run_s"] / out["floor_run_s"]
    out["floor_steps"], out["floor_chains"] = args.floor_steps, args.chains
    print("RESULT " + json.dumps(out), flush=True)


def spawn(kind, work, size, **kw):
    cmd = [sys.executable, "-m", "benchmarks.dln_scale", "--child", kind, "--work", str(work), "--size", str(size)]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{kind} {size} failed:\n{proc.stderr[-4000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT ") :])
    r["process_s"], r["load_avg_1min"] = wall, os.getloadavg()[0]
    return r


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: the 1e4 size only, 500 steps, 100 vs 500 draws"
    )
    parser.add_argument("--sizes", default="10000,100000", help="comma list of DLN buckets (10000, 100000)")
    parser.add_argument("--steps", type=int, default=10_000, help="SGLD steps (= kept draws) per chain")
    parser.add_argument("--draws-compare", default="2000,10000", help="two num_draws for the memory check")
    parser.add_argument("--out", type=Path, default=None)
    # internal
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--work", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--chains", type=int, default=4, help=argparse.SUPPRESS)
    parser.add_argument("--draws", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--floor-steps", type=int, default=1000, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return {"build": child_build, "sample": child_sample, "pieces": child_pieces}[args.child](args)

    if args.quick:
        sizes, steps, draws_compare, floor_steps = [10_000], 500, (100, 500), 200
    else:
        sizes = [int(s) for s in args.sizes.split(",")]
        steps, draws_compare, floor_steps = args.steps, tuple(int(d) for d in args.draws_compare.split(",")), 500
    out_path = args.out or Path(__file__).parent / "results" / (
        "dln_scale_quick.json" if args.quick else "dln_scale.json"
    )
    work = Path(tempfile.mkdtemp(prefix="dln_scale_"))
    load_start = os.getloadavg()
    print(
        f"load average at start (1/5/15 min): {tuple(round(v, 2) for v in load_start)}; {os.cpu_count()} cores; "
        f"batch {BATCH}, {steps} steps, chains {CHAINS}",
        flush=True,
    )
    results = []
    for size in sizes:
        build = spawn("build", work, size)
        print(
            f"\nbucket {size}: widths {build['widths']} (d = {build['dim']}), layer ranks {build['layer_ranks']}, "
            f"r = {build['product_rank']}, λ = {build['lam_fraction']} (m = {build['m']}), local λ "
            f"{build['local_lam']}; ε = {build['step_size']:.3g}; target built in {build['build_s']:.1f} s "
            f"(peak RSS {build['memory']['ru_maxrss_mb']:.0f} MiB; load {build['load_avg_1min']:.1f})",
            flush=True,
        )
        runs = []
        for chains in CHAINS:
            r = spawn("sample", work, size, chains=chains, draws=steps)
            runs.append(r)
            print(
                f"  {chains} chain(s) × {steps} steps: compile {r['compile_s']:.1f} s, run {r['run_s']:.1f} s "
                f"({r['chain_steps_per_s']:.0f} chain-steps/s), rest of sample() {r['other_s']:.1f} s, "
                f"process {r['process_s']:.1f} s; sampling peak {r['sampling_peak_mb']:.0f} MiB "
                f"(process peak {r['process_peak_mb']:.0f} MiB); λ̂ {r['llc']:.1f} ± {r['llc_se']:.1f} "
                f"(after 20% burn-in {r['llc_after_burnin']:.1f} ± {r['llc_after_burnin_se']:.1f}) vs λ "
                f"{build['lam']:.1f} (load {r['load_avg_1min']:.1f})",
                flush=True,
            )
        mem = []
        for draws in draws_compare:
            same = next((r for r in runs if r["chains"] == 4 and r["draws"] == draws), None)
            mem.append(same or spawn("sample", work, size, chains=4, draws=draws))
        lo, hi = mem
        growth = (hi["sampling_peak_mb"] - lo["sampling_peak_mb"]) * 2**20
        expected = (hi["trace_bytes_device"] + hi["trace_bytes_host"]) - (
            lo["trace_bytes_device"] + lo["trace_bytes_host"]
        )
        per_draw_positions = 4 * build["dim"] * 4 * (hi["draws"] - lo["draws"])
        print(
            f"  memory vs draws (4 chains): {lo['draws']} draws peak {lo['sampling_peak_mb']:.0f} MiB, "
            f"{hi['draws']} draws peak {hi['sampling_peak_mb']:.0f} MiB: growth {growth / 2**20:+.1f} MiB; "
            f"expected from the trace {expected / 2**20:.2f} MiB (storing positions would add "
            f"{per_draw_positions / 2**20:,.0f} MiB)",
            flush=True,
        )
        pieces = spawn("pieces", work, size, chains=4, floor_steps=floor_steps)
        print(
            f"  pieces: LocalPosterior init (L_n(w*) incl. compile) {pieces['posterior_init_first_s']:.2f} s "
            f"(again {pieces['posterior_init_second_s']:.2f} s); stationarity check {pieces['stationarity_first_s']:.2f} s "
            f"(again {pieces['stationarity_second_s']:.2f} s); one full-batch L_n pass {pieces['full_loss_pass_s']:.2f} s",
            flush=True,
        )
        print(
            f"  side by side ({pieces['floor_steps']} steps × {pieces['floor_chains']} chains, interleaved, median of 3): "
            f"lambda_hat {pieces['lambda_hat_chain_steps_per_s']:.0f} chain-steps/s, floor "
            f"{pieces['floor_chain_steps_per_s']:.0f} (run/floor {pieces['lambda_hat_run_over_floor']:.2f}); the floor "
            f"without the Gaussian noise {pieces['floor_no_noise_chain_steps_per_s']:.0f} (noise = "
            f"{100 * pieces['noise_share_of_step']:.0f}% of a step)",
            flush=True,
        )
        results.append(
            dict(
                size=size,
                target=build,
                runs=runs,
                memory_vs_draws=dict(
                    draws=[lo["draws"], hi["draws"]],
                    sampling_peak_mb=[lo["sampling_peak_mb"], hi["sampling_peak_mb"]],
                    process_peak_mb=[lo["process_peak_mb"], hi["process_peak_mb"]],
                    growth_bytes=growth,
                    expected_trace_growth_bytes=expected,
                    positions_would_be_bytes=per_draw_positions,
                ),
                pieces=pieces,
            )
        )
        (work / f"dln{size}.npz").unlink(missing_ok=True)
    shutil.rmtree(work, ignore_errors=True)
    load_end = os.getloadavg()
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(
        json.dumps(
            dict(
                machine=dict(
                    platform=platform.platform(),
                    processor=platform.processor(),
                    cpu_count=os.cpu_count(),
                    load_avg_start=load_start,
                    load_avg_end=load_end,
                ),
                settings=dict(
                    batch_size=BATCH,
                    steps=steps,
                    num_warmup=0,
                    chains=list(CHAINS),
                    gamma=1.0,
                    nbeta="n/log n",
                    step_size="target.info['suggested_step_size']",
                    seed=SEED,
                    quick=args.quick,
                ),
                sizes=results,
            ),
            indent=1,
        )
    )
    print(f"\nload average at end: {tuple(round(v, 2) for v in load_end)}\nwrote {out_path}")


if __name__ == "__main__":
    main()
