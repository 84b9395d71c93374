"""Mathematical checks of the MFA variational family (lambda_hat.vi.mfa) and its gradients.

Runs under JAX_ENABLE_X64=0 and =1; tolerances follow the dtype, and the tightest checks
run only under x64. Dense d x d objects appear only here, as references. Each test jits
its work into as few programs as possible: compilation dominates the runtime.
"""

from functools import partial

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
LOG_2PI = float(np.log(2 * np.pi))


# ----------------------------------------------------------------------------- helpers


# Every random op costs ~1 s of XLA:CPU compile (partitionable threefry, jax 0.10), so
# test inputs come from numpy and keys from jax.random.PRNGKey(i) (a cheap seeding op).


def _normal(seed, shape):
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), FLOAT)


def _keys(seed, n):
    return jax.vmap(jax.random.PRNGKey)(jnp.arange(n) + 1000 * seed)


def _state(d, M, r, *, seed=0, scale=0.7, loading_scale=1.5):
    """A state with unequal weights and scales and O(loading_scale) loading entries,
    built directly (init itself is tested below)."""
    logits = np.linspace(-0.5, 0.6, M) * np.where(np.arange(M) % 2 == 0, 1, -1)
    s = scale * np.exp(np.linspace(-0.5, 0.5, d))
    s_min = 1e-4 * scale
    params = (
        jnp.asarray(logits, FLOAT),
        jnp.asarray(s - s_min + np.log(-np.expm1(-(s - s_min))), FLOAT),  # softplus^-1
        loading_scale * _normal(seed, (M, d, r)),
    )
    opt_state = optax.adam(1e-2).init(params)
    zero = jnp.zeros((), FLOAT)
    return mfa.MFAState(*params, opt_state, zero, zero, jnp.asarray(s_min, FLOAT))


def _params(st):
    return (st.logits, st.rho, st.loadings)


def _dense_covs(logits, rho, loadings, min_scale):
    s = jax.nn.softplus(rho) + min_scale
    K = s[None, :, None] * loadings
    return jnp.diag(s**2)[None] + K @ jnp.swapaxes(K, 1, 2)


def _mixture_cov(st):
    return jnp.einsum("m,mij->ij", mfa.weights(st), _dense_covs(*_params(st), st.min_scale))


def _dense_logq(params, min_scale, v):
    covs = _dense_covs(*params, min_scale)
    d = v.shape[-1]
    logn = jax.vmap(lambda S: multivariate_normal.logpdf(v, jnp.zeros(d, v.dtype), S))(covs)
    return logsumexp(jax.nn.log_softmax(params[0]) + logn)


# ------------------------------------------------------------- 1. density vs dense MVN


@jax.jit
def _density_outputs(st, vs):
    covs = _dense_covs(*_params(st), st.min_scale)
    d = vs.shape[-1]
    comp_dense = jax.vmap(lambda v: jax.vmap(lambda S: multivariate_normal.logpdf(v, jnp.zeros(d, FLOAT), S))(covs))(vs)
    return dict(
        mine=jax.vmap(lambda v: mfa.logdensity(st, v))(vs),
        dense=jax.vmap(lambda v: _dense_logq(_params(st), st.min_scale, v))(vs),
        comp=jax.vmap(lambda v: mfa.component_logdensities(st, v))(vs),
        comp_dense=comp_dense,
        resp=jax.vmap(lambda v: mfa.responsibilities(st, v))(vs),
        resp_dense=jax.nn.softmax(jax.nn.log_softmax(st.logits) + comp_dense, axis=-1),
        # grad_v log q is the path the sticking-the-landing gradient uses
        g=jax.vmap(jax.grad(lambda v: mfa.logdensity(st, v)))(vs),
        g_dense=jax.vmap(jax.grad(lambda v: _dense_logq(_params(st), st.min_scale, v)))(vs),
    )


