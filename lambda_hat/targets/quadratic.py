"""Quadratic targets with an exact, finite-n oracle.

If L_n(w) − L_n(w*) = gᵀv + ½ vᵀHv exactly (v = w − w*), the localized posterior is the
Gaussian N(μ, P⁻¹) with P = nβH + γI and μ = −nβ P⁻¹ g, so

    E[λ̂] = nβ · ( gᵀμ + ½ tr(H P⁻¹) + ½ μᵀHμ ),

which for g = 0 is ½ Σ_i nβ a_i / (nβ a_i + γ) (a_i the eigenvalues of H) → rank(H)/2 as γ → 0.
g is ∇L_n at w* as stored in the run dtype (~rounding level): keeping it makes the oracle exact
in float32 too. Everything exact is computed in float64 from the data *as cast* to the run dtype.
"""

from __future__ import annotations

from fractions import Fraction

import jax.numpy as jnp
import numpy as np

from lambda_hat.flat import float_dtype
from lambda_hat.targets.base import Target


def gaussian_expected_llc(hessian: np.ndarray, grad: np.ndarray, nbeta: float, gamma: float) -> float:
    """Exact E[λ̂] for L − L* = gᵀv + ½vᵀHv under the localized posterior (float64).

    Args:
        hessian: (d, d) symmetric H of L_n at w*.
        grad: (d,) gradient g = ∇L_n(w*).
        nbeta: nβ, the effective sample size times the inverse temperature.
        gamma: the localization strength γ; nβH + γI must be invertible.

    Returns:
        nβ · (gᵀμ + ½ tr(H P⁻¹) + ½ μᵀHμ) with P = nβH + γI and μ = −nβ P⁻¹ g.
    """
    H = np.asarray(hessian, np.float64)
    g = np.asarray(grad, np.float64)
    P = nbeta * H + gamma * np.eye(H.shape[0])
    cov = np.linalg.inv(P)
    mu = -nbeta * cov @ g
    return float(nbeta * (g @ mu + 0.5 * np.trace(H @ cov) + 0.5 * mu @ H @ mu))


