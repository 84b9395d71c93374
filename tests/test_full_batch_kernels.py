"""HMC, NUTS, MCLMC and adjusted MCLMC (full batch) against the exact finite-n oracle on quadratics.

On a quadratic the localized posterior is Gaussian and E[λ̂] is exact (targets/quadratic.py).
HMC and NUTS are Metropolis-adjusted: no bias, so λ̂ must be within max(3%, 3·MCSE). Over 10 seeds
on the rank-deficient target their z = (λ̂ − exact)/MCSE had mean square 1.06 (HMC), 1.22 (NUTS):
the MCSE is honest.

MCLMC is unadjusted, and its bias is *not* negligible at BlackJAX's default energy-error target
desired_energy_var = 5e-4: measured with 16 chains × 4000 draws (x64, MCSE ≈ 0.2–0.7%), λ̂ is
−2.0% (pure_potential d=8), −1.7% (linear_regression d=5) and −0.7 ± 0.7% (rank 3 of 6) off the
exact value; at 1e-4 it is −1.0%, −0.9%, −0.8% (16 × 8000 draws, 8 seeds, both precisions); at
2e-5 −0.5%, −0.5%, +0.1%. The bias shrinks with the step size and is not a burn-in effect (3000
tuning steps give the same −2.0%). So the accuracy test runs MCLMC at the default
desired_energy_var = 2e-5, where the bias (≈ 0.5%) leaves most of the 3% tolerance to Monte Carlo
error instead of spending it on a known bias. On the rank-deficient target MCLMC also has a slow
mode (the loss couples to the unit-speed motion along the flat, rotated null space that a
diagonal preconditioner cannot rescale) and an autocorrelation that oscillates: batch means give
an integrated autocorrelation time of 7–20 draws where the initial-monotone-sequence ESS on the
draws saw 2–4, an MCSE 1.5–2× too small; MCLMC's MCSE now comes from the means of blocks of 10
draws (lambda_hat.diagnostics.llc_statistics). Hence the many (cheap) MCLMC draws.

Adjusted MCLMC is Metropolis-adjusted too, so it is held to the same exact standard (virial
within 3 MC errors of 1, no bias allowance).

Acceptance (HMC/NUTS). Dual averaging returns exp(x̄), the average of its log step-size iterates,
which lies below the oscillating iterates that achieved the target; with the steep acceptance
cliff at the leapfrog stability limit, the post-warmup acceptance ends *above* the target (Stan's
identical scheme does the same): measured 0.86–0.96 per chain at target 0.8 here (0.76–0.92 at
target 0.65). The check is target − 0.05 <= mean acceptance <= 0.97: a failed adaptation lands
near 0 or at >= 0.98 (half the adapted step size already accepts 98%).

Energy error (MCLMC). The tuner sets ε from a noisy running estimate (150 effective samples) of
Var[ΔE] ∝ ε⁶, so a ±30% scatter in the tuned ε is a factor ~5 in Var[ΔE]/d per chain (measured
per-chain ratios 0.16–5.6 to the target over 16 chains; geometric means over chains 0.75–1.1).
The check is the geometric mean over chains within [0.2, 5] of the target.

Compile time dominates (≈5 s CPU per HMC program, ≈7 s NUTS, ≈11 s MCLMC); runs are short.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close_to_exact, assert_virial_passes

import lambda_hat as lh
from lambda_hat.api import LLCWarning
from lambda_hat.diagnostics import llc_statistics
from lambda_hat.kernels.adjusted_mclmc import tuning_steps as adjusted_tuning_steps
from lambda_hat.kernels.mclmc import tuning_steps
from lambda_hat.targets import linear_regression, pure_potential

TARGETS = {
    "full_rank": lambda: linear_regression(d=5, seed=1),
    "rank_deficient": lambda: linear_regression(d=6, rank=3, seed=2),
    "pure_potential": lambda: pure_potential(d=8, seed=3),
}

RUNS = {
    "hmc": dict(num_chains=4),  # defaults: 1000 draws, 500 warmup, L = 16 jittered ±50%
    "nuts": dict(num_chains=4),  # defaults: 1000 draws, 500 warmup
    # 1000 tuning steps (default num_warmup); many cheap draws because of the slow mode (see above)
    "mclmc": dict(num_chains=16, num_draws=8000),
    "adjusted_mclmc": dict(num_chains=4),  # defaults: 2000 draws, 1000 tuning steps
}


def _cases():
    """(kernel, target) pairs; NUTS on the rank-deficient target is run-time-bound (its flat
    directions need long trees), so it compiles with XLA's optimizations (tests/conftest.py)."""
    for kernel in sorted(RUNS):
        for name in sorted(TARGETS):
            marks = [pytest.mark.xla_optimized] if (kernel, name) == ("nuts", "rank_deficient") else []
            yield pytest.param(kernel, name, marks=marks, id=f"{kernel}-{name}")


