"""Numerical faults during sampling: a loss that is NaN in part of w-space.

The losses below add ``0·log(t − w[0])``: exactly the clean loss for w[0] < t and NaN beyond, the
way a log of a negative number (a variance parameter gone negative, say) poisons a real loss.
The threshold t travels in the data, so the clean and the faulty runs share one compiled program.

What must happen:
- SGLD / RMSProp-SGLD: a chain that steps into the NaN region stays NaN; it is flagged
  (``valid_chains``) and excluded, the other chains give λ̂, and the LLCWarning names the chains
  and the draw where each went non-finite. (If every chain is lost, FloatingPointError.)
- HMC / NUTS: a proposal with a NaN energy is a divergence and is rejected, so chains never enter
  the region; λ̂ is that of the posterior restricted to where the loss is defined, and the
  divergence warning says the loss may be NaN/Inf there. (MCLMC flags chains whose steps hit a NaN:
  tests/test_full_batch_kernels.py.)
- VI: an optimisation step with a non-finite ELBO estimate or gradient is rejected and counted
  (``diagnostics["rejected_steps"]``); a fit whose evaluation draws hit the NaN region is flagged.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat.api import LLCWarning

DTYPE = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
N = 100
_rng = np.random.default_rng(0)
X = jnp.asarray(_rng.normal(size=(N, 2)), DTYPE)
Y = jnp.asarray(np.asarray(X, np.float64) @ np.array([1.0, -0.5]) + 0.3 * _rng.normal(size=N), DTYPE)
W_STAR = jnp.asarray(np.linalg.lstsq(np.asarray(X, np.float64), np.asarray(Y, np.float64), rcond=None)[0], DTYPE)
SIGMA = 1 / np.sqrt(N / np.log(N) + 1)  # posterior scale along w[0] (H ≈ I, nβ = n/log n, γ = 1)


def regression_loss(w, batch):
    residual = batch["y"] - batch["x"] @ w
    return 0.5 * jnp.mean(residual**2) + 0.0 * jnp.log(batch["t"][0] - w[0])


def regression_data(t):
    return {"x": X, "y": Y, "t": jnp.full((N,), t, DTYPE)}


@pytest.mark.parametrize("kernel", ["sgld", "rmsprop_sgld"])
def test_sg_chains_entering_a_nan_region_are_flagged_and_the_rest_used(kernel):
    kw = dict(kernel=kernel, key=0, num_chains=16, num_draws=500, num_warmup=100, step_size=0.01)
    clean = lh.sample(regression_loss, W_STAR, regression_data(1e6), **kw)
    assert clean.valid_chains.all() and np.isfinite(clean.llc)

    # t = w*[0] + 2.75σ: 1–12 of 16 chains cross within 600 steps (measured over 6 keys, both
    # precisions, for both kernels)
    with pytest.warns(LLCWarning, match=r"excluded from λ̂ .*first non-finite loss at draw \d+.*log of a negative"):
        result = lh.sample(regression_loss, W_STAR, regression_data(float(W_STAR[0]) + 2.75 * SIGMA), **kw)
    valid = result.valid_chains
    assert 0 < valid.sum() < len(valid), valid
    assert np.isnan(result.llc_trace[~valid]).any(axis=1).all()  # exactly the chains that went NaN
    assert np.isfinite(result.llc_trace[valid]).all()
    assert np.isnan(result.llc_per_chain[~valid]).all()
    assert np.isfinite(result.llc) and np.isfinite(result.llc_se)
    np.testing.assert_allclose(result.llc, np.mean(result.llc_per_chain[valid]), rtol=1e-6)
    assert any("excluded" in w for w in result.warnings)

    # a threshold every chain crosses: just above w*, where the chains start (at +0.2σ one chain of
    # 16 stayed below it for all 600 steps: its w[0] peaked at +0.15σ, a run-to-run chance)
    with pytest.raises(FloatingPointError, match="every chain"):
        lh.sample(regression_loss, W_STAR, regression_data(float(W_STAR[0]) + 0.01 * SIGMA), **kw)


@pytest.mark.parametrize("kernel", ["hmc", "nuts"])
def test_hmc_rejects_proposals_into_a_nan_region(kernel):
    kw = dict(kernel=kernel, key=0, num_chains=4, num_draws=300, num_warmup=100)
    with pytest.warns(LLCWarning, match=r"divergent transitions .*NaN/Inf where trajectories went"):
        result = lh.sample(regression_loss, W_STAR, regression_data(float(W_STAR[0]) + SIGMA), **kw)
    assert result.valid_chains.all()
    assert np.isfinite(result.llc_trace).all() and np.isfinite(result.llc)
    assert result.diagnostics["divergences"].sum() > 0
    # every draw stays where the loss is defined (w[0] < t), so the loss trace is finite throughout
    assert np.isfinite(result.loss_trace).all()


# -- VI: quartic along w[0] (no curvature at w* = 0, so q starts wide there and its early draws
#    cross t often), quadratic along the other three coordinates. -----------------------------
A = np.array([1.0, 2.0, 3.0])


def quartic_loss(w, batch):
    return w[0] ** 4 + 0.5 * jnp.sum(jnp.asarray(A, w.dtype) * w[1:] ** 2) + 0.0 * jnp.log(batch["t"][0] - w[0])


def quartic_data(t):
    return {"t": jnp.full((1000,), t, DTYPE)}


def test_vi_rejects_nan_steps_and_flags_fits_whose_draws_are_nan():
    w0 = jnp.zeros(4, DTYPE)
    kw = dict(
        kernel="vi",
        key=0,
        num_chains=16,
        num_draws=200,
        num_warmup=1500,
        num_components=2,
        rank=1,
        control_variate=False,
    )
    clean = lh.sample(quartic_loss, w0, quartic_data(100.0), **kw)
    assert clean.valid_chains.all() and (clean.diagnostics["rejected_steps"] == 0).all()

    # t = 0.42: the fitted q's scale along w[0] is about 0.08–0.15, so t lies 3–5 scales out: the
    # virial pre-fit (which starts at scale 1, far beyond t) and the fit's steps see draws beyond t
    # (49–78 of 1500 steps rejected per fit, measured), and each fit puts one of its 200 evaluation
    # draws beyond t with probability about one half (9 of 16 fits flagged, measured in float32 on
    # jax 0.10 and 0.12). Which fits cross depends on rounding (it differs between CPUs), so the
    # test uses 16 fits: the chance that none or all of them cross is about 2·2^-16.
    with pytest.warns(LLCWarning, match=r"excluded from λ̂ .*first non-finite loss at draw"):
        result = lh.sample(quartic_loss, w0, quartic_data(0.42), **kw)
    rejected = result.diagnostics["rejected_steps"]
    assert (rejected > 0).all() and (rejected < 1500).all(), rejected
    valid = result.valid_chains
    assert 0 < valid.sum() < len(valid), valid
    assert np.isfinite(result.llc) and np.isfinite(result.llc_se)
    assert np.isfinite(result.diagnostics["final_elbo"]).all()  # averaged over accepted steps only
    # the NaN region lies several posterior scales out, so λ̂ agrees with the clean run's
    assert abs(result.llc - clean.llc) <= 4 * np.hypot(result.llc_se, clean.llc_se), (result.llc, clean.llc)

    with pytest.raises(FloatingPointError, match="every chain"):  # every fit's draws cross t = 0.3
        lh.sample(quartic_loss, w0, quartic_data(0.3), **kw)
