"""A problem with a known learning coefficient: what the tests and the validation suite run."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import jax


@dataclass
class Target:
    """loss_fn, w* (params), data and what is known exactly about λ at w*.

    Attributes:
        lam: the asymptotic learning coefficient (None when unknown, e.g. MLPs).
        m: its multiplicity (None when unknown).
        expected_llc_fn: (nβ, γ) -> the exact finite-n expectation of λ̂ (quadratics only), else None.
        finite_n_bias: nβ -> the known leading finite-n correction to E[λ̂] against ``lam`` (for
            multiplicity m > 1 the heuristic −(m − 1)/log nβ), when there is one; else None.
        info: anything else worth reporting (‖∇L_n(w*)‖, the Hessian spectrum, the dimension, ...).
            ``info["finite_n_bias"]``, where present, is the same function as ``finite_n_bias``
            (kept for code written before the field existed).
    """

    name: str
    loss_fn: Callable[[Any, Any], jax.Array]
    params: Any
    data: Any
    n: int
    lam: Fraction | None = None
    m: int | None = None
    expected_llc_fn: Callable[[float, float], float] | None = None
    finite_n_bias: Callable[[float], float] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def dim(self) -> int:
        """d, the number of parameters."""
        return int(sum(x.size for x in jax.tree.leaves(self.params)))

    def expected_llc(self, nbeta: float, gamma: float) -> float:
        """The exact E[λ̂] at this nβ and γ when known, otherwise the asymptotic λ.

        Args:
            nbeta: nβ, the effective sample size times the inverse temperature (> 0).
            gamma: the localization strength γ (>= 0; some oracles need γ > 0).

        Returns:
            ``expected_llc_fn(nβ, γ)`` when the target has one, otherwise ``float(lam)``
            (which does not depend on nβ or γ).

        Raises:
            ValueError: when neither ``expected_llc_fn`` nor ``lam`` is known.
        """
        if self.expected_llc_fn is not None:
            return float(self.expected_llc_fn(float(nbeta), float(gamma)))
        if self.lam is None:
            raise ValueError(f"target {self.name!r}: no exact learning coefficient is known")
        return float(self.lam)
