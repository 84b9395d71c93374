"""The targets with known λ: normal crossings, deep linear networks, the tiny MLP.

Checks that each builder really is the problem it claims to be: shapes and dtypes, w* an exact
minimiser, the excess loss of a normal crossing is exactly Σ c_g Π w^{2k}, DLN teacher ranks,
the exact λ and m from ``theory``, and the finite-n oracles against independent computations.
"""

import math
from fractions import Fraction

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from lambda_hat import theory
from lambda_hat.flat import float_dtype
from lambda_hat.targets import (
    DLN_BUCKETS,
    deep_linear_network,
    dln_origin_expected_llc,
    normal_crossing,
    normal_crossing_expected_llc,
    random_deep_linear_network,
    sample_dln_architecture,
    tiny_mlp,
)
from lambda_hat.targets.dln import (
    _GaussNewton,
    _teacher_layers,
    dln_product,
    generic_product_jacobian_rank,
    product_jacobian_rank,
)

EPS = float(np.finfo(float_dtype()).eps)


def loss_and_grad(loss_fn, params, data):
    """(L_n, flat ∇L_n) as numpy float64, in one compiled program (eager ops compile one by one)."""
    value, grad = jax.jit(jax.value_and_grad(loss_fn))(params, data)
    return float(value), np.asarray(ravel_pytree(grad)[0], np.float64)


def flat_hessian(loss_fn, params, data):
    flat, unravel = ravel_pytree(params)
    return np.asarray(jax.jit(jax.hessian(lambda w: loss_fn(unravel(w), data)))(flat), np.float64)


# ---------------------------------------------------------------------------------------------
# normal crossings
# ---------------------------------------------------------------------------------------------

# exponents (one block, or a list of disjoint blocks), λ, m. Flat prior: a block has λ = 1/(2 max k)
# and m = the number of exponents attaining the max; blocks add their λ, and m = Σ m_g − (#blocks − 1).
NC_CASES = [
    ((1,), Fraction(1, 2), 1),
    ((2,), Fraction(1, 4), 1),
    ((1, 1), Fraction(1, 2), 2),
    ((1, 2), Fraction(1, 4), 1),
    ((2, 2), Fraction(1, 4), 2),
    ([(1,), (2,)], Fraction(3, 4), 1),
    ([(1, 1), (1,)], Fraction(1), 2),
    ((1, 1, 1), Fraction(1, 2), 3),
]


def _nc_excess(target, w):
    """Σ_g c_g Π_{j∈g} w_j^{2k_j} in float64 (c_g from the data as cast)."""
    total, start = 0.0, 0
    for c, block in zip(target.info["coefficients"], target.info["blocks"]):
        term = c * np.ones(w.shape[0])
        for j, k in enumerate(block):
            term = term * w[:, start + j] ** (2 * k)
        total = total + term
        start += len(block)
    return total


@pytest.mark.parametrize("exponents, lam, m", NC_CASES)
def test_normal_crossing_structure(exponents, lam, m):
    t = normal_crossing(exponents, n=500, seed=3)
    x, y = t.data
    groups = len(t.info["blocks"])
    chex.assert_shape(t.params, (sum(len(b) for b in t.info["blocks"]),))
    chex.assert_shape([x, y], (500, groups))
    chex.assert_type([t.params, x, y], float_dtype())
    assert (t.lam, t.m) == (lam, m)
    blocks = t.info["blocks"]
    assert (t.lam, t.m) == tuple(theory.disjoint_sum(*(theory.normal_crossing(b) for b in blocks)))
    # w* = 0 is an exact minimiser: L_n(0) = 0 and ∇L_n(0) = 0 exactly (P_g(0) = 0)
    loss, grad = loss_and_grad(t.loss_fn, t.params, t.data)
    assert loss == 0.0 and np.max(np.abs(grad)) == 0.0
    # the excess loss is exactly the normal crossing: only rounding (a few ulps) separates them
    w = np.random.default_rng(0).standard_normal((16, t.dim)) * 1.5
    wc = jnp.asarray(w.astype(float_dtype()))
    losses = np.asarray(jax.jit(jax.vmap(t.loss_fn, in_axes=(0, None)))(wc, t.data), np.float64)
    exact = _nc_excess(t, np.asarray(wc, np.float64))
    np.testing.assert_allclose(losses, exact, rtol=50 * EPS)
    np.testing.assert_allclose(t.info["coefficients"], 0.5 * np.mean(np.asarray(x, np.float64) ** 2, 0))


