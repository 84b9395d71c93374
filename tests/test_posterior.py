"""LocalPosterior: log-density, chunked full loss, dtype casting, nβ resolution."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lambda_hat import LocalPosterior
from lambda_hat.flat import float_dtype, ravel
from lambda_hat.posterior import default_nbeta, resolve_nbeta
from lambda_hat.targets import linear_regression


def test_logdensity_matches_definition():
    t = linear_regression(d=4, n=50, seed=0)
    post = LocalPosterior(t.loss_fn, t.params, t.data, nbeta=10.0, gamma=2.0)
    w = post.w_star + 0.1
    expected = -10.0 * (t.loss_fn(w, t.data) - t.loss_fn(t.params, t.data)) - 0.5 * 2.0 * jnp.sum(
        (w - post.w_star) ** 2
    )
    tol = 1e-10 if jax.config.jax_enable_x64 else 1e-4
    np.testing.assert_allclose(post.logdensity(w), expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("chunk", [7, 10, 64])
def test_chunked_full_loss_equals_one_pass(chunk):
    t = linear_regression(d=3, n=50, seed=1)
    ref = LocalPosterior(t.loss_fn, t.params, t.data)
    chunked = LocalPosterior(t.loss_fn, t.params, t.data, chunk_size=chunk)
    w = ref.w_star + 0.3
    tol = 1e-12 if jax.config.jax_enable_x64 else 1e-5
    np.testing.assert_allclose(chunked.full_loss(w), ref.full_loss(w), rtol=tol)
    np.testing.assert_allclose(jax.grad(chunked.full_loss)(w), jax.grad(ref.full_loss)(w), rtol=tol * 10, atol=tol)


def test_default_nbeta_is_n_over_log_n_and_beta_option():
    t = linear_regression(d=2, n=100, seed=0)
    assert math.isclose(float(LocalPosterior(t.loss_fn, t.params, t.data).nbeta), 100 / math.log(100), rel_tol=1e-6)
    assert math.isclose(float(LocalPosterior(t.loss_fn, t.params, t.data, beta=0.5).nbeta), 50.0, rel_tol=1e-6)


def test_params_and_data_cast_to_run_dtype():
    dtype = float_dtype()
    params = {"w": np.ones((2, 3), np.float32), "b": np.zeros(3, np.float64)}
    data = (np.ones((10, 2), np.float32), np.arange(10))  # int labels stay int

    def loss(p, batch):
        x, idx = batch
        return jnp.mean((x @ p["w"] + p["b"]) ** 2) + 0.0 * jnp.mean(idx)

    post = LocalPosterior(loss, params, data)
    assert post.w_star.dtype == dtype and post.dim == 9
    assert post.data[0].dtype == dtype and jnp.issubdtype(post.data[1].dtype, jnp.integer)
    chex.assert_trees_all_equal_dtypes(
        post.unravel(post.w_star), {"w": jnp.zeros((), dtype), "b": jnp.zeros((), dtype)}
    )


def test_ravel_roundtrip_preserves_structure():
    params = {"a": jnp.arange(6.0).reshape(2, 3), "b": [jnp.ones(2), jnp.zeros((1, 1))]}
    flat, spec = ravel(params)
    chex.assert_shape(flat, (9,))
    back = spec.unravel(flat)
    chex.assert_trees_all_close(back, jax.tree.map(lambda x: x.astype(flat.dtype), params))
    assert hash(spec) == hash(ravel(params)[1])


def test_replace_changes_only_the_temperature_and_localization():
    t = linear_regression(d=3, n=50, seed=2)
    post = LocalPosterior(t.loss_fn, t.params, t.data, nbeta=10.0, gamma=2.0)
    hot = post.replace(nbeta=jnp.asarray(5.0, post.dtype), gamma=jnp.asarray(1.0, post.dtype))
    w = post.w_star + 0.2
    expected = -5.0 * (post.full_loss(w) - post.loss_at_wstar) - 0.5 * jnp.sum((w - post.w_star) ** 2)
    np.testing.assert_allclose(hot.logdensity(w), expected, rtol=1e-5)
    assert float(post.nbeta) == 10.0  # the original is unchanged
    # new data would change n and L_n(w*), which were computed at construction
    other = linear_regression(d=3, n=80, seed=3)
    with pytest.raises(ValueError, match="data: not a replaceable leaf of LocalPosterior .*construct a new"):
        post.replace(data=other.data)


def test_default_nbeta_function_is_what_resolve_nbeta_uses():
    assert default_nbeta(1000) == 1000 / math.log(1000)
    with pytest.raises(ValueError, match="n: expected an integer >= 2"):
        default_nbeta(1)  # log 1 = 0: no default temperature
    assert resolve_nbeta(1000, None, None) == default_nbeta(1000)
    assert resolve_nbeta(1000, 0.5, None) == 500.0
