"""The first-order step-size bias of the Langevin kernels, estimated from the draws' own gradients.

On a Gaussian posterior the discretised dynamics w' = w − h∇U + √(2h)ξ (h = ε/2) has an exact
Gaussian stationary law: along an eigendirection of the Hessian with curvature a = nβλ + γ its
variance is 1/(a(1 − ha/2)). So E_h[λ̂] and the estimator's own expectation under it,
h·Σ nβλ(½/(1 − x) − ¼/(1 − x)²) with x = ha/2, are known in closed form: the tests compare the
uncorrected λ̂, the bias estimate and the corrected λ̂ against them with the reported MCSEs.
"""

import warnings

import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat.targets import linear_regression

GAMMA = 1.0


def _gaussian_oracles(target, nbeta, step_size):
    """(E[λ̂] exact, E_h[λ̂] of the discretised chain, E_h of the first-order bias estimate)."""
    lam = np.clip(np.asarray(target.info["hessian_eigenvalues"], np.float64), 0, None)
    a = nbeta * lam + GAMMA
    x = 0.5 * step_size * a / 2  # h·a/2 with h = ε/2
    exact = float(np.sum(0.5 * nbeta * lam / a))
    discrete = float(np.sum(0.5 * nbeta * lam / (a * (1 - x))))
    estimate = float(np.sum((0.5 * step_size) * nbeta * lam * (0.5 / (1 - x) - 0.25 / (1 - x) ** 2)))
    return exact, discrete, estimate


@pytest.fixture(scope="module")
def quadratic_runs():
    t = linear_regression(d=5, seed=1)
    nbeta = 1000 / np.log(1000)
    a_max = nbeta * float(np.max(t.info["hessian_eigenvalues"])) + GAMMA
    step = 0.4 / a_max  # h·a_max = 0.2: a first-order bias of about 5%, well resolved
    kw = dict(kernel="sgld", step_size=step, num_chains=16, num_draws=40000, num_warmup=2000, gamma=GAMMA, key=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)  # the virial check rightly fails at this step
        corrected = lh.sample(t.loss_fn, t.params, t.data, **kw)
        raw = lh.sample(t.loss_fn, t.params, t.data, step_size_correction=False, **kw)
    return t, step, corrected, raw


def test_sgld_bias_estimate_matches_the_exact_discrete_chain(quadratic_runs):
    t, step, corrected, raw = quadratic_runs
    exact, discrete, estimate = _gaussian_oracles(t, corrected.nbeta, step)
    bias = corrected.diagnostics["step_size_bias"]
    assert bias["applied"] and not raw.diagnostics["step_size_bias"]["applied"]
    # the same draws (same key): the raw run's λ̂ is the corrected run's uncorrected λ̂
    assert np.isclose(raw.llc, bias["llc_uncorrected"], rtol=1e-6)
    # the uncorrected λ̂ is the discrete chain's E_h[λ̂], which is resolved above the exact value
    assert abs(raw.llc - discrete) <= 3 * raw.llc_se, (raw.llc, discrete, raw.llc_se)
    assert discrete - exact > 4 * raw.llc_se
    # the estimate is its closed-form expectation under the discrete chain
    assert abs(bias["estimate"] - estimate) <= 3 * bias["se"] + 1e-3 * estimate, (bias, estimate)
    assert bias["relative"] > 0
    # and the corrected λ̂ is E_h[λ̂] − E_h[estimate], whose distance to the exact λ̂ is O(h²)
    assert abs(corrected.llc - (discrete - estimate)) <= 3 * corrected.llc_se
    assert abs(discrete - estimate - exact) < 0.25 * (discrete - exact)  # second order: (ha/2)² terms
    assert abs(corrected.llc - exact) < abs(raw.llc - exact)


def test_uncorrected_run_warns_when_the_bias_shows_in_the_error_bar():
    t = linear_regression(d=5, seed=1)
    nbeta = 1000 / np.log(1000)
    a_max = nbeta * float(np.max(t.info["hessian_eigenvalues"])) + GAMMA
    kw = dict(kernel="sgld", step_size=0.2 / a_max, num_chains=4, num_draws=20000, num_warmup=2000, gamma=GAMMA)
    with pytest.warns(lh.LLCWarning, match=r"step size biases λ̂ by an estimated \+.*step_size_correction=True"):
        lh.sample(t.loss_fn, t.params, t.data, step_size_correction=False, **kw)


def test_large_corrections_warn_and_small_ones_do_not():
    t = linear_regression(d=5, seed=1)
    nbeta = 1000 / np.log(1000)
    a_max = nbeta * float(np.max(t.info["hessian_eigenvalues"])) + GAMMA
    kw = dict(kernel="sgld", num_chains=4, num_draws=4000, num_warmup=1000, gamma=GAMMA)
    with pytest.warns(lh.LLCWarning, match=r"corrected to first order in step_size.*reduce step_size"):
        big = lh.sample(t.loss_fn, t.params, t.data, step_size=0.8 / a_max, **kw)
    assert big.diagnostics["step_size_bias"]["relative"] > 0.05
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lh.LLCWarning)
        small = lh.sample(t.loss_fn, t.params, t.data, step_size=0.02 / a_max, **kw)
    assert not [w for w in caught if "step size biases" in str(w.message)]
    assert 0 < small.diagnostics["step_size_bias"]["relative"] < 0.05


