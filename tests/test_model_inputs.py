"""flax linen params, flax nnx modules/state and equinox-style pytrees all work in sample(),
and give the exact λ on a linear model (a Dense layer without bias is linear regression)."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close_to_exact
from flax import linen, nnx

import lambda_hat as lh
from lambda_hat.targets import linear_regression

KW = dict(kernel="sgld", key=3, num_chains=4, num_draws=4000, num_warmup=1000, step_size=1e-4)


@pytest.fixture(scope="module")
def target():
    return linear_regression(d=4, seed=7)


def test_linen_params(target):
    model = linen.Dense(1, use_bias=False)
    x, y = target.data
    params = {"params": {"kernel": jnp.asarray(target.params, jnp.float32)[:, None]}}  # f32 even under x64

    def loss_fn(p, batch):
        xb, yb = batch
        return 0.5 * jnp.mean((yb - model.apply(p, xb)[:, 0]) ** 2)

    r = lh.sample(loss_fn, params, target.data, **KW)
    ref = lh.sample(target.loss_fn, target.params, target.data, **KW)
    assert r.config["dtype"] == str(jnp.result_type(float))
    assert_close_to_exact(r, target.expected_llc(r.nbeta, r.gamma), rel=0.05)
    # in x32 the f32 cast is a no-op, so the chains are the same as the flat-array run
    if not jax.config.jax_enable_x64:
        np.testing.assert_allclose(r.llc, ref.llc, rtol=1e-3)


def test_nnx_module_and_state(target):
    class Linear(nnx.Module):
        def __init__(self, w):
            self.w = nnx.Param(jnp.asarray(w, jnp.float32))

        def __call__(self, x):
            return x @ self.w[...]

    module = Linear(target.params)

    def loss_module(m, batch):
        xb, yb = batch
        return 0.5 * jnp.mean((yb - m(xb)) ** 2)

    r = lh.sample(loss_module, module, target.data, **KW)
    assert_close_to_exact(r, target.expected_llc(r.nbeta, r.gamma), rel=0.05)
    again = lh.sample(loss_module, module, target.data, **KW)
    assert again.timings["compile_s"] == 0.0  # the nnx adapter is cache friendly

    graphdef, state = nnx.split(module)

    def loss_state(s, batch):
        return loss_module(nnx.merge(graphdef, s), batch)

    r2 = lh.sample(loss_state, state, target.data, **KW)
    assert_close_to_exact(r2, target.expected_llc(r2.nbeta, r2.gamma), rel=0.05)


def test_equinox_style_pytree(target):
    """A nested tuple/dict pytree whose leaves are split pieces of w."""
    w = jnp.asarray(target.params)
    params = ({"a": w[:2]}, [w[2:3], w[3:]])

    def loss_fn(p, batch):
        xb, yb = batch
        full = jnp.concatenate([p[0]["a"], p[1][0], p[1][1]])
        return 0.5 * jnp.mean((yb - xb @ full) ** 2)

    r = lh.sample(loss_fn, params, target.data, **KW)
    assert_close_to_exact(r, target.expected_llc(r.nbeta, r.gamma), rel=0.05)


def test_warns_when_wstar_is_not_stationary(target):
    shifted = target.params + 0.05
    with pytest.warns(lh.LLCWarning, match="not near-stationary"):
        r = lh.sample(target.loss_fn, shifted, target.data, **{**KW, "num_draws": 500})
    assert r.diagnostics["stationarity_shift"] < 0
    assert r.diagnostics["grad_norm_at_wstar"] > 1e-2
    # warn_stationarity=False: the same run without that warning; the shift is still reported
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", lh.LLCWarning)
        quiet = lh.sample(target.loss_fn, shifted, target.data, warn_stationarity=False, **{**KW, "num_draws": 500})
    assert not any("near-stationary" in str(w.message) for w in caught)
    assert quiet.diagnostics["stationarity_shift"] == r.diagnostics["stationarity_shift"]
    with pytest.raises(ValueError, match="warn_stationarity: expected True or False"):
        lh.sample(target.loss_fn, shifted, target.data, warn_stationarity="no")


def test_warns_when_draws_fall_below_wstar_and_llc_negative():
    # w* = 0 on L(w) = -w² + w⁴ is a local maximum: the chains fall into the wells
    def loss_fn(w, batch):
        return jnp.sum(-(w**2) + w**4)

    data = jnp.zeros((100, 1))
    with pytest.warns(lh.LLCWarning) as record:
        r = lh.sample(loss_fn, jnp.zeros(2), data, step_size=1e-3, num_draws=500, num_warmup=100)
    text = " ".join(str(w.message) for w in record)
    assert r.llc < 0
    assert "not a local minimum" in text and "< 0" in text
