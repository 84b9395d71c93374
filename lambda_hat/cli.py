"""Command line.

    lambda-hat demo [--problem mlp|linreg] [--kernel K ...]   every kernel side by side
    lambda-hat validate [validation options]                  runs python -m validation

(``python -m lambda_hat ...`` is the same.)
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from collections.abc import Sequence

DEMO_SETTINGS = {
    "sgld": dict(step_size=5e-4, num_draws=8000, num_warmup=2000),
    "rmsprop_sgld": dict(step_size=1e-3, num_draws=8000, num_warmup=2000),
    "adam_sgld": dict(step_size=2e-4, num_draws=16000, num_warmup=2000),
    "hmc": dict(num_draws=800, num_warmup=500),
    "nuts": dict(num_draws=800, num_warmup=500, max_num_doublings=8),
    "mclmc": dict(num_draws=4000, num_warmup=1000),
    "adjusted_mclmc": dict(num_draws=2000, num_warmup=1000),
    "vi": dict(num_draws=2000),
}


def _demo(args: argparse.Namespace) -> int:
    import lambda_hat as lh

    if args.problem == "mlp":
        target = lh.targets.tiny_mlp((2, 8, 1), n=200, seed=args.seed)
        print(
            f"Problem: tiny tanh MLP 2→8→1 (flax), n = {target.n}, d = {target.dim}, "
            f"‖∇L_n(w*)‖ = {target.info['grad_norm_at_wstar']:.1e}; no closed form: kernels compared"
        )
    else:
        target = lh.targets.linear_regression(n=1000, d=10, rank=6, seed=args.seed)
        print(f"Problem: linear regression, n = {target.n}, d = {target.dim}, design rank 6 (λ = {target.lam})")
    kernels = args.kernel or list(DEMO_SETTINGS)
    rows = []
    for kernel in kernels:
        print(f"  running {kernel} ...", flush=True)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", lh.LLCWarning)
            start = time.perf_counter()
            r = lh.sample(
                target.loss_fn,
                target.params,
                target.data,
                kernel=kernel,
                key=args.seed,
                num_chains=args.chains,
                **DEMO_SETTINGS.get(kernel, {}),
            )
            wall = time.perf_counter() - start
        rows.append((kernel, r, wall, len(caught)))
    exact = target.expected_llc(rows[0][1].nbeta, rows[0][1].gamma) if target.lam is not None else None
    head = f"{'kernel':<12} {'λ̂':>9} {'MCSE':>8} {'R-hat':>7} {'ESS':>8} {'grad evals':>11} {'compile s':>10} {'run s':>7} {'warnings':>8}"
    print("\n" + head + "\n" + "-" * len(head))
    for kernel, r, _wall, nwarn in rows:
        print(
            f"{kernel:<12} {r.llc:9.4f} {r.llc_se:8.4f} {r.diagnostics['rhat']:7.3f} {r.diagnostics['ess']:8.0f} "
            f"{r.grad_evals:11,} {r.timings['compile_s']:10.2f} {r.timings['run_s']:7.2f} {nwarn:8d}"
        )
    if exact is not None:
        print(f"exact E[λ̂] at nβ = {rows[0][1].nbeta:.4g}, γ = {rows[0][1].gamma:g}: {exact:.4f}")
    return 0


def _validate(rest: list[str]) -> int:
    from validation.__main__ import main as validation_main

    return validation_main(rest)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``lambda-hat`` command line (``demo`` or ``validate``).

    Args:
        argv: the arguments after the program name; None (default) = ``sys.argv[1:]``.

    Returns:
        The exit status (0 on success; ``validate`` returns the validation suite's status).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["validate"]:
        return _validate(argv[1:])
    parser = argparse.ArgumentParser(prog="lambda-hat", description="Local Learning Coefficient estimation")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="a built-in problem estimated with every kernel, side by side")
    demo.add_argument("--problem", choices=("mlp", "linreg"), default="mlp")
    demo.add_argument("--kernel", action="append", help="kernel(s) to run (default: all)")
    demo.add_argument("--chains", type=int, default=4)
    demo.add_argument("--seed", type=int, default=0)
    demo.set_defaults(func=_demo)
    sub.add_parser("validate", help="run the validation suite (python -m validation --help)")
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
