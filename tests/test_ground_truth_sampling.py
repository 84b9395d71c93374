"""Samplers against exact learning coefficients on singular targets.

Every case is compared with an *exact finite-n* value where one exists, because the asymptotic λ
is not what λ̂ estimates at finite nβ:

* normal crossings: ``target.expected_llc(nβ, γ)`` is E[nβ(L_n − L_n(w*))] under the localized
  posterior by quadrature (exact up to ~1e-8). For w1²w2² (λ = 1/2, m = 2) at n = 1000 it is
  0.346: the −(m−1)/log(nβ) multiplicity term (−0.20) plus O(1/log² nβ) and localizer terms.
* the (2, 2, 2) deep linear network at w* = 0 (λ = 3/2, m = 1, local = global there because K is
  homogeneous): conditionally Gaussian in W_1, so E[λ̂] is a 2-D quadrature over W_2's singular
  values (``dln_origin_expected_llc``).
* a (2, 3, 2) rank-1 teacher: the Jacobian of W ↦ W_1W_2 has its generic rank 4 there, so K is
  locally a non-degenerate quadratic in 4 coordinates: local λ = 2 = Aoyagi's λ, m = 1. The finite-n
  reference is the Laplace value ½ Σ nβa/(nβa + γ) over the Hessian eigenvalues (1.998 here),
  which ignores how the curvature varies along the flat fibres within the localizer's reach: long
  runs put the exact value within ~1.5% of it (see the test), so these tests allow 3%.

Tolerances are max(rel·exact, 3·MCSE) + a stated systematic bias, with the bias measured (long
runs, many chains, x64) rather than tuned: SGLD's step-size bias, and nothing for HMC (Metropolis-
corrected, so unbiased up to MCSE). The runs use fixed keys.
"""

import math

import numpy as np
import pytest
from conftest import assert_close_to_exact, assert_virial_passes

import lambda_hat as lh
from lambda_hat.targets import deep_linear_network, gaussian_expected_llc, normal_crossing, tiny_mlp

FULL_BATCH = "hmc"
needs_full_batch = pytest.mark.skipif(
    FULL_BATCH not in lh.KERNELS, reason=f"kernel {FULL_BATCH!r} is not registered yet"
)


def sgld_gaussian_llc(eigs, nbeta, gamma, step_size):
    """E[λ̂] of full-batch SGLD on ½vᵀHv (stationary variance 1/(κ(1 − hκ/2)), h = ε/2, κ = nβa + γ)."""
    a = np.clip(np.asarray(eigs), 0, None)
    kappa = nbeta * a + gamma
    return float(np.sum(0.5 * nbeta * a / (kappa * (1 - step_size / 2 * kappa / 2))))


# ---------------------------------------------------------------------------------------------
# normal crossings (exact finite-n oracle)
# ---------------------------------------------------------------------------------------------

NC = {
    # w1²w2²: λ = 1/2, m = 2; exact E[λ̂] = 0.3464 at n = 1000 (nβ = 144.8, γ = 1)
    "w1^2 w2^2": lambda: normal_crossing((1, 1), n=1000, seed=0),
    # w1² + w2⁴: λ = 3/4, m = 1; exact E[λ̂] = 0.7368
    "w1^2 + w2^4": lambda: normal_crossing([(1,), (2,)], n=1000, seed=0),
}

# SGLD step-size bias at ε = 3e-4, measured in x64 against the oracle (E[λ̂_sgld] − exact):
# w1²w2²: +0.010 ± 0.003 at ε = 1e-3, +0.0023 ± 0.0020 at 3e-4 (256 chains), +0.002 ± 0.002 at 1e-4;
# w1² + w2⁴: +0.016 ± 0.0025 at 1e-3, +0.006 ± 0.003 at 3e-4; the w1² part alone is exactly
# +0.0055 at 3e-4 (discrete OU: ½·nβa/(κ(1 − hκ/2)) with κ = 146). Allow 0.008 at ε = 3e-4.
NC_SGLD_STEP = 3e-4
NC_SGLD_BIAS = 0.008