@requires_x64
def test_logq_matches_dense_mixture_tight():
    st = _state(5, 3, 2)
    vs = 1.5 * _normal(1, (50, 5))
    out = _density_outputs(st, vs)
    np.testing.assert_allclose(out["mine"], out["dense"], rtol=1e-10, atol=0)
    np.testing.assert_allclose(out["comp"], out["comp_dense"], rtol=1e-10)
    np.testing.assert_allclose(out["resp"], out["resp_dense"], rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(out["g"], out["g_dense"], rtol=1e-9, atol=1e-12)


def test_logq_matches_dense_mixture_dtype_aware():
    st = _state(5, 3, 2)
    vs = 1.5 * _normal(1, (50, 5))
    out = _density_outputs(st, vs)
    tol = 1e3 * EPS
    chex.assert_trees_all_close(out["mine"], out["dense"], rtol=tol, atol=tol)
    chex.assert_trees_all_close(out["resp"], out["resp_dense"], rtol=tol, atol=tol)
    chex.assert_trees_all_close(out["resp"].sum(-1), jnp.ones(50, FLOAT), atol=1e2 * EPS)
    chex.assert_trees_all_close(out["g"], out["g_dense"], rtol=1e4 * EPS, atol=1e4 * EPS)
    chex.assert_type(out["mine"], FLOAT)


# ---------------------------------------------------------------- 2. sampled moments


def _assert_moments(x, cov_true, nsig=5.0):
    """Mean ~ 0 and E[v v^T] ~ Sigma within nsig standard errors, elementwise."""
    n = x.shape[0]
    x = np.asarray(x, np.float64)
    cov_true = np.asarray(cov_true, np.float64)
    assert np.all(np.abs(x.mean(0)) < nsig * np.sqrt(np.diag(cov_true) / n))
    prods = x[:, :, None] * x[:, None, :]
    z = (prods.mean(0) - cov_true) / (prods.std(0) / np.sqrt(n))
    assert np.max(np.abs(z)) < nsig, np.max(np.abs(z))


def test_sample_moments_match_mixture_covariance():
    d, M, r = 5, 3, 2
    st = _state(d, M, r, seed=3)

    @jax.jit
    def draw(st):
        x = mfa.sample(jax.random.PRNGKey(4), st, 200_000)
        xc = mfa.sample_component(jax.random.PRNGKey(5), st, 1, 100_000)
        return x, xc, _dense_covs(*_params(st), st.min_scale), _mixture_cov(st)

    x, xc, covs, cov_q = draw(st)
    chex.assert_shape(x, (200_000, d))
    chex.assert_type(x, FLOAT)
    _assert_moments(x, cov_q)
    _assert_moments(xc, covs[1])
    # power: the low-rank part is a large share of the covariance
    assert np.max(np.abs(np.asarray(cov_q - jnp.diag(jnp.diag(cov_q))))) > 0.1


# ---------------------------------------------------------- 3. gradient unbiasedness


def _gauss_hermite_elbo(params, min_scale, P, n_nodes=30):
    """Exact (to quadrature accuracy) ELBO of the MFA for log p~(v) = -1/2 v^T P v.

    ELBO = sum_m pi_m ( -1/2 tr(P Sigma_m) - E_{N_m}[log q] ), with the cross-entropy
    by tensor Gauss-Hermite quadrature in the Cholesky coordinates of each component.
    """
    d = P.shape[0]
    x, w = np.polynomial.hermite.hermgauss(n_nodes)
    grid = np.stack(np.meshgrid(*([x] * d), indexing="ij"), -1).reshape(-1, d)
    wts = np.prod(np.stack(np.meshgrid(*([w] * d), indexing="ij"), -1).reshape(-1, d), -1)
    wts = jnp.asarray(wts / np.pi ** (d / 2), P.dtype)
    grid = jnp.asarray(np.sqrt(2.0) * grid, P.dtype)
    covs = _dense_covs(*params, min_scale)
    pi = jax.nn.softmax(params[0])
    # Dense log q at many nodes, precisions and log-determinants computed once. (Vmapping
    # multivariate_normal.logpdf over ~3e4 nodes under jit(grad) hung XLA:CPU on re-execution
    # with jax 0.10.2.)
    precs = jnp.linalg.inv(covs)
    logdets = jnp.linalg.slogdet(covs)[1]

    def logq_nodes(nodes):
        quads = jnp.einsum("ni,mij,nj->nm", nodes, precs, nodes)
        logn = -0.5 * (d * LOG_2PI + logdets[None] + quads)
        return logsumexp(jax.nn.log_softmax(params[0])[None] + logn, axis=1)

    total = 0.0
    for m in range(covs.shape[0]):
        L = jnp.linalg.cholesky(covs[m])
        cross = jnp.sum(wts * logq_nodes(grid @ L.T))
        total = total + pi[m] * (-0.5 * jnp.trace(P @ covs[m]) - cross)
    return total


_gh_value_and_grad = jax.jit(jax.value_and_grad(_gauss_hermite_elbo), static_argnums=3)


def _unbiasedness_setup():
    d, M, r = 3, 2, 1
    st = _state(d, M, r, seed=11, scale=0.6, loading_scale=0.7)
    st = st._replace(logits=jnp.asarray([0.4, -0.3], FLOAT))
    Q = jnp.linalg.qr(_normal(5, (d, d)))[0]
    P = Q @ jnp.diag(jnp.asarray([0.5, 2.0, 6.0], FLOAT)) @ Q.T
    return st, P


def test_gradient_estimator_unbiased_against_quadrature():
    st, P = _unbiasedness_setup()
    N, S = 20_000, 2

    @jax.jit
    def estimates(st, P):
        def logp(v):
            return -0.5 * v @ (P @ v)

        keys = _keys(7, N)
        # an arbitrary constant baseline: the logits' score gradient is unbiased for any b
        return jax.vmap(lambda k: mfa.elbo_grad_estimate(k, st, logp, S, baseline=-1.0))(keys)

    grads, elbo_hat, _, _ = estimates(st, P)
    elbo_ex, exact = _gh_value_and_grad(_params(st), st.min_scale, P, 30)
    for name, g, g_ex in zip(("logits", "rho", "loadings"), grads, exact):
        chex.assert_type(g, FLOAT)
        mean = np.asarray(g.mean(0), np.float64)
        se = np.asarray(g.std(0), np.float64) / np.sqrt(N)
        z = (mean - np.asarray(g_ex, np.float64)) / se
        assert np.max(np.abs(z)) < 4.5, (name, mean, g_ex, z)
        # the test has power: the exact gradient is far outside the standard errors
        assert np.linalg.norm(se) < 0.1 * np.linalg.norm(g_ex), (name, se, g_ex)
    # the ELBO estimate is unbiased too
    assert abs(float(elbo_hat.mean() - elbo_ex)) < 4.5 * float(elbo_hat.std()) / np.sqrt(N)


@requires_x64
def test_quadrature_reference_converged():
    st, P = _unbiasedness_setup()
    _, g30 = _gh_value_and_grad(_params(st), st.min_scale, P, 30)
    _, g40 = _gh_value_and_grad(_params(st), st.min_scale, P, 40)
    # quadrature error (~1e-7) is far below the Monte Carlo standard errors (~1e-3)
    chex.assert_trees_all_close(g30, g40, atol=1e-6)
    # one component: the closed-form entropy 1/2 log det(2 pi e Sigma) checks the reference
    st1 = st._replace(logits=jnp.asarray([40.0, -40.0]))
    cov = _dense_covs(*_params(st1), st1.min_scale)[0]
    closed = -0.5 * jnp.trace(P @ cov) + 0.5 * jnp.linalg.slogdet(2 * jnp.pi * jnp.e * cov)[1]
    value, _ = _gh_value_and_grad(_params(st1), st1.min_scale, P, 30)
    np.testing.assert_allclose(value, closed, rtol=1e-9)


def test_step_ascends_the_elbo_gradient():
    """step hands -grad ELBO to optax, so plain SGD moves params by +lr * grad ELBO."""
    st, P = _unbiasedness_setup()
    lr = 0.05
    opt = optax.sgd(lr)
    st = st._replace(opt_state=opt.init(_params(st)))
    key = jax.random.PRNGKey(3)

    @jax.jit
    def both(st, P):
        def logp(v):
            return -0.5 * v @ (P @ v)

        new, info = mfa.step(key, st, logp, opt, 3)
        # on the first step the baseline is the batch estimate, i.e. baseline=None
        return new, info, mfa.elbo_grad_estimate(key, st, logp, 3)

    new, info, (grads, elbo_hat, _, _) = both(st, P)
    for p_new, p_old, g in zip(_params(new), _params(st), grads):
        chex.assert_trees_all_close(p_new, p_old + lr * g, rtol=1e2 * EPS, atol=1e2 * EPS)
    chex.assert_trees_all_close(info.elbo, elbo_hat, rtol=1e2 * EPS)
    # the moving-average baseline now holds the first estimate (bias-corrected)
    chex.assert_trees_all_close(new.baseline / new.baseline_weight, elbo_hat, rtol=1e2 * EPS)


# ----------------------------------------------------------------- 4. optimisation


@partial(jax.jit, static_argnums=(1, 2, 3))
def _fit_quadratic(prec, M, r, steps, init_scale):
    """Adam (cosine-decayed lr) on log p~(v) = -1/2 v^T prec v; returns state and infos."""
    d = prec.shape[0]
    opt = optax.adam(optax.cosine_decay_schedule(3e-2, steps, alpha=0.01))

    def logp(v):
        return -0.5 * v @ (prec @ v)

    st = mfa.init(d, opt, num_components=M, rank=r, rng_key=jax.random.PRNGKey(0), init_scale=init_scale)
    return jax.lax.scan(lambda s, k: mfa.step(k, s, logp, opt, 4), st, _keys(1, steps))


def test_fit_diagonal_gaussian_recovers_covariance():
    d = 4
    p = jnp.asarray([1.0, 4.0, 16.0, 100.0], FLOAT)
    st, info = _fit_quadratic(jnp.diag(p), 2, 1, 2000, 0.3)
    chex.assert_tree_all_finite((_params(st), info))
    cov = _mixture_cov(st)
    np.testing.assert_allclose(jnp.diag(cov) * p, 1.0, rtol=0.03)
    assert np.max(np.abs(np.asarray(cov - jnp.diag(jnp.diag(cov))))) < 0.01 * float(jnp.max(cov))
    first, last = float(info.elbo[:50].mean()), float(info.elbo[-50:].mean())
    assert last > first + 0.5
    # q = p is in the family, so the ELBO reaches log Z = d/2 log 2pi - 1/2 log det P
    log_z = 0.5 * d * LOG_2PI - 0.5 * float(jnp.sum(jnp.log(p)))
    assert abs(last - log_z) < 0.01


@pytest.mark.parametrize("nbeta,gamma", [(1.0, 0.0), (1000.0, 1.0)])
def test_fit_rotated_gaussian_full_rank(nbeta, gamma):
    """H with a random orthonormal basis and spectrum in [1, 3], d = 8, rank 8."""
    d = 8
    Q = jnp.linalg.qr(_normal(3, (d, d)))[0]
    a = jnp.linspace(1.0, 3.0, d, dtype=FLOAT)
    H = Q @ jnp.diag(a) @ Q.T
    prec = nbeta * H + gamma * jnp.eye(d, dtype=FLOAT)  # log p~ = -nb/2 v'Hv - gamma/2 |v|^2
    st, info = _fit_quadratic(prec, 1, d, 1500, 1.0 / np.sqrt(2.0 * nbeta + gamma))
    chex.assert_tree_all_finite((_params(st), info))
    target = jnp.linalg.inv(prec)
    cov = _mixture_cov(st)
    assert float(jnp.linalg.norm(cov - target) / jnp.linalg.norm(target)) < 0.03
    assert float(info.elbo[-50:].mean()) > float(info.elbo[:50].mean())
    # the LLC of this quadratic from E_q[1/2 v^T H v]: exactly 1/2 sum nb a / (nb a + gamma)
    eq = mfa.expected_quadratic(st, lambda u: H @ u, exact=True)
    llc_exact = 0.5 * float(jnp.sum(nbeta * a / (nbeta * a + gamma)))
    np.testing.assert_allclose(float(nbeta * eq.value), llc_exact, rtol=0.02)


# ------------------------------------------------------------ 5. expected quadratic


def _hessian(d, seed):
    B = _normal(seed, (d, d))
    return B @ B.T / d + jnp.diag(jnp.linspace(0.1, 2.0, d, dtype=FLOAT))


def test_expected_quadratic_exact_matches_dense():
    st = _state(6, 3, 2, seed=9)
    H = _hessian(6, seed=8)

    @jax.jit
    def compute(st, H):
        covs = _dense_covs(*_params(st), st.min_scale)
        dense = 0.5 * jnp.sum(mfa.weights(st) * jnp.trace(H[None] @ covs, axis1=1, axis2=2))
        hd = 0.5 * jnp.sum(mfa.scales(st) ** 2 * jnp.diag(H))
        res = mfa.expected_quadratic(st, lambda u: H @ u, exact=True)
        res_b = mfa.expected_quadratic(st, lambda u: H @ u, exact=True, batch_size=2)
        return dense, hd, res, res_b

    dense, hd, res, res_b = compute(st, H)
    tol = 1e-10 if X64 else 1e-5
    np.testing.assert_allclose(res.value, dense, rtol=tol)
    np.testing.assert_allclose(res_b.value, dense, rtol=tol)
    assert float(res.stderr) == 0.0
    chex.assert_type(res.value, FLOAT)
    # leaving out tr(H D) would be detected: it is a sizeable part of the total
    assert float(hd) > 0.05 * float(dense)


def test_expected_quadratic_hutchinson_within_stderr():
    st = _state(6, 2, 2, seed=10)
    H = _hessian(6, seed=12)
    P = 4000

    @jax.jit
    def compute(st, H):
        covs = _dense_covs(*_params(st), st.min_scale)
        dense = 0.5 * jnp.sum(mfa.weights(st) * jnp.trace(H[None] @ covs, axis1=1, axis2=2))
        res = mfa.expected_quadratic(st, lambda u: H @ u, jax.random.PRNGKey(0), num_probes=P)
        # Rademacher Hutchinson: Var(z^T B z) = 2 sum_{i != j} B_ij^2 with B = S H S
        s = mfa.scales(st)
        B = s[:, None] * H * s[None, :]
        se = 0.5 * jnp.sqrt(2 * (jnp.sum(B**2) - jnp.sum(jnp.diag(B) ** 2)) / P)
        return dense, res, se

    dense, res, se_theory = compute(st, H)
    np.testing.assert_allclose(float(res.stderr), float(se_theory), rtol=0.15)
    assert abs(float(res.value - dense)) < 4.5 * float(se_theory)


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


def test_vmap_scan_shapes_dtypes():
    """vmap(init) over fits, lax.scan of vmapped steps, all public functions: shapes,
    finiteness, and dtype following the input. Float32 input, so under x64 this checks
    that nothing is promoted to float64; traced under strict dtype promotion, so any
    implicit promotion raises. (Float64 runs are type-checked by the other tests.)"""
    dtype = jnp.float32
    n, d, M, r, S, T = 3, 7, 2, 3, 2, 5
    opt = optax.sgd(1e-3)  # optax's Adam is not strict-promotion clean (int step count)
    w_star = {"a": jnp.ones((3, 2), dtype), "b": jnp.zeros((1,), dtype)}  # a pytree, d = 7

    def logp(v):
        return -25.0 * jnp.sum(v * v)

    @jax.jit
    def everything(w_star, key):
        k_misc = key[0]
        st = jax.vmap(lambda k: mfa.init(w_star, opt, num_components=M, rank=r, rng_key=k, init_scale=0.1))(_keys(2, n))
        one = jax.tree.map(lambda a: a[0], st)
        out = dict(
            st=st,
            xc=mfa.sample_component(k_misc, one, 1, 4),
            eq=mfa.expected_quadratic(one, lambda u: 2 * u, k_misc, num_probes=4),
            eq_exact=mfa.expected_quadratic(one, lambda u: 2 * u, exact=True),
        )

        def body(st, k):
            return jax.vmap(lambda s_, kk: mfa.step(kk, s_, logp, opt, S))(st, k)

        out["st2"], out["info"] = jax.lax.scan(body, st, _keys(3, T * n).reshape(T, n, 2))
        out["x"] = jax.vmap(lambda k, s_: mfa.sample(k, s_, 11))(_keys(4, n), out["st2"])
        out["lq"] = jax.vmap(lambda v: mfa.logdensity(one, v))(out["x"][0])
        out["resp"] = mfa.responsibilities(one, out["x"][0, 0])
        return out

    with jax.numpy_dtype_promotion("strict"):
        out = everything(w_star, _keys(0, 1))

    st, st2, info = out["st"], out["st2"], out["info"]
    _check_state(st, n, d, M, r, dtype)
    _check_state(st2, n, d, M, r, dtype)
    # different keys give different loadings: symmetry broken between fits and components
    assert not np.allclose(st.loadings[0], st.loadings[1])
    assert not np.allclose(st.loadings[0, 0], st.loadings[0, 1])
    eq, eq_exact = out["eq"], out["eq_exact"]
    for a in (out["lq"], out["resp"], out["xc"], out["x"]):
        chex.assert_type(a, dtype)
    for a in (eq.value, eq.stderr, eq_exact.value):
        chex.assert_type(a, dtype)
    chex.assert_tree_all_finite((out["lq"], out["resp"], eq, info))
    chex.assert_shape(out["xc"], (4, d))
    chex.assert_shape(out["lq"], (11,))
    chex.assert_shape(out["resp"], (M,))
    chex.assert_shape(out["x"], (n, 11, d))
    np.testing.assert_allclose(eq.value, eq_exact.value, rtol=1e-4)  # H = 2I: no probe noise
    for name, field in info._asdict().items():
        chex.assert_shape(field, (T, n, d) if name == "log_scale_grad" else (T, n))
        chex.assert_type(field, bool if name == "rejected" else dtype)
    assert not np.asarray(info.rejected).any()
    assert np.all(np.asarray(st2.baseline_weight) > 0)
    chex.assert_trees_all_close(info.weight_entropy[0], jnp.full((n,), np.log(M), dtype), rtol=1e2 * EPS)


def test_top_level_api_and_validation():
    d, M, r = 4, 2, 2
    opt = optax.adam(1e-2)

    def logp(v):
        return -5.0 * jnp.sum(v * v)

    algo = mfa.as_top_level_api(logp, opt, num_samples=3, num_components=M, rank=r, init_scale=0.2)

    @jax.jit
    def run(key):
        k1, k2, k3 = key
        st = algo.init(d, k1)  # an int dimension: the default float dtype
        st2, info = algo.step(k2, st)
        return st, info, algo.sample(k3, st2, 5)

    st, info, x = run(_keys(0, 3))
    chex.assert_type(st.rho, FLOAT)
    chex.assert_trees_all_close(mfa.scales(st), jnp.full((d,), 0.2, FLOAT), rtol=1e2 * EPS)
    assert isinstance(info, mfa.MFAInfo)
    chex.assert_shape(x, (5, d))
    with pytest.raises(ValueError, match="num_components"):
        mfa.init(d, opt, num_components=0, rank=1, rng_key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="rank"):
        mfa.init(d, opt, num_components=1, rank=0, rng_key=jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"init_loadings: expected shape \(4, 2\) or \(1, 4, 2\)"):
        mfa.init(d, opt, num_components=1, rank=2, rng_key=jax.random.PRNGKey(0), init_loadings=jnp.ones((3, 3)))


def test_init_loadings_set_the_starting_covariance():
    """init_loadings = K0 (no random part): every component's covariance is D + K0 K0ᵀ, in the
    whitened parameters A = K0 / s."""
    d, r = 4, 2
    s = jnp.asarray([0.5, 1.0, 2.0, 0.25], FLOAT)
    k0 = jnp.asarray(np.arange(d * r).reshape(d, r) / 10.0, FLOAT)
    st = mfa.init(
        d,
        optax.sgd(0.1),
        num_components=2,
        rank=r,
        rng_key=jax.random.PRNGKey(0),
        init_scale=s,
        init_loading_scale=0.0,
        init_loadings=k0,
        dtype=FLOAT,
    )
    chex.assert_trees_all_close(st.loadings, jnp.broadcast_to(k0 / s[:, None], (2, d, r)), rtol=1e2 * EPS)
    v = mfa.sample(jax.random.PRNGKey(1), st, 20000)
    cov = np.cov(np.asarray(v, np.float64).T)
    expected = np.diag(np.asarray(s, np.float64) ** 2) + np.asarray(k0 @ k0.T, np.float64)
    np.testing.assert_allclose(cov, expected, atol=0.05 * expected.max())  # 20,000 draws: ~1% error


def test_non_finite_step_is_rejected():
    """A draw where log p~ is NaN (or the gradient is) rejects the whole step: the state,
    optimizer state and baseline are returned unchanged and info.rejected is set; finite
    steps go on as before."""
    d, M, r = 3, 2, 1
    opt = optax.adam(1e-2)
    st = _state(d, M, r, scale=0.5)
    st = st._replace(opt_state=opt.init(_params(st)))

    def logp_nan_beyond(t):
        # the log of a negative number for v[0] > t: NaN there, a Gaussian elsewhere
        return lambda v: -0.5 * jnp.sum(v * v) + 0.0 * jnp.log(t - v[0])

    @jax.jit
    def one_step(key, t):
        return mfa.step(key, st, logp_nan_beyond(t), opt, 8)

    keys = _keys(5, 2)
    bad, bad_info = one_step(keys[0], jnp.asarray(0.0, FLOAT))  # about half of the 16 draws are NaN
    assert bool(bad_info.rejected)
    chex.assert_trees_all_equal(bad, st)  # nothing moved, not even Adam's step count
    good, good_info = one_step(keys[1], jnp.asarray(100.0, FLOAT))  # no draw is NaN
    assert not bool(good_info.rejected)
    chex.assert_tree_all_finite(_params(good))
    assert not np.allclose(np.asarray(good.rho), np.asarray(st.rho))
