"""Validation cases: a target with a known λ and the settings each kernel runs it with.

Each case states its tolerance rule. A run passes when

    |λ̂ − reference| <= max(rel_tol · |reference|, 3 · MCSE) + |known bias|

where reference is the exact finite-n E[λ̂] when one exists (quadratics) or the asymptotic λ,
and known bias is a documented finite-n effect (e.g. −(m−1)/log(nβ) for multiplicity m > 1).
Cases without an exact λ (tiny MLPs) are checked for 0 < λ̂ <= d/2 and reported as "info".
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from lambda_hat import targets
from lambda_hat.targets import Target

GAMMA = 1.0


@dataclass(frozen=True)
class Case:
    name: str
    family: str
    build: Callable[[], Target]
    rel_tol: float = 0.05
    profiles: tuple[str, ...] = ("quick", "full")
    settings: Callable[[str, Target, str], dict[str, Any]] | None = None
    skip_kernels: tuple[str, ...] = ()
    notes: str = ""


def nbeta_of(target: Target) -> float:
    return target.n / math.log(target.n)


def quadratic_settings(kernel: str, target: Target, profile: str) -> dict[str, Any]:
    """Settings from the Hessian spectrum: SGLD ε with hκ_max = 0.02 (step-size bias < 1%),
    enough steps for the slowest direction to decorrelate many times."""
    eigs = np.clip(np.asarray(target.info["hessian_eigenvalues"]), 0, None)
    nb = nbeta_of(target)
    kappa_max = nb * eigs.max() + GAMMA
    kappa_min = nb * eigs[eigs > 1e-8 * eigs.max()].min() + GAMMA
    scale = 1 if profile == "quick" else 4
    if kernel == "sgld":
        eps = 0.04 / kappa_max
        relax = int(2.0 / (0.5 * eps * kappa_min))  # steps for the slowest direction to decorrelate
        return dict(step_size=eps, num_warmup=3 * relax, num_draws=min(max(40 * relax, 4000), 40000) * scale)
    if kernel in ("hmc", "nuts"):
        return dict(num_warmup=500, num_draws=1000 * scale)
    if kernel == "mclmc":
        return dict(num_warmup=1000, num_draws=2000 * scale)
    if kernel == "vi":
        return dict(num_draws=1000 * scale)
    return {}


def _cases() -> list[Case]:
    cases = [
        Case("quadratic_d5_full", "quadratic", lambda: targets.linear_regression(d=5, seed=1),
             settings=quadratic_settings),
        Case("quadratic_d10_rank4", "quadratic", lambda: targets.linear_regression(d=10, rank=4, seed=2),
             settings=quadratic_settings),
        Case("quadratic_d50_rank30", "quadratic", lambda: targets.linear_regression(d=50, rank=30, seed=3),
             settings=quadratic_settings, profiles=("full",)),
        Case("potential_d8", "potential", lambda: targets.pure_potential(d=8, seed=3),
             settings=quadratic_settings),
        Case("potential_d20_rank12", "potential", lambda: targets.pure_potential(d=20, rank=12, seed=4),
             settings=quadratic_settings, profiles=("full",)),
    ]
    return cases


CASES: dict[str, Case] = {c.name: c for c in _cases()}


def cases_for(profile: str, names: list[str] | None = None) -> list[Case]:
    if names:
        unknown = [n for n in names if n not in CASES]
        if unknown:
            raise ValueError(f"--case: unknown case(s) {unknown}; expected some of {sorted(CASES)}")
        return [CASES[n] for n in names]
    return [c for c in CASES.values() if profile in c.profiles]
