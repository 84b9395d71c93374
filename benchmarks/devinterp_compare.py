"""lambda_hat SGLD against devinterp 1.3.2 (PyTorch, CPU) on the floor problem.

    /work/bench-venv/bin/python -m benchmarks.devinterp_compare [--repeats 5] [--quick]

Needs torch and devinterp next to lambda_hat in one environment (they are *not* lambda_hat
dependencies); see benchmarks/requirements-devinterp.txt:

    python3.11 -m venv /work/bench-venv
    /work/bench-venv/bin/pip install -r benchmarks/requirements-devinterp.txt -e .

Problem and settings are those of benchmarks/floor.py: the 337-parameter tanh MLP 2→16→16→1
(benchmarks.problems.tanh_mlp_problem), n = 1000, 4 chains, no burn-in, ε = 1e-4, γ = 100,
nβ = n/log n, full batch and batch 100, 200 and 2,000 draws. The same trained w* (the JAX
params copied into a torch nn.Sequential with identical weights), the same data, the same loss
(mean squared error over the batch: problems.py's jnp.mean((f(x) − y)²) and devinterp's
evaluate_mse = F.mse_loss, reduction "mean").

Settings mapping (devinterp 1.3.2 ``devinterp.optim.sgld.SGLD.step``, the sampler's default):

    devinterp:   w ← w − (lr/2)·(nbeta·∇L_B(w) + localization·(w − w0)) + √lr · N(0, 1)
    lambda_hat:  w ← w + (ε/2)·∇log p̂(w) + N(0, ε),  ∇log p̂ = −nβ ∇L_B(w) − γ (w − w*)

so lr = ε = step_size, nbeta = nβ (passed explicitly: devinterp's default_nbeta uses the *batch
size*, not n), localization = γ, noise_level = 1, weight_decay = 0. Both record the minibatch
loss at w_t *before* the update; λ̂ = nβ·(mean of the trace − init_loss). devinterp is given
init_loss = L_n(w*) (full batch, computed in torch) so both subtract the same quantity (its
default averages min(num_chains, len(loader)) minibatch losses). Differences left: minibatches
are drawn with replacement in lambda_hat and by a shuffled DataLoader (without replacement
within an epoch) in devinterp; the random streams differ.

devinterp is run through ``estimate_learning_coeff_with_summary`` with its default
``cores=1`` (chains one after another) and ``verbose=False``, with two DataLoaders:
"default" = DataLoader(TensorDataset(x, y), batch_size, shuffle=True), what a user writes;
"bulk" = the same shuffled batches gathered in one indexing op per batch (torch's
``__getitems__`` hook, no per-example collation): devinterp's best case. torch runs with one
intra-op thread by default (``--torch-threads 1``): for a 16-wide MLP extra threads only add
synchronisation, and on a loaded 2-core machine torch's default (2 OpenMP threads) was 5–50×
slower. ``--torch-threads 1,2`` adds the 2-thread variants; ``--cores2`` adds devinterp's
``cores=2`` process pool (end to end only, with OMP_NUM_THREADS=1 as devinterp's pool needs).

Measured, side by side in one process (interleaved repeats, medians):
  * steady state: wall time of a second and later call (lambda_hat's compile cached), as
    chain-steps per second = chains × draws / time, and the marginal rate from the 200 → 2000
    difference (fixed per-call costs cancel);
  * end to end at the largest draw count: a fresh Python process per run (imports, JAX
    compilation, everything), with the in-process call time reported beside it.
Writes benchmarks/results/devinterp.json.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

EPS = 1e-4
GAMMA = 100.0
CHAINS = 4
LOADERS = ("default", "bulk")


# --------------------------------------------------------------------------------------------
# the problem, as arrays (so that fresh processes need not retrain, and need not import JAX)


def export_problem(path: Path) -> dict:
    """Train w* with benchmarks.problems and save it with the data to an .npz."""
    from benchmarks.problems import tanh_mlp_problem

    loss_fn, params, (x, y) = tanh_mlp_problem()
    arrays = {"x": np.asarray(x), "y": np.asarray(y)}
    for i, (w, b) in enumerate(params):
        arrays[f"w{i}"], arrays[f"b{i}"] = np.asarray(w), np.asarray(b)
    np.savez(path, **arrays)
    # the loss written here must be problems.py's loss, exactly
    mine = float(jax_loss(params_from_arrays(arrays), (x, y)))
    theirs = float(loss_fn(params, (x, y)))
    assert mine == theirs, (mine, theirs)
    return {"loss_at_wstar": theirs, "dim": int(sum(a.size for k, a in arrays.items() if k[0] in "wb"))}


def load_arrays(path) -> dict:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def params_from_arrays(arrays):
    import jax.numpy as jnp

    return [(jnp.asarray(arrays[f"w{i}"]), jnp.asarray(arrays[f"b{i}"])) for i in range(3)]


def jax_loss(params, batch):
    """benchmarks.problems.tanh_mlp_problem's loss: mean squared error over the batch."""
    import jax.numpy as jnp

    xb, yb = batch
    h = xb
    for i, (w, b) in enumerate(params):
        h = h @ w + b
        if i < len(params) - 1:
            h = jnp.tanh(h)
    return jnp.mean((h - yb) ** 2)