def _adam_discrete_llc(target, nbeta, step_size, precond, beta1):
    """E_h[λ̂] of full-batch Adam-SGLD with a constant scalar P on a Gaussian posterior: the exact
    stationary covariance of the linear chain s_t = (w_t, m_{t−1}), m_t = β1·m_{t−1} + (1 − β1)·Kw_t,
    w_{t+1} = w_t − hP(m_t + γw_t) + √(2hP)ξ (h = ε/2, K = nβ·Hessian; m̂ = m once β1ᵗ ≈ 0), from
    the discrete Lyapunov equation."""
    from scipy.linalg import solve_discrete_lyapunov

    lam = np.clip(np.asarray(target.info["hessian_eigenvalues"], np.float64), 0, None)
    k, d, h = nbeta * lam, len(lam), 0.5 * step_size
    eye = np.eye(d)
    kmat = np.diag(k)  # the chain is rotation invariant: work in the Hessian's eigenbasis
    transition = np.block(
        [
            [eye - h * precond * ((1 - beta1) * kmat + GAMMA * eye), -h * precond * beta1 * eye],
            [(1 - beta1) * kmat, beta1 * eye],
        ]
    )
    noise = np.zeros((2 * d, d))
    noise[:d] = np.sqrt(2 * h * precond) * eye
    cov = solve_discrete_lyapunov(transition, noise @ noise.T)[:d, :d]
    return float(0.5 * np.trace(kmat @ cov))


def test_adam_sgld_lag_bias_is_its_factor_times_sglds_and_is_removed():
    # P = 1/(√v + eps) ≈ 1/eps (eps ≫ √v ≈ 30): a constant, known preconditioner, so the discrete
    # chain's E_h[λ̂] is exact (_adam_discrete_llc). With beta1 = 0.9 the lag multiplies the
    # first-order bias by (1 + beta1)/(1 − beta1) = 19 (lambda_hat.kernels.adam_sgld)
    t = linear_regression(d=5, seed=1)
    nbeta = 1000 / np.log(1000)
    eps, beta1 = 1e4, 0.9
    a_max = nbeta * float(np.max(t.info["hessian_eigenvalues"])) + GAMMA
    step = 0.03 * eps / a_max  # h·P·a_max = 0.015: a first-order bias of +6.8% of λ̂
    kw = dict(kernel="adam_sgld", step_size=step, eps=eps, beta1=beta1, num_chains=32, num_draws=40000)
    kw.update(num_warmup=4000, gamma=GAMMA, key=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)  # the virial check rightly fails at this step
        corrected = lh.sample(t.loss_fn, t.params, t.data, **kw)
        raw = lh.sample(t.loss_fn, t.params, t.data, step_size_correction=False, **kw)
    precond = corrected.diagnostics["precond_max"]
    assert np.all(precond / corrected.diagnostics["precond_min"] < 1.01)  # P is 1/eps to 1%
    exact = _gaussian_oracles(t, corrected.nbeta, step)[0]
    discrete = _adam_discrete_llc(t, corrected.nbeta, step, float(np.mean(precond)), beta1)
    bias = corrected.diagnostics["step_size_bias"]
    assert bias["applied"] and not raw.diagnostics["step_size_bias"]["applied"]
    assert np.isclose(raw.llc, bias["llc_uncorrected"], rtol=1e-6)
    # the dynamics: the uncorrected λ̂ is the discrete chain's, resolved above the exact value
    assert abs(raw.llc - discrete) <= 3 * raw.llc_se, (raw.llc, discrete, raw.llc_se)
    assert discrete - exact > 6 * raw.llc_se
    # the estimate is the lag-scaled first-order bias: it accounts for the discrete chain's
    # bias to within its own error and a quarter (second order); SGLD's unscaled estimate,
    # 1/19 of it, would not
    assert abs(bias["estimate"] - (discrete - exact)) <= 3 * bias["se"] + 0.25 * (discrete - exact), (bias, discrete)
    assert abs(corrected.llc - exact) <= 3 * corrected.llc_se + 0.25 * (discrete - exact)
    assert abs(corrected.llc - exact) < 0.5 * abs(raw.llc - exact)


def test_preconditioned_kernels_estimate_it_and_minibatch_or_thawed_runs_do_not():
    t = linear_regression(d=5, seed=1)
    kw = dict(num_chains=2, num_draws=500, num_warmup=200, gamma=GAMMA)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)
        rms = lh.sample(t.loss_fn, t.params, t.data, kernel="rmsprop_sgld", step_size=1e-3, **kw)
        adam = lh.sample(t.loss_fn, t.params, t.data, kernel="adam_sgld", step_size=1e-4, **kw)
        mini = lh.sample(t.loss_fn, t.params, t.data, kernel="sgld", batch_size=100, step_size=1e-4, **kw)
        mini_adam = lh.sample(t.loss_fn, t.params, t.data, kernel="adam_sgld", batch_size=100, step_size=1e-4, **kw)
        thawed = lh.sample(t.loss_fn, t.params, t.data, kernel="rmsprop_sgld", step_size=1e-3, freeze=False, **kw)
    for r in (rms, adam):
        bias = r.diagnostics["step_size_bias"]
        assert bias["applied"] and np.isfinite(bias["estimate"]) and bias["estimate"] > 0
        assert np.isclose(r.llc, bias["llc_uncorrected"] - bias["estimate"], rtol=1e-6)
    for r in (mini, mini_adam, thawed):  # minibatch noise, a moving preconditioner
        assert "step_size_bias" not in r.diagnostics


@pytest.mark.parametrize("kernel", ["sgld", "rmsprop_sgld", "adam_sgld"])
def test_step_size_correction_must_be_a_bool(kernel):
    t = linear_regression(d=2, seed=0)
    with pytest.raises(TypeError, match="step_size_correction: expected True or False"):
        lh.sample(t.loss_fn, t.params, t.data, kernel=kernel, step_size_correction="yes", num_draws=10)
