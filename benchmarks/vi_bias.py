"""VI's remaining bias on every validation target: the importance-weighted and raw λ̂ against
the exact (or reference) λ, with k̂, the virial ratios and the cost, at default settings.

    python -m benchmarks.vi_bias                 # every case of the full validation profile
    python -m benchmarks.vi_bias --before        # also with the earlier defaults, for comparison
    python -m benchmarks.vi_bias --case dln_2-3-2_rank1 --seed 1

Each case runs ``lambda_hat.sample(kernel="vi")`` with the validation suite's VI settings for it
(``validation.cases``, quick profile: the number of evaluation draws; everything else, the rank
included, is the library's default: ``rank="auto"``), once, key ``--seed``. For each case the
table reports

- ``λ̂ IS`` and ``raw``: the self-normalised importance-weighted estimate and q's raw mean (the
  result reports the first when every fit's k̂ < 0.7, else the second), and their error against
  the reference (the exact finite-n E[λ̂] for quadratics and normal crossings, Aoyagi's λ with its
  finite-n bias for the deep linear networks; the MLP has no exact value);
- ``k̂``: the largest Pareto k̂ over the fits; ``virial``: the overall ratio E_q[v·∂U]/d and the
  worst fit's worst coordinate (in standard errors from 1);
- ``rank``: the ranks ``rank="auto"`` fitted (the reported one last when it is the last);
- ``steps`` (optimisation steps per fit of the reported attempt) and ``grad evals`` (the whole
  run, every attempt of the rank search included);
- ``warned``: whether the result carries a warning (a k̂, convergence or rank warning, or a failed
  virial check), i.e. whether the number is flagged rather than vouched for.

``--before`` adds the same runs at a fixed rank, the rule the validation suite used before
``rank="auto"``: max(4, flat + 2) on quadratics (flat: the Hessian's zero eigenvalues), 4
elsewhere. Writes benchmarks/results/vi_bias.json.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

import lambda_hat as lh
from benchmarks.meta import run_metadata
from validation.cases import CASES, GAMMA
from validation.runner import tolerance

RESULTS = Path(__file__).parent / "results" / "vi_bias.json"


def fixed_rank(case: Any, target: Any) -> int:
    """The validation suite's rank before ``rank="auto"``: on the quadratics and pure potentials
    a loading column per flat direction, plus 2, at least 4; the default 4 elsewhere."""
    eigs = target.info.get("hessian_eigenvalues")
    if case.family not in ("quadratic", "potential") or eigs is None:
        return 4
    eigs = np.clip(np.asarray(eigs), 0, None)
    return max(4, int(np.sum(eigs <= 1e-8 * eigs.max())) + 2)


def run_case(name: str, seed: int, overrides: dict[str, Any]) -> dict[str, Any]:
    """One VI run on a validation case; the row of the table."""
    case = CASES[name]
    target = case.build()
    settings = dict(case.settings("vi", target, "quick")) if case.settings else {}
    settings.update({k: v(case, target) if callable(v) else v for k, v in overrides.items()})
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lh.LLCWarning)
        r = lh.sample(target.loss_fn, target.params, target.data, kernel="vi", key=seed, gamma=GAMMA, **settings)
    wall = time.perf_counter() - t0
    d = r.diagnostics
    ref, _, bias, _ = tolerance(case, target, r)  # the validation suite's reference and finite-n bias
    ref = None if ref is None else float(ref) + bias
    worst = int(np.argmax(np.asarray(d["worst_coordinate_z"])))

    def rel(x):
        return None if ref is None else (float(x) - ref) / ref

    return dict(
        case=name,
        settings=settings,
        dim=int(r.config["dim"]),
        reference=ref,
        llc=float(r.llc),
        llc_se=float(r.llc_se),
        llc_source=d["llc_source"],
        llc_is=float(d["llc_is"]),
        llc_is_se=float(d["llc_is_se"]),
        llc_raw=float(d["llc_raw"]),
        rel_is=rel(d["llc_is"]),
        rel_raw=rel(d["llc_raw"]),
        pareto_k=float(np.max(d["pareto_k"])),
        virial=float(d["virial"]["ratio"]),
        virial_se=float(d["virial"]["se"]),
        worst_coordinate_ratio=float(np.asarray(d["worst_coordinate_ratio"])[worst]),
        worst_coordinate_z=float(np.asarray(d["worst_coordinate_z"])[worst]),
        converged=np.asarray(d["converged"]).tolist(),
        wide_directions=np.asarray(d["wide_directions"]).tolist(),
        steps=np.asarray(d["optimization_steps"]).tolist(),
        rank=int(r.config["rank"]),
        ranks_tried=[x["rank"] for x in d.get("refits", [])] or [int(r.config["rank"])],
        grad_evals=int(r.grad_evals),
        wall_s=wall,
        warnings=[str(w.message) for w in caught],
    )


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:+.1f}%"


def _rank_text(row: dict[str, Any]) -> str:
    tried = row.get("ranks_tried", [row.get("rank")])
    if row["label"] == "before":
        return f"fixed {row['rank']}"
    return f"auto: {' → '.join(map(str, tried))}" + ("" if tried[-1] == row["rank"] else f" (reports {row['rank']})")


def table(rows: list[dict[str, Any]]) -> str:
    """The Markdown table of the rows."""
    out = [
        "| case | rank | reference | λ̂ IS | raw | k̂ | virial (worst coordinate) | steps per fit | grad evals | warned |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ref = "—" if r["reference"] is None else f"{r['reference']:.4g}"
        out.append(
            f"| {r['case']} | {_rank_text(r)} | {ref} | {r['llc_is']:.4g} ({_pct(r['rel_is'])}) | "
            f"{r['llc_raw']:.4g} ({_pct(r['rel_raw'])}) | {r['pareto_k']:.2f} | {r['virial']:.3f} "
            f"({r['worst_coordinate_ratio']:.2f}, {r['worst_coordinate_z']:.1f} se) | "
            f"{min(r['steps'])}–{max(r['steps'])} | {r['grad_evals']:,} | {'yes' if r['warnings'] else 'no'} |"
        )
    return "\n".join(out)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", action="append", default=None, help="case to run (repeatable); default: all")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--before", action="store_true", help="also run at the earlier fixed rank")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    names = args.case or list(CASES)
    configs = [("now", {})] + ([("before", {"rank": fixed_rank})] if args.before else [])
    rows = []
    for name in names:
        for label, overrides in configs:
            row = run_case(name, args.seed, overrides)
            row["label"] = label
            rows.append(row)
            print(
                f"{name:22s} {label:6s} IS {row['llc_is']:.4g} ({_pct(row['rel_is'])}) raw {row['llc_raw']:.4g} "
                f"({_pct(row['rel_raw'])}) k̂ {row['pareto_k']:.2f} warned {bool(row['warnings'])} "
                f"[{row['wall_s']:.1f} s]",
                flush=True,
            )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps({"meta": run_metadata(seed=args.seed, before="fixed rank max(4, flat + 2)"), "rows": rows}, indent=1)
    )
    print(table(rows))


if __name__ == "__main__":
    main()
