"""Matrix-free eigen-solvers for the flattest directions of a symmetric operator (a Hessian).

Only Hessian-vector products ``u -> H u`` are used; no d x d matrix is ever formed. The basis
buffers hold O(d n) numbers for a Krylov (or iteration) subspace of dimension n.

* :func:`lanczos`: single-vector Lanczos with full reorthogonalisation.
* :func:`block_lanczos`: the same with a block of b start vectors. A single start vector sees
  each eigenspace of H through one direction only, so it finds ONE vector of an eigenvalue of
  multiplicity m (e.g. a null space of dimension m) before the Krylov space is exhausted; a
  block of b start vectors finds up to b of them.
* :func:`null_space_directions`: randomized subspace iteration on the shifted operator
  c I - H, the memory-light (O(d (k + p))) but slower alternative.
* :func:`smallest_eigenpairs`: the k smallest eigenpairs, by block Lanczos (the fastest of the
  three in Hessian-vector products on degenerate null spaces).

Start and restart vectors are pseudo-random: uniform entries in [-1, 1) from a counter-based
hash of the bits of ``rng_key`` (not ``jax.random``, whose every draw costs about a second of
XLA:CPU compile time); Krylov methods need only a generic start. Results are deterministic
functions of ``rng_key``.

All functions are pure JAX (``jax.lax`` loops with static shapes): they can be wrapped in
``jax.jit`` (with the integer arguments static) and ``jax.vmap``-ed over ``rng_key``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax
from jax.typing import DTypeLike

__all__ = [
    "Eigenpairs",
    "lanczos",
    "block_lanczos",
    "null_space_directions",
    "smallest_eigenpairs",
]

Array = jax.Array
_HI = lax.Precision.HIGHEST


class Eigenpairs(NamedTuple):
    """Approximate eigenpairs (Ritz pairs) of a symmetric operator H.

    values:    (k,)   Ritz values theta_j, ascending.
    vectors:   (d, k) orthonormal Ritz vectors u_j (columns), in the same order.
    residuals: (k,)   ||H u_j - theta_j u_j||, a convergence measure (an eigenvector has 0).
    """

    values: Array
    vectors: Array
    residuals: Array


def _resolve_dtype(dtype) -> jnp.dtype:
    dtype = jax.dtypes.canonicalize_dtype(jnp.float64) if dtype is None else jnp.dtype(dtype)
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    return dtype


def _check_positive(name: str, value: int) -> int:
    if isinstance(value, bool) or int(value) != value or int(value) < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def _block_hvp(hvp_fn: Callable[[Array], Array], dtype) -> Callable[[Array], Array]:
    """(d, b) -> (d, b): hvp_fn applied to every column."""
    batched = jax.vmap(hvp_fn, in_axes=1, out_axes=1)
    return lambda v: batched(v).astype(dtype)


def _project_out(basis: Array, w: Array) -> tuple[Array, Array]:
    """Classical Gram-Schmidt twice against the rows of ``basis``: returns (w_perp, coefficients).

    basis: (n, d) with orthonormal (or zero) rows; w: (d, b). The coefficients (n, b) are the sum
    of both passes, so ``w = basis.T @ coefficients + w_perp``.
    """
    c1 = jnp.matmul(basis, w, precision=_HI)
    w = w - jnp.matmul(basis.T, c1, precision=_HI)
    c2 = jnp.matmul(basis, w, precision=_HI)
    w = w - jnp.matmul(basis.T, c2, precision=_HI)
    return w, c1 + c2


def _normalize(v: Array) -> Array:
    norm = jnp.linalg.norm(v)
    return v / jnp.where(norm > 0, norm, 1.0)


def _unit_or_fresh(a: Array, f: Array, threshold: Array) -> Array:
    """a / ||a|| if ||a|| > threshold, else f / ||f||."""
    return jnp.where(jnp.linalg.norm(a) > threshold, _normalize(a), _normalize(f))


def _orthonormal_columns(w: Array, fresh: Array, threshold: Array, basis: Array | None = None) -> Array:
    """Orthonormal columns q_1..q_b, orthogonal to the rows of ``basis``, spanning range(w).

    Column by column (classical Gram-Schmidt twice against the columns already accepted), q_i is
    the new direction of w_i, or of fresh_i where that direction has norm <= ``threshold``
    (w_i is then, to that accuracy, in the span of the basis and of w_1..w_{i-1}). A last pass
    against the basis and the accepted columns cleans up the rounding left in directions that
    were accepted with a small norm. ``w`` and ``fresh`` (d, b) must already be orthogonal to
    ``basis`` (n, d). Uses matrix-vector products only: LAPACK QR and SVD are slow to compile
    and to run inside XLA:CPU loops.
    """
    d, b = w.shape
    if b == 1:
        # One column: nothing to orthogonalise against within the block.
        v = _unit_or_fresh(w[:, 0], fresh[:, 0], threshold)
        if basis is not None:
            v = v - jnp.matmul(jnp.matmul(basis, v, precision=_HI), basis, precision=_HI)
        return _normalize(v)[:, None]

    def against(q, v):
        return v - jnp.matmul(q, jnp.matmul(v, q, precision=_HI), precision=_HI)

    def column(i, q):
        a = against(q, against(q, w[:, i]))
        f = against(q, against(q, fresh[:, i]))
        v = _unit_or_fresh(a, f, threshold)
        if basis is not None:
            v = v - jnp.matmul(jnp.matmul(basis, v, precision=_HI), basis, precision=_HI)
        return q.at[:, i].set(_normalize(against(q, v)))

    return lax.fori_loop(0, b, column, jnp.zeros((d, b), w.dtype))


def _hash_uniform(seed: Array, step: Array, shape: tuple[int, int], dtype) -> Array:
    """Counter-based pseudo-random numbers in [-1, 1) from (seed, step, index).

    Restart vectors only need to be generic, and this costs far less XLA compile time than a
    second ``jax.random`` draw inside the loop. ``seed``: uint32 words of the PRNG key.
    """
    x = jnp.arange(shape[0] * shape[1], dtype=jnp.uint32).reshape(shape)
    x = x * jnp.uint32(0x9E3779B9) + step.astype(jnp.uint32) * jnp.uint32(0x85EBCA77)
    for word in seed:
        # murmur3's 32-bit finaliser, keyed by each word of the PRNG key.
        x = x ^ word
        x = (x ^ (x >> 16)) * jnp.uint32(0x85EBCA6B)
        x = (x ^ (x >> 13)) * jnp.uint32(0xC2B2AE35)
        x = x ^ (x >> 16)
    # The top 24 bits, exactly representable in float32.
    return (x >> 8).astype(dtype) * (2.0 / (1 << 24)) - 1.0


def _key_words(rng_key: Array) -> list[Array]:
    """The uint32 words of a PRNG key (new-style typed or legacy raw), for :func:`_hash_uniform`."""
    if jnp.issubdtype(rng_key.dtype, jax.dtypes.prng_key):
        rng_key = jax.random.key_data(rng_key)
    words = jnp.ravel(rng_key).astype(jnp.uint32)
    return [words[i] for i in range(words.shape[0])]


def _block_krylov(
    hvp_fn: Callable[[Array], Array],
    dim: int,
    block_size: int,
    basis_size: int,
    rng_key: Array,
    dtype,
) -> Eigenpairs:
    """Block Lanczos with full reorthogonalisation and Rayleigh-Ritz; all ``basis_size`` pairs.

    Requires 1 <= block_size <= basis_size <= dim (the callers clip). When block_size does not
    divide basis_size, the last block keeps only its leading columns; the callers do that only
    when basis_size = dim, where the basis is complete and nothing is lost. One traced loop body
    builds every block (the start block included), which keeps compile time down.
    """
    b, n = block_size, basis_size
    num_blocks = -(-n // b)
    rows = num_blocks * b  # >= n; rows from n on (a partial last block) stay zero
    valid = (jnp.arange(rows) < n).astype(dtype)
    apply = _block_hvp(hvp_fn, dtype)
    eps = jnp.finfo(dtype).eps
    # Breakdown threshold on the norm of each new direction, relative to a running lower bound
    # of ||H|| (the largest ||H v|| seen). Double Gram-Schmidt leaves rounding noise of about
    # eps * sqrt(n) * ||H|| behind once the Krylov space is exhausted.
    tol = 10.0 * eps * jnp.sqrt(jnp.asarray(n, dtype))
    seed = _key_words(rng_key)

    def body(j, carry):
        """Block j from the remainder of block j - 1 (or the start block), then H V_j."""
        basis, coeffs, scale, w_perp = carry
        # Directions of w_perp with norm <= tol * scale carry no Krylov information (breakdown: an
        # invariant subspace was found); fresh pseudo-random vectors replace them.
        fresh, _ = _project_out(basis, _hash_uniform(seed, j, (dim, b), dtype))
        v = _orthonormal_columns(w_perp, fresh, tol * scale, basis)
        v = v * lax.dynamic_slice(valid, (j * b,), (b,))[None, :]
        basis = lax.dynamic_update_slice(basis, v.T, (j * b, 0))
        w = apply(v)
        scale = jnp.maximum(scale, jnp.max(jnp.linalg.norm(w, axis=0)))
        w_perp, c = _project_out(basis, w)
        coeffs = lax.dynamic_update_slice(coeffs, c, (0, j * b))
        return basis, coeffs, scale, w_perp

    start = _hash_uniform(seed, jnp.asarray(0xFFFFFFFF, jnp.uint32), (dim, b), dtype)
    carry = (jnp.zeros((rows, dim), dtype), jnp.zeros((rows, rows), dtype), jnp.zeros((), dtype), start)
    basis, coeffs, _, w_last = lax.fori_loop(0, num_blocks, body, carry)
    basis, coeffs = basis[:n], coeffs[:n, :n]
    last_row = (num_blocks - 1) * b
    w_last = w_last[:, : n - last_row]

    # coeffs[:, block j] = Q^T H V_j holds the exact Rayleigh quotient Q^T H Q on and above the
    # block diagonal (rows of later blocks were still zero when it was computed); mirror it.
    blk = jnp.arange(n) // b
    upper = blk[:, None] < blk[None, :]
    diag = blk[:, None] == blk[None, :]
    t = jnp.where(upper, coeffs, 0.0)
    t_diag = jnp.where(diag, coeffs, 0.0)
    t = t + t.T + 0.5 * (t_diag + t_diag.T)
    theta, y = jnp.linalg.eigh(t)
    vectors = jnp.matmul(basis.T, y, precision=_HI)
    # H Q = Q T + W_last E_last^T, so H u - theta u = W_last y_last.
    residuals = jnp.linalg.norm(jnp.matmul(w_last, y[last_row:], precision=_HI), axis=0)
    return Eigenpairs(theta, vectors, residuals)


def lanczos(
    hvp_fn: Callable[[Array], Array],
    dim: int,
    num_iters: int,
    rng_key: Array,
    dtype: DTypeLike | None = None,
) -> Eigenpairs:
    """Lanczos eigen-decomposition of a symmetric operator from Hessian-vector products.

    Starting from a random unit vector q_1, builds an orthonormal basis Q_m = [q_1, ..., q_m] of
    the Krylov space span{q_1, H q_1, ..., H^{m-1} q_1} by

        w = H q_j,   w <- w - Q_j (Q_j^T w)  (classical Gram-Schmidt, done twice),
        beta_j = ||w||,   q_{j+1} = w / beta_j,

    and returns the Ritz pairs (theta_i, Q_m s_i) from T_m s_i = theta_i s_i with
    T_m = Q_m^T H Q_m. In exact arithmetic T_m is the Lanczos tridiagonal matrix (alpha_j on the
    diagonal, beta_j beside it); here it is assembled from all Gram-Schmidt coefficients, which is
    the exact Rayleigh quotient of the computed basis. The residual of pair i is
    ``||H u_i - theta_i u_i|| = |beta_m s_{m,i}|``.

    Breakdown: when beta_j <= 10 sqrt(m) eps ||H|| (the Krylov space is an invariant subspace,
    e.g. every distinct eigenvalue has been found), the iteration continues with a fresh
    pseudo-random vector orthogonalised against the basis, so all returned pairs stay valid and
    T_m gets a (near) zero off-diagonal entry.

    Multiplicity: a single start vector sees each eigenspace through one direction, so in exact
    arithmetic an eigenvalue of multiplicity r yields one Ritz vector until the Krylov space is
    exhausted; the other r - 1 come from the restarts (num_iters = d finds a whole null space).
    In floating point, rounding errors seed the missing directions and further copies converge
    after a delay that depends on the dtype (sooner in float32); do not rely on it, use
    :func:`block_lanczos` or :func:`smallest_eigenpairs` for degenerate eigenvalues.

    Cost: num_iters Hessian-vector products and O(dim * num_iters) memory.

    Args:
        hvp_fn: a function u -> H u from (dim,) to (dim,) for a symmetric H.
        dim: the dimension d (static).
        num_iters: the number of iterations m (static); clipped to ``dim``.
        rng_key: a PRNG key (typed or raw) for the start vector and the restart vectors.
        dtype: the floating dtype of the computation; defaults to JAX's default float dtype.

    Returns:
        An :class:`Eigenpairs` with all m Ritz pairs, sorted by ascending value.
    """
    dim = _check_positive("dim", dim)
    num_iters = min(_check_positive("num_iters", num_iters), dim)
    return _block_krylov(hvp_fn, dim, 1, num_iters, rng_key, _resolve_dtype(dtype))


def block_lanczos(
    hvp_fn: Callable[[Array], Array],
    dim: int,
    block_size: int,
    num_iters: int,
    rng_key: Array,
    dtype: DTypeLike | None = None,
) -> Eigenpairs:
    """Block Lanczos eigen-decomposition of a symmetric operator from Hessian-vector products.

    Starting from a random orthonormal block V_1 in R^{d x b}, builds an orthonormal basis
    Q = [V_1, ..., V_s] of the block Krylov space span{V_1, H V_1, ..., H^{s-1} V_1} by

        W = H V_j,   W <- W - Q_j (Q_j^T W)  (classical Gram-Schmidt, done twice),
        W = V_{j+1} R_{j+1}  (Gram-Schmidt twice, column by column),

    and returns the Ritz pairs (theta_i, Q y_i) of T = Q^T H Q (block tridiagonal in exact
    arithmetic; assembled from all Gram-Schmidt coefficients). The residual of pair i is
    ``||H u_i - theta_i u_i|| = ||W_s y_{s,i}||``, with W_s the orthogonalised H V_s and
    y_{s,i} the last block of y_i.

    The Krylov space contains b independent directions of every eigenspace, so an eigenvalue of
    multiplicity up to b (e.g. a null space of dimension <= b) is resolved. Its convergence
    follows the Chebyshev bound of Lanczos: the error of the Ritz vectors of the smallest
    eigenvalue decays roughly like exp(-2 s sqrt(gap)), gap = (lambda_{b+1} - lambda_1) /
    (lambda_max - lambda_1).

    Breakdown: a column of W whose new direction (after the basis and the previous columns are
    projected out) has norm <= 10 sqrt(n) eps ||H|| (an invariant subspace was found, or the
    columns of W are dependent) is replaced by a fresh pseudo-random vector orthogonalised in the
    same way, so the basis stays orthonormal and all pairs valid; the residuals are then accurate
    to about that threshold. The rest of the block continues the Krylov recurrence.

    Cost: b * s Hessian-vector products (vmapped over the b columns), O(d b s) memory.

    Args:
        hvp_fn: a function u -> H u from (dim,) to (dim,) for a symmetric H; it is ``jax.vmap``-ed
            over the columns of a block.
        dim: the dimension d (static).
        block_size: the block size b (static); clipped to ``dim``.
        num_iters: the number of block steps s (static); the basis size b * s is clipped to
            ``dim`` (the last block then keeps only its leading columns).
        rng_key: a PRNG key (typed or raw) for the start block and the restart vectors.
        dtype: the floating dtype of the computation; defaults to JAX's default float dtype.

    Returns:
        An :class:`Eigenpairs` with all min(b * s, dim) Ritz pairs, sorted by ascending value.
    """
    dim = _check_positive("dim", dim)
    block_size = min(_check_positive("block_size", block_size), dim)
    basis_size = min(block_size * _check_positive("num_iters", num_iters), dim)
    return _block_krylov(hvp_fn, dim, block_size, basis_size, rng_key, _resolve_dtype(dtype))


def null_space_directions(
    hvp_fn: Callable[[Array], Array],
    dim: int,
    k: int,
    rng_key: Array,
    *,
    num_iters: int = 30,
    oversample: int = 10,
    power_iters: int = 20,
    dtype: DTypeLike | None = None,
) -> Eigenpairs:
    """The k smallest eigenpairs of a PSD operator by subspace iteration on c I - H.

    With c >= lambda_max(H), the smallest eigenvalues of H are the largest of c I - H (which is
    PSD), so randomized subspace iteration with p columns of oversampling,

        X_0 = orth(G),  G random in R^{d x (k + p)},   X_{t+1} = orth(c X_t - H X_t),

    converges to the invariant subspace of the k + p smallest eigenvalues, the angle of the k-th
    one shrinking by (c - lambda_{k+p+1}) / (c - lambda_k) per iteration. A Rayleigh-Ritz step
    on the final X (T = X^T H X) returns the Ritz pairs with exact residuals
    ``||H X y - theta X y||``. The shift c = 1.05 ||H v|| comes from ``power_iters`` power
    iterations on H from a random unit vector v.

    Cost: power_iters + (num_iters + 1)(k + p) Hessian-vector products and O(d (k + p)) memory,
    less memory than :func:`block_lanczos` but, as the rate above is that of a degree-t power
    rather than a Chebyshev polynomial, usually many more products.

    Args:
        hvp_fn: a function u -> H u from (dim,) to (dim,) for a symmetric positive semi-definite H;
            it is ``jax.vmap``-ed over the columns of a block.
        dim: the dimension d (static).
        k: the number of eigenpairs returned (static); clipped to ``dim``.
        rng_key: a PRNG key for the start vectors.
        num_iters: the number of subspace iterations (static).
        oversample: the extra columns p (static); k + p is clipped to ``dim``.
        power_iters: power iterations for the shift c (static).
        dtype: the floating dtype of the computation; defaults to JAX's default float dtype.

    Returns:
        An :class:`Eigenpairs` with the k smallest Ritz pairs, sorted by ascending value.
    """
    dim = _check_positive("dim", dim)
    k = min(_check_positive("k", k), dim)
    num_iters = _check_positive("num_iters", num_iters)
    power_iters = _check_positive("power_iters", power_iters)
    if isinstance(oversample, bool) or int(oversample) != oversample or int(oversample) < 0:
        raise ValueError(f"oversample must be a non-negative integer, got {oversample!r}")
    dtype = _resolve_dtype(dtype)
    width = min(k + int(oversample), dim)
    apply = _block_hvp(hvp_fn, dtype)

    def power_step(_, carry):
        v, _norm = carry
        hv = hvp_fn(v).astype(dtype)
        norm = jnp.linalg.norm(hv)
        return hv / jnp.where(norm > 0, norm, 1.0), norm

    # The power-iteration vector (column 0) and the start block.
    g = _hash_uniform(_key_words(rng_key), jnp.zeros((), jnp.uint32), (dim, width + 1), dtype)
    v = g[:, 0] / jnp.linalg.norm(g[:, 0])
    _, lam = lax.fori_loop(0, power_iters, power_step, (v, jnp.zeros((), dtype)))
    shift = 1.05 * lam

    # c I - H is positive definite for c > lambda_max, so the iterates keep full rank.
    fresh = g[:, 1:]

    def subspace_step(_, x):
        return _orthonormal_columns(shift * x - apply(x), fresh, 0.0)

    x = _orthonormal_columns(g[:, 1:], fresh, 0.0)
    x = lax.fori_loop(0, num_iters, subspace_step, x)
    hx = apply(x)
    t = jnp.matmul(x.T, hx, precision=_HI)
    theta, y = jnp.linalg.eigh(0.5 * (t + t.T))
    theta, y = theta[:k], y[:, :k]
    vectors = jnp.matmul(x, y, precision=_HI)
    residuals = jnp.linalg.norm(jnp.matmul(hx, y, precision=_HI) - vectors * theta, axis=0)
    return Eigenpairs(theta, vectors, residuals)


def smallest_eigenpairs(
    hvp_fn: Callable[[Array], Array],
    dim: int,
    k: int,
    rng_key: Array,
    *,
    num_iters: int | None = None,
    block_size: int | None = None,
    dtype: DTypeLike | None = None,
) -> Eigenpairs:
    """The k smallest eigenpairs of a symmetric operator, by block Lanczos.

    Runs :func:`block_lanczos` with block size b and s block steps (a Krylov basis of n = b s
    vectors) and keeps the k smallest of its Ritz pairs (theta_i, u_i), H u_i ~ theta_i u_i. A
    block of b >= k start vectors resolves an eigenvalue of multiplicity up to b, in particular a
    null space of dimension >= k, which a single start vector sees through one direction only.

    Per Hessian-vector product, block Lanczos beat single-vector Lanczos and subspace iteration
    (:func:`null_space_directions`) on degenerate null spaces: for d = 2000, rank 1990 (positive
    spectrum in [0.1, 1]) the 10 null pairs reach residual 1e-3 lambda_max after 200 products
    with b = 10 (300 with b = 20), against 260 (float32) to 520 (float64) for :func:`lanczos`
    and ~1100 for subspace iteration; for d = 1000, rank 900 (100 null directions) the Krylov
    methods need about d = 1000 products and subspace iteration ~6800.

    Args:
        hvp_fn: a function u -> H u from (dim,) to (dim,) for a symmetric H; it is ``jax.vmap``-ed
            over the columns of a block.
        dim: the dimension d (static).
        k: the number of eigenpairs returned (static); clipped to ``dim``.
        rng_key: a PRNG key for the start block.
        num_iters: the number of block steps s (static), default 20; the basis size b * s is
            clipped to ``dim``. The cost is b * s Hessian-vector products and O(d b s) memory; the
            error of the smallest pairs shrinks roughly by exp(-2 sqrt(gap)) per step, gap =
            (lambda_{b+1} - lambda_1) / (lambda_max - lambda_1).
        block_size: b (static), default k; clipped to ``dim``. A larger block helps when the k-th
            eigenvalue belongs to a cluster of more than k.
        dtype: the floating dtype of the computation; defaults to JAX's default float dtype.

    Returns:
        An :class:`Eigenpairs` with the k smallest Ritz pairs, sorted by ascending value.
    """
    dim = _check_positive("dim", dim)
    k = min(_check_positive("k", k), dim)
    block_size = min(_check_positive("block_size", k if block_size is None else block_size), dim)
    num_iters = 20 if num_iters is None else _check_positive("num_iters", num_iters)
    basis_size = min(block_size * num_iters, dim)
    if basis_size < k:
        raise ValueError(f"block_size * num_iters = {basis_size} Ritz pairs cannot give k = {k}")
    pairs = _block_krylov(hvp_fn, dim, block_size, basis_size, rng_key, _resolve_dtype(dtype))
    return Eigenpairs(pairs.values[:k], pairs.vectors[:, :k], pairs.residuals[:k])