# --------------------------------------------------------------------------------------------
# lambda_hat side


def lambda_hat_setup(arrays):
    import jax.numpy as jnp

    params = params_from_arrays(arrays)
    data = (jnp.asarray(arrays["x"]), jnp.asarray(arrays["y"]))
    return params, data


def lambda_hat_run(params, data, *, batch_size, draws, seed, chains=CHAINS):
    import lambda_hat as lh

    n = data[0].shape[0]
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        res = lh.sample(
            jax_loss,
            params,
            data,
            kernel="sgld",
            key=seed,
            num_chains=chains,
            num_draws=draws,
            num_warmup=0,
            nbeta=n / math.log(n),
            gamma=GAMMA,
            step_size=EPS,
            batch_size=None if batch_size >= n else batch_size,
        )
    wall = time.perf_counter() - t0
    return dict(
        wall_s=wall,
        run_s=res.timings["run_s"],
        compile_s=res.timings["compile_s"],
        llc=float(res.llc),
        llc_se=float(res.llc_se),
        llc_per_chain=np.asarray(res.llc_per_chain).tolist(),
    )


# --------------------------------------------------------------------------------------------
# devinterp side


def torch_setup(arrays):
    import torch
    from torch import nn

    model = nn.Sequential(nn.Linear(2, 16), nn.Tanh(), nn.Linear(16, 16), nn.Tanh(), nn.Linear(16, 1))
    with torch.no_grad():
        for i, layer in enumerate(model[::2]):
            layer.weight.copy_(torch.from_numpy(arrays[f"w{i}"].T.copy()))  # JAX (in, out) -> torch (out, in)
            layer.bias.copy_(torch.from_numpy(arrays[f"b{i}"]))
    x, y = torch.from_numpy(arrays["x"]), torch.from_numpy(arrays["y"])
    with torch.no_grad():
        loss_star = float(torch.nn.functional.mse_loss(model(x), y))
    return model, x, y, loss_star


class _IndexBatches:
    """A map-style dataset that gathers a whole index batch at once (torch's __getitems__ hook)."""

    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i], self.y[i]

    def __getitems__(self, idx):
        idx = torch_index(idx)
        return self.x[idx], self.y[idx]


def torch_index(idx):
    import torch

    return torch.as_tensor(idx)


def _as_is(batch):
    return batch


def make_loader(kind, x, y, batch_size):
    from torch.utils.data import DataLoader, TensorDataset

    if kind == "default":
        return DataLoader(TensorDataset(x, y), batch_size=batch_size, shuffle=True)
    if kind == "bulk":  # same shuffled batches, one gather per batch, no per-example collation
        return DataLoader(_IndexBatches(x, y), batch_size=batch_size, shuffle=True, collate_fn=_as_is)
    raise ValueError(kind)


