"""lambda_hat.vi.lanczos against numpy.linalg.eigh on rotated PSD spectra with exact zeros.

The operators are H = Q diag(a, 0, ..., 0) Q^T (Q a random orthogonal matrix), applied as
u -> B (B^T u) with B = Q_+ sqrt(a) of shape (d, rank) (Q_+ the columns of Q for the positive
eigenvalues), so no test forms a d x d matrix inside JAX.

How many steps find all d - rank zeros: single-vector Lanczos needs num_iters = d here (every
positive eigenvalue is distinct, so the Krylov space is exhausted after rank + 1 steps and each
further null direction enters through a restart); block Lanczos needs a block of >= d - rank
columns and enough steps to converge (Chebyshev rate, below d when the positive spectrum is
well separated from 0).
Tolerances follow the run dtype (JAX_ENABLE_X64): eps = jnp.finfo(dtype).eps.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lambda_hat.vi.lanczos import (
    Eigenpairs,
    block_lanczos,
    lanczos,
    null_space_directions,
    smallest_eigenpairs,
)

DTYPE = jax.dtypes.canonicalize_dtype(jnp.float64)
EPS = float(jnp.finfo(DTYPE).eps)
# "Near zero" relative to the largest Ritz value: 1e-6 in float64, 1e3 eps (1.2e-4) in float32.
ZERO_TOL = max(1e-6, 1e3 * EPS)
# A complete Krylov basis (num_iters = d) gives the spectrum to rounding error.
EXACT_TOL = 1e3 * EPS


def _psd(d: int, spectrum: np.ndarray, seed: int):
    """B (d, rank) with B B^T = Q diag(spectrum, 0...) Q^T, and the null-space basis (d, d - rank).

    Q is Haar-random orthogonal (QR of a Gaussian d x d matrix) for d <= 300. For larger d it is
    the product of the d - rank Householder reflections of the QR of a Gaussian d x (d - rank)
    matrix (``mode="complete"``): exactly orthogonal, with a Haar-random null space, at O(d^2 (d -
    rank)) instead of O(d^3) cost.
    """
    rng = np.random.default_rng(seed)
    rank = spectrum.shape[0]
    if d <= 300:
        q, _ = np.linalg.qr(rng.standard_normal((d, d)))
        null, range_ = q[:, rank:], q[:, :rank]
    else:
        q, _ = np.linalg.qr(rng.standard_normal((d, d - rank)), mode="complete")
        null, range_ = q[:, : d - rank], q[:, d - rank :]
    return range_ * np.sqrt(spectrum), null


def _hvp(bj: jax.Array):
    """u -> B (B^T u). Pass B into jitted functions as an argument: a closed-over array becomes a
    compile-time constant, which XLA constant-folds slowly."""
    return lambda u: jnp.matmul(bj, jnp.matmul(bj.T, u, precision="highest"), precision="highest")


# num_iters = 1000 > d for every d below is clipped to d. One jitted function for all the
# single-vector tests, so equal shapes share a compilation.
_lanczos_full = jax.jit(lambda key, bj: lanczos(_hvp(bj), bj.shape[0], 1000, key))


def _np(pairs: Eigenpairs):
    return tuple(np.asarray(x, np.float64) for x in pairs)


def _assert_orthonormal(vectors: np.ndarray, tol: float):
    k = vectors.shape[1]
    np.testing.assert_allclose(vectors.T @ vectors, np.eye(k), atol=tol)


def _assert_spans_null_space(vectors: np.ndarray, null: np.ndarray, tol: float):
    """span(vectors) = span(null): all principal angles ~ 0, i.e. ||P_null U|| = ||U||."""
    assert vectors.shape[1] == null.shape[1]
    cosines = np.linalg.svd(null.T @ vectors, compute_uv=False)
    np.testing.assert_allclose(cosines, 1.0, atol=tol)


def _true_residuals(b: np.ndarray, values: np.ndarray, vectors: np.ndarray) -> np.ndarray:
    return np.linalg.norm(b @ (b.T @ vectors) - vectors * values, axis=0)


def test_lanczos_complete_basis_small():
    """d = 12, rank 5: num_iters = 1000 is clipped to 12 and the full spectrum is exact.

    The Krylov space of one start vector is exhausted after 6 steps (5 distinct positive
    eigenvalues + one null direction); the 6 other null directions each enter through a restart
    after a breakdown, so num_iters = d is needed for all d - rank = 7 zeros.
    """
    d, rank = 12, 5
    spectrum = np.linspace(0.1, 1.0, rank)
    b, null = _psd(d, spectrum, seed=0)
    pairs = _lanczos_full(jax.random.PRNGKey(0), jnp.asarray(b, DTYPE))
    assert pairs.values.shape == (d,) and pairs.vectors.shape == (d, d) and pairs.residuals.shape == (d,)
    assert pairs.values.dtype == DTYPE
    values, vectors, residuals = _np(pairs)
    exact = np.linalg.eigvalsh(b @ b.T)
    lam = exact[-1]
    np.testing.assert_allclose(values, exact, atol=EXACT_TOL * lam)
    assert np.all(np.diff(values) >= 0)
    _assert_orthonormal(vectors, EXACT_TOL)
    np.testing.assert_allclose(residuals, 0.0, atol=EXACT_TOL * lam)
    np.testing.assert_allclose(_true_residuals(b, values, vectors), 0.0, atol=EXACT_TOL * lam)
    zero = values <= ZERO_TOL * values.max()
    assert zero.sum() == d - rank
    _assert_spans_null_space(vectors[:, zero], null, EXACT_TOL)


def test_lanczos_restarts_after_breakdown():
    """d = 100, rank 90, num_iters = d: after the Krylov space (91 directions) is exhausted,
    the restarts supply the 9 missing null directions; all 100 eigenvalues match numpy.eigh."""
    d, rank = 100, 90
    rng = np.random.default_rng(1)
    spectrum = rng.uniform(0.1, 1.0, rank)
    b, null = _psd(d, spectrum, seed=1)
    values, vectors, residuals = _np(_lanczos_full(jax.random.PRNGKey(1), jnp.asarray(b, DTYPE)))
    exact = np.linalg.eigvalsh(b @ b.T)
    lam = exact[-1]
    np.testing.assert_allclose(values, exact, atol=EXACT_TOL * lam)
    _assert_orthonormal(vectors, EXACT_TOL)
    np.testing.assert_allclose(_true_residuals(b, values, vectors), 0.0, atol=EXACT_TOL * lam)
    zero = values <= ZERO_TOL * values.max()
    assert zero.sum() == d - rank
    _assert_spans_null_space(vectors[:, zero], null, EXACT_TOL)


def test_zero_operator_breaks_down_every_step():
    """H = 0 (B = 0, d = 12): every step breaks down (beta = 0) and restarts; the pairs stay valid."""
    values, vectors, residuals = _np(_lanczos_full(jax.random.PRNGKey(2), jnp.zeros((12, 5), DTYPE)))
    np.testing.assert_array_equal(values, 0.0)
    np.testing.assert_array_equal(residuals, 0.0)
    _assert_orthonormal(vectors, 10 * EPS)


def test_null_space_of_multiplicity_100():
    """d = 1000, rank 900: the 100-dimensional null space, which a single start vector would
    see through one direction only, is found by block Lanczos with a block of 110 = 100 + 10 in
    5 steps = 550 < d Hessian-vector products (positive spectrum in [0.8, 1])."""
    d, rank, k = 1000, 900, 100
    rng = np.random.default_rng(3)
    spectrum = rng.uniform(0.8, 1.0, rank)
    b, null = _psd(d, spectrum, seed=3)
    run = jax.jit(lambda key, bj: smallest_eigenpairs(_hvp(bj), d, k, key, num_iters=5, block_size=k + 10))
    pairs = run(jax.random.PRNGKey(3), jnp.asarray(b, DTYPE))
    values, vectors, residuals = _np(pairs)
    assert values.shape == (k,) and vectors.shape == (d, k)
    lam = spectrum.max()
    # Convergence (not rounding) limits these.
    conv_tol = max(1e-3, 100 * EXACT_TOL)
    assert np.all(np.abs(values) <= ZERO_TOL * lam)
    assert np.all(residuals <= conv_tol * lam), residuals.max() / lam
    true_res = _true_residuals(b, values, vectors)
    np.testing.assert_allclose(residuals, true_res, atol=max(10 * EXACT_TOL, 1e-3 * true_res.max()) * lam)
    _assert_orthonormal(vectors, 10 * EXACT_TOL)
    _assert_spans_null_space(vectors, null, conv_tol)


def test_smallest_values_jit_vmap_two_keys():
    """d = 300 with 3 zeros and two small isolated eigenvalues: the 5 smallest Ritz values match
    numpy.eigh (block 5 x 10 steps = basis of 50 < d), under jax.jit and jax.vmap over two keys."""
    d, k = 300, 5
    rng = np.random.default_rng(4)
    spectrum = np.concatenate([[0.01, 0.02], rng.uniform(0.5, 1.0, d - 5)])
    b, null = _psd(d, spectrum, seed=4)
    keys = jax.random.split(jax.random.PRNGKey(4), 2)
    run = jax.jit(jax.vmap(lambda key, bj: smallest_eigenpairs(_hvp(bj), d, k, key, num_iters=10), in_axes=(0, None)))
    batched = run(keys, jnp.asarray(b, DTYPE))
    assert batched.values.shape == (2, k) and batched.vectors.shape == (2, d, k)
    exact = np.linalg.eigvalsh(b @ b.T)[:k]
    lam = spectrum.max()
    tol = max(1e-6, 100 * EXACT_TOL)
    for i in range(2):
        values, vectors, residuals = _np(jax.tree.map(lambda x, i=i: x[i], batched))
        np.testing.assert_allclose(values, exact, atol=tol * lam)
        assert np.all(residuals <= 1e-3 * lam)
        _assert_orthonormal(vectors, 10 * EXACT_TOL)
        zero = values <= ZERO_TOL * lam
        assert zero.sum() == 3
        _assert_spans_null_space(vectors[:, zero], null, 1e-3)
    # Different start blocks, same eigenvalues.
    assert not np.allclose(np.asarray(batched.vectors[0]), np.asarray(batched.vectors[1]))


def test_hvp_of_quadratic_loss():
    """hvp from forward-over-reverse autodiff of L(w) = 1/2 ||B^T (w - w0)||^2 + c^T w."""
    d, rank = 30, 20
    rng = np.random.default_rng(5)
    b, null = _psd(d, rng.uniform(0.2, 2.0, rank), seed=5)
    bj = jnp.asarray(b, DTYPE)
    w0 = jnp.asarray(rng.standard_normal(d), DTYPE)
    c = jnp.asarray(rng.standard_normal(d), DTYPE)
    loss = lambda w: 0.5 * jnp.sum(jnp.matmul(bj.T, w - w0, precision="highest") ** 2) + jnp.dot(c, w)
    hvp = lambda u: jax.jvp(jax.grad(loss), (w0,), (u,))[1]
    values, vectors, residuals = _np(
        jax.jit(lambda key: smallest_eigenpairs(hvp, d, d - rank, key))(jax.random.key(5))  # typed key
    )
    assert np.all(np.abs(values) <= ZERO_TOL * 2.0)
    assert np.all(residuals <= EXACT_TOL * 2.0)
    _assert_spans_null_space(vectors, null, EXACT_TOL)


def test_null_space_directions_subspace_iteration():
    """Subspace iteration on c I - H finds the 10 null directions of d = 100, rank 90."""
    d, rank = 100, 90
    rng = np.random.default_rng(6)
    spectrum = rng.uniform(0.1, 1.0, rank)
    b, null = _psd(d, spectrum, seed=6)
    values, vectors, residuals = _np(
        jax.jit(lambda key, bj: null_space_directions(_hvp(bj), d, d - rank, key, num_iters=40))(
            jax.random.PRNGKey(6), jnp.asarray(b, DTYPE)
        )
    )
    lam = spectrum.max()
    assert np.all(np.abs(values) <= 1e-6 * lam)
    assert np.all(residuals <= 1e-3 * lam)
    np.testing.assert_allclose(residuals, _true_residuals(b, values, vectors), atol=10 * EXACT_TOL * lam)
    _assert_orthonormal(vectors, 10 * EXACT_TOL)
    _assert_spans_null_space(vectors, null, 1e-3)


def test_block_lanczos_clips_and_explicit_dtype():
    """block_size * num_iters > d is clipped to a complete basis of size d (last block partial);
    an explicit float32 dtype is honoured whatever the default."""
    d, rank = 12, 5
    b, _ = _psd(d, np.linspace(0.1, 1.0, rank), seed=7)
    bj = jnp.asarray(b, jnp.float32)
    hvp = lambda u: bj @ (bj.T @ u)
    pairs = jax.jit(lambda key: block_lanczos(hvp, d, 5, 4, key, dtype=jnp.float32))(jax.random.PRNGKey(7))
    assert pairs.values.shape == (d,) and pairs.values.dtype == jnp.float32
    exact = np.linalg.eigvalsh(b @ b.T)
    eps32 = float(jnp.finfo(jnp.float32).eps)
    np.testing.assert_allclose(np.asarray(pairs.values), exact, atol=1e3 * eps32)
    _assert_orthonormal(np.asarray(pairs.vectors, np.float64), 1e3 * eps32)


@pytest.mark.parametrize(
    "call",
    [
        lambda: lanczos(lambda u: u, 0, 3, jax.random.PRNGKey(0)),
        lambda: lanczos(lambda u: u, 4, 0, jax.random.PRNGKey(0)),
        lambda: block_lanczos(lambda u: u, 4, 0, 2, jax.random.PRNGKey(0)),
        lambda: smallest_eigenpairs(lambda u: u, 4, 3, jax.random.PRNGKey(0), block_size=1, num_iters=2),
        lambda: null_space_directions(lambda u: u, 4, 2, jax.random.PRNGKey(0), oversample=-1),
        lambda: lanczos(lambda u: u, 4, 2, jax.random.PRNGKey(0), dtype=jnp.int32),
    ],
)
def test_bad_arguments(call):
    with pytest.raises(ValueError):
        call()