def test_normal_crossing_oracle_closed_forms():
    """w² is Gaussian: E[λ̂] = ½·2cnβ/(2cnβ + γ); w^{2k}: direct 1-D quadrature."""
    c, nbeta, gamma = 0.7, 150.0, 1.3
    exact = 0.5 * 2 * c * nbeta / (2 * c * nbeta + gamma)
    assert normal_crossing_expected_llc([[1]], [c], nbeta, gamma) == pytest.approx(exact, rel=1e-9)
    w = np.linspace(-10, 10, 400_001)
    for k in (2, 3):
        a = nbeta * c * w ** (2 * k)
        p = np.exp(-a - 0.5 * gamma * w**2)
        assert normal_crossing_expected_llc([[k]], [c], nbeta, gamma) == pytest.approx(
            np.sum(a * p) / np.sum(p), rel=1e-8
        )


@pytest.mark.parametrize("ks", [(1, 1), (2, 1), (2, 2)])
def test_normal_crossing_oracle_matches_2d_quadrature(ks):
    """The 1-D (log-product) quadrature against a plain 2-D grid over (w1, w2)."""
    c, nbeta, gamma = 0.5, 144.8, 1.0
    g = np.linspace(-9, 9, 2001)
    w1, w2 = np.meshgrid(g, g, indexing="ij")
    a = nbeta * c * w1 ** (2 * ks[0]) * w2 ** (2 * ks[1])
    p = np.exp(-a - 0.5 * gamma * (w1**2 + w2**2))
    grid = np.sum(a * p) / np.sum(p)
    # a 2001² grid agrees to < 1e-7 here (measured: 4e-12, 7e-8, 7e-12 for the three cases)
    assert normal_crossing_expected_llc([list(ks)], [c], nbeta, gamma) == pytest.approx(grid, abs=1e-6)


@pytest.mark.parametrize("exponents", [(1, 1), [(1,), (2,)], (1, 2), (2, 2), (1, 1, 1)])
def test_normal_crossing_oracle_tends_to_lambda(exponents):
    """As nβ → ∞ the exact finite-n value approaches λ − (m−1)/log(nβ) (error O(1/log² nβ))."""
    t = normal_crossing(exponents, n=200, seed=0)
    nbeta = 1e16
    value = t.expected_llc(nbeta, 1.0)
    if t.m == 1:
        assert value == pytest.approx(float(t.lam), abs=1e-3)
    else:
        assert value == pytest.approx(float(t.lam) + t.info["finite_n_bias"](nbeta), abs=0.01)
    # at moderate nβ the value is below λ (the localizer and, for m > 1, the log term)
    assert t.expected_llc(1000 / math.log(1000), 1.0) < float(t.lam)


def test_normal_crossing_bad_input():
    with pytest.raises(ValueError, match="exponents"):
        normal_crossing(())
    with pytest.raises(ValueError, match="exponents"):
        normal_crossing((1, 0))
    with pytest.raises(ValueError, match="n"):
        normal_crossing((1,), n=1)


# ---------------------------------------------------------------------------------------------
# deep linear networks
# ---------------------------------------------------------------------------------------------

DLN_CASES = [((2, 3, 2), 1), ((3, 4, 3), 2), ((3, 3, 3), 1), ((4, 2, 4), 1), ((5, 10, 10, 10, 5), 3), ((2, 2, 2), None)]


