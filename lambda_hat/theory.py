"""Exact (theoretical) learning coefficients for models with known answers.

Everything here is pure Python with exact rational arithmetic
(:class:`fractions.Fraction`); nothing imports JAX.  These values are the
ground truth against which the sampling-based LLC estimators are validated.

Notation: ``K(w)`` is the population loss minus its minimum, ``w*`` a true
parameter.  The learning coefficient ``λ`` and multiplicity ``m`` are defined
by the free-energy asymptotics ``F_n = n S_n + λ log n − (m − 1) log log n +
O_p(1)``; equivalently ``λ`` is the largest pole (negated) and ``m`` its order
of the zeta function ``ζ(z) = ∫ K(w)^z φ(w) dw``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from fractions import Fraction
from typing import NamedTuple

from lambda_hat.checks import ArgumentTypeError, integer, integer_list

__all__ = [
    "LearningCoefficient",
    "regular",
    "quadratic",
    "normal_crossing_coefficient",
    "disjoint_sum",
    "reduced_rank_regression",
    "deep_linear_network_coefficient",
    "num_parameters",
]


class LearningCoefficient(NamedTuple):
    """Exact learning coefficient ``lam`` (a ``Fraction``) and multiplicity ``m``.

    ``value`` gives ``float(lam)`` for comparison with numerical estimates.
    """

    lam: Fraction
    m: int

    @property
    def value(self) -> float:
        """The learning coefficient as a float."""
        return float(self.lam)


def regular(d: int) -> LearningCoefficient:
    """Regular (identifiable, non-degenerate Fisher information) model in ``d`` dims.

    ``λ = d/2``, ``m = 1``.

    Args:
        d: number of parameters (an integer >= 0).

    Returns:
        LearningCoefficient with ``lam = d/2`` and ``m = 1``.
    """
    d = integer("d", d, minimum=0)
    return LearningCoefficient(Fraction(d, 2), 1)


def quadratic(rank: int) -> LearningCoefficient:
    """``K(w) = wᵀAw`` with ``A ⪰ 0`` of rank ``rank`` (other directions flat).

    ``λ = rank/2``, ``m = 1`` (``rank = 0`` gives ``λ = 0``, ``m = 1``).

    Args:
        rank: rank of ``A`` (an integer >= 0).

    Returns:
        LearningCoefficient with ``lam = rank/2`` and ``m = 1``.
    """
    rank = integer("rank", rank, minimum=0)
    return LearningCoefficient(Fraction(rank, 2), 1)


def normal_crossing_coefficient(
    exponents: Sequence[int], prior_exponents: Sequence[int] | None = None
) -> LearningCoefficient:
    """Normal crossing ``K(w) = Π_j w_j^{2k_j}`` at ``w* = 0``.

    With prior ``φ(w) ∝ Π_j |w_j|^{h_j}`` (flat prior: all ``h_j = 0``)::

        λ = min_{j : k_j > 0} (h_j + 1) / (2 k_j),   m = #{j attaining the min}.

    For a flat prior this is ``λ = 1/(2 max_j k_j)`` with ``m`` the number of
    coordinates attaining the maximum.  Coordinates with ``k_j = 0`` do not
    appear in ``K`` and are ignored; at least one ``k_j`` must be positive.

    Args:
        exponents: the ``k_j`` (integers >= 0, at least one positive).
        prior_exponents: the prior exponents ``h_j`` (integers >= 0, same length as
            ``exponents``); None for a flat prior (all ``h_j = 0``).

    Returns:
        LearningCoefficient with ``lam`` the minimum above and ``m`` the number of
        coordinates attaining it.

    Raises:
        ValueError: if all exponents are zero or the two sequences differ in length.
    """
    ks = integer_list("exponents", exponents, minimum=0, min_len=1)
    if all(k == 0 for k in ks):
        raise ValueError(f"exponents: expected at least one positive entry, got {ks}")
    if prior_exponents is None:
        hs = [0] * len(ks)
    else:
        hs = integer_list("prior_exponents", prior_exponents, minimum=0, min_len=1)
        if len(hs) != len(ks):
            raise ValueError(f"prior_exponents: expected the same length as exponents ({len(ks)}), got {len(hs)}")
    ratios = [Fraction(h + 1, 2 * k) for k, h in zip(ks, hs) if k > 0]
    lam = min(ratios)
    return LearningCoefficient(lam, sum(1 for q in ratios if q == lam))


def disjoint_sum(*parts: LearningCoefficient) -> LearningCoefficient:
    """``K(u, v, …) = K_1(u) + K_2(v) + …`` over disjoint parameter blocks.

    ``λ = Σ λ_i``, ``m = Σ m_i − (count − 1)``.

    Args:
        *parts: the learning coefficients of the blocks (at least one).

    Returns:
        LearningCoefficient of the sum.

    Raises:
        ValueError: if no parts are given.
        ArgumentTypeError: if a part is not a LearningCoefficient.
    """
    if not parts:
        raise ValueError("parts: expected at least one LearningCoefficient, got none")
    for i, p in enumerate(parts):
        if not isinstance(p, LearningCoefficient):
            raise ArgumentTypeError(f"parts[{i}]: expected a LearningCoefficient, got {type(p).__name__}")
    lam = sum((Fraction(p.lam) for p in parts), Fraction(0))
    m = sum(p.m for p in parts) - (len(parts) - 1)
    return LearningCoefficient(lam, m)


# ---------------------------------------------------------------------------
# reduced rank regression (Aoyagi & Watanabe 2005)
# ---------------------------------------------------------------------------


def reduced_rank_regression(M: int, H: int, N: int, r: int) -> LearningCoefficient:
    """Reduced rank regression ``y = B A x`` (Aoyagi & Watanabe 2005).

    ``M`` inputs, ``H`` hidden units, ``N`` outputs, true product of rank
    ``r ≤ min(M, H, N)``:

    * ``M + H < N + r``: ``λ = (HM − Hr + Nr)/2``, ``m = 1``;
    * ``N + H < M + r``: ``λ = (HN − Hr + Mr)/2``, ``m = 1``;
    * ``M + N < H + r``: ``λ = MN/2``, ``m = 1``;
    * otherwise ``λ = [2(H+r)(M+N) − (M−N)² − (H+r)²]/8``, plus ``1/8`` with
      ``m = 2`` when ``M + H + N + r`` is odd (``m = 1`` when even).

    Args:
        M: number of inputs (>= 1).
        H: number of hidden units (>= 1).
        N: number of outputs (>= 1).
        r: rank of the true product ``B A`` (0 <= r <= min(M, H, N)).

    Returns:
        LearningCoefficient ``(λ, m)`` from the cases above.
    """
    M = integer("M", M, minimum=1)
    H = integer("H", H, minimum=1)
    N = integer("N", N, minimum=1)
    r = integer("r", r, minimum=0)
    if r > min(M, H, N):
        raise ValueError(f"r: expected r <= min(M, H, N) = {min(M, H, N)}, got {r}")
    if M + H < N + r:
        return LearningCoefficient(Fraction(H * M - H * r + N * r, 2), 1)
    if N + H < M + r:
        return LearningCoefficient(Fraction(H * N - H * r + M * r, 2), 1)
    if M + N < H + r:
        return LearningCoefficient(Fraction(M * N, 2), 1)
    lam = Fraction(2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2, 8)
    if (M + H + N + r) % 2 == 1:
        return LearningCoefficient(lam + Fraction(1, 8), 2)
    return LearningCoefficient(lam, 1)


# ---------------------------------------------------------------------------
# deep linear networks (Aoyagi 2024)
# ---------------------------------------------------------------------------


def _validate_widths(widths: Sequence[int]) -> list[int]:
    return integer_list("widths", widths, minimum=1, min_len=2)


def num_parameters(widths: Sequence[int]) -> int:
    """Parameter count ``d = Σ_s H_s H_{s+1}`` of a bias-free deep linear network.

    Args:
        widths: layer widths ``(H_1, …, H_{L+1})`` including input and output (at least two,
            each >= 1).

    Returns:
        The number of weights ``d``.
    """
    hs = _validate_widths(widths)
    return sum(a * b for a, b in zip(hs[:-1], hs[1:]))


def deep_linear_network_coefficient(widths: Sequence[int], rank: int) -> LearningCoefficient:
    """Bias-free deep linear network ``x ↦ W_L ⋯ W_1 x`` (Aoyagi 2024).

    ``widths = (H_1, …, H_{L+1})`` includes input and output; ``rank = r`` is
    the rank of the true product matrix.  With ``M_s = H_s − r``, let ``S`` be
    the smallest set of indices (``|S| ≥ 2``, taken in increasing order of
    ``M`` without splitting ties), ``ℓ = |S| − 1``, such that

        max_S M < min_{∉S} M,   Σ_S M ≥ ℓ max_S M,   Σ_S M < ℓ min_{∉S} M

    (conditions on ``∉S`` are vacuous when ``S`` is everything).  With
    ``σ = Σ_S M`` and ``a = σ − (⌈σ/ℓ⌉ − 1) ℓ``::

        λ = [−r² + r(H_1 + H_{L+1})]/2 + a(ℓ−a)/(4ℓ)
            − (ℓ(ℓ−1)/4)(σ/ℓ)² + ½ Σ_{i<j∈S} M_i M_j,
        m = a(ℓ − a) + 1.

    If some width equals ``r`` this reduces to ``λ = [−r² + r(H_1+H_{L+1})]/2``,
    ``m = 1``.  For two layers it agrees with :func:`reduced_rank_regression`.

    Args:
        widths: layer widths ``(H_1, …, H_{L+1})`` including input and output (at least two,
            each >= 1).
        rank: rank ``r`` of the true product matrix (0 <= r <= min(widths)).

    Returns:
        LearningCoefficient ``(λ, m)`` from the formula above.
    """
    hs = _validate_widths(widths)
    r = integer("rank", rank, minimum=0)
    if r > min(hs):
        raise ValueError(f"rank: expected rank <= min(widths) = {min(hs)}, got {r}")

    ms = sorted(h - r for h in hs)
    n = len(ms)
    chosen: list[int] | None = None
    for size in range(2, n + 1):
        if size < n and ms[size - 1] == ms[size]:
            continue  # would split a tie: not a valid prefix
        s_set, rest = ms[:size], ms[size:]
        ell = size - 1
        sigma = sum(s_set)
        if sigma < ell * s_set[-1]:
            continue
        if rest and not (s_set[-1] < rest[0] and sigma < ell * rest[0]):
            continue
        chosen = s_set
        break
    if chosen is None:  # pragma: no cover - excluded by Aoyagi's theorem
        raise RuntimeError(f"no admissible index set found for widths={hs}, rank={r}")

    ell = len(chosen) - 1
    sigma = sum(chosen)
    a = sigma - (-(-sigma // ell) - 1) * ell  # ⌈σ/ℓ⌉ via floor division
    pair_sum = (sigma * sigma - sum(x * x for x in chosen)) // 2  # Σ_{i<j} M_i M_j
    lam = (
        Fraction(-r * r + r * (hs[0] + hs[-1]), 2)
        + Fraction(a * (ell - a), 4 * ell)
        - Fraction(ell * (ell - 1), 4) * Fraction(sigma, ell) ** 2
        + Fraction(pair_sum, 2)
    )
    return LearningCoefficient(lam, a * (ell - a) + 1)


def normal_crossing(exponents: Sequence[int], prior_exponents: Sequence[int] | None = None) -> LearningCoefficient:
    """Deprecated name of :func:`normal_crossing_coefficient`.

    ``lambda_hat.targets.normal_crossing`` builds the problem; this gives its number.

    Args:
        exponents: the ``k_j`` (see :func:`normal_crossing_coefficient`).
        prior_exponents: the prior exponents ``h_j``; None for a flat prior.

    Returns:
        The result of :func:`normal_crossing_coefficient` (a DeprecationWarning is emitted).
    """
    warnings.warn(
        "theory.normal_crossing is deprecated; use theory.normal_crossing_coefficient", DeprecationWarning, stacklevel=2
    )
    return normal_crossing_coefficient(exponents, prior_exponents)


def deep_linear_network(widths: Sequence[int], rank: int) -> LearningCoefficient:
    """Deprecated name of :func:`deep_linear_network_coefficient`.

    ``lambda_hat.targets.deep_linear_network`` builds the problem; this gives its number.

    Args:
        widths: layer widths ``(H_1, …, H_{L+1})`` including input and output.
        rank: rank of the true product matrix.

    Returns:
        The result of :func:`deep_linear_network_coefficient` (a DeprecationWarning is emitted).
    """
    warnings.warn(
        "theory.deep_linear_network is deprecated; use theory.deep_linear_network_coefficient",
        DeprecationWarning,
        stacklevel=2,
    )
    return deep_linear_network_coefficient(widths, rank)