@pytest.mark.xla_optimized
@pytest.mark.parametrize("name", sorted(NC))
def test_sgld_normal_crossing(name):
    target = NC[name]()
    result = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel="sgld",
        key=3,
        num_chains=32,
        num_draws=30_000,
        num_warmup=3000,
        step_size=NC_SGLD_STEP,
    )
    exact = target.expected_llc(result.nbeta, result.gamma)
    # the flat direction relaxes in 2/(γε) ≈ 7000 steps: 30k draws × 32 chains give MCSE ≈ 0.008
    assert_close_to_exact(result, exact, rel=0.02, bias=NC_SGLD_BIAS)
    assert result.diagnostics["rhat"] < 1.05


@pytest.mark.xla_optimized
@needs_full_batch
@pytest.mark.parametrize("name", sorted(NC))
def test_hmc_normal_crossing(name):
    target = NC[name]()
    # target acceptance 0.95: the w1²w2² ridge is stiff at large |w1| (κ ≈ 145·w1²), and at the
    # default 0.8 its far end produces divergences, i.e. a less thorough visit of the ridge
    result = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel=FULL_BATCH,
        key=4,
        num_chains=16,
        num_draws=1500,
        num_warmup=700,
        target_acceptance_rate=0.95,
    )
    exact = target.expected_llc(result.nbeta, result.gamma)
    # Metropolis-corrected: no systematic bias; rel = 2% only guards the MCSE estimate itself
    assert_close_to_exact(result, exact, rel=0.02)
    assert_virial_passes(result)
    assert result.diagnostics["rhat"] < 1.05


# ---------------------------------------------------------------------------------------------
# deep linear networks
# ---------------------------------------------------------------------------------------------


def dln_origin():
    # inputs on [−1, 1] (not the benchmark's [−10, 10]): the curvature in W_1 is ≈ nβ·E[x²]·s(W_2)²,
    # and with E[x²] = 100/3 SGLD would need ε ~ 1e-6 and ~10⁶ steps to move W_2 across its O(1)
    # localizer scale. The oracle is exact for any input scale.
    return deep_linear_network((2, 2, 2), 0, n=500, seed=0, input_range=1.0, at_origin=True)


def dln_teacher():
    return deep_linear_network((2, 3, 2), 1, n=500, seed=0)


def _laplace(target, nbeta, gamma):
    """(Hessian eigenvalues at w*, the Laplace value ½ Σ nβa/(nβa + γ))."""
    eigs = np.clip(target.info["hessian_eigenvalues"], 0, None)
    return eigs, gaussian_expected_llc(np.diag(eigs), np.zeros(eigs.size), nbeta, gamma)


@pytest.mark.xla_optimized
def test_sgld_dln_origin():
    target = dln_origin()
    assert target.info["lam_is_local"] and float(target.lam) == 1.5
    result = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel="sgld",
        key=5,
        num_chains=16,
        num_draws=40_000,
        num_warmup=4000,
        step_size=3e-4,
    )
    exact = target.expected_llc(result.nbeta, result.gamma)  # 1.263 at n = 500 (λ = 1.5)
    # step-size bias measured in x64 (n = 1000, 16 chains): +0.029 ± 0.009 at ε = 1e-3,
    # −0.007 ± 0.013 at 3e-4, −0.001 ± 0.018 at 1e-4; linear in ε, so ≈ +0.01 at 3e-4
    assert_close_to_exact(result, exact, rel=0.02, bias=0.01)


@pytest.mark.xla_optimized
@needs_full_batch
def test_hmc_dln_origin():
    target = dln_origin()
    result = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel=FULL_BATCH,
        key=6,
        num_chains=16,
        num_draws=1000,
        num_warmup=700,
        target_acceptance_rate=0.9,
    )
    assert_close_to_exact(result, target.expected_llc(result.nbeta, result.gamma), rel=0.02)
    assert_virial_passes(result)