@pytest.mark.parametrize("widths, rank", DLN_CASES)
def test_dln_structure(widths, rank):
    t = deep_linear_network(widths, rank, n=300, seed=1)
    r = min(widths) if rank is None else rank
    chex.assert_shape(t.params, [(a, b) for a, b in zip(widths[:-1], widths[1:])])
    chex.assert_shape(t.data, [(300, widths[0]), (300, widths[-1])])
    chex.assert_type([*t.params, *t.data], float_dtype())
    x, y = (np.asarray(a, np.float64) for a in t.data)
    assert np.max(np.abs(x)) <= 10.0
    assert t.dim == theory.num_parameters(widths)
    # the teacher's product has exactly the requested rank: in float64 before the cast ...
    assert t.info["product_rank"] == r
    # ... and numerically in the run dtype (rounding leaves singular values ~eps·σ_max)
    sv = t.info["product_singular_values"]
    assert np.sum(sv > sv[0] * max(widths[0], widths[-1]) * EPS * 10) == r
    product = np.asarray(dln_product([np.asarray(w, np.float64) for w in t.params]))
    np.testing.assert_allclose(np.linalg.svd(product, compute_uv=False), sv, rtol=1e-12, atol=1e-300)
    assert (t.lam, t.m) == tuple(theory.deep_linear_network(widths, r))
    # noiseless, realizable teacher: L_n(w*) = 0 and ∇L_n(w*) = 0 up to rounding
    loss, grad = loss_and_grad(t.loss_fn, t.params, t.data)
    scale = math.sqrt(np.mean(x**2) * np.mean(y**2))  # |∂L/∂W| for an O(1) relative residual
    assert loss <= (10 * EPS) ** 2 * np.mean(y**2)
    assert np.linalg.norm(grad) <= 10 * EPS * scale
    assert t.info["grad_norm_at_wstar"] == pytest.approx(np.linalg.norm(grad), abs=10 * EPS * scale)


def test_dln_hessian_top_eigenvalue_and_suggested_step():
    t = deep_linear_network((3, 4, 3), 2, n=300, seed=1)
    top = float(np.linalg.eigvalsh(flat_hessian(t.loss_fn, t.params, t.data))[-1])
    assert t.info["hessian_top_eigenvalue"] == pytest.approx(top, rel=1e-3 if EPS > 1e-10 else 1e-6)
    kappa = 300 / math.log(300) * top + 1.0
    assert t.info["suggested_step_size"] == pytest.approx(0.04 / kappa, rel=1e-3)


def test_dln_local_versus_global_lambda():
    """Aoyagi's λ is the global coefficient; at a one-layer-cut teacher the local λ can be larger.

    (3, 3, 3) with one layer of rank 1: the second layer is invertible, so (W_1, W_2) ↦ W_1W_2 is a
    submersion at the teacher and the local λ is 9/2 (all 3×3 products), while Aoyagi's is 4.
    (2, 3, 2) rank 1: the Jacobian has its generic rank 4 at the teacher, local λ = 2 = Aoyagi's.
    """
    t = deep_linear_network((3, 3, 3), 1, n=100, seed=0)
    assert t.lam == 4 and t.info["local_lam"] == Fraction(9, 2) and t.info["lam_is_local"] is False
    t = deep_linear_network((2, 3, 2), 1, n=100, seed=0)
    assert t.lam == 2 and t.info["local_lam"] == 2 and t.info["lam_is_local"] is True
    t = deep_linear_network((2, 2, 2), 0, n=100, seed=0, at_origin=True)
    assert t.lam == Fraction(3, 2) and t.info["lam_is_local"] is True
    assert all(np.all(np.asarray(w) == 0) for w in t.params)