def _random_orthonormal(rng: np.random.Generator, d: int, k: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q = q * np.sign(np.diag(r))
    return q[:, :k]


def _mse_loss(w, batch):
    """Mean over the batch of ½(y − xᵀw)² (the Gaussian NLL with σ² = 1, up to a constant)."""
    x, y = batch
    residual = y - x @ w
    return 0.5 * jnp.mean(residual**2)


def linear_regression(
    *,
    n: int = 1000,
    d: int = 5,
    rank: int | None = None,
    noise: float = 0.5,
    scale_range: tuple[float, float] = (0.5, 2.0),
    seed: int = 0,
) -> Target:
    """Linear regression y = xᵀw₀ + noise with a full-rank or rank-deficient design.

    The design is X = Z diag(c) Bᵀ with Z ~ N(0, 1)^{n×rank}, scales c in ``scale_range`` and B a
    random d×rank orthonormal basis (so the null space is rotated, not coordinate aligned).
    w* is the truncated least-squares solution on the data as cast to the run dtype (relative
    rcond = sqrt(machine epsilon)), so rounding-level singular values are not fitted.
    λ = rank/2; the exact finite-n E[λ̂] comes from H = XᵀX/n and ∇L_n(w*).

    Args:
        n: number of data points (>= 2).
        d: number of parameters (the input dimension).
        rank: rank of the design, 1 <= rank <= d (None: d, full rank).
        noise: standard deviation of the Gaussian label noise.
        scale_range: (low, high) of the uniform per-direction scales c of the design.
        seed: numpy seed for the design, the basis, w₀ and the noise.

    Returns:
        A Target with params w* (a (d,) vector in the run dtype), data (X, y) of shapes (n, d)
        and (n,), loss ½ mean (y − Xw)², λ = rank/2, m = 1 and the exact ``expected_llc_fn``.
        info: ``hessian_eigenvalues`` (float64), ``grad_norm_at_wstar`` and ``rank``.
    """
    rank = d if rank is None else int(rank)
    if not 1 <= rank <= d:
        raise ValueError(f"rank: expected 1 <= rank <= d = {d}, got {rank}")
    if n < 2:
        raise ValueError(f"n: expected n >= 2, got {n}")
    rng = np.random.default_rng(seed)
    basis = _random_orthonormal(rng, d, rank)
    scales = rng.uniform(*scale_range, size=rank)
    X = (rng.standard_normal((n, rank)) * scales) @ basis.T
    w0 = rng.standard_normal(d)
    y = X @ w0 + noise * rng.standard_normal(n)

    dtype = float_dtype()
    Xc = np.asarray(jnp.asarray(X, dtype), np.float64)  # the data as the sampler sees it
    yc = np.asarray(jnp.asarray(y, dtype), np.float64)
    rcond = float(np.sqrt(np.finfo(np.dtype(dtype)).eps))
    w_star64 = np.linalg.lstsq(Xc, yc, rcond=rcond)[0]
    w_star = jnp.asarray(w_star64, dtype)
    ws = np.asarray(w_star, np.float64)
    H = Xc.T @ Xc / n
    g = Xc.T @ (Xc @ ws - yc) / n
    eigs = np.linalg.eigvalsh(H)
    return Target(
        name=f"linreg_d{d}_r{rank}",
        loss_fn=_mse_loss,
        params=w_star,
        data=(jnp.asarray(Xc, dtype), jnp.asarray(yc, dtype)),
        n=n,
        lam=Fraction(rank, 2),
        m=1,
        expected_llc_fn=lambda nbeta, gamma: gaussian_expected_llc(H, g, nbeta, gamma),
        info={"hessian_eigenvalues": eigs, "grad_norm_at_wstar": float(np.linalg.norm(g)), "rank": rank},
    )


def pure_potential(
    *,
    d: int = 8,
    n: int = 1000,
    spectrum: tuple[float, float] = (1.0, 3.0),
    rank: int | None = None,
    rotate: bool = True,
    seed: int = 0,
) -> Target:
    """L(w) = ½ (w − w₀)ᵀ H (w − w₀), a loss that ignores its batch.

    H = Q diag(a) Qᵀ with a uniform in ``spectrum`` (``rank`` of them non-zero) and Q a random
    orthonormal basis (the identity when ``rotate=False``: a diagonal Hessian). ``data`` is a dummy array of n rows: only n enters, through β = 1/log n.
    It is kept as a regression case: an earlier VI implementation returned NaNs on it.

    Args:
        d: number of parameters.
        n: the nominal sample size (rows of the dummy data).
        spectrum: (low, high) of the uniform non-zero eigenvalues of H.
        rank: number of non-zero eigenvalues, 1 <= rank <= d (None: d).
        rotate: rotate the eigenbasis by a random orthonormal Q (False: H is diagonal).
        seed: numpy seed for Q, the eigenvalues and w₀.

    Returns:
        A Target with params w* = w₀ (a (d,) vector in the run dtype), data a zero (n, 1) array,
        λ = rank/2, m = 1 and the exact ``expected_llc_fn`` (g = 0). info:
        ``hessian_eigenvalues`` (float64), ``grad_norm_at_wstar`` = 0 and ``rank``.
    """
    rank = d if rank is None else int(rank)
    if not 1 <= rank <= d:
        raise ValueError(f"rank: expected 1 <= rank <= d = {d}, got {rank}")
    rng = np.random.default_rng(seed)
    Q = _random_orthonormal(rng, d, d) if rotate else np.eye(d)
    a = np.zeros(d)
    a[:rank] = rng.uniform(*spectrum, size=rank)
    dtype = float_dtype()
    H_run = jnp.asarray(Q @ np.diag(a) @ Q.T, dtype)
    H = np.asarray(H_run, np.float64)
    H = 0.5 * (H + H.T)
    w0 = jnp.asarray(rng.standard_normal(d), dtype)

    def loss_fn(w, batch):
        del batch  # a pure potential
        v = w - w0
        return 0.5 * v @ (H_run @ v)

    eigs = np.linalg.eigvalsh(H)
    return Target(
        name=f"potential_d{d}_r{rank}",
        loss_fn=loss_fn,
        params=w0,
        data=jnp.zeros((n, 1), dtype),
        n=n,
        lam=Fraction(rank, 2),
        m=1,
        expected_llc_fn=lambda nbeta, gamma: gaussian_expected_llc(H, np.zeros(d), nbeta, gamma),
        info={"hessian_eigenvalues": eigs, "grad_norm_at_wstar": 0.0, "rank": rank},
    )