@pytest.mark.xla_optimized
def test_sgld_dln_teacher_minibatch():
    """The Furman–Lau setting: U[−10, 10] inputs, noiseless teacher, minibatch SGLD, γ = 1."""
    target = dln_teacher()
    assert target.info["lam_is_local"] and target.lam == 2 and target.m == 1
    step = 1e-5  # top curvature nβ·a_max ≈ 80·50 = 4000: εκ/4 ≈ 1% in the stiffest direction
    result = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel="sgld",
        key=7,
        num_chains=16,
        num_draws=20_000,
        num_warmup=2000,
        step_size=step,
        batch_size=100,
    )
    eigs, laplace = _laplace(target, result.nbeta, result.gamma)
    assert abs(laplace - 2.0) < 0.01
    # step-size bias of SGLD on the quadratic approximation (exact for a Gaussian): +0.011 here
    step_bias = sgld_gaussian_llc(eigs, result.nbeta, result.gamma, step) - laplace
    assert 0 < step_bias < 0.01 * laplace
    # The Laplace value is not exact here: the flat fibre directions {W_1W_2 = const} carry the
    # O(1) localizer scale and the curvature of the other directions changes along them. Long x64
    # runs (32 chains): HMC 1.975 ± 0.007, SGLD at ε = 1e-5 over 200k steps 2.019 ± 0.006 (2.008
    # after its +0.011 step bias): both within 1.5% of 1.998. So the reference carries a stated
    # ±3% model uncertainty, added to 3 MCSE and the step bias. Minibatch noise adds an O(ε)
    # variance term smaller than the step bias.
    assert_close_to_exact(result, laplace, rel=0.0, bias=step_bias + 0.03 * laplace)


@pytest.mark.xla_optimized
@needs_full_batch
def test_hmc_dln_teacher():
    target = dln_teacher()
    # 32 leapfrog steps: longer trajectories move further along the flat fibres per iteration
    result = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel=FULL_BATCH,
        key=8,
        num_chains=16,
        num_draws=1000,
        num_warmup=700,
        num_integration_steps=32,
    )
    _, laplace = _laplace(target, result.nbeta, result.gamma)
    # ±3% reference uncertainty as above. n_se = 4, not 3: the slow fibre modes make the ESS-based
    # MCSE optimistic here; over 8 keys (x32 and x64) λ̂ had sd 0.028 against a reported MCSE of
    # 0.020 (mean 1.986).
    assert_close_to_exact(result, laplace, rel=0.0, n_se=4.0, bias=0.03 * laplace)
    assert_virial_passes(result, n_se=4.0)  # the same optimistic MCSE (slow fibre modes)


# ---------------------------------------------------------------------------------------------
# tiny MLP: no closed form; 0 < λ̂ <= d/2 and the kernels agree
# ---------------------------------------------------------------------------------------------


@pytest.mark.xla_optimized
@needs_full_batch
def test_mlp_kernels_agree():
    # n = 200 keeps a gradient cheap (the flax MLP costs ~40 µs per gradient at n = 1000) and the
    # curvature moderate (nβ·a_max ≈ 500), so SGLD can take ε = 5e-4 and its flat directions
    # (curvature ≈ γ) relax in 2/(γε) = 4000 steps
    target = tiny_mlp((2, 8, 1), n=200, seed=0)
    d = target.dim
    nbeta = 200 / math.log(200)
    assert (nbeta * target.info["grad_norm_at_wstar"]) ** 2 < 1e-3  # w* stationary enough for λ̂
    step = 5e-4
    sgld = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel="sgld",
        key=9,
        num_chains=16,
        num_draws=16_000,
        num_warmup=2000,
        step_size=step,
    )
    hmc = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel=FULL_BATCH,
        key=10,
        num_chains=8,
        num_draws=800,
        num_warmup=700,
    )
    for r in (sgld, hmc):
        assert 0 < r.llc <= d / 2
        assert r.diagnostics["rhat"] < 1.05
    eigs = target.info["hessian_eigenvalues"]
    laplace = gaussian_expected_llc(np.diag(np.clip(eigs, 0, None)), np.zeros(d), nbeta, 1.0)
    # SGLD's step bias, estimated on the quadratic approximation (the bias comes from the stiff,
    # near-quadratic directions): ≈ +0.09 (2%). Measured at n = 200, x32: SGLD − HMC =
    # +0.233 ± 0.067 at ε = 1e-3 (Gaussian estimate 0.187) and +0.001 ± 0.08 at 3e-4 (0.052).
    step_bias = sgld_gaussian_llc(eigs, nbeta, 1.0, step) - laplace
    assert 0 <= step_bias < 0.03 * hmc.llc
    se = math.hypot(sgld.llc_se, hmc.llc_se)
    # the bias estimate is itself approximate: allow ±50% of it on top of 3 standard errors
    diff = sgld.llc - step_bias - hmc.llc
    assert abs(diff) <= 3 * se + 0.5 * step_bias, (sgld.llc, hmc.llc, se, step_bias)
    # the MLP is singular: λ̂ is well below the Laplace count of its nearly flat directions
    assert hmc.llc < laplace