def test_dln_origin_oracle():
    """The two-layer origin oracle against (a) the normal-crossing oracle for (1, 1, 1), where
    K = e·a²b², and (b) importance sampling of W_2 from the prior for (2, 2, 2) and (3, 1, 2)."""
    nbeta, gamma = 144.8, 1.0
    e = 2.3
    assert dln_origin_expected_llc((1, 1, 1), np.array([[e]]), nbeta, gamma) == pytest.approx(
        normal_crossing_expected_llc([[1, 1]], [e], nbeta, gamma), rel=1e-6
    )
    rng = np.random.default_rng(0)
    for widths in [(2, 2, 2), (3, 1, 2)]:
        m_in, h, n_out = widths
        a = rng.standard_normal((m_in, m_in))
        sigma_x = a @ a.T / m_in + 0.3 * np.eye(m_in)
        eig = np.linalg.eigvalsh(sigma_x)
        w2 = rng.standard_normal((200_000, h, n_out)) / math.sqrt(gamma)
        s2 = np.linalg.svd(w2, compute_uv=False) ** 2  # (samples, min(h, n_out)) = all nonzero ones
        coef = eig[None, :, None] * s2[:, None, :] / n_out
        prec = 2 * nbeta * coef + gamma
        log_w = -0.5 * np.log(prec).sum((1, 2))
        wt = np.exp(log_w - log_w.max())
        vals = (nbeta * coef / prec).sum((1, 2))
        est = np.sum(wt * vals) / np.sum(wt)
        ess = np.sum(wt) ** 2 / np.sum(wt**2)
        se = math.sqrt(np.sum(wt**2 * (vals - est) ** 2)) / np.sum(wt)  # delta-method SE of a ratio
        assert ess > 1000
        assert dln_origin_expected_llc(widths, sigma_x, nbeta, gamma) == pytest.approx(est, abs=5 * se)


def test_dln_bad_input():
    with pytest.raises(ValueError, match="rank"):
        deep_linear_network((2, 3, 2), 3)
    with pytest.raises(ValueError, match="rank"):
        deep_linear_network((2, 3, 2), 1, at_origin=True)
    with pytest.raises(ValueError, match="widths"):
        deep_linear_network((2,), 1)
    with pytest.raises(ValueError, match="bucket"):
        sample_dln_architecture(500)


@pytest.mark.parametrize("bucket", sorted(DLN_BUCKETS))
def test_random_dln_architecture_hits_bucket(bucket):
    spec = DLN_BUCKETS[bucket]
    for seed in range(10):
        widths, ranks = sample_dln_architecture(bucket, seed)
        d = theory.num_parameters(widths)
        assert bucket / math.sqrt(10) <= d < bucket * math.sqrt(10)
        assert spec["layers"][0] <= len(widths) - 1 <= spec["layers"][1]
        assert all(spec["widths"][0] <= h <= spec["widths"][1] for h in widths)
        assert all(1 <= r <= min(a, b) for r, a, b in zip(ranks, widths[:-1], widths[1:]))
    assert sample_dln_architecture(bucket, 3) == sample_dln_architecture(bucket, 3)


def test_random_dln_target():
    t = random_deep_linear_network(100, seed=2, n=400)
    widths, ranks = sample_dln_architecture(100, seed=2)
    assert t.info["widths"] == widths and t.info["layer_ranks"] == ranks
    assert 100 / math.sqrt(10) <= t.dim < 100 * math.sqrt(10)
    r = t.info["product_rank"]
    assert r <= min(ranks) and r == np.linalg.matrix_rank(
        dln_product([np.asarray(w, np.float64) for w in t.params]), tol=t.info["product_singular_values"][0] * 1e-4
    )
    assert (t.lam, t.m) == tuple(theory.deep_linear_network(widths, r))
    assert 0 < t.info["suggested_step_size"] < 1e-3
    chex.assert_type(t.params, float_dtype())


