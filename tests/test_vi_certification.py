"""VI certifies itself: virial ratios of the fitted q, PSIS importance weights (k̂) against the
localized posterior, and a clear error where no fit can be certified (γ = 0)."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lambda_hat as lh
from lambda_hat.diagnostics import IS_SHIFT_MAX, importance_shift_message, importance_statistics
from lambda_hat.kernels.vi import certify, coordinate_virial
from lambda_hat.posterior import LocalPosterior
from lambda_hat.targets import linear_regression, pure_potential
from lambda_hat.vi import mfa


def _diagonal_gaussian_problem():
    """A diagonal quadratic: p is N(0, diag(1/(nβ a_i + γ))), inside the MFA family."""
    t = pure_potential(d=6, rotate=False, seed=4)
    post = LocalPosterior(t.loss_fn, t.params, t.data)
    hess = jax.hessian(post.full_loss)(post.w_star)
    a = np.diag(np.asarray(hess, np.float64))
    sd = 1.0 / np.sqrt(float(post.nbeta) * a + float(post.gamma))
    return t, post, sd


def _state_with_scales(post, sd):
    return mfa.init(
        post.dim,
        optax.adam(1e-3),
        num_components=1,
        rank=1,
        rng_key=jax.random.key(0),
        init_scale=jnp.asarray(sd, post.dtype),
        init_loading_scale=0.0,
    )


def test_q_equal_to_p_gives_small_khat_unit_virial_and_the_exact_llc():
    t, post, sd = _diagonal_gaussian_problem()
    cert = certify(jax.random.key(1), post, _state_with_scales(post, sd), 4000)
    # q = p: log w is constant up to rounding, so the smoothed weights are uniform
    assert float(cert.pareto_k) < 0.5
    np.testing.assert_allclose(np.exp(np.asarray(cert.log_weights, np.float64)), 1 / 4000, rtol=1e-3)
    r, se = coordinate_virial(cert.draws, cert.grad_potential)
    assert np.all(np.abs(np.asarray(r) - 1) <= 4 * np.asarray(se)), (r, se)
    llc = float(post.nbeta) * np.asarray(cert.excess, np.float64)[None]
    stats = importance_statistics(llc, np.asarray(cert.log_weights)[None])
    exact = t.expected_llc(float(post.nbeta), float(post.gamma))
    assert abs(stats["llc"] - exact) <= 3 * stats["llc_se"], (stats["llc"], stats["llc_se"], exact)


def test_q_too_narrow_gives_large_khat_and_virial_below_one():
    _, post, sd = _diagonal_gaussian_problem()
    cert = certify(jax.random.key(2), post, _state_with_scales(post, 0.5 * sd), 4000)
    # p/q ∝ exp(3‖x‖²/8) in q's standard coordinates: infinite-variance weights
    assert float(cert.pareto_k) >= 0.7
    r, _ = coordinate_virial(cert.draws, cert.grad_potential)
    np.testing.assert_allclose(r, 0.25, rtol=0.1)  # E_q[v ∂U] = (σ_q/σ_p)² on a Gaussian


def test_rank_too_small_for_the_flat_directions_warns_with_khat():
    """Rotated rank-5 design in d = 12: 7 flat directions, but rank 1: q is too narrow."""
    t = linear_regression(d=12, rank=5, seed=0)
    with pytest.warns(lh.LLCWarning, match=r"Pareto k̂ of the importance weights is .* misses posterior mass"):
        r = lh.sample(
            t.loss_fn, t.params, t.data, kernel="vi", key=0, num_chains=2, rank=1, num_components=1, num_draws=500
        )
    assert r.diagnostics["llc_source"] == "raw"
    assert np.max(r.diagnostics["pareto_k"]) >= 0.7
    assert r.llc > t.expected_llc(r.nbeta, r.gamma)  # under-dispersed q: λ̂ too high, and flagged


def test_gamma_zero_is_rejected():
    t = linear_regression(d=3, seed=0)
    with pytest.raises(ValueError, match=r"gamma: kernel 'vi' needs gamma > 0, got 0.0"):
        lh.sample(t.loss_fn, t.params, t.data, kernel="vi", gamma=0.0)


def test_importance_shift_warns_when_the_weights_move_llc_far_from_q():
    """A weighted λ̂ more than IS_SHIFT_MAX (and 3 raw se) from q's raw mean is not vouched for.

    Measured on the rotated rank-deficient quadratic (d = 10, rank 4, VI rank 8): fits with every
    k̂ < 0.7 read −6% to −9% after weighting from a raw −20%, with no warning before this check."""
    assert importance_shift_message(1.62, 0.01, 1.84, "vi") is not None  # +13.6%: warns
    message = importance_shift_message(1.62, 0.01, 1.84, "vi")
    assert "1.62" in message and "1.84" in message and "rank" in message and "nuts" in message
    assert importance_shift_message(2.00, 0.01, 2.00 * (1 + 0.8 * IS_SHIFT_MAX), "vi") is None  # small shift
    assert importance_shift_message(2.00, 0.2, 2.3, "vi") is None  # within 3 raw se: noise, not a shift
    assert importance_shift_message(2.3, 0.01, 2.00, "vi") is not None  # either direction
    assert "(by -0.5)" in importance_shift_message(0.5, 0.01, 0.0, "vi")  # a weighted λ̂ of exactly 0