@pytest.mark.parametrize("kernel, name", _cases())
def test_matches_exact_quadratic(kernel, name):
    target = TARGETS[name]()
    result = lh.sample(target.loss_fn, target.params, target.data, kernel=kernel, key=5, **RUNS[kernel])
    exact = target.expected_llc(result.nbeta, result.gamma)
    assert_close_to_exact(result, exact, rel=0.03)
    # exact kernels: E[v_i ∂_iU] = 1 within MC error; MCLMC's ≈1% bias stays under the 2% floor
    assert_virial_passes(result, tolerance=0.02 if kernel == "mclmc" else 0.0)
    diag = result.diagnostics
    assert result.valid_chains.all()
    assert diag["rhat"] < 1.05
    chains = RUNS[kernel]["num_chains"]
    if kernel in ("hmc", "nuts"):
        acc = diag["acceptance_rate"]
        assert acc.shape == (chains,)
        assert 0.8 - 0.05 <= acc.mean() <= 0.97, acc
        assert (diag["divergences"] == 0).all()  # a Gaussian has no divergent region
        assert np.all(diag["step_size"] > 0)
        # every leapfrog step counted: 1 at init + warmup steps + sampling steps
        draws = lh.KERNELS[kernel].default_num_draws
        sampling = np.rint(diag["num_integration_steps"] * draws)
        assert result.grad_evals == int(np.sum(diag["warmup_grad_evals"] + sampling))
        if kernel == "hmc":  # jittered L = 16 ± 50%: 8..24 steps, mean ≈ 16
            assert 15 <= diag["num_integration_steps"].mean() <= 17
            assert result.grad_evals >= chains * (500 + draws) * 8
    elif kernel == "adjusted_mclmc":
        acc = diag["acceptance_rate"]
        assert acc.shape == (chains,)
        assert 0.9 - 0.05 <= acc.mean() <= 0.99, acc  # tuned towards target_acceptance_rate = 0.9
        assert (diag["divergences"] == 0).all()
        assert (diag["tuning_steps"] == adjusted_tuning_steps(1000)).all() and adjusted_tuning_steps(1000) == 1002
        # BlackJAX's avg-preserving tuner: about two integration steps per proposal (L/ε = 2)
        np.testing.assert_allclose(diag["L"] / diag["step_size"], 2.0, rtol=1e-4)
        assert 1.5 <= diag["num_integration_steps"].mean() <= 2.5
        # two gradients per McLachlan step, counted per proposal, plus initialisation and tuning
        sampling = 2 * np.rint(diag["num_integration_steps"] * lh.KERNELS[kernel].default_num_draws)
        assert result.grad_evals == int(np.sum(diag["warmup_grad_evals"] + sampling))
        assert np.all(diag["warmup_grad_evals"] > 2 * 1002)
    else:
        ratio = diag["energy_var_per_dim"] / lh.KERNELS["mclmc"].options["desired_energy_var"]
        assert 0.2 <= np.exp(np.mean(np.log(ratio))) <= 5, ratio
        # the MCSE from blocks of 10 draws (MCLMC is not reversible)
        assert result.llc_se == pytest.approx(llc_statistics(result.llc_trace, 10)["llc_se"], rel=1e-9)
        tuned = tuning_steps(1000, True)
        assert tuned == 1000
        assert (diag["tuning_steps"] == tuned).all()
        # two gradients per McLachlan step, plus one at initialisation
        assert result.grad_evals == chains * (1 + 2 * (tuned + RUNS[kernel]["num_draws"]))
        assert np.all(diag["L"] > 0) and np.all(diag["step_size"] > 0)
        assert (diag["nan_steps"] == 0).all()