def test_gauss_newton_is_the_hessian():
    """The matrix-free Hessian at a zero-residual point equals jax.hessian of the loss."""
    t = deep_linear_network((2, 3, 2), 1, n=200, seed=4)
    x = np.asarray(t.data[0], np.float64)
    gn = _GaussNewton([np.asarray(w, np.float64) for w in t.params], x.T @ x / 200, 2)
    dense = np.stack([gn.hvp(e) for e in np.eye(gn.dim)], axis=1)
    hess = flat_hessian(t.loss_fn, t.params, t.data)
    atol = (1e-4 if EPS > 1e-10 else 1e-10) * np.abs(hess).max()
    np.testing.assert_allclose(dense, hess, atol=atol)
    np.testing.assert_allclose(t.info["hessian_eigenvalues"], np.linalg.eigvalsh(hess), atol=atol)
    assert np.sum(t.info["hessian_eigenvalues"] > 1e-8 * t.info["hessian_top_eigenvalue"]) == t.info["jacobian_rank"]


# ---------------------------------------------------------------------------------------------
# tiny MLP
# ---------------------------------------------------------------------------------------------


def test_tiny_mlp():
    t = tiny_mlp((2, 8, 1), n=1000, seed=0)
    flat, _ = ravel_pytree(t.params)
    assert t.dim == 2 * 8 + 8 + 8 + 1 == flat.size
    chex.assert_type(jax.tree.leaves(t.params), float_dtype())
    chex.assert_shape(t.data, [(1000, 2), (1000, 1)])
    assert t.lam is None and t.m is None
    # near-stationary: a residual gradient g shifts λ̂ by at most about (nβ‖g‖)²/γ (the linear
    # term of the localized posterior); ‖g‖ <= 1e-4 keeps that below 1e-3 at nβ = n/log n
    g = t.info["grad_norm_at_wstar"]
    assert g <= 1e-4 and g <= 1e-3 * t.info["grad_norm_at_init"]
    assert (1000 / math.log(1000) * g) ** 2 < 1e-3
    # a local minimum up to flat directions: no direction of real negative curvature
    eigs = t.info["hessian_eigenvalues"]
    assert eigs[0] >= -1e-4 * eigs[-1]
    assert t.info["train_loss"] < 0.01  # ≈ noise²/2 = 0.005: the student fits the teacher
    assert t.info["train_seconds"] < 20  # seconds on a loaded CI core; typically ~2 s


def _dense_jacobian_rank(layers) -> int:
    """Rank of the Jacobian of the product map from its d columns (the closed form's reference)."""
    gn = _GaussNewton(layers, np.eye(layers[0].shape[0]), layers[-1].shape[1])
    cols = np.stack([gn.d(e).ravel() for e in np.eye(gn.dim)], axis=1)
    return int(np.linalg.matrix_rank(cols))


@pytest.mark.parametrize("seed", range(12))
def test_product_jacobian_rank_closed_form_matches_the_dense_jacobian(seed):
    """The flag formula Σ (u_s − u_{s+1}) v_s against the rank of the explicit Jacobian, on random
    architectures with random per-layer rank cuts (including zero layers), and the generic rank
    against full-rank Gaussian layers."""
    rng = np.random.default_rng(seed)
    widths = [int(h) for h in rng.integers(1, 6, size=int(rng.integers(3, 6)))]
    ranks = [int(rng.integers(0, min(a, b) + 1)) for a, b in zip(widths[:-1], widths[1:])]
    layers = _teacher_layers(rng, widths, ranks)
    assert product_jacobian_rank(layers) == _dense_jacobian_rank(layers)
    full = _teacher_layers(rng, widths, list(widths))
    assert generic_product_jacobian_rank(widths) == _dense_jacobian_rank(full) == product_jacobian_rank(full)


def test_local_lambda_is_known_at_every_size():
    """The closed-form rank gives the local λ (or says it is unknown) for 1e4-parameter teachers,
    where an explicit Jacobian would have d·H_1·H_{L+1} ≈ 1e7–1e8 entries."""
    t = random_deep_linear_network(10_000, seed=0, n=50)
    info = t.info
    assert info["jacobian_rank"] <= info["generic_jacobian_rank"] <= t.dim
    if info["jacobian_rank"] == info["generic_jacobian_rank"]:
        assert info["local_lam"] == Fraction(info["jacobian_rank"], 2) and info["local_lam"] >= t.lam
    else:
        assert info["local_lam"] is None and info["lam_is_local"] is None
