"""Markdown + PNG report regenerated from results.json (never edited by hand).

python -m validation.report RESULTS_JSON --out DIR
"""

from __future__ import annotations

import argparse
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

from validation import records


def _fmt(x: Any, spec: str = ".4g") -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return format(x, spec)


def _plots(results: list[dict], out: Path) -> list[str]:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    ok = [r for r in results if r.get("status") in ("pass", "fail", "info", "flagged")]
    kernels = sorted({r["kernel"] for r in ok})
    colors = {k: plt.cm.tab10(i) for i, k in enumerate(kernels)}
    names = []

    exact = [r for r in ok if r.get("reference")]
    if exact:
        fig, ax = plt.subplots(figsize=(5.5, 5))
        for k in kernels:
            rs = [r for r in exact if r["kernel"] == k]
            ax.errorbar(
                [r["reference"] for r in rs],
                [max(r["llc"], 1e-3) for r in rs],
                yerr=[r["llc_se"] for r in rs],
                fmt="o",
                color=colors[k],
                label=k,
                alpha=0.8,
            )
        lo = min(r["reference"] for r in exact) * 0.5
        hi = max(r["reference"] for r in exact) * 2
        ax.plot([lo, hi], [lo, hi], "k--", lw=1, label="y = x")
        ax.set_xscale("log"), ax.set_yscale("log")
        from matplotlib.ticker import NullFormatter

        ax.xaxis.set_minor_formatter(NullFormatter()), ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("reference λ (exact)"), ax.set_ylabel("λ̂ ± MCSE")
        ax.legend(), ax.set_title("λ̂ against exact λ")
        fig.tight_layout(), fig.savefig(out / "llc_vs_exact.png", dpi=110), plt.close(fig)
        names.append("llc_vs_exact.png")

        fig, ax = plt.subplots(figsize=(7, 4))
        cases = sorted({r["case"] for r in exact})
        width = 0.8 / max(len(kernels), 1)
        for i, k in enumerate(kernels):
            xs, ys, es = [], [], []
            for j, c in enumerate(cases):
                for r in exact:
                    if r["case"] == c and r["kernel"] == k and r.get("rel_error") is not None:
                        (
                            xs.append(j + i * width),
                            ys.append(100 * r["rel_error"]),
                            es.append(100 * r["llc_se"] / r["reference"]),
                        )
            ax.bar(xs, ys, width, yerr=es, color=colors[k], label=k)
        ax.axhline(0, color="k", lw=0.8)
        ax.set_xticks([j + 0.4 - width / 2 for j in range(len(cases))], cases, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel("relative error (%) ± MCSE"), ax.legend(fontsize=8), ax.set_title("Relative error per kernel")
        fig.tight_layout(), fig.savefig(out / "relative_error.png", dpi=110), plt.close(fig)
        names.append("relative_error.png")

    shown = sorted({r["case"] for r in ok})[:3]
    if shown:
        fig, axes = plt.subplots(2, len(shown), figsize=(4.2 * len(shown), 6), squeeze=False)
        for j, c in enumerate(shown):
            for r in ok:
                if r["case"] != c:
                    continue
                axes[0, j].plot(r["loss_trace_chain0"], color=colors[r["kernel"]], lw=0.6, label=r["kernel"])
                for i, run in enumerate(r["running_llc"]):
                    axes[1, j].plot(run, color=colors[r["kernel"]], lw=0.8, label=r["kernel"] if i == 0 else None)
                if r.get("reference"):
                    axes[1, j].axhline(r["reference"], color="k", ls="--", lw=1)
            axes[0, j].set_title(f"{c}: loss trace (chain 0)", fontsize=9)
            axes[1, j].set_title("running λ̂ per chain (dashed: exact)", fontsize=9)
            axes[1, j].set_xlabel("draw (thinned)")
            axes[0, j].legend(fontsize=7)
        fig.tight_layout(), fig.savefig(out / "traces.png", dpi=100), plt.close(fig)
        names.append("traces.png")
    return names


def _agreement(rs: list[dict]) -> dict[str, str]:
    """For cases without an exact λ: how far each kernel is from the median of the others."""
    ok = [r for r in rs if r.get("status") == "info"]
    out = {}
    for r in ok:
        others = [o["llc"] for o in ok if o is not r]
        if len(others) >= 2:
            med = (
                sorted(others)[len(others) // 2]
                if len(others) % 2
                else sum(sorted(others)[len(others) // 2 - 1 : len(others) // 2 + 1]) / 2
            )
            out[r["kernel"]] = f"{100 * (r['llc'] - med) / med:+.1f}% vs median of the other kernels ({med:.4g})"
    return out


def _notes(r: dict, agreement: dict[str, str] | None = None) -> str:
    parts = []
    if agreement and r["kernel"] in agreement:
        parts.append(agreement[r["kernel"]])
    if r.get("llc_cv") is not None:
        parts.append(f"CV λ̂ {r['llc_cv']:.4g} ± {r['llc_cv_se']:.2g}")
    if r.get("llc_source") == "importance-weighted" and r.get("llc_raw") is not None:
        parts.append(f"raw λ̂ {r['llc_raw']:.4g}")
    if r["status"] in ("flagged", "fail", "pass") and r.get("warnings"):
        parts.append("warned: " + " / ".join(w if len(w) <= 70 else w[:70] + "…" for w in r["warnings"]))
    return "; ".join(parts)


def _virial_cell(r: dict) -> str:
    v = r.get("virial")
    if not v:
        return "—"
    return f"{v['worst_ratio']:.3f} ± {v['worst_se']:.2g}"


def render(doc: dict[str, Any], out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    results = doc["results"]
    meta = doc.get("meta", {})
    by_case: dict[str, list[dict]] = defaultdict(list)
    for r in results:
        by_case[r["case"]].append(r)
    counts = defaultdict(int)
    for r in results:
        counts[r["status"]] += 1
    lines = [
        "# lambda_hat validation report",
        "",
        "Generated by `python -m validation.report` from `results.json`; do not edit by hand.",
        "",
        f"Profile **{meta.get('profile')}**, precision **{'float64' if meta.get('x64') else 'float32'}**, "
        f"jax {meta.get('jax')}, lambda_hat {meta.get('lambda_hat')}, {meta.get('machine')}; "
        f"started {meta.get('started')}, finished {meta.get('finished', '(unfinished)')}.",
        "",
        "A run passes when |λ̂ − reference| ≤ max(rel_tol·reference, 3·MCSE) + |known finite-n bias|. "
        "The reference is the exact finite-n E[λ̂] for quadratics (Gaussian posterior) and the "
        "asymptotic λ otherwise; cases without a known λ only check 0 < λ̂ ≤ d/2 (status *info*). "
        "A run outside its tolerance is *flagged* when the library itself warned about it (a Pareto k̂ "
        "≥ 0.7, a fit that did not converge, a failed virial self-check, R-hat, ...) and a *fail* when "
        "it returned the wrong number with no warning. Column *virial* is the parameter group whose "
        "virial ratio E[v_i·∂_iU] is farthest from 1 (1 under the exact posterior), *k̂* the largest "
        "Pareto k̂ of VI's importance weights (below 0.7: λ̂ is the importance-weighted estimate). "
        "For VI the control-variate and raw estimates are listed in the notes column.",
        "",
        "Summary: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())),
        "",
    ]
    for case, rs in by_case.items():
        first = next((r for r in rs if "dim" in r), rs[0])
        lam = first.get("lam")
        lines += [
            f"## {case}",
            "",
            f"family {first.get('family')}, d = {first.get('dim', '—')}, n = {first.get('n', '—')}, "
            f"nβ = {_fmt(first.get('nbeta'))}, γ = {_fmt(first.get('gamma'))}, λ = {_fmt(lam)}, m = {first.get('m', '—')}",
            "",
            "| kernel | reference | λ̂ ± MCSE | rel. error | tolerance | status | virial | k̂ | wall (s) | compile (s) | grad evals | ESS | R-hat | notes |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        agreement = _agreement(rs)
        for r in rs:
            if r["status"] == "error":
                lines.append(f"| {r['kernel']} | | error: {r['error'][:120]} | | | **error** | | | | | | | | |")
                continue
            rel = "—" if r.get("rel_error") is None else f"{100 * r['rel_error']:+.2f}%"
            lines.append(
                f"| {r['kernel']} | {_fmt(r['reference'])} | {r['llc']:.4g} ± {r['llc_se']:.2g} | {rel} | "
                f"{_fmt(r['tolerance'], '.3g')} | {r['status']} | {_virial_cell(r)} | {_fmt(r.get('pareto_k'), '.2f')} | "
                f"{r['wall_s']:.1f} | {r['compile_s']:.1f} | "
                f"{r['grad_evals']:,} | {_fmt(r.get('ess'), '.0f')} | {_fmt(r.get('rhat'), '.3f')} | {_notes(r, agreement)} |"
            )
        lines.append("")
    plots = _plots(results, out)
    if plots:
        lines += ["## Plots", ""] + [f"![{p}]({p})" for p in plots] + [""]
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m validation.report")
    parser.add_argument("results", type=Path, help="results.json written by python -m validation")
    parser.add_argument("--out", type=Path, default=Path("docs/validation"))
    args = parser.parse_args(argv)
    if not args.results.exists():
        print(f"results: {args.results} does not exist", file=sys.stderr)
        return 2
    doc = records.load(args.results)
    path = render(doc, args.out)
    if args.out.resolve() != args.results.parent.resolve():
        records.save(args.out / "results.json", doc)
    print(f"report written to {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