# -- a loss that is NaN beyond a threshold, w[0] > t (t travels in the data, so changing it
#    reuses the compiled program); ½‖w‖² at w* = 0 otherwise. d = 1, so MCLMC pads it with an
#    independent N(0, 1) coordinate. -----------------------------------------------------------
N_NAN = 100


def _nan_beyond_loss(w, batch):
    loss = 0.5 * jnp.dot(w, w)
    return jnp.where(w[0] > batch["t"][0], jnp.nan, loss)


def _nan_data(threshold, dtype):
    return {"x": jnp.zeros((N_NAN, 1), dtype), "t": jnp.full((N_NAN,), threshold, dtype)}


def test_mclmc_d1_and_chains_hitting_nan_are_flagged_and_excluded():
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    w_star = jnp.zeros(1, dtype)
    # given L and step_size: no tuning, one compiled program for all three runs
    kw = dict(kernel="mclmc", key=3, num_chains=16, num_draws=1000, num_warmup=20, L=0.4, step_size=0.15)

    # unreachable threshold: the d = 1 posterior N(0, 1/(nβ + γ)) gives E[λ̂] = ½ nβ/(nβ + γ)
    clean = lh.sample(_nan_beyond_loss, w_star, _nan_data(100.0, dtype), **kw)
    assert clean.valid_chains.all()
    assert_close_to_exact(clean, 0.5 * clean.nbeta / (clean.nbeta + clean.gamma), rel=0.03)
    np.testing.assert_allclose(clean.diagnostics["L"], 0.4, rtol=1e-6)
    assert (clean.diagnostics["tuning_steps"] == 0).all()
    assert clean.grad_evals == 16 * (1 + 2 * (20 + 1000))

    # σ of w[0] is 1/sqrt(nβ + γ) ≈ 0.21; t = 0.65 ≈ 3σ is reached within 1000 draws by 5 to 10
    # of the 16 chains (measured, both precisions)
    with pytest.warns(LLCWarning, match="excluded"):
        result = lh.sample(_nan_beyond_loss, w_star, _nan_data(0.65, dtype), **kw)
    valid = result.valid_chains
    assert 0 < valid.sum() < len(valid), valid
    np.testing.assert_array_equal(valid, result.diagnostics["nan_steps"] == 0)  # exactly those
    assert np.isnan(result.llc_per_chain[~valid]).all()
    assert np.isfinite(result.llc_per_chain[valid]).all()
    np.testing.assert_allclose(result.llc, np.mean(result.llc_per_chain[valid]), rtol=1e-6)

    # a threshold every chain crosses: nothing valid is left
    with pytest.raises(FloatingPointError, match="every chain"):
        lh.sample(_nan_beyond_loss, w_star, _nan_data(0.01, dtype), **kw)


def test_adjusted_mclmc_d1_is_exact_and_rejects_nan_proposals():
    """d = 1 runs on the padded target; MH rejects proposals into a NaN region (counted as
    divergences and warned), so chains stay valid and sample the posterior restricted to w <= t."""
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    w_star = jnp.zeros(1, dtype)
    kw = dict(kernel="adjusted_mclmc", key=3, num_chains=4, num_draws=2000)
    clean = lh.sample(_nan_beyond_loss, w_star, _nan_data(100.0, dtype), **kw)
    assert clean.valid_chains.all() and (clean.diagnostics["divergences"] == 0).all()
    assert_close_to_exact(clean, 0.5 * clean.nbeta / (clean.nbeta + clean.gamma), rel=0.03)
    assert_virial_passes(clean, tolerance=0.0)

    # t = 0 cuts the posterior in half: every proposal beyond it is rejected as divergent
    with pytest.warns(LLCWarning, match="divergent"):
        cut = lh.sample(_nan_beyond_loss, w_star, _nan_data(0.0, dtype), **kw)
    assert cut.valid_chains.all() and cut.diagnostics["divergences"].sum() > 0
    assert np.isfinite(cut.llc_trace).all()


