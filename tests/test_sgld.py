"""SGLD against the exact finite-n oracle on quadratic targets.

On a quadratic, full-batch SGLD is a discretised Ornstein–Uhlenbeck process whose stationary
variance along an eigendirection with curvature κ = nβa + γ is 1/(κ(1 − hκ/2)), h = ε/2. So its
expected λ̂ is also exact: ½ Σ nβ a / (κ (1 − hκ/2)). The tests use step sizes whose relative
step-size bias is below 1.5%, so the acceptance tolerance max(5%, 3·MCSE) is not spent on bias,
and a calibration test checks that the reported MCSE is honest against the discrete oracle.
"""

import jax
import numpy as np
import pytest
from conftest import assert_close_to_exact

import lambda_hat as lh
from lambda_hat.targets import linear_regression, pure_potential


def sgld_expected_llc(eigs, nbeta, gamma, step_size):
    """Exact E[λ̂] of full-batch SGLD on a quadratic with g = 0 (discretisation bias included)."""
    a = np.clip(np.asarray(eigs), 0, None)
    kappa = nbeta * a + gamma
    h = step_size / 2
    return float(np.sum(0.5 * nbeta * a / (kappa * (1 - h * kappa / 2))))


TARGETS = {
    "full_rank": lambda: linear_regression(d=5, seed=1),
    "rank_deficient": lambda: linear_regression(d=6, rank=3, seed=2),
    "pure_potential": lambda: pure_potential(d=8, seed=3),
}


@pytest.mark.parametrize("name", sorted(TARGETS))
@pytest.mark.parametrize("batch_size", [None, 100])
def test_sgld_matches_exact_quadratic(name, batch_size):
    target = TARGETS[name]()
    step = 1e-4
    result = lh.sample(
        target.loss_fn,
        target.params,
        target.data,
        kernel="sgld",
        key=11,
        num_chains=4,
        num_draws=4000,
        num_warmup=1000,
        step_size=step,
        batch_size=batch_size,
    )
    exact = target.expected_llc(result.nbeta, result.gamma)
    discrete = sgld_expected_llc(target.info["hessian_eigenvalues"], result.nbeta, result.gamma, step)
    assert abs(discrete - exact) / exact < 0.015  # the step is small enough: bias < 1.5%
    assert_close_to_exact(result, exact, rel=0.05)
    assert result.diagnostics["rhat"] < 1.05


def test_sgld_mcse_is_honest():
    """Over 24 independent runs, z = (λ̂ − E_sgld)/MCSE has mean square ≈ 1 (chi-square bound)."""
    target = linear_regression(d=4, seed=5)
    step = 4e-4
    z = []
    for seed in range(24):
        r = lh.sample(
            target.loss_fn,
            target.params,
            target.data,
            key=seed,
            num_chains=4,
            num_draws=1000,
            num_warmup=1000,
            step_size=step,
        )
        exact = sgld_expected_llc(target.info["hessian_eigenvalues"], r.nbeta, r.gamma, step)
        z.append((r.llc - exact) / r.llc_se)
    z = np.asarray(z)
    # chi2(24)/24 lies in [0.4, 2.1] with probability > 0.998; a MCSE off by 2x fails this
    assert 0.4 < np.mean(z**2) < 2.1, z


def test_same_key_same_result_different_key_different_chains():
    target = linear_regression(d=3, seed=0)
    kw = dict(num_chains=3, num_draws=200, num_warmup=10, step_size=1e-4, batch_size=50)
    a = lh.sample(target.loss_fn, target.params, target.data, key=7, **kw)
    b = lh.sample(target.loss_fn, target.params, target.data, key=jax.random.key(7), **kw)
    c = lh.sample(target.loss_fn, target.params, target.data, key=8, **kw)
    np.testing.assert_array_equal(a.loss_trace, b.loss_trace)
    assert a.llc == b.llc and a.llc_se == b.llc_se
    assert not np.array_equal(a.loss_trace, c.loss_trace)
    # chains within a run differ from each other
    assert not np.array_equal(a.loss_trace[0], a.loss_trace[1])
    # adding chains keeps the existing chains' draws
    d = lh.sample(target.loss_fn, target.params, target.data, key=7, **{**kw, "num_chains": 5})
    np.testing.assert_array_equal(d.loss_trace[:3], a.loss_trace)


def test_compiled_program_is_reused():
    target = linear_regression(d=3, seed=0)
    kw = dict(num_chains=2, num_draws=50, num_warmup=0, step_size=1e-4)
    lh.sample(target.loss_fn, target.params, target.data, key=1, **kw)
    again = lh.sample(target.loss_fn, target.params, target.data, key=2, **kw)
    assert again.timings["compile_s"] == 0.0


def test_clear_cache_releases_the_compiled_programs():
    t = linear_regression(d=3, n=50, seed=0)
    kw = dict(kernel="sgld", step_size=1e-3, num_chains=2, num_draws=20, num_warmup=10)
    first = lh.sample(t.loss_fn, t.params, t.data, key=0, **kw)
    again = lh.sample(t.loss_fn, t.params, t.data, key=1, **kw)
    assert first.timings["compile_s"] > 0 and again.timings["compile_s"] == 0.0  # reused
    assert lh.clear_cache() >= 1
    assert lh.clear_cache() == 0  # nothing left
    after = lh.sample(t.loss_fn, t.params, t.data, key=0, **kw)
    assert after.timings["compile_s"] > 0  # compiled again, to the same program
    np.testing.assert_array_equal(after.llc_trace, first.llc_trace)
