"""λ̂'s MCSE against the exact asymptotic variance of a chain whose autocorrelation oscillates.

X_t = A_t + B_t with independent A (AR(2), A_t = −0.8·A_{t−2} + e_t: period 4, ρ_2 = −0.8) and B
(AR(1), φ = 0.95, variance 0.5: a slow component). The variance of the mean of N draws is
S/N with S = Σ_k Cov(X_0, X_k) = 1/(1 − φ₁ − φ₂)²·σ_A² + σ_B²/(1 − φ)² (spectral densities at
0), here 1/3.24 + 0.04875/0.0025 = 19.81, against Var(X) = 2.78 + 0.5. The pair sums of the
autocorrelation turn negative at lag 2 (ρ_2 + ρ_3 ≈ −0.41), so Geyer's initial monotone sequence
stops there and sees τ ≈ 1.3 of the true 6.0; block means of 10 draws average A's oscillation
out and keep B's slow decay, where the sequence is right.
"""

import numpy as np
from numpyro.diagnostics import effective_sample_size

from lambda_hat.diagnostics import MIN_MCSE_BLOCKS, llc_statistics

CHAINS, DRAWS, REPLICATES = 4, 20_000, 20
SIGMA_B2 = 0.5 * (1 - 0.95**2)  # innovation variance of B for Var(B) = 0.5
LONG_RUN_VARIANCE = 1 / (1 + 0.8) ** 2 + SIGMA_B2 / (1 - 0.95) ** 2


def _oscillating_chains(rng: np.random.Generator) -> np.ndarray:
    n = DRAWS + 1000  # 1000 steps of burn-in from 0
    e_a = rng.standard_normal((CHAINS, n))
    e_b = np.sqrt(SIGMA_B2) * rng.standard_normal((CHAINS, n))
    a, b = np.zeros((CHAINS, n)), np.zeros((CHAINS, n))
    for t in range(2, n):
        a[:, t] = -0.8 * a[:, t - 2] + e_a[:, t]
        b[:, t] = 0.95 * b[:, t - 1] + e_b[:, t]
    return (a + b)[:, 1000:]


def test_block_means_give_the_exact_mcse_where_the_monotone_sequence_truncates():
    rng = np.random.default_rng(0)
    exact_se = np.sqrt(LONG_RUN_VARIANCE / (CHAINS * DRAWS))
    plain, blocked = [], []
    for _ in range(REPLICATES):
        x = _oscillating_chains(rng)
        plain.append(llc_statistics(x)["llc_se"] / exact_se)
        blocked.append(llc_statistics(x, block=10)["llc_se"] / exact_se)
    # blocked: within 10% of the exact se on average (each replicate's se has ~3% sampling error)
    assert 0.9 <= np.mean(blocked) <= 1.1, np.mean(blocked)
    # plain: the truncated sequence reports less than 0.6 of it (0.46 expected)
    assert np.mean(plain) < 0.6, np.mean(plain)


def test_block_size_drops_to_keep_enough_blocks_per_chain():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2 * MIN_MCSE_BLOCKS - 1))
    # fewer than 2·MIN_MCSE_BLOCKS draws per chain: no blocking, the plain estimate
    assert llc_statistics(x, block=10)["llc_se"] == llc_statistics(x)["llc_se"]
    # 3·MIN_MCSE_BLOCKS draws: blocks of 3 (MIN_MCSE_BLOCKS per chain), not 10
    y = rng.standard_normal((2, 3 * MIN_MCSE_BLOCKS))
    means = y.reshape(2, MIN_MCSE_BLOCKS, 3).mean(axis=2)
    ess = min(y.size, y.var(ddof=1) * float(effective_sample_size(means)) / means.var(ddof=1))
    assert np.isclose(llc_statistics(y, block=10)["llc_se"], y.std(ddof=1) / np.sqrt(ess), rtol=1e-12)
    assert not np.isclose(llc_statistics(y, block=10)["llc_se"], llc_statistics(y)["llc_se"], rtol=1e-6)


def test_per_chain_ess_is_clipped_to_the_draws_on_anticorrelated_chains():
    # an alternating chain (ρ_1 = −0.9): Geyer's estimate exceeds the number of draws
    rng = np.random.default_rng(2)
    x = np.zeros((3, 4000))
    for t in range(1, x.shape[1]):
        x[:, t] = -0.9 * x[:, t - 1] + rng.standard_normal(3)
    for block in (1, 10):
        stats = llc_statistics(x, block=block)
        assert 1 <= stats["ess"] <= x.size
        assert np.all((stats["ess_per_chain"] >= 1) & (stats["ess_per_chain"] <= x.shape[1])), stats["ess_per_chain"]
    assert float(effective_sample_size(x[:1])) > x.shape[1]  # what the clip guards against


def test_virial_error_uses_the_kernels_block_size():
    from lambda_hat.diagnostics import virial_statistics

    rng = np.random.default_rng(3)
    x = 1 + 0.01 * _oscillating_chains(rng)[..., None]  # one group, per-draw v·∂U values near 1
    v1 = virial_statistics(x, np.array([1]), ("w",))
    v10 = virial_statistics(x, np.array([1]), ("w",), block=10)
    assert np.isclose(v1["se"], llc_statistics(x[..., 0])["llc_se"], rtol=1e-12)
    assert np.isclose(v10["se"], llc_statistics(x[..., 0], block=10)["llc_se"], rtol=1e-12)
    assert v10["se"] > 1.5 * v1["se"]  # the blocked error sees the oscillation's long-run variance