def test_hmc_frozen_chains_are_invalid():
    """A step size far beyond the stability limit rejects every proposal: chains never move."""
    target = linear_regression(d=3, seed=0)
    with pytest.raises(FloatingPointError, match="every chain"):
        lh.sample(
            target.loss_fn,
            target.params,
            target.data,
            kernel="hmc",
            key=0,
            num_chains=2,
            num_draws=20,
            num_warmup=0,
            step_size=50.0,
            num_integration_steps=4,
        )


BAD_OPTIONS = [
    ("hmc", {"num_integration_steps": 0}, "num_integration_steps"),
    ("hmc", {"num_integration_steps": 2.5}, "num_integration_steps"),
    ("hmc", {"target_acceptance_rate": 1.2}, "target_acceptance_rate"),
    ("nuts", {"target_acceptance_rate": 0.0}, "target_acceptance_rate"),
    ("nuts", {"max_num_doublings": 0}, "max_num_doublings"),
    ("hmc", {"step_size": -0.1}, "step_size"),
    ("nuts", {"step_size": float("nan")}, "step_size"),
    ("hmc", {"jitter": 1.0}, "jitter"),
    ("hmc", {"inverse_mass_matrix": -1.0}, "inverse_mass_matrix"),
    ("hmc", {"inverse_mass_matrix": [[1.0, 0.0], [0.0, 1.0]]}, "inverse_mass_matrix"),
    ("nuts", {"inverse_mass_matrix": [1.0, 1.0]}, "inverse_mass_matrix"),  # d = 3
    ("hmc", {"max_num_doublings": 3}, "max_num_doublings"),  # a NUTS option
    ("nuts", {"num_integration_steps": 5}, "num_integration_steps"),  # an HMC option
    ("mclmc", {"L": 1.0}, "L and step_size"),
    ("mclmc", {"step_size": -1.0, "L": 1.0}, "step_size"),
    ("mclmc", {"desired_energy_var": 0.0}, "desired_energy_var"),
    ("mclmc", {"diagonal_preconditioning": "yes"}, "diagonal_preconditioning"),
    ("mclmc", {"inverse_mass_matrix": 1.0}, "inverse_mass_matrix"),
    ("mclmc", {"L": 1.0, "step_size": 0.1, "inverse_mass_matrix": [1.0, 2.0]}, "inverse_mass_matrix"),
    ("hmc", {"batch_size": 10}, "batch_size"),
    ("nuts", {"batch_size": 10}, "batch_size"),
    ("mclmc", {"batch_size": 10}, "batch_size"),
    ("hmc", {"num_warmup": 0}, "num_warmup"),
    ("mclmc", {"num_warmup": 5}, "num_warmup"),
    ("adjusted_mclmc", {"L": 1.0}, "L and step_size"),
    ("adjusted_mclmc", {"target_acceptance_rate": 1.0}, "target_acceptance_rate"),
    ("adjusted_mclmc", {"desired_energy_var": 1e-4}, "desired_energy_var"),  # an MCLMC option
    ("adjusted_mclmc", {"inverse_mass_matrix": 1.0}, "inverse_mass_matrix"),
    ("adjusted_mclmc", {"diagonal_preconditioning": 1}, "diagonal_preconditioning"),
    ("adjusted_mclmc", {"batch_size": 10}, "batch_size"),
    ("adjusted_mclmc", {"num_warmup": 5}, "num_warmup"),
]


@pytest.mark.parametrize("kernel,options,match", BAD_OPTIONS)
def test_bad_options_raise(kernel, options, match):
    target = linear_regression(d=3, seed=0)
    kw = dict(num_chains=2, num_draws=10, num_warmup=10)
    kw.update(options)
    with pytest.raises(ValueError, match=match):
        lh.sample(target.loss_fn, target.params, target.data, kernel=kernel, **kw)


def test_kernels_registered_with_defaults():
    for name, draws, warmup in [
        ("hmc", 1000, 500),
        ("nuts", 1000, 500),
        ("mclmc", 2000, 1000),
        ("adjusted_mclmc", 2000, 1000),
    ]:
        spec = lh.KERNELS[name]
        assert not spec.minibatch
        assert (spec.default_num_draws, spec.default_num_warmup) == (draws, warmup)
    assert tuning_steps(1000, False) == 900
    assert tuning_steps(37, True) == 37
