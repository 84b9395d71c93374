"""Mathematical checks of the MFA variational family and its gradient estimator.

Runs under JAX_ENABLE_X64=0 and =1; tolerances follow the dtype. Dense d x d objects
appear only here, as references.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.scipy.special import logsumexp
from jax.scipy.stats import multivariate_normal

from lambda_hat.vi import mfa

X64 = bool(jax.config.jax_enable_x64)
FLOAT = jnp.float64 if X64 else jnp.float32
EPS = float(jnp.finfo(FLOAT).eps)
requires_x64 = pytest.mark.skipif(not X64, reason="tight tolerance needs JAX_ENABLE_X64=1")


# ----------------------------------------------------------------------------- helpers


def _state(d, M, r, *, seed=0, scale=0.7, loading_scale=1.5, optimizer=None, dtype=None):
    """A state with non-trivial weights, unequal scales and O(1) loadings."""
    optimizer = optimizer or optax.adam(1e-2)
    st = mfa.init(
        d,
        optimizer,
        num_components=M,
        rank=r,
        rng_key=jax.random.PRNGKey(seed),
        init_scale=scale,
        init_loading_scale=loading_scale * np.sqrt(d),  # O(1) entries
        dtype=dtype,
    )
    dt = st.rho.dtype
    logits = jnp.linspace(-0.5, 0.6, M, dtype=dt) * jnp.where(jnp.arange(M) % 2 == 0, 1, -1)
    return st._replace(logits=logits.astype(dt), rho=st.rho + jnp.linspace(-0.5, 0.5, d, dtype=dt))


def _dense_covs(logits, rho, loadings, min_scale):
    s = jax.nn.softplus(rho) + min_scale
    K = s[None, :, None] * loadings
    return jnp.diag(s**2)[None] + K @ jnp.swapaxes(K, 1, 2)


def _dense_logq(params, min_scale, v):
    covs = _dense_covs(*params, min_scale)
    d = v.shape[-1]
    logn = jax.vmap(lambda S: multivariate_normal.logpdf(v, jnp.zeros(d, v.dtype), S))(covs)
    return logsumexp(jax.nn.log_softmax(params[0]) + logn)


def _params(st):
    return (st.logits, st.rho, st.loadings)


# ------------------------------------------------------------- 1. density vs dense MVN


@requires_x64
def test_logq_matches_dense_mixture_tight():
    d, M, r = 5, 3, 2
    st = _state(d, M, r)
    vs = 1.5 * jax.random.normal(jax.random.PRNGKey(1), (50, d), FLOAT)
    mine = jax.vmap(lambda v: mfa.logdensity(st, v))(vs)
    dense = jax.vmap(lambda v: _dense_logq(_params(st), st.min_scale, v))(vs)
    np.testing.assert_allclose(mine, dense, rtol=1e-10, atol=0)
    # component densities and responsibilities too
    covs = _dense_covs(*_params(st), st.min_scale)
    comp_dense = jax.vmap(
        lambda v: jax.vmap(lambda S: multivariate_normal.logpdf(v, jnp.zeros(d), S))(covs)
    )(vs)
    comp = jax.vmap(lambda v: mfa.component_logdensities(st, v))(vs)
    np.testing.assert_allclose(comp, comp_dense, rtol=1e-10)
    resp = jax.vmap(lambda v: mfa.responsibilities(st, v))(vs)
    resp_dense = jax.nn.softmax(jax.nn.log_softmax(st.logits) + comp_dense, axis=-1)
    np.testing.assert_allclose(resp, resp_dense, rtol=1e-10, atol=1e-14)
    # grad_v log q (the path the STL gradient uses) and grad wrt the parameters
    g = jax.vmap(jax.grad(lambda v: mfa.logdensity(st, v)))(vs)
    g_dense = jax.vmap(jax.grad(lambda v: _dense_logq(_params(st), st.min_scale, v)))(vs)
    np.testing.assert_allclose(g, g_dense, rtol=1e-9, atol=1e-12)


def test_logq_matches_dense_mixture_dtype_aware():
    d, M, r = 5, 3, 2
    st = _state(d, M, r)
    vs = jax.random.normal(jax.random.PRNGKey(2), (20, d), FLOAT)
    mine = jax.vmap(lambda v: mfa.logdensity(st, v))(vs)
    dense = jax.vmap(lambda v: _dense_logq(_params(st), st.min_scale, v))(vs)
    chex.assert_trees_all_close(mine, dense, rtol=1e3 * EPS, atol=1e3 * EPS)
    resp = jax.vmap(lambda v: mfa.responsibilities(st, v))(vs)
    chex.assert_trees_all_close(resp.sum(-1), jnp.ones(20, FLOAT), atol=1e2 * EPS)


# ---------------------------------------------------------------- 2. sampled moments


def _assert_moments(x, cov_true, nsig=5.0):
    n = x.shape[0]
    x = np.asarray(x, np.float64)
    mean = x.mean(0)
    se_mean = np.sqrt(np.diag(cov_true) / n)
    assert np.all(np.abs(mean) < nsig * se_mean), (mean, se_mean)
    prods = x[:, :, None] * x[:, None, :]  # E[v v^T] = Sigma (mean is 0)
    emp = prods.mean(0)
    se = prods.std(0) / np.sqrt(n)
    z = (emp - np.asarray(cov_true)) / se
    assert np.max(np.abs(z)) < nsig, np.max(np.abs(z))


def test_sample_moments_match_mixture_covariance():
    d, M, r = 5, 3, 2
    st = _state(d, M, r, seed=3)
    covs = _dense_covs(*_params(st), st.min_scale)
    pi = mfa.weights(st)
    cov_q = jnp.einsum("m,mij->ij", pi, covs)
    x = jax.jit(mfa.sample, static_argnums=2)(jax.random.PRNGKey(4), st, 200_000)
    chex.assert_shape(x, (200_000, d))
    chex.assert_type(x, FLOAT)
    _assert_moments(x, cov_q)
    # sanity of power: the covariance is far from the diagonal part alone
    assert np.max(np.abs(np.asarray(cov_q - jnp.diag(jnp.diag(cov_q))))) > 0.1
    # a single component
    xc = mfa.sample_component(jax.random.PRNGKey(5), st, 1, 100_000)
    _assert_moments(xc, covs[1])


# ---------------------------------------------------------- 3. gradient unbiasedness


def _gauss_hermite_elbo(params, min_scale, P, n_nodes=30):
    """Exact (to quadrature accuracy) ELBO of the MFA for log p~(v) = -1/2 v^T P v, d=3.

    ELBO = sum_m pi_m ( -1/2 tr(P Sigma_m) - E_{N_m}[log q] ), the cross-entropy by
    tensor Gauss-Hermite quadrature in the Cholesky coordinates of each component.
    """
    d = P.shape[0]
    x, w = np.polynomial.hermite.hermgauss(n_nodes)
    grid = np.stack(np.meshgrid(*([x] * d), indexing="ij"), -1).reshape(-1, d)
    wts = np.prod(np.stack(np.meshgrid(*([w] * d), indexing="ij"), -1).reshape(-1, d), -1)
    wts = jnp.asarray(wts / np.pi ** (d / 2), P.dtype)
    grid = jnp.asarray(np.sqrt(2.0) * grid, P.dtype)
    covs = _dense_covs(*params, min_scale)
    pi = jax.nn.softmax(params[0])
    total = 0.0
    for m in range(covs.shape[0]):
        L = jnp.linalg.cholesky(covs[m])
        nodes = grid @ L.T
        cross = jnp.sum(wts * jax.vmap(lambda v: _dense_logq(params, min_scale, v))(nodes))
        total = total + pi[m] * (-0.5 * jnp.trace(P @ covs[m]) - cross)
    return total


def _unbiasedness_setup():
    d, M, r = 3, 2, 1
    st = _state(d, M, r, seed=11, scale=0.6, loading_scale=0.7)
    st = st._replace(logits=jnp.asarray([0.4, -0.3], FLOAT))
    Q = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(5), (d, d), FLOAT))[0]
    P = Q @ jnp.diag(jnp.asarray([0.5, 2.0, 6.0], FLOAT)) @ Q.T
    return st, P


def test_gradient_estimator_unbiased_against_quadrature():
    st, P = _unbiasedness_setup()

    def logp(v):
        return -0.5 * v @ (P @ v)

    exact = jax.grad(_gauss_hermite_elbo)(_params(st), st.min_scale, P)
    N, S = 20_000, 2
    keys = jax.random.split(jax.random.PRNGKey(7), N)
    # an arbitrary constant baseline: the logits' score gradient is unbiased for any b
    est = jax.jit(jax.vmap(lambda k: mfa.elbo_grad_estimate(k, st, logp, S, baseline=-1.0)))
    grads, elbo_hat, _, _ = est(keys)
    for name, g, g_ex in zip(("logits", "rho", "loadings"), grads, exact):
        chex.assert_type(g, FLOAT)
        mean = np.asarray(g.mean(0), np.float64)
        se = np.asarray(g.std(0), np.float64) / np.sqrt(N)
        z = (mean - np.asarray(g_ex)) / se
        assert np.max(np.abs(z)) < 4.5, (name, mean, g_ex, z)
        # the test has power: the exact gradient is many standard errors away from 0
        assert np.linalg.norm(se) < 0.1 * np.linalg.norm(g_ex), (name, se, g_ex)
    # the ELBO estimate itself is unbiased
    elbo_ex = _gauss_hermite_elbo(_params(st), st.min_scale, P)
    assert abs(float(elbo_hat.mean() - elbo_ex)) < 4.5 * float(elbo_hat.std()) / np.sqrt(N)


@requires_x64
def test_quadrature_reference_converged():
    st, P = _unbiasedness_setup()
    g30 = jax.grad(_gauss_hermite_elbo)(_params(st), st.min_scale, P, 30)
    g22 = jax.grad(_gauss_hermite_elbo)(_params(st), st.min_scale, P, 22)
    chex.assert_trees_all_close(g30, g22, atol=1e-8)
    # single Gaussian: closed-form entropy 1/2 log det(2 pi e Sigma) checks the reference
    st1 = st._replace(logits=jnp.asarray([40.0, -40.0]))
    cov = _dense_covs(*_params(st1), st1.min_scale)[0]
    closed = -0.5 * jnp.trace(P @ cov) + 0.5 * jnp.linalg.slogdet(2 * jnp.pi * jnp.e * cov)[1]
    np.testing.assert_allclose(_gauss_hermite_elbo(_params(st1), st1.min_scale, P), closed, rtol=1e-9)


def test_step_ascends_the_elbo_gradient():
    """step hands -grad ELBO to optax, so plain SGD moves params by +lr * grad ELBO."""
    st, P = _unbiasedness_setup()
    lr = 0.05
    opt = optax.sgd(lr)
    st = st._replace(opt_state=opt.init(_params(st)))

    def logp(v):
        return -0.5 * v @ (P @ v)

    key = jax.random.PRNGKey(3)
    new, info = mfa.step(key, st, logp, opt, 3)
    grads, elbo_hat, _, _ = mfa.elbo_grad_estimate(key, st, logp, 3)  # first step: batch baseline
    for p_new, p_old, g in zip(_params(new), _params(st), grads):
        chex.assert_trees_all_close(p_new, p_old + lr * g, rtol=1e2 * EPS, atol=1e2 * EPS)
    chex.assert_trees_all_close(info.elbo, elbo_hat, rtol=1e2 * EPS)
    # the baseline moving average now holds the first estimate, bias-corrected
    chex.assert_trees_all_close(new.baseline / new.baseline_weight, elbo_hat, rtol=1e2 * EPS)


# ----------------------------------------------------------------- 4. optimisation


def _fit(logp, d, M, r, steps, init_scale, lr=3e-2, num_samples=4, seed=0):
    opt = optax.adam(optax.cosine_decay_schedule(lr, steps, alpha=0.01))
    st = mfa.init(
        d, opt, num_components=M, rank=r, rng_key=jax.random.PRNGKey(seed), init_scale=init_scale
    )

    @jax.jit
    def run(st, key):
        return jax.lax.scan(
            lambda s, k: mfa.step(k, s, logp, opt, num_samples), st, jax.random.split(key, steps)
        )

    return run(st, jax.random.PRNGKey(seed + 1))


def _mixture_cov(st):
    covs = _dense_covs(*_params(st), st.min_scale)
    return jnp.einsum("m,mij->ij", mfa.weights(st), covs)


def test_fit_diagonal_gaussian_recovers_covariance():
    d = 4
    prec = jnp.asarray([1.0, 4.0, 16.0, 100.0], FLOAT)

    def logp(v):
        return -0.5 * jnp.sum(prec * v * v)

    st, info = _fit(logp, d, M=2, r=1, steps=2000, init_scale=0.3)
    chex.assert_tree_all_finite((st.logits, st.rho, st.loadings, info))
    cov = _mixture_cov(st)
    np.testing.assert_allclose(jnp.diag(cov) * prec, 1.0, rtol=0.03)
    assert np.max(np.abs(np.asarray(cov - jnp.diag(jnp.diag(cov))))) < 0.01 * float(jnp.max(cov))
    first, last = float(info.elbo[:50].mean()), float(info.elbo[-50:].mean())
    assert last > first + 0.5
    # the maximal ELBO is log Z = d/2 log 2pi - 1/2 log det P (q = p is in the family)
    log_z = 0.5 * d * np.log(2 * np.pi) - 0.5 * float(jnp.sum(jnp.log(prec)))
    assert abs(last - log_z) < 0.01


@pytest.mark.parametrize("nbeta,gamma", [(1.0, 0.0), (1000.0, 1.0)])
def test_fit_rotated_gaussian_full_rank(nbeta, gamma):
    d = 8
    Q = jnp.linalg.qr(jax.random.normal(jax.random.PRNGKey(3), (d, d), FLOAT))[0]
    a = jnp.linspace(1.0, 3.0, d, dtype=FLOAT)
    H = Q @ jnp.diag(a) @ Q.T

    def logp(v):
        return -0.5 * nbeta * v @ (H @ v) - 0.5 * gamma * v @ v

    init_scale = 1.0 / np.sqrt(2.0 * nbeta + gamma)
    st, info = _fit(logp, d, M=1, r=d, steps=1500, init_scale=init_scale)
    chex.assert_tree_all_finite((st.logits, st.rho, st.loadings, info))
    target = jnp.linalg.inv(nbeta * H + gamma * jnp.eye(d, dtype=FLOAT))
    cov = _mixture_cov(st)
    assert float(jnp.linalg.norm(cov - target) / jnp.linalg.norm(target)) < 0.03
    assert float(info.elbo[-50:].mean()) > float(info.elbo[:50].mean())
    # LLC of the quadratic from E_q[1/2 v^T H v]: exact value 1/2 sum nb a/(nb a + gamma)
    eq = mfa.expected_quadratic(st, lambda u: H @ u, exact=True)
    llc_exact = 0.5 * float(jnp.sum(nbeta * a / (nbeta * a + gamma)))
    np.testing.assert_allclose(float(nbeta * eq.value), llc_exact, rtol=0.02)


# ------------------------------------------------------------ 5. expected quadratic


def _hessian(d, seed=8):
    B = jax.random.normal(jax.random.PRNGKey(seed), (d, d), FLOAT)
    return B @ B.T / d + jnp.diag(jnp.linspace(0.1, 2.0, d, dtype=FLOAT))


def test_expected_quadratic_exact_matches_dense():
    d, M, r = 6, 3, 2
    st = _state(d, M, r, seed=9)
    H = _hessian(d)
    covs = _dense_covs(*_params(st), st.min_scale)
    dense = 0.5 * jnp.sum(mfa.weights(st) * jnp.trace(H[None] @ covs, axis1=1, axis2=2))
    res = mfa.expected_quadratic(st, lambda u: H @ u, exact=True)
    tol = 1e-10 if X64 else 1e-5
    np.testing.assert_allclose(res.value, dense, rtol=tol)
    assert float(res.stderr) == 0.0
    res_b = jax.jit(
        lambda s: mfa.expected_quadratic(s, lambda u: H @ u, exact=True, batch_size=2)
    )(st)
    np.testing.assert_allclose(res_b.value, dense, rtol=tol)
    chex.assert_type(res.value, FLOAT)
    # dropping tr(H D) would be detected: it is a sizeable part
    s = mfa.scales(st)
    assert float(0.5 * jnp.sum(s**2 * jnp.diag(H))) > 0.05 * float(dense)


def test_expected_quadratic_hutchinson_within_stderr():
    d, M, r = 6, 2, 2
    st = _state(d, M, r, seed=10)
    H = _hessian(d, seed=12)
    covs = _dense_covs(*_params(st), st.min_scale)
    dense = float(0.5 * jnp.sum(mfa.weights(st) * jnp.trace(H[None] @ covs, axis1=1, axis2=2)))
    P = 4000
    res = mfa.expected_quadratic(st, lambda u: H @ u, jax.random.PRNGKey(0), num_probes=P)
    # theoretical Rademacher Hutchinson variance of z^T B z, B = S H S: 2 sum_{i != j} B_ij^2
    s = mfa.scales(st)
    B = s[:, None] * H * s[None, :]
    se_theory = 0.5 * float(jnp.sqrt(2 * (jnp.sum(B**2) - jnp.sum(jnp.diag(B) ** 2)) / P))
    np.testing.assert_allclose(float(res.stderr), se_theory, rtol=0.15)
    assert abs(float(res.value) - dense) < 4.5 * se_theory


# ------------------------------------------------------------ 6. shapes and dtypes


def _check_state(st, n, d, M, r, dtype):
    chex.assert_shape(st.logits, (n, M))
    chex.assert_shape(st.rho, (n, d))
    chex.assert_shape(st.loadings, (n, M, d, r))
    chex.assert_tree_all_finite((st.logits, st.rho, st.loadings, st.min_scale))
    for leaf in (st.logits, st.rho, st.loadings, st.baseline, st.baseline_weight, st.min_scale):
        chex.assert_type(leaf, dtype)
    for leaf in jax.tree.leaves(st.opt_state):
        if jnp.issubdtype(leaf.dtype, jnp.floating):
            chex.assert_type(leaf, dtype)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_vmap_scan_shapes_dtypes(dtype):
    if dtype == jnp.float64 and not X64:
        pytest.skip("float64 needs JAX_ENABLE_X64=1")
    n, d, M, r, S, T = 3, 7, 2, 3, 2, 5
    opt = optax.adam(1e-2)
    w_star = {"a": jnp.ones((3, 2), dtype), "b": jnp.zeros((1,), dtype)}  # pytree, d = 7

    def logp(v):
        return -0.5 * jnp.sum(v * v) * 50.0

    with jax.numpy_dtype_promotion("strict"):
        keys = jax.random.split(jax.random.PRNGKey(0), n)
        st = jax.vmap(
            lambda k: mfa.init(w_star, opt, num_components=M, rank=r, rng_key=k, init_scale=0.1)
        )(keys)
        _check_state(st, n, d, M, r, dtype)
        # different keys give different loadings (symmetry broken between fits & components)
        assert not np.allclose(st.loadings[0], st.loadings[1])
        assert not np.allclose(st.loadings[0, 0], st.loadings[0, 1])

        @jax.jit
        def run(st, key):
            def body(st, k):
                return jax.vmap(lambda s_, kk: mfa.step(kk, s_, logp, opt, S))(
                    st, jax.random.split(k, n)
                )

            return jax.lax.scan(body, st, jax.random.split(key, T))

        st2, info = run(st, jax.random.PRNGKey(1))
        _check_state(st2, n, d, M, r, dtype)
        for field in info:
            chex.assert_shape(field, (T, n))
            chex.assert_type(field, dtype)
        chex.assert_tree_all_finite(info)
        assert np.all(np.asarray(st2.baseline_weight) > 0)
        chex.assert_trees_all_close(
            info.weight_entropy[0], jnp.full((n,), np.log(M), dtype), rtol=1e2 * EPS
        )
        x = jax.vmap(lambda k, s_: mfa.sample(k, s_, 11))(jax.random.split(jax.random.PRNGKey(2), n), st2)
        chex.assert_shape(x, (n, 11, d))
        chex.assert_type(x, dtype)
        one = jax.tree.map(lambda a: a[0], st2)
        lq = jax.vmap(lambda v: mfa.logdensity(one, v))(x[0])
        chex.assert_shape(lq, (11,))
        chex.assert_type(lq, dtype)
        chex.assert_type(mfa.responsibilities(one, x[0, 0]), dtype)
        eq = mfa.expected_quadratic(one, lambda u: 2.0 * u, jax.random.PRNGKey(3), num_probes=4)
        chex.assert_type(eq.value, dtype)
        chex.assert_type(eq.stderr, dtype)


def test_top_level_api_and_int_dim():
    d, M, r = 4, 2, 2
    opt = optax.adam(1e-2)

    def logp(v):
        return -0.5 * 10.0 * jnp.sum(v * v)

    algo = mfa.as_top_level_api(logp, opt, num_samples=3, num_components=M, rank=r, init_scale=0.2)
    st = algo.init(d, jax.random.PRNGKey(0))
    chex.assert_type(st.rho, FLOAT)  # int dimension: the default float dtype
    chex.assert_trees_all_close(mfa.scales(st), jnp.full((d,), 0.2, FLOAT), rtol=1e2 * EPS)
    st, info = jax.jit(algo.step)(jax.random.PRNGKey(1), st)
    assert isinstance(info, mfa.MFAInfo)
    x = algo.sample(jax.random.PRNGKey(2), st, 5)
    chex.assert_shape(x, (5, d))
    with pytest.raises(ValueError, match="num_components"):
        mfa.init(d, opt, num_components=0, rank=1, rng_key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="rank"):
        mfa.init(d, opt, num_components=1, rank=0, rng_key=jax.random.PRNGKey(0))
