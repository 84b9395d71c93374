"""Command line: ``lambda-hat demo`` (or ``python -m lambda_hat demo``)."""

from __future__ import annotations

import argparse
import sys
import warnings
from typing import Sequence


def _demo(args: argparse.Namespace) -> int:
    import lambda_hat as lh

    target = lh.targets.linear_regression(n=args.n, d=args.dim, rank=args.rank, seed=args.seed)
    print(f"Problem: {target.name} — linear regression, n = {target.n}, d = {target.dim}, "
          f"design rank {target.info['rank']} (λ = {target.lam})")
    options = {"step_size": args.step_size} if args.kernel == "sgld" else {}
    with warnings.catch_warnings():  # the summary lists the run's warnings
        warnings.simplefilter("ignore", lh.LLCWarning)
        result = lh.sample(target.loss_fn, target.params, target.data, kernel=args.kernel, key=args.seed,
                           num_chains=args.chains, num_draws=args.draws, num_warmup=args.warmup, **options)
    exact = target.expected_llc(result.nbeta, result.gamma)
    print(result.summary())
    print(f"Exact E[λ̂] at nβ = {result.nbeta:.4g}, γ = {result.gamma:g}: {exact:.4f} "
          f"(relative error {(result.llc - exact) / exact:+.2%}, {abs(result.llc - exact) / max(result.llc_se, 1e-300):.1f} MCSE)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="lambda-hat", description="Local Learning Coefficient estimation")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="estimate λ̂ on a built-in linear regression with a known exact answer")
    demo.add_argument("--kernel", default="sgld")
    demo.add_argument("--n", type=int, default=1000)
    demo.add_argument("--dim", type=int, default=10)
    demo.add_argument("--rank", type=int, default=6)
    demo.add_argument("--chains", type=int, default=4)
    demo.add_argument("--draws", type=int, default=10000)
    demo.add_argument("--warmup", type=int, default=2000)
    demo.add_argument("--step-size", type=float, default=1e-4, help="SGLD ε")
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