def devinterp_run(model, x, y, loss_star, *, loader_kind, batch_size, draws, seed, threads=1, cores=1, chains=CHAINS):
    import torch
    from devinterp.optim.sgld import SGLD
    from devinterp.slt.sampler import estimate_learning_coeff_with_summary
    from devinterp.utils import evaluate_mse

    from lambda_hat.diagnostics import llc_statistics

    torch.set_num_threads(threads)
    n = len(x)
    nbeta = n / math.log(n)
    loader = make_loader(loader_kind, x, y, batch_size)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = estimate_learning_coeff_with_summary(
            model,
            loader,
            evaluate=evaluate_mse,
            sampling_method=SGLD,
            optimizer_kwargs=dict(lr=EPS, localization=GAMMA, nbeta=nbeta),
            num_draws=draws,
            num_chains=chains,
            num_burnin_steps=0,
            num_steps_bw_draws=1,
            init_loss=loss_star,
            cores=cores,
            seed=seed,
            device="cpu",
            verbose=False,
        )
    wall = time.perf_counter() - t0
    trace = nbeta * (np.asarray(out["loss/trace"], np.float64) - loss_star)
    stats = llc_statistics(trace)
    return dict(
        wall_s=wall,
        llc=float(out["llc/mean"]),
        llc_se=float(stats["llc_se"]),
        llc_chain_sd=float(out["llc/std"]),
        llc_per_chain=trace.mean(axis=1).tolist(),
    )


def parse_variant(name):
    """'default-t1' -> (loader 'default', torch threads 1, cores 1); 'bulk-t1-cores2' -> cores 2."""
    parts = name.split("-")
    loader, threads = parts[0], int(parts[1][1:])
    cores = int(parts[2].removeprefix("cores")) if len(parts) > 2 else 1
    return loader, threads, cores


# --------------------------------------------------------------------------------------------
# fresh-process end-to-end runs


def child(args):
    """One end-to-end run in this (fresh) process; prints a JSON line."""
    t_start = time.perf_counter()
    if args.child == "lambda_hat":
        import jax  # noqa: F401

        import lambda_hat  # noqa: F401

        t_import = time.perf_counter()
        arrays = load_arrays(args.problem)
        params, data = lambda_hat_setup(arrays)
        t_setup = time.perf_counter()
        r = lambda_hat_run(params, data, batch_size=args.batch, draws=args.draws, seed=args.seed)
    else:
        import devinterp.slt.sampler  # noqa: F401
        import torch  # noqa: F401

        t_import = time.perf_counter()
        arrays = load_arrays(args.problem)
        model, x, y, loss_star = torch_setup(arrays)
        t_setup = time.perf_counter()
        loader, threads, cores = parse_variant(args.child.removeprefix("devinterp-"))
        r = devinterp_run(
            model,
            x,
            y,
            loss_star,
            loader_kind=loader,
            batch_size=args.batch,
            draws=args.draws,
            seed=args.seed,
            threads=threads,
            cores=cores,
        )
    r.update(import_s=t_import - t_start, setup_s=t_setup - t_import)
    print("RESULT " + json.dumps(r), flush=True)


def end_to_end(which, problem, *, batch, draws, seed):
    cmd = [
        sys.executable,
        "-m",
        "benchmarks.devinterp_compare",
        "--child",
        which,
        "--problem",
        str(problem),
        "--batch",
        str(batch),
        "--draws",
        str(draws),
        "--seed",
        str(seed),
    ]
    env = dict(os.environ)
    if which.startswith("devinterp-"):
        _, threads, cores = parse_variant(which.removeprefix("devinterp-"))
        if threads == 1 or cores > 1:  # cores > 1: spawn workers do not inherit set_num_threads
            env["OMP_NUM_THREADS"] = "1"
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=Path(__file__).resolve().parent.parent, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{which} failed:\n{proc.stderr[-3000:]}")
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")][-1]
    r = json.loads(line[len("RESULT ") :])
    r["process_s"] = wall
    return r


# --------------------------------------------------------------------------------------------


def med(rows, key):
    return statistics.median(r[key] for r in rows)


