"""Cost of every kernel to reach 5% relative error on exact quadratics.

    python -m benchmarks.kernels_to_5pct            # full run (writes benchmarks/results/kernels_to_5pct.json)
    python -m benchmarks.kernels_to_5pct --quick    # smoke run: d = 100 only, 2 seeds, short ladders

Definition (also in docs/benchmarks.md). For each problem (a quadratic target with an exact finite-n
E[λ̂]) and each method (a kernel with fixed, stated settings) we walk up a ladder of budgets. At
each rung the method runs ``--seeds`` times (keys 0..R−1), 4 chains each. The rung's error is the
relative RMSE over seeds, sqrt(mean_s (λ̂_s / E[λ̂] − 1)²). The *budget to 5%* is the first rung
with RMSE <= 5%; for it we report gradient evaluations (``result.grad_evals``: all chains, warmup,
adaptation and tuning included; deterministic except for NUTS, where it is the mean over seeds),
data passes, the median ``run_s`` over seeds and ``compile_s`` (the first seed's; later seeds hit the
compile cache), the signed bias, and whether the reported MCSE covers the error (fraction of seeds
with |λ̂ − E[λ̂]| <= 2·MCSE). A ladder stops at its first passing rung, at its last rung, or when
its cumulative time exceeds ``--ladder-cap-s`` ("not met within cap").

Rungs: MCMC kernels scale num_warmup W by 2 per rung with num_draws = max(4, W/2) (HMC/NUTS:
W window-adaptation iterations; MCLMC: tuning budget; SGLD: burn-in steps). VI scales the number
of optimisation steps by 2 per rung at fixed M (components), S (samples per component), rank and
evaluation draws.

Every line of output carries os.getloadavg(); the machine this ran on may have been shared, so
wall times are indicative and gradient evaluations are the stable measure.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import math
import os
import platform
import re
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import numpy as np

import lambda_hat as lh
from lambda_hat import targets
from lambda_hat.targets import Target

GAMMA = 1.0
NUM_CHAINS = 4
TARGET_RMSE = 0.05  # --target changes it
SGLD_C = 0.1  # SGLD ε = SGLD_C / κ_max
RMSPROP_C = 0.1  # RMSProp-SGLD ε = RMSPROP_C / sqrt(κ_max)


# ----------------------------------------------------------------------------- problems
@dataclass
class Problem:
    name: str
    build: Callable[[], Target]
    description: str
    quick: bool = False
    skip: dict[str, str] = field(default_factory=dict)  # method -> why it is not run here
    seeds: dict[str, int] = field(default_factory=dict)  # method -> seeds per rung, when fewer than --seeds


PROBLEMS = [
    Problem(
        "linreg_d100",
        lambda: targets.linear_regression(d=100, n=1000, seed=11),
        "linear_regression(d=100, n=1000, seed=11): full rank, data-dependent",
        quick=True,
    ),
    Problem(
        "linreg_d100_rank90",
        lambda: targets.linear_regression(d=100, rank=90, n=1000, seed=11),
        "linear_regression(d=100, rank=90, n=1000, seed=11): 10 flat directions, rotated",
    ),
    Problem(
        "potential_d1000",
        lambda: targets.pure_potential(d=1000, spectrum=(0.25, 4.0), seed=13),
        "pure_potential(d=1000, spectrum=(0.25, 4), rotate=True, seed=13): full rank, dense rotated H",
        seeds={"vi_default": 2},
    ),
    Problem(
        "potential_d1000_rank900",
        lambda: targets.pure_potential(d=1000, rank=900, spectrum=(0.25, 4.0), seed=13),
        "pure_potential(d=1000, rank=900, spectrum=(0.25, 4), rotate=True, seed=13): 100 flat directions",
        skip={
            "vi_default": "M = 4 components of rank 102 took 480-780 s per call (2 calls, 2-core CPU at load "
            "about 5) and read +19.7% (both seeds); too slow for this run",
            "vi_converged": "M = 4 components of rank 102 (vi_default took 480-780 s per call here); too slow for "
            "this run: vi_converged_M1_S1 is run instead",
        },
    ),
]


def spectrum(target: Target, nbeta: float) -> dict[str, float]:
    eigs = np.clip(np.asarray(target.info["hessian_eigenvalues"], np.float64), 0, None)
    nonzero = eigs[eigs > 1e-8 * eigs.max()]
    return {
        "kappa_max": float(nbeta * eigs.max() + GAMMA),
        "kappa_min_nonflat": float(nbeta * nonzero.min() + GAMMA),
        "flat_directions": int(eigs.size - nonzero.size),
    }


def sgld_stationary_llc(target: Target, nbeta: float, eps: float) -> float:
    """E[λ̂] under full-batch SGLD's own stationary law at step ε (g = 0): the update is linear,
    w ← (I − εP/2) w + N(0, εI), so Cov = (P (I − εP/4))⁻¹ with P = nβH + γI."""
    eigs = np.clip(np.asarray(target.info["hessian_eigenvalues"], np.float64), 0, None)
    kappa = nbeta * eigs + GAMMA
    return float(0.5 * np.sum(nbeta * eigs / (kappa * (1 - eps * kappa / 4))))


# ----------------------------------------------------------------------------- methods
@dataclass
class Method:
    name: str
    kernel: str
    ladder: list[dict[str, int]]  # rung -> {"num_warmup": ..., "num_draws": ...}
    options: Callable[[Target, dict[str, float]], dict[str, Any]] = lambda t, s: {}
    note: str = ""
    quick_rungs: tuple[int, int] = (0, 2)
    budget_label: str = "W/D"
    full_ladder: bool = False
    extra: bool = False  # only run when named in --methods (the VI learning-rate follow-up)
    converged_stop: bool = False  # VI with convergence-based stopping: num_warmup is only the step cap


def mcmc_ladder(w0: int, rungs: int) -> list[dict[str, int]]:
    """num_warmup W = w0·2^k, num_draws = max(4, W/2) (4 is lambda_hat's minimum)."""
    return [{"num_warmup": w0 * 2**k, "num_draws": max(4, (w0 * 2**k) // 2)} for k in range(rungs)]


def vi_ladder(steps: list[int], draws: int) -> list[dict[str, int]]:
    return [{"num_warmup": s, "num_draws": draws} for s in steps]


def vi_rank(spec: dict[str, float]) -> int:
    """The validation suite's rule: a loading column per flat direction, plus 2, at least 4."""
    return max(4, int(spec["flat_directions"]) + 2)


VI_STEPS = [25, 50, 100, 200, 400, 800, 1600, 3200]
VI_DRAWS = [100, 200, 400, 1000]  # evaluation draws of the convergence-stopped VI ladders
VI_CAP = 20000  # their step cap (the library's default num_warmup for kernel="vi")


def vi_draws_ladder(draws: list[int]) -> list[dict[str, int]]:
    """Convergence-stopped VI: the fit stops by itself (num_warmup is only the cap); the ladder
    doubles the evaluation draws, which are also each round's convergence-check draws."""
    return [{"num_warmup": VI_CAP, "num_draws": d} for d in draws]


METHODS = [
    Method(
        "sgld",
        "sgld",
        mcmc_ladder(64, 9),
        lambda t, s: {"step_size": SGLD_C / s["kappa_max"]},
        note=f"full batch, ε = {SGLD_C}/κ_max (κ_max = nβ·λ_max(H) + γ)",
        quick_rungs=(2, 4),
    ),
    Method(
        "rmsprop_sgld",
        "rmsprop_sgld",
        mcmc_ladder(64, 9),
        lambda t, s: {"step_size": RMSPROP_C / math.sqrt(s["kappa_max"])},
        note=f"full batch, ε = {RMSPROP_C}/sqrt(κ_max) (the validation suite uses 0.04, which needed 8× more steps here), other options default",
        quick_rungs=(2, 4),
    ),
    Method(
        "hmc",
        "hmc",
        mcmc_ladder(5, 9),
        note="defaults (L = 16 jittered ±50%, target acceptance 0.8)",
        quick_rungs=(2, 4),
    ),
    Method(
        "nuts",
        "nuts",
        mcmc_ladder(5, 9),
        note="defaults (max_num_doublings = 10, target acceptance 0.8)",
        quick_rungs=(2, 4),
    ),
    Method(
        "nuts_md5",
        "nuts",
        mcmc_ladder(5, 9),
        lambda t, s: {"max_num_doublings": 5},
        note="max_num_doublings = 5 (at most 31 leapfrog steps per iteration), otherwise defaults",
        quick_rungs=(0, 0),
    ),
    Method(
        "mclmc",
        "mclmc",
        mcmc_ladder(10, 8),
        lambda t, s: {"desired_energy_var": 1e-4},  # as recorded in the results (the default is 2e-5)
        note="desired_energy_var = 1e-4 (the library's default before 2e-5), otherwise defaults (diagonal preconditioning)",
        quick_rungs=(1, 3),
    ),
    Method(
        "vi_default",
        "vi",
        [{"num_warmup": 3000, "num_draws": 1000}],
        lambda t, s: {"rank": vi_rank(s)},
        note="defaults (M = 4, S = 4, 3000 steps, 1000 draws, control variate on); rank = max(4, flat + 2)",
        quick_rungs=(0, 1),
        budget_label="steps",
    ),
    Method(
        "vi_converged",
        "vi",
        vi_draws_ladder(VI_DRAWS),
        lambda t, s: {"rank": vi_rank(s)},
        note=f"library defaults with convergence-based stopping (M = 4, S = 4, step cap {VI_CAP}, checks every 250 "
        "steps); rank = max(4, flat + 2); the ladder doubles the evaluation (and check) draws",
        quick_rungs=(0, 2),
        budget_label="draws",
        converged_stop=True,
    ),
    Method(
        "vi_converged_M1_S1",
        "vi",
        vi_draws_ladder(VI_DRAWS),
        lambda t, s: {"num_components": 1, "num_samples": 1, "rank": vi_rank(s), "check_every": 50},
        note=f"convergence-based stopping at the cheapest settings: M = 1, S = 1, checks every 50 steps, step cap "
        f"{VI_CAP}, rank = max(4, flat + 2), control variate on",
        quick_rungs=(0, 2),
        budget_label="draws",
        converged_stop=True,
    ),
    Method(
        "vi_init",
        "vi",
        [{"num_warmup": 0, "num_draws": 100}],
        lambda t, s: {"num_components": 1, "rank": vi_rank(s), "control_variate": False},
        note="0 optimisation steps: q is the initial diagonal Gaussian, s_i = 1/sqrt(nβ·Ĥ_ii + γ) "
        "from 16 Hutchinson probes (a reference point, not a method)",
        quick_rungs=(0, 1),
        budget_label="steps",
    ),
    Method(
        "vi_M1_S4",
        "vi",
        vi_ladder(VI_STEPS, 100),
        lambda t, s: {"num_components": 1, "num_samples": 4, "rank": vi_rank(s), "control_variate": False},
        note="M = 1, S = 4, 100 draws, control variate off, rank = max(4, flat + 2), learning rates default",
        quick_rungs=(0, 2),
        budget_label="steps",
        full_ladder=True,
    ),
    Method(
        "vi_M1_S1",
        "vi",
        vi_ladder(VI_STEPS, 100),
        lambda t, s: {"num_components": 1, "num_samples": 1, "rank": vi_rank(s), "control_variate": False},
        note="M = 1, S = 1, 100 draws, control variate off, rank = max(4, flat + 2), learning rates default",
        quick_rungs=(0, 2),
        budget_label="steps",
        full_ladder=True,
    ),
    Method(
        "vi_M1_S4_llr0.1",
        "vi",
        vi_ladder(VI_STEPS, 100),
        lambda t, s: {
            "num_components": 1,
            "num_samples": 4,
            "rank": vi_rank(s),
            "control_variate": False,
            "loading_learning_rate": 0.1,
        },
        note="as vi_M1_S4 with loading_learning_rate = 0.1 (default 0.3)",
        quick_rungs=(0, 0),
        budget_label="steps",
        full_ladder=True,
    ),
    # Follow-up on the loadings' learning rate (run with --methods NAME ...; not in the default run).
    Method(
        "vi_M1_S1_llr0.1",
        "vi",
        vi_ladder(VI_STEPS, 100),
        lambda t, s: {
            "num_components": 1,
            "num_samples": 1,
            "rank": vi_rank(s),
            "control_variate": False,
            "loading_learning_rate": 0.1,
        },
        note="as vi_M1_S1 with loading_learning_rate = 0.1",
        quick_rungs=(0, 0),
        budget_label="steps",
        full_ladder=True,
        extra=True,
    ),
    Method(
        "vi_M1_S4_llr0.03",
        "vi",
        vi_ladder(VI_STEPS, 100),
        lambda t, s: {
            "num_components": 1,
            "num_samples": 4,
            "rank": vi_rank(s),
            "control_variate": False,
            "loading_learning_rate": 0.03,
        },
        note="as vi_M1_S4 with loading_learning_rate = 0.03",
        quick_rungs=(0, 0),
        budget_label="steps",
        full_ladder=True,
        extra=True,
    ),
    Method(
        "vi_default_llr0.1",
        "vi",
        [{"num_warmup": 3000, "num_draws": 1000}],
        lambda t, s: {"rank": vi_rank(s), "loading_learning_rate": 0.1},
        note="defaults with loading_learning_rate = 0.1",
        quick_rungs=(0, 0),
        budget_label="steps",
        extra=True,
    ),
]


# ----------------------------------------------------------------------------- running
def load() -> float:
    return round(os.getloadavg()[0], 2)


def small_diagnostics(result: lh.LLCResult) -> dict[str, Any]:
    out = {}
    for key in (
        "step_size",
        "num_integration_steps",
        "acceptance_rate",
        "divergences",
        "L",
        "llc_cv",
        "scale_min",
        "scale_max",
        "rhat",
        "ess",
        "optimization_steps",
        "pareto_k",
    ):
        if key in result.diagnostics:
            value = np.asarray(result.diagnostics[key], np.float64)
            out[key] = float(np.nanmean(value)) if value.size else None
    return out


def run_rung(
    problem_target: Target, exact: float, method: Method, options: dict[str, Any], rung: dict[str, int], seeds: int
) -> dict[str, Any]:
    per_seed = []
    for seed in range(seeds):
        load_before = load()
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                result = lh.sample(
                    problem_target.loss_fn,
                    problem_target.params,
                    problem_target.data,
                    kernel=method.kernel,
                    key=seed,
                    num_chains=NUM_CHAINS,
                    gamma=GAMMA,
                    **rung,
                    **options,
                )
        except (FloatingPointError, ValueError) as err:  # every chain diverged, or a setting is invalid
            per_seed.append({"seed": seed, "error": f"{type(err).__name__}: {err}", "load": load_before})
            continue
        per_seed.append(
            {
                "seed": seed,
                "llc": result.llc,
                "llc_se": result.llc_se,
                "rel_err": result.llc / exact - 1,
                "grad_evals": result.grad_evals,
                "data_passes": result.data_passes,
                "compile_s": result.timings["compile_s"],
                "run_s": result.timings["run_s"],
                "valid_chains": int(np.sum(result.valid_chains)),
                "num_warnings": len(caught),
                "warnings": sorted({str(w.message)[:120] for w in caught}),
                "diagnostics": small_diagnostics(result),
                "load": load_before,
            }
        )
    ok = [s for s in per_seed if "llc" in s]
    summary: dict[str, Any] = {
        "num_warmup": rung["num_warmup"],
        "num_draws": rung["num_draws"],
        "seeds_ok": len(ok),
        "seeds": seeds,
    }
    if len(ok) < seeds:
        summary.update(rel_rmse=math.inf, passed=False)
    if ok:
        errs = np.array([s["rel_err"] for s in ok])
        ses = np.array([s["llc_se"] / exact for s in ok])
        rmse = float(np.sqrt(np.mean(errs**2))) if len(ok) == seeds else math.inf
        summary.update(
            rel_rmse=rmse,
            rel_bias=float(np.mean(errs)),
            rel_sd=float(np.std(errs, ddof=1)) if len(ok) > 1 else 0.0,
            rel_mcse_rms=float(np.sqrt(np.mean(ses**2))),
            mcse_coverage=float(np.mean(np.abs(errs) <= 2 * ses)),
            grad_evals=float(np.mean([s["grad_evals"] for s in ok])),
            data_passes=float(np.mean([s["data_passes"] for s in ok])),
            run_s=float(statistics.median(s["run_s"] for s in ok)),
            compile_s=float(max(s["compile_s"] for s in ok)),  # the first call compiles, later ones hit the cache
            load=float(np.mean([s["load"] for s in ok])),
            warned=float(np.mean([s["num_warnings"] > 0 for s in ok])),
            steps_used=[s["diagnostics"].get("optimization_steps") for s in ok],
            passed=bool(rmse <= TARGET_RMSE),
        )
    summary["per_seed"] = per_seed
    return summary


def run_ladder(
    target: Target, exact: float, spec: dict[str, float], method: Method, seeds: int, quick: bool, cap_s: float, log
) -> dict[str, Any]:
    """Walk up the ladder. The budget is the first rung that passes and whose next rung passes too
    (a lucky pass of a noisy or non-monotone method does not count); the ladder stops there unless
    ``method.full_ladder`` (VI: the whole error-vs-steps curve is kept)."""
    options = method.options(target, spec)
    ladder = method.ladder[slice(*method.quick_rungs)] if quick else method.ladder
    rungs, spent, capped = [], 0.0, False
    for i, rung in enumerate(ladder):
        start = time.perf_counter()
        summary = run_rung(target, exact, method, options, rung, seeds)
        summary["wall_s"] = time.perf_counter() - start
        spent += summary["wall_s"]
        rungs.append(summary)
        log(
            f"  {method.name:16s} W={rung['num_warmup']:6d} D={rung['num_draws']:5d}  "
            f"rmse={100 * summary['rel_rmse']:7.2f}%  bias={100 * summary.get('rel_bias', math.nan):+7.2f}%  "
            f"cover={summary.get('mcse_coverage', math.nan):.2f}  grads={summary.get('grad_evals', math.nan):10.0f}  "
            f"run={summary.get('run_s', math.nan):7.2f}s  compile={summary.get('compile_s', math.nan):5.2f}s  "
            f"load={load():.2f}"
        )
        confirmed = i > 0 and summary["passed"] and rungs[-2]["passed"]
        if confirmed and not method.full_ladder:
            break
        if spent > cap_s and i < len(ladder) - 1:
            capped = True
            break
    passed = [r["passed"] for r in rungs]
    budget_index, outcome = None, None
    for i, ok in enumerate(passed):
        if ok and i + 1 < len(passed) and passed[i + 1]:
            budget_index, outcome = i, "met"
            break
    if budget_index is None and passed and passed[-1]:
        budget_index = len(passed) - 1
        if len(ladder) == 1:
            outcome = "met (single setting)"
        else:
            outcome = "met (unconfirmed: " + ("ladder time cap" if capped else "last rung") + ")"
    if outcome is None:
        outcome = f"not met within cap ({cap_s:.0f} s of ladder time)" if capped else "not met (ladder exhausted)"
    first_pass = next((i for i, ok in enumerate(passed) if ok), None)
    best = rungs[budget_index] if budget_index is not None else None
    return {
        "method": method.name,
        "kernel": method.kernel,
        "options": options,
        "note": method.note,
        "converged_stop": method.converged_stop,
        "outcome": outcome,
        "at_ladder_floor": budget_index == 0 and len(ladder) > 1,
        "budget": best and {k: best[k] for k in ("num_warmup", "num_draws")},
        "first_pass": None if first_pass is None else {k: rungs[first_pass][k] for k in ("num_warmup", "num_draws")},
        "result": best and {k: v for k, v in best.items() if k != "per_seed"},
        "rungs": rungs,
        "ladder_wall_s": spent,
    }


# ----------------------------------------------------------------------------- report
def finite(value: Any) -> Any:
    """JSON-safe: non-finite floats become null; floats keep 6 significant digits."""
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, (float, np.floating)):
        return float(f"{float(value):.6g}") if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    return value


def columnar(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """A rung's per-seed records as one list per field (index = seed), warnings deduplicated."""
    if not per_seed:
        return {}
    keys = [
        k
        for k in (
            "seed",
            "llc",
            "llc_se",
            "rel_err",
            "grad_evals",
            "data_passes",
            "compile_s",
            "run_s",
            "valid_chains",
            "num_warnings",
            "load",
            "error",
        )
        if any(k in rec for rec in per_seed)
    ]
    out: dict[str, Any] = {k: [rec.get(k) for rec in per_seed] for k in keys}
    diag_keys = sorted({k for rec in per_seed for k in rec.get("diagnostics", {})})
    out["diagnostics"] = {k: [rec.get("diagnostics", {}).get(k) for rec in per_seed] for k in diag_keys}
    # one entry per kind of warning (numbers replaced by #); per-seed counts are in num_warnings
    out["warnings"] = sorted({re.sub(r"\d[\d.e+-]*", "#", w) for rec in per_seed for w in rec.get("warnings", [])})
    return out


def compact(results: dict[str, Any]) -> dict[str, Any]:
    """The results as written: per-seed records stored column-wise (``seeds``)."""
    results = json.loads(json.dumps(results, default=float))  # a deep copy
    for pres in results.get("problems", {}).values():
        for entry in pres["methods"]:
            for rung in entry.get("rungs", []):
                if "per_seed" in rung:
                    rung["seeds_data"] = columnar(rung.pop("per_seed"))
    return finite(results)


def dumps(results: dict[str, Any]) -> str:
    """Indented JSON with lists of scalars kept on one line."""
    text = json.dumps(compact(results), indent=1, ensure_ascii=False)
    scalar = r'(?:-?[0-9][0-9.eE+-]*|null|true|false|"[^"\\\n]*")'
    return re.sub(
        r"\[\s*(" + scalar + r"(?:,\s*" + scalar + r")*)\s*\]",
        lambda m: "[" + ", ".join(re.findall(scalar, m.group(1))) + "]",
        text,
    )


def budget_text(entry: dict[str, Any]) -> str:
    b = entry["budget"]
    if b is None:
        last = entry["rungs"][-1]
        b = {"num_warmup": last["num_warmup"], "num_draws": last["num_draws"]}
        prefix = "> "
    else:
        prefix = ""
    if entry.get("at_ladder_floor"):
        prefix = "≤ "  # the ladder's first rung passed: the true minimum may be lower
    if entry.get("converged_stop"):
        r = entry["result"] or entry["rungs"][-1]
        steps = [x for x in r.get("steps_used", []) if x is not None]
        used = f"mean {np.mean(steps):,.0f} steps" if steps else "steps n/a"
        return f"{prefix}converged ({used}, cap {b['num_warmup']}), {b['num_draws']} draws"
    if entry["kernel"] == "vi":
        return f"{prefix}{b['num_warmup']} steps, {b['num_draws']} draws"
    return f"{prefix}W {b['num_warmup']} / D {b['num_draws']}"


def met_text(entry: dict[str, Any]) -> str:
    outcome = entry["outcome"]
    if outcome == "met":
        return "yes"
    if outcome.startswith("met"):
        return "yes" + outcome[3:]
    return "NO: " + outcome


def table(results: dict[str, Any]) -> str:
    lines = [
        "| problem | method | budget (per chain) | grad evals (4 chains) | data passes | run s | compile s | RMSE | bias | "
        "MCSE covers | warned | met target? |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for pname, pres in results["problems"].items():
        for entry in pres["methods"]:
            if entry["outcome"] == "skipped":
                lines.append(
                    f"| {pname} | {entry['method']} | - | - | - | - | - | - | - | - | - | skipped: {entry['skip_reason']} |"
                )
                continue
            r = entry["result"] or entry["rungs"][-1]
            cover = r.get("mcse_coverage")
            lines.append(
                f"| {pname} | {entry['method']} | {budget_text(entry)} | {r.get('grad_evals', math.nan):,.0f} | "
                f"{r.get('data_passes', math.nan):,.0f} | {r.get('run_s', math.nan):.2f} | "
                f"{r.get('compile_s', math.nan):.1f} | {100 * r['rel_rmse']:.1f}% | "
                f"{100 * r.get('rel_bias', math.nan):+.1f}% | "
                f"{'-' if cover is None else f'{cover:.0%}'} | "
                f"{'-' if r.get('warned') is None else format(r['warned'], '.0%')} | "
                f"{met_text(entry)} |"
            )
    return "\n".join(lines)


def ratios(results: dict[str, Any]) -> dict[str, Any]:
    """NUTS grad evals / grad evals of the cheapest VI method that met 5% (per problem)."""
    out = {}
    for pname, pres in results["problems"].items():
        met = {e["method"]: e["result"] for e in pres["methods"] if e["outcome"].startswith("met")}
        vis = {k: v for k, v in met.items() if k.startswith("vi") and k != "vi_init"}  # vi_init: a reference
        row: dict[str, Any] = {}
        nuts = {k: v for k, v in met.items() if k.startswith("nuts")}
        if nuts and vis:
            best = min(vis, key=lambda k: vis[k]["grad_evals"])
            nb = min(nuts, key=lambda k: nuts[k]["grad_evals"])
            row = {
                "nuts": nb,
                "nuts_grad_evals": nuts[nb]["grad_evals"],
                "best_vi": best,
                "best_vi_grad_evals": vis[best]["grad_evals"],
                "nuts_over_best_vi": nuts[nb]["grad_evals"] / vis[best]["grad_evals"],
                "nuts_over_best_vi_data_passes": nuts[nb]["data_passes"] / vis[best]["data_passes"],
            }
            if "nuts" in nuts:
                row["default_nuts_grad_evals"] = nuts["nuts"]["grad_evals"]
                row["default_nuts_over_best_vi"] = nuts["nuts"]["grad_evals"] / vis[best]["grad_evals"]
            if "vi_default" in vis:
                row["nuts_over_vi_default"] = nuts[nb]["grad_evals"] / vis["vi_default"]["grad_evals"]
        out[pname] = row
    return out


def print_ratios(results: dict[str, Any], log) -> None:
    log(f"\ncheapest NUTS / cheapest VI that met {100 * TARGET_RMSE:g}% (gradient evaluations):")
    for pname, row in ratios(results).items():
        if row:
            log(
                f"  {pname}: {row['nuts']} {row['nuts_grad_evals']:,.0f} / {row['best_vi']} {row['best_vi_grad_evals']:,.0f}"
                f" = {row['nuts_over_best_vi']:.1f}× (data passes {row['nuts_over_best_vi_data_passes']:.1f}×)"
                + (
                    f"; default nuts {row['default_nuts_grad_evals']:,.0f} = {row['default_nuts_over_best_vi']:.1f}×"
                    if "default_nuts_grad_evals" in row
                    else ""
                )
            )
        else:
            log(f"  {pname}: no ratio (NUTS or every VI setting missed the target)")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: d = 100 only, 2 seeds, short ladders")
    parser.add_argument("--seeds", type=int, default=None, help="seeds per rung (default 5; quick 2)")
    parser.add_argument("--problems", nargs="*", default=None, help="problem names (default: all)")
    parser.add_argument("--methods", nargs="*", default=None, help="method names (default: all)")
    parser.add_argument(
        "--ladder-cap-s",
        type=float,
        default=None,
        help="stop a ladder once its rungs took this long (default 240; quick 60)",
    )
    parser.add_argument(
        "--vi-steps",
        type=int,
        nargs="*",
        default=None,
        help=f"optimisation-step ladder of the VI ladder methods (default {VI_STEPS})",
    )
    parser.add_argument(
        "--table-from", type=Path, default=None, help="print the table and ratios of an existing results JSON and exit"
    )
    parser.add_argument("--target", type=float, default=0.05, help="relative RMSE to reach (default 0.05)")
    parser.add_argument(
        "--out", type=Path, default=None, help="JSON output (default benchmarks/results/kernels_to_5pct[_quick].json)"
    )
    args = parser.parse_args(argv)
    global TARGET_RMSE
    TARGET_RMSE = args.target
    if args.table_from is not None:
        results = json.loads(args.table_from.read_text())
        TARGET_RMSE = results["meta"]["target_rel_rmse"]
        print(table(results))
        print_ratios(results, print)
        return
    seeds = args.seeds or (2 if args.quick else 5)
    cap_s = args.ladder_cap_s or (60.0 if args.quick else 240.0)
    out = args.out or Path(__file__).parent / "results" / f"kernels_to_5pct{'_quick' if args.quick else ''}.json"
    problems = [
        p
        for p in PROBLEMS
        if (args.problems is None and (p.quick or not args.quick))
        or (args.problems is not None and p.name in args.problems)
    ]
    methods = [
        m for m in METHODS if (args.methods is None and not m.extra) or (args.methods and m.name in args.methods)
    ]
    if args.vi_steps:
        methods = [
            dataclasses.replace(m, ladder=vi_ladder(args.vi_steps, m.ladder[0]["num_draws"]))
            if m.kernel == "vi" and len(m.ladder) > 1
            else m
            for m in methods
        ]
    if args.quick:
        methods = [m for m in methods if m.quick_rungs[0] < m.quick_rungs[1]]

    def log(msg):
        print(msg, flush=True)

    started = time.perf_counter()
    results: dict[str, Any] = {
        "meta": {
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "argv": sys.argv[1:],
            "quick": args.quick,
            "seeds": seeds,
            "num_chains": NUM_CHAINS,
            "gamma": GAMMA,
            "target_rel_rmse": TARGET_RMSE,
            "ladder_cap_s": cap_s,
            "jax": jax.__version__,
            "lambda_hat": lh.__version__,
            "platform": platform.platform(),
            "cpu_count": os.cpu_count(),
            "x64": bool(jax.config.jax_enable_x64),
            "load_start": os.getloadavg(),
        },
        "problems": {},
    }
    for problem in problems:
        # lambda_hat caches compiled programs by shapes and settings; problems of the same d would
        # otherwise reuse each other's programs and report compile_s = 0.
        lh.api._COMPILED.clear()
        t0 = time.perf_counter()
        target = problem.build()
        nbeta = target.n / math.log(target.n)
        exact = target.expected_llc(nbeta, GAMMA)
        spec = spectrum(target, nbeta)
        info = {
            "description": problem.description,
            "d": target.dim,
            "n": target.n,
            "nbeta": nbeta,
            "rank": int(target.info["rank"]),
            "exact_expected_llc": exact,
            "lam": float(target.lam),
            "sgld_step_size": SGLD_C / spec["kappa_max"],
            "sgld_stationary_rel_bias": sgld_stationary_llc(target, nbeta, SGLD_C / spec["kappa_max"]) / exact - 1,
            "build_s": time.perf_counter() - t0,
            **spec,
        }
        log(
            f"{problem.name}: d = {target.dim}, exact E[λ̂] = {exact:.3f}, κ = {spec['kappa_min_nonflat']:.1f}.."
            f"{spec['kappa_max']:.1f}, flat = {spec['flat_directions']}, "
            f"SGLD stationary bias at its ε = {100 * info['sgld_stationary_rel_bias']:+.2f}%, load {load()}"
        )
        entries = []
        for m in methods:
            if m.name in problem.skip:
                log(f"  {m.name:16s} skipped: {problem.skip[m.name]}")
                entries.append(
                    {
                        "method": m.name,
                        "kernel": m.kernel,
                        "note": m.note,
                        "outcome": "skipped",
                        "skip_reason": problem.skip[m.name],
                        "budget": None,
                        "result": None,
                        "rungs": [],
                    }
                )
                continue
            entries.append(
                run_ladder(target, exact, spec, m, min(seeds, problem.seeds.get(m.name, seeds)), args.quick, cap_s, log)
            )
        results["problems"][problem.name] = {"info": info, "methods": entries}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(dumps(results))  # partial results survive interruption
    results["ratios"] = ratios(results)
    results["meta"].update(load_end=os.getloadavg(), total_s=time.perf_counter() - started)
    out.write_text(dumps(results))
    log("\n" + table(results))
    print_ratios(results, log)
    log(
        f"\nwrote {out} in {results['meta']['total_s']:.0f} s (load {results['meta']['load_start'][0]:.2f} → "
        f"{results['meta']['load_end'][0]:.2f})"
    )


if __name__ == "__main__":
    main()
