"""Run cases × kernels, write each result to the JSON file as soon as it finishes."""

from __future__ import annotations

import math
import platform
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import jax
import numpy as np

import lambda_hat as lh
from validation import records
from validation.cases import GAMMA, Case

MAX_TRACE_POINTS = 400


def _thin(x: np.ndarray, k: int = MAX_TRACE_POINTS) -> list[float]:
    x = np.asarray(x, dtype=np.float64)
    step = max(1, len(x) // k)
    return [float(v) for v in x[::step]]


def _max_or_none(x) -> float | None:
    return None if x is None else float(np.nanmax(np.asarray(x, np.float64)))


def _virial_summary(virial: dict | None) -> dict | None:
    """Overall ratio ± se and the group farthest from 1."""
    if virial is None:
        return None
    worst = virial["worst_group"]
    g = virial["groups"].get(worst, {"ratio": virial["ratio"], "se": virial["se"]})
    return {
        "ratio": virial["ratio"],
        "se": virial["se"],
        "worst_group": worst,
        "worst_ratio": g["ratio"],
        "worst_se": g["se"],
        "worst_z": virial["worst_z"],
    }


def tolerance(case: Case, target, result) -> tuple[float | None, float, float, str]:
    """(reference, tolerance, known bias, rule) for this run."""
    bias = 0.0
    if target.expected_llc_fn is not None:
        ref = target.expected_llc(result.nbeta, result.gamma)
        rule = "exact finite-n E[λ̂]"
    elif target.lam is not None:
        ref = float(target.lam)
        rule = "asymptotic λ"
        if target.finite_n_bias is not None:
            bias = float(target.finite_n_bias(result.nbeta))
            rule += f" with finite-n bias {bias:+.3f}"
    else:
        return None, math.nan, 0.0, "no exact λ: 0 < λ̂ <= d/2"
    tol = max(case.rel_tol * abs(ref), 3 * result.llc_se) + abs(bias)
    return ref, tol, bias, f"{rule}; max({case.rel_tol:.0%}, 3·MCSE) + |bias|"


def run_one(case: Case, kernel: str, target, profile: str, seed: int) -> dict[str, Any]:
    settings = dict(case.settings(kernel, target, profile)) if case.settings else {}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lh.LLCWarning)
        result = lh.sample(target.loss_fn, target.params, target.data, kernel=kernel, key=seed, gamma=GAMMA, **settings)
    wall = time.perf_counter() - start
    ref, tol, bias, rule = tolerance(case, target, result)
    if ref is None:
        status = "info" if 0 < result.llc <= target.dim / 2 else "fail"
        rel_err = None
    else:
        err = result.llc - ref
        # outside its tolerance, a run is "flagged" when the library itself warned about it, and a
        # "fail" (a confident wrong number) when it did not
        status = "pass" if abs(err) <= tol else ("flagged" if caught else "fail")
        rel_err = err / ref if ref else None
    running = np.cumsum(result.llc_trace, axis=1) / np.arange(1, result.num_draws + 1)
    return dict(
        case=case.name,
        family=case.family,
        kernel=kernel,
        status=status,
        lam=None if target.lam is None else float(target.lam),
        m=target.m,
        reference=ref,
        llc=result.llc,
        llc_se=result.llc_se,
        rel_error=rel_err,
        tolerance=tol,
        known_bias=bias,
        rule=rule,
        dim=target.dim,
        n=target.n,
        nbeta=result.nbeta,
        gamma=result.gamma,
        wall_s=wall,
        compile_s=result.timings["compile_s"],
        run_s=result.timings["run_s"],
        grad_evals=result.grad_evals,
        data_passes=result.data_passes,
        ess=result.diagnostics.get("ess"),
        rhat=result.diagnostics.get("rhat"),
        llc_cv=result.diagnostics.get("llc_cv"),
        llc_cv_se=result.diagnostics.get("llc_cv_se"),
        llc_raw=result.diagnostics.get("llc_raw"),
        llc_source=result.diagnostics.get("llc_source"),
        pareto_k=_max_or_none(result.diagnostics.get("pareto_k")),
        virial=_virial_summary(result.diagnostics.get("virial")),
        llc_per_chain=[float(x) for x in result.llc_per_chain],
        settings={k: (float(v) if isinstance(v, (float, np.floating)) else v) for k, v in settings.items()},
        warnings=[str(w.message) for w in caught],
        loss_trace_chain0=_thin(result.loss_trace[0]),
        running_llc=[_thin(r) for r in running],
    )


def run(cases: list[Case], kernels: list[str], out: Path, *, profile: str, resume: bool, seed: int = 0) -> dict:
    path = out / "results.json"
    doc = records.load(path) if resume else {"meta": {}, "results": []}
    done = records.done_pairs(doc)
    doc["results"] = [r for r in doc["results"] if (r["case"], r["kernel"]) in done]
    doc["meta"] = dict(
        profile=profile,
        x64=bool(jax.config.jax_enable_x64),
        jax=jax.__version__,
        lambda_hat=lh.__version__,
        machine=platform.platform(),
        cpus=jax.device_count(),
        started=time.strftime("%Y-%m-%d %H:%M:%S"),
        seed=seed,
    )
    records.save(path, doc)
    total = sum(1 for c in cases for k in kernels if k not in c.skip_kernels)
    count = 0
    for case in cases:
        target = None
        for kernel in kernels:
            if kernel in case.skip_kernels:
                continue
            count += 1
            if (case.name, kernel) in done:
                print(f"[{count}/{total}] {case.name} × {kernel}: already done (resume)", flush=True)
                continue
            print(f"[{count}/{total}] {case.name} × {kernel} ...", end=" ", flush=True)
            try:
                if target is None:
                    target = case.build()
                rec = run_one(case, kernel, target, profile, seed)
                ref = "—" if rec["reference"] is None else f"{rec['reference']:.4g}"
                print(
                    f"λ̂ = {rec['llc']:.4g} ± {rec['llc_se']:.2g} (ref {ref}) {rec['status'].upper()} "
                    f"[{rec['wall_s']:.1f} s]",
                    flush=True,
                )
            except Exception as err:  # recorded; the run goes on
                rec = dict(
                    case=case.name,
                    family=case.family,
                    kernel=kernel,
                    status="error",
                    error=f"{type(err).__name__}: {err}",
                    traceback=traceback.format_exc(),
                )
                print(f"ERROR {type(err).__name__}: {err}", flush=True)
            doc["results"] = [r for r in doc["results"] if (r["case"], r["kernel"]) != (case.name, kernel)]
            doc["results"].append(rec)
            records.save(path, doc)
    doc["meta"]["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    records.save(path, doc)
    return doc