def mean_sd(values):
    values = list(values)
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else float("nan"))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="steady-state repeats per configuration")
    parser.add_argument("--e2e-repeats", type=int, default=3, help="fresh-process end-to-end repeats")
    parser.add_argument("--quick", action="store_true", help="smoke run: 100/400 draws, 2 repeats, 1 e2e repeat")
    parser.add_argument(
        "--torch-threads",
        default="1",
        help="comma list of torch intra-op thread counts to run devinterp with (e.g. 1,2)",
    )
    parser.add_argument(
        "--cores2",
        action="store_true",
        help="also run devinterp's cores=2 process pool end to end (bulk loader, OMP_NUM_THREADS=1)",
    )
    parser.add_argument("--out", type=Path, default=None)
    # internal: one end-to-end run in a fresh process
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--problem", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--draws", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)

    try:
        import devinterp  # noqa: F401
        import torch
    except ImportError as err:
        sys.exit(
            f"devinterp_compare needs torch and devinterp in this environment ({err}); "
            "pip install -r benchmarks/requirements-devinterp.txt"
        )
    import jax

    import lambda_hat

    torch_default_threads = torch.get_num_threads()
    variants = [f"{loader}-t{t}" for t in map(int, args.torch_threads.split(",")) for loader in LOADERS]
    draws_list = (100, 400) if args.quick else (200, 2000)
    repeats = 2 if args.quick else args.repeats
    e2e_repeats = 1 if args.quick else args.e2e_repeats
    out_path = args.out or Path(__file__).parent / "results" / (
        "devinterp_quick.json" if args.quick else "devinterp.json"
    )
    n = 1000
    load_start = os.getloadavg()
    print(
        f"load average at start (1/5/15 min): {tuple(round(v, 2) for v in load_start)}; {os.cpu_count()} cores; "
        f"jax {jax.__version__} on {jax.devices()[0]}; torch {torch.__version__} (default {torch_default_threads} "
        f"threads); devinterp 1.3.2; devinterp variants (loader-threads): {variants}",
        flush=True,
    )

    tmp = Path(tempfile.mkdtemp(prefix="devinterp_compare_"))
    problem = tmp / "problem.npz"
    info = export_problem(problem)
    arrays = load_arrays(problem)
    params, data = lambda_hat_setup(arrays)
    model, x, y, loss_star_torch = torch_setup(arrays)
    with torch.no_grad():  # identical weights: the torch forward pass matches a float64 numpy one
        out_t = model(x).numpy()
    h = np.asarray(arrays["x"], np.float64)
    for i in range(3):
        h = h @ arrays[f"w{i}"] + arrays[f"b{i}"]
        if i < 2:
            h = np.tanh(h)
    max_diff = float(np.max(np.abs(out_t - h)))
    print(
        f"d = {info['dim']}, L_n(w*) = {info['loss_at_wstar']:.6g} (JAX) / {loss_star_torch:.6g} (torch); "
        f"max |f_torch - f_float64| = {max_diff:.2g}",
        flush=True,
    )
    assert max_diff < 1e-4

    def di(variant, batch, draws, seed):
        loader, threads, cores = parse_variant(variant)
        return devinterp_run(
            model,
            x,
            y,
            loss_star_torch,
            loader_kind=loader,
            batch_size=batch,
            draws=draws,
            seed=seed,
            threads=threads,
            cores=cores,
        )

    rows = []
    for batch in (n, 100):
        for draws in draws_list:
            # warm-up: lambda_hat compiles here (compile time recorded), torch warms up
            first = lambda_hat_run(params, data, batch_size=batch, draws=draws, seed=0)
            for v in variants:
                di(v, batch, draws, 0)
            lh_runs, di_runs = [], {v: [] for v in variants}
            for r in range(repeats):  # interleaved, so load changes hit both
                lh_runs.append(lambda_hat_run(params, data, batch_size=batch, draws=draws, seed=r + 1))
                for v in variants:
                    di_runs[v].append(di(v, batch, draws, r + 1))
            steps = CHAINS * draws
            row = dict(
                batch_size=batch,
                draws=draws,
                chains=CHAINS,
                load_avg_1min=os.getloadavg()[0],
                lambda_hat=dict(
                    call_s=med(lh_runs, "wall_s"),
                    run_s=med(lh_runs, "run_s"),
                    compile_s=first["compile_s"],
                    first_call_s=first["wall_s"],
                    chain_steps_per_s=steps / med(lh_runs, "wall_s"),
                    llc=[r["llc"] for r in lh_runs],
                    llc_se=[r["llc_se"] for r in lh_runs],
                ),
                devinterp={
                    v: dict(
                        call_s=med(rs, "wall_s"),
                        chain_steps_per_s=steps / med(rs, "wall_s"),
                        llc=[r["llc"] for r in rs],
                        llc_se=[r["llc_se"] for r in rs],
                    )
                    for v, rs in di_runs.items()
                },
            )
            # λ̂ agreement: mean over seeds and its standard error (sd over seeds / √repeats)
            for side in [row["lambda_hat"], *row["devinterp"].values()]:
                m, sd = mean_sd(side["llc"])
                side["llc_mean"], side["llc_se_over_seeds"] = m, sd / math.sqrt(len(side["llc"]))
            for v in variants:
                a, b = row["lambda_hat"], row["devinterp"][v]
                row["devinterp"][v]["llc_z_vs_lambda_hat"] = (a["llc_mean"] - b["llc_mean"]) / math.hypot(
                    a["llc_se_over_seeds"], b["llc_se_over_seeds"]
                )
            row["speedup"] = {
                v: row["lambda_hat"]["chain_steps_per_s"] / row["devinterp"][v]["chain_steps_per_s"] for v in variants
            }
            row["speedup_vs_fastest_devinterp"] = min(row["speedup"].values())
            rows.append(row)
            lh_row = row["lambda_hat"]
            print(
                f"batch {batch:>4} draws {draws:>4} (load {row['load_avg_1min']:.1f}): lambda_hat "
                f"{lh_row['call_s'] * 1e3:8.1f} ms ({lh_row['chain_steps_per_s']:6.0f} chain-steps/s; "
                f"λ̂ {lh_row['llc_mean']:.3f} ± {lh_row['llc_se_over_seeds']:.3f} over {repeats} seeds)",
                flush=True,
            )
            for v in variants:
                d = row["devinterp"][v]
                print(
                    f"{'':28}devinterp[{v:10}] {d['call_s'] * 1e3:8.1f} ms ({d['chain_steps_per_s']:6.0f} "
                    f"chain-steps/s; λ̂ {d['llc_mean']:.3f} ± {d['llc_se_over_seeds']:.3f}, z = "
                    f"{d['llc_z_vs_lambda_hat']:+.1f}); lambda_hat {row['speedup'][v]:.1f}× faster",
                    flush=True,
                )

    # marginal per-step rates from the draw-count difference (fixed per-call costs cancel)
    marginal = []
    lo, hi = draws_list
    for batch in (n, 100):
        a = next(r for r in rows if r["batch_size"] == batch and r["draws"] == lo)
        b = next(r for r in rows if r["batch_size"] == batch and r["draws"] == hi)
        m = dict(
            batch_size=batch, lambda_hat=CHAINS * (hi - lo) / (b["lambda_hat"]["call_s"] - a["lambda_hat"]["call_s"])
        )
        for v in variants:
            m[f"devinterp[{v}]"] = CHAINS * (hi - lo) / (b["devinterp"][v]["call_s"] - a["devinterp"][v]["call_s"])
        marginal.append(m)
        print(
            f"marginal chain-steps/s ({lo}→{hi} draws), batch {batch}: "
            + ", ".join(f"{k} {val:.0f}" for k, val in m.items() if k != "batch_size"),
            flush=True,
        )

    # λ̂ agreement: many chains at the smaller draw count (the 4-chain runs above spread widely,
    # since 200 draws without burn-in are still in the transient); z from the per-chain means
    agree_chains = 16 if args.quick else 64
    agreement = []
    for batch in (n, 100):
        a = lambda_hat_run(params, data, batch_size=batch, draws=lo, seed=1000, chains=agree_chains)["llc_per_chain"]
        b = devinterp_run(
            model, x, y, loss_star_torch, loader_kind="bulk", batch_size=batch, draws=lo, seed=1000, chains=agree_chains
        )["llc_per_chain"]
        ma, mb = float(np.mean(a)), float(np.mean(b))
        sa, sb = float(np.std(a, ddof=1) / math.sqrt(len(a))), float(np.std(b, ddof=1) / math.sqrt(len(b)))
        agreement.append(
            dict(
                batch_size=batch,
                draws=lo,
                chains=agree_chains,
                lambda_hat_llc=ma,
                lambda_hat_se=sa,
                devinterp_llc=mb,
                devinterp_se=sb,
                z=(ma - mb) / math.hypot(sa, sb),
            )
        )
        print(
            f"λ̂ agreement, batch {batch}, {agree_chains} chains × {lo} draws: lambda_hat {ma:.3f} ± {sa:.3f}, "
            f"devinterp {mb:.3f} ± {sb:.3f} (z = {agreement[-1]['z']:+.1f})",
            flush=True,
        )

    # end to end, fresh processes, largest draw count
    whos = ["lambda_hat"] + [f"devinterp-{v}" for v in variants]
    if args.cores2:
        whos.append("devinterp-bulk-t1-cores2")
    e2e = []
    for batch in (n, 100):
        runs = {w: [] for w in whos}
        for r in range(e2e_repeats):
            for w in whos:
                runs[w].append(end_to_end(w, problem, batch=batch, draws=hi, seed=r + 1))
        row = dict(batch_size=batch, draws=hi, chains=CHAINS, load_avg_1min=os.getloadavg()[0])
        for w, v in runs.items():
            row[w] = dict(
                process_s=med(v, "process_s"),
                call_s=med(v, "wall_s"),
                import_s=med(v, "import_s"),
                llc=[x["llc"] for x in v],
            )
            if w == "lambda_hat":
                row[w]["compile_s"] = med(v, "compile_s")
        row["process_speedup_vs_fastest_devinterp"] = (
            min(row[w]["process_s"] for w in whos[1:]) / row["lambda_hat"]["process_s"]
        )
        e2e.append(row)
        print(
            f"end to end, batch {batch}, {hi} draws (fresh process each; median of {e2e_repeats}; "
            f"load {row['load_avg_1min']:.1f}):",
            flush=True,
        )
        for w in whos:
            extra = f", compile {row[w]['compile_s']:.2f} s" if w == "lambda_hat" else ""
            print(
                f"    {w:26} process {row[w]['process_s']:7.2f} s  (sample call {row[w]['call_s']:7.2f} s{extra}; "
                f"imports {row[w]['import_s']:.2f} s)",
                flush=True,
            )

    load_end = os.getloadavg()
    result = dict(
        machine=dict(
            platform=platform.platform(),
            processor=platform.processor(),
            cpu_count=os.cpu_count(),
            load_avg_start=load_start,
            load_avg_end=load_end,
            torch_default_threads=torch_default_threads,
        ),
        versions=dict(
            jax=jax.__version__,
            torch=torch.__version__,
            devinterp="1.3.2",
            lambda_hat=getattr(lambda_hat, "__version__", ""),
        ),
        settings=dict(
            problem="tanh MLP 2-16-16-1 (benchmarks.problems.tanh_mlp_problem)",
            d=info["dim"],
            n=n,
            chains=CHAINS,
            burnin=0,
            eps=EPS,
            gamma=GAMMA,
            nbeta=n / math.log(n),
            loss_at_wstar_jax=info["loss_at_wstar"],
            loss_at_wstar_torch=loss_star_torch,
            devinterp="estimate_learning_coeff_with_summary(evaluate=evaluate_mse, sampling_method=SGLD, "
            "optimizer_kwargs=dict(lr=eps, localization=gamma, nbeta=nbeta), num_burnin_steps=0, "
            "init_loss=L_n(w*), cores=1, verbose=False)",
            variants="loader-tN: loader 'default' (TensorDataset, shuffle=True) or 'bulk' (one gather per "
            "batch); tN = torch.set_num_threads(N); cores2 = devinterp's cores=2 spawn pool",
            repeats=repeats,
            e2e_repeats=e2e_repeats,
            quick=args.quick,
        ),
        steady_state=rows,
        marginal_chain_steps_per_s=marginal,
        llc_agreement=agreement,
        end_to_end=e2e,
    )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_text(json.dumps(result, indent=1))
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"load average at end: {tuple(round(v, 2) for v in load_end)}")
    print(f"wrote {out_path}")


if __name__ == "__main__":
    main()
