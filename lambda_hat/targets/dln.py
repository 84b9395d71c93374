"""Deep linear networks (DLNs): the Furman & Lau (2024) benchmark, with Aoyagi's exact λ.

Model: f(x; W) = x (W_1 W_2 ⋯ W_L) for a row vector x ∈ R^{H_1}, W_s ∈ R^{H_s × H_{s+1}}, widths
(H_1, …, H_{L+1}) input and output included, no biases. params = [W_1, …, W_L] (a list).

Data (Furman & Lau 2024): x ~ U[−R, R]^{H_1} with R = 10, a noiseless teacher y = f(x; W*), and
the loss L_n(W) = mean over the batch *and the output dimensions* of (f(x; W) − y)². Plain MSE is
the Gaussian negative log-likelihood with σ² = 1/2 up to a constant; λ does not depend on that
scale, but the effective nβ does (a σ² = 1 NLL would be half this loss). Because the teacher is
noiseless and realizable, L_n(W*) = 0 and W* is an exact global minimiser, and at W* the Hessian
is the Gauss–Newton matrix (2/H_{L+1}) Dᵀ(Σ_x ⊗ I)D, D = ∂ vec(W_1⋯W_L)/∂w, Σ_x = XᵀX/n.

λ and m come from :func:`lambda_hat.theory.deep_linear_network_coefficient` (Aoyagi 2024) with r the rank
of the teacher's product matrix (``np.linalg.matrix_rank`` in float64). **Caveat**: Aoyagi's λ is
the *global* learning coefficient, the minimum over the whole true set {W : W_1⋯W_L = W*_1⋯W*_L}.
The local λ at a particular teacher can be larger: when the rank of D at W* equals its generic
(maximal) rank, D has constant rank near W* and the local λ is exactly rank(D)/2 with m = 1
(constant-rank theorem: K is a non-degenerate quadratic in rank(D) coordinates). For example a
(3, 3, 3) teacher with one layer cut to rank 1 has local λ = 9/2 but Aoyagi λ = 4. ``info`` reports
``local_lam`` when it is known (constant rank, or the origin below) and whether it equals λ.
``at_origin=True`` (rank 0) puts w* at W = 0, the most singular true parameter: K is homogeneous
there, so the local λ and m equal Aoyagi's global ones.

``info`` also has, for small networks, ``hessian_eigenvalues`` (float64, at W*), ``jacobian_rank``
and ``generic_jacobian_rank``. The Laplace value ½ Σ nβa/(nβa + γ) from those eigenvalues is E[λ̂]
for a posterior pinned near W*; it is *not* in general the finite-n E[λ̂] at a constant-rank
teacher. With γ = 1 the localizer is weak against teacher weights of size ~1/√H, the posterior
spreads along the true set, and its mass can drift to where some normal directions are soft: on a
(28, 10, 9) teacher at n = 1e5 the Laplace value is 126.0 (= rank D/2) and E[λ̂] is 90.0 ± 0.1.
For two-layer networks :func:`lambda_hat.targets.dln_two_layer_expected_llc` gives E[λ̂] at any
(nβ, γ); the local λ is its limit as n → ∞.

Step size. With inputs on [−10, 10] the loss curvature is large (E x² = 100/3), so SGLD needs a
small ε (Furman & Lau used ε = 5e-7 at n = 1e5 for the ~1K and ~10K buckets). ``info`` reports the
top Hessian eigenvalue a_max at W* and ``suggested_step_size`` = 0.04/(nβ a_max + γ) at the default
nβ = n/log n and γ = 1: SGLD's stationary variance in the stiffest direction is then inflated by
about εκ/4 = 1%.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from fractions import Fraction
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from scipy.sparse.linalg import LinearOperator, eigsh

from lambda_hat import theory
from lambda_hat.flat import float_dtype
from lambda_hat.posterior import default_nbeta
from lambda_hat.targets.base import Target
from lambda_hat.targets.normal_crossing import log_multiplicity_bias

__all__ = [
    "DLN_BUCKETS",
    "deep_linear_network",
    "dln_forward",
    "dln_local_lam",
    "dln_loss",
    "dln_origin_expected_llc",
    "dln_product",
    "generic_product_jacobian_rank",
    "product_jacobian_rank",
    "random_deep_linear_network",
    "random_dln_teacher",
    "sample_dln_architecture",
]

# Size buckets: (number of layers L range, width range, default n). ~1K, ~10K and ~100K follow
# Furman & Lau 2024 (their n for ~100K was 1e6; 1e5 here keeps the data in memory); ~100 is ours.
DLN_BUCKETS: dict[int, dict] = {
    100: {"layers": (2, 4), "widths": (2, 10), "n": 10_000},
    1_000: {"layers": (2, 5), "widths": (5, 50), "n": 100_000},
    10_000: {"layers": (2, 10), "widths": (5, 100), "n": 100_000},
    100_000: {"layers": (2, 10), "widths": (50, 500), "n": 100_000},
}

_MAX_DENSE_HESSIAN_DIM = 1000  # info["hessian_eigenvalues"] (float64, at w*) up to this d


def dln_product(layers: Sequence[jax.Array | np.ndarray]) -> jax.Array | np.ndarray:
    """The end-to-end matrix W_1 W_2 ⋯ W_L (H_1 × H_{L+1}).

    Args:
        layers: [W_1, …, W_L], W_s of shape (H_s, H_{s+1}) (numpy or JAX arrays).

    Returns:
        The product W_1 ⋯ W_L, of shape (H_1, H_{L+1}) (a numpy array for numpy layers).
    """
    out = layers[0]
    for w in layers[1:]:
        out = out @ w
    return out


def dln_forward(layers: Sequence[jax.Array | np.ndarray], x: jax.Array | np.ndarray) -> jax.Array | np.ndarray:
    """f(x) = x (W_1 ⋯ W_L) for x of shape (..., H_1).

    The product matrix is formed first: Σ_s H_1 H_s H_{s+1} flops independent of the batch, and
    far faster on CPU than a chain of small batched matmuls when chains are vmapped.

    Args:
        layers: [W_1, …, W_L], W_s of shape (H_s, H_{s+1}).
        x: inputs of shape (..., H_1).

    Returns:
        The outputs, of shape (..., H_{L+1}).
    """
    return x @ dln_product(layers)


def dln_loss(layers: Sequence[jax.Array], batch: tuple[jax.Array, jax.Array]) -> jax.Array:
    """MSE: mean over the batch and the output dimensions of (f(x) − y)² (Gaussian NLL, σ² = 1/2).

    Args:
        layers: [W_1, …, W_L], W_s of shape (H_s, H_{s+1}).
        batch: (x, y) of shapes (b, H_1) and (b, H_{L+1}).

    Returns:
        The scalar mean squared error.
    """
    x, y = batch
    return jnp.mean((dln_forward(layers, x) - y) ** 2)


@jax.jit
def _teacher_outputs(layers, x):
    """y = f(x; W*) and ‖∇L_n(W*)‖ on that data, in one compiled program."""
    y = dln_forward(layers, x)
    grad = jax.grad(dln_loss)(layers, (x, y))
    return y, jnp.sqrt(sum(jnp.sum(g**2) for g in grad))


def _check_widths(widths) -> list[int]:
    hs = list(widths) if isinstance(widths, Sequence) and not isinstance(widths, (str, bytes)) else None
    if (
        hs is None
        or len(hs) < 2
        or not all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) and h >= 1 for h in hs)
    ):
        raise ValueError(
            f"widths: expected a sequence of >= 2 positive integers (input, hidden..., output), got {widths!r}"
        )
    return [int(h) for h in hs]


def _teacher_layers(rng: np.random.Generator, widths: list[int], layer_ranks: list[int]) -> list[np.ndarray]:
    """W_s = N(0, 1/H_s) entries, or a rank-r_s factorization A B with the same entry variance."""
    layers = []
    for h_in, h_out, r in zip(widths[:-1], widths[1:], layer_ranks):
        if r >= min(h_in, h_out):
            w = rng.standard_normal((h_in, h_out)) / math.sqrt(h_in)
        elif r == 0:
            w = np.zeros((h_in, h_out))
        else:
            w = (rng.standard_normal((h_in, r)) / math.sqrt(h_in)) @ (rng.standard_normal((r, h_out)) / math.sqrt(r))
        layers.append(w)
    return layers


def product_jacobian_rank(layers: Sequence[np.ndarray]) -> int:
    """Rank of the Jacobian of (W_1, …, W_L) ↦ W_1 W_2 ⋯ W_L at the given layers, in closed form.

    The differential is D(dW) = Σ_s A_s dW_s B_s with A_s = W_1 ⋯ W_{s−1} (A_1 = I) and
    B_s = W_{s+1} ⋯ W_L (B_L = I). The image of dW_s ↦ A_s dW_s B_s is col(A_s) ⊗ row(B_s). The
    column spaces shrink with s (col A_{s+1} ⊆ col A_s) and the row spaces grow
    (row B_{s−1} ⊆ row B_s), so in bases adapted to both flags the image of D is spanned by basis
    tensors and

        rank D = Σ_s (u_s − u_{s+1}) · v_s,   u_s = rank A_s, v_s = rank B_s, u_{L+1} = 0.

    Only L matrix ranks of partial products are needed: no d × (H_1·H_{L+1}) Jacobian.

    Args:
        layers: [W_1, …, W_L], W_s of shape (H_s, H_{s+1}) (cast to float64).

    Returns:
        rank D at the layers (``np.linalg.matrix_rank`` of each partial product).
    """
    prefix, suffix = _partial_products([np.asarray(w, np.float64) for w in layers])
    return _flag_rank([int(np.linalg.matrix_rank(a)) for a in prefix], [int(np.linalg.matrix_rank(b)) for b in suffix])


def _partial_products(layers: Sequence[np.ndarray]) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """([A_1, …, A_L], [B_1, …, B_L]): A_s = W_1 ⋯ W_{s−1} (A_1 = I), B_s = W_{s+1} ⋯ W_L (B_L = I)."""
    prefix = [np.eye(layers[0].shape[0])]
    for w in layers[:-1]:
        prefix.append(prefix[-1] @ w)
    suffix = [np.eye(layers[-1].shape[1])]
    for w in layers[:0:-1]:
        suffix.insert(0, w @ suffix[0])
    return prefix, suffix


def _flag_rank(u: Sequence[int], v: Sequence[int]) -> int:
    """Σ_s (u_s − u_{s+1}) · v_s with u_{L+1} = 0: dim Σ_s U_s ⊗ V_s for flags U_1 ⊇ U_2 ⊇ … and V_1 ⊆ V_2 ⊆ …."""
    u = list(u) + [0]
    return sum((u[s] - u[s + 1]) * v[s] for s in range(len(v)))


def generic_product_jacobian_rank(widths: Sequence[int]) -> int:
    """The largest rank of that Jacobian over all layers (attained when every layer has full rank).

    For generic layers rank A_s = min(H_1, …, H_s) and rank B_s = min(H_{s+1}, …, H_{L+1}), in
    the formula of :func:`product_jacobian_rank`. Where the rank at w* equals this maximum it is
    constant near w* (rank is lower semicontinuous), so the product map is a submersion onto a
    manifold there and the local learning coefficient is rank/2.

    Args:
        widths: (H_1, …, H_{L+1}), input and output included (>= 2 positive integers).

    Returns:
        The generic rank Σ_s (u_s − u_{s+1}) · v_s with u_s = min(H_1, …, H_s) and
        v_s = min(H_{s+1}, …, H_{L+1}).
    """
    hs = _check_widths(widths)
    return _flag_rank([min(hs[: s + 1]) for s in range(len(hs) - 1)], [min(hs[s + 1 :]) for s in range(len(hs) - 1)])


def dln_local_lam(layers: Sequence[np.ndarray]) -> Fraction | None:
    """The local learning coefficient at a DLN teacher, when the product map has constant rank there.

    With rank D(w*) equal to :func:`generic_product_jacobian_rank`, the true set
    {w : W_1 ⋯ W_L = W_1* ⋯ W_L*} is a manifold near w* and K(w) = E‖(P(w) − P*)ᵀx‖² is a
    non-degenerate quadratic in the rank D(w*) directions normal to it: λ_local = rank D(w*)/2,
    m = 1. Otherwise w* is a singular point of the product map and None is returned (no general
    formula is known; λ_local is then at least Aoyagi's global λ).

    Args:
        layers: the teacher's [W_1, …, W_L], W_s of shape (H_s, H_{s+1}) (float64 recommended:
            ranks are computed with ``np.linalg.matrix_rank``).

    Returns:
        rank D(w*)/2 when the rank is generic, else None.
    """
    return _local_lam_and_ranks(layers)[0]


def _local_lam_and_ranks(layers: Sequence[np.ndarray]) -> tuple[Fraction | None, int, int]:
    """(:func:`dln_local_lam`, the Jacobian rank at the layers, the generic rank)."""
    widths = [int(layers[0].shape[0])] + [int(w.shape[1]) for w in layers]
    rank, generic = product_jacobian_rank(layers), generic_product_jacobian_rank(widths)
    return (Fraction(rank, 2) if rank == generic else None), rank, generic


class _GaussNewton:
    """Matrix-free D (∂ vec P/∂w), Dᵀ and the Hessian at a zero-residual point, in float64."""

    def __init__(self, layers: Sequence[np.ndarray], sigma_x: np.ndarray, n_out: int):
        self.layers = [np.asarray(w, np.float64) for w in layers]
        self.shapes = [w.shape for w in self.layers]
        self.sizes = [w.size for w in self.layers]
        self.dim = sum(self.sizes)
        self.prefix, self.suffix = _partial_products(self.layers)  # W_1 ⋯ W_{s−1} and W_{s+1} ⋯ W_L
        self.sigma_x = sigma_x
        self.n_out = n_out

    def split(self, v):
        out, start = [], 0
        for shape, size in zip(self.shapes, self.sizes):
            out.append(v[start : start + size].reshape(shape))
            start += size
        return out

    def d(self, v):  # D v: the change of the product matrix
        return sum(p @ vs @ s for p, vs, s in zip(self.prefix, self.split(v), self.suffix))

    def dt(self, m):  # Dᵀ m for a product-shaped m
        return np.concatenate([(p.T @ m @ s.T).ravel() for p, s in zip(self.prefix, self.suffix)])

    def hvp(self, v):  # Hessian of mean((f − y)²) at zero residual: (2/N) Dᵀ Σ_x D v
        return (2.0 / self.n_out) * self.dt(self.sigma_x @ self.d(v))

    def top_eigenvalue(self) -> float:
        if self.dim <= 64:
            dense = np.stack([self.hvp(e) for e in np.eye(self.dim)], axis=1)
            return float(np.linalg.eigvalsh(0.5 * (dense + dense.T))[-1])
        op = LinearOperator((self.dim, self.dim), matvec=self.hvp, dtype=np.float64)
        return float(eigsh(op, k=1, which="LA", tol=1e-3, return_eigenvectors=False, v0=np.ones(self.dim))[0])


def dln_origin_expected_llc(
    widths: Sequence[int], sigma_x: np.ndarray, nbeta: float, gamma: float, grid: int | None = None
) -> float:
    """Exact E[λ̂] at w* = 0 for a two-layer DLN (M, H, N) with min(H, N) <= 2 (float64 quadrature).

    With L_n = (1/N) tr(W_2ᵀ W_1ᵀ Σ_x W_1 W_2), L_n is a quadratic form in W_1 given W_2 with
    eigenvalues a_ab = e_a s_b²/N (e_a the eigenvalues of Σ_x, s_b the singular values of W_2,
    zero-padded to H). So W_1 | W_2 is Gaussian with precision 2nβA + γ and

        E[λ̂ | W_2] = Σ_ab nβ a_ab / (2nβ a_ab + γ),
        p(W_2) ∝ e^{−γ‖W_2‖²/2} Π_ab (2nβ a_ab + γ)^{−1/2},

    which depends on W_2 only through its q = min(H, N) singular values, whose Lebesgue density is
    ∝ Π_{i<j}|s_i² − s_j²| Π_i s_i^{|H−N|}. The remaining q-dimensional integral (q <= 2) is done on
    a grid.

    Args:
        widths: (M, H, N) with min(H, N) <= 2.
        sigma_x: (M, M) input second-moment matrix Σ_x = XᵀX/n.
        nbeta: nβ.
        gamma: the localization strength γ (> 0).
        grid: midpoint-rule points per singular value on [0, 9/√γ] (None: 20 000 for q = 1,
            800 for q = 2).

    Returns:
        E[λ̂] = E[nβ L_n(W)] under the localized posterior at w* = 0.
    """
    hs = _check_widths(widths)
    if len(hs) != 3:
        raise ValueError(f"widths: the origin oracle needs a two-layer network (3 widths), got {hs}")
    _, h, n_out = hs
    q = min(h, n_out)
    if q > 2:
        raise ValueError(f"widths: the origin oracle needs min(H, N) <= 2, got H={h}, N={n_out}")
    if not gamma > 0:
        raise ValueError(f"gamma: expected gamma > 0 (the posterior is improper without it), got {gamma}")
    e = np.linalg.eigvalsh(np.asarray(sigma_x, np.float64))
    grid = (20_000 if q == 1 else 800) if grid is None else int(grid)
    smax = 1.0 / math.sqrt(gamma) * 9.0
    s = (np.arange(grid) + 0.5) * (smax / grid)  # midpoint rule (integrands vanish at s = 0 if q = 2)
    if q == 1:
        grids = [s]
    else:
        grids = list(np.meshgrid(s, s, indexing="ij"))
    # each of the q singular values pairs with every e_a; the other H − q zero singular values
    # contribute nothing to E and a constant to p.
    log_w = -0.5 * gamma * sum(g**2 for g in grids) + (abs(h - n_out)) * sum(np.log(g) for g in grids)
    if q == 2:
        log_w = log_w + np.log(np.abs(grids[0] ** 2 - grids[1] ** 2) + 1e-300)
    value = np.zeros_like(grids[0])
    for g in grids:
        a = e[None, :] * (g.reshape(-1, 1) ** 2) / n_out  # (points, M)
        prec = 2 * nbeta * a + gamma
        log_w = log_w - 0.5 * np.sum(np.log(prec), axis=1).reshape(g.shape)
        value = value + np.sum(nbeta * a / prec, axis=1).reshape(g.shape)
    w = np.exp(log_w - log_w.max())
    return float(np.sum(w * value) / np.sum(w))


def _build(
    widths: list[int],
    layers64: list[np.ndarray],
    layer_ranks: list[int],
    *,
    n: int,
    seed: int,
    input_range: float,
    name: str,
    at_origin: bool,
) -> Target:
    rng = np.random.default_rng([seed, 1])
    dtype = float_dtype()
    product64 = dln_product(layers64)
    product_rank = int(np.linalg.matrix_rank(product64)) if not at_origin else 0
    lc = theory.deep_linear_network_coefficient(widths, product_rank)
    d = theory.num_parameters(widths)

    np_dtype = np.dtype(dtype)  # cast on the host: no per-shape conversion programs to compile
    x = jnp.asarray(rng.uniform(-input_range, input_range, size=(n, widths[0])).astype(np_dtype))
    params = [jnp.asarray(w.astype(np_dtype)) for w in layers64]
    y, grad_norm = _teacher_outputs(params, x)  # in the run dtype: L_n(w*) = 0 up to rounding
    x64 = np.asarray(x, np.float64)
    sigma_x = x64.T @ x64 / n
    layers_cast = [np.asarray(w, np.float64) for w in params]
    gn = _GaussNewton(layers_cast, sigma_x, widths[-1])
    a_max = gn.top_eigenvalue()
    nbeta0 = default_nbeta(n)

    bias = partial(log_multiplicity_bias, lc.m)  # nβ -> −(m − 1)/log nβ
    info = {
        "widths": widths,
        "layer_ranks": layer_ranks,
        "product_rank": product_rank,
        "product_singular_values": np.linalg.svd(dln_product(layers_cast), compute_uv=False),
        "dim": d,
        "input_range": float(input_range),
        "loss": "mean over batch and outputs of (f(x) - y)^2 (Gaussian NLL with sigma^2 = 1/2)",
        "hessian_top_eigenvalue": a_max,
        # at the origin the Hessian vanishes (L >= 2) and the curvature comes from the posterior's
        # own spread, so there is no step size to read off at w*
        "suggested_step_size": 0.04 / (nbeta0 * a_max + 1.0) if a_max > 0 else None,
        "finite_n_bias": bias,
        "grad_norm_at_wstar": float(grad_norm),
        "local_lam": None,
        "lam_is_local": None,
        "at_origin": at_origin,
    }
    if d <= _MAX_DENSE_HESSIAN_DIM:  # the spectrum, for Laplace / step-size-bias estimates
        dense = np.stack([gn.hvp(e) for e in np.eye(d)], axis=1)
        info["hessian_eigenvalues"] = np.linalg.eigvalsh(0.5 * (dense + dense.T))
    if at_origin:
        info["local_lam"], info["lam_is_local"] = lc.lam, True
    else:
        # ranks from the float64 teacher: in float32 a cut layer is low-rank only up to rounding
        info["local_lam"], info["jacobian_rank"], info["generic_jacobian_rank"] = _local_lam_and_ranks(layers64)
        if info["local_lam"] is not None:
            info["lam_is_local"] = info["local_lam"] == lc.lam
    expected = None
    if at_origin and len(widths) == 3 and min(widths[1], widths[2]) <= 2:

        def expected(nbeta: float, gamma: float) -> float:
            return dln_origin_expected_llc(widths, sigma_x, nbeta, gamma)

    return Target(
        name=name,
        loss_fn=dln_loss,
        params=params,
        data=(x, y),
        n=n,
        lam=lc.lam,
        m=lc.m,
        expected_llc_fn=expected,
        finite_n_bias=bias,
        info=info,
    )


def deep_linear_network(
    widths: Sequence[int],
    rank: int | None = None,
    *,
    n: int = 1000,
    seed: int = 0,
    input_range: float = 10.0,
    at_origin: bool = False,
) -> Target:
    """A DLN teacher whose product matrix has exactly rank ``rank`` (default: min(widths)).

    The teacher's layers are Gaussian (entries N(0, 1/H_s)); for ``rank < min(widths)`` one
    randomly chosen layer is replaced by a rank-``rank`` factorization A B, so the product has rank
    ``rank`` (checked with ``np.linalg.matrix_rank`` in float64). With ``at_origin=True`` (needs
    ``rank == 0``) w* = 0: the most singular true parameter, where local and global λ agree, and
    for two layers with min(H_2, H_3) <= 2 ``expected_llc_fn`` is the exact finite-n value
    (:func:`dln_origin_expected_llc`).

    In float32 the cut layer is rank-``rank`` only up to rounding (its other singular values are
    ~1e-7 relative); ``info["product_singular_values"]`` shows this. The local geometry at the
    sampling scale is unaffected.

    Args:
        widths: (H_1, …, H_{L+1}), input and output included (>= 2 positive integers).
        rank: rank of the teacher's product matrix, in [0, min(widths)] (None: min(widths)).
        n: number of data points (>= 2).
        seed: numpy seed for the teacher (data use a seed derived from it).
        input_range: R > 0: inputs are x ~ U[−R, R]^{H_1}.
        at_origin: put w* at W = 0 (needs ``rank=0``).

    Returns:
        A Target with params [W_1, …, W_L] (run dtype), data (x, y) of shapes (n, H_1) and
        (n, H_{L+1}), loss :func:`dln_loss`, λ and m from Aoyagi, ``finite_n_bias`` and (at the
        origin, two layers, min(H_2, H_3) <= 2) the exact ``expected_llc_fn``. info as in the module
        description.
    """
    hs = _check_widths(widths)
    r = min(hs) if rank is None else rank
    if isinstance(r, bool) or not isinstance(r, (int, np.integer)) or not 0 <= r <= min(hs):
        raise ValueError(f"rank: expected an integer in [0, min(widths) = {min(hs)}], got {rank!r}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    if not (isinstance(input_range, (int, float)) and input_range > 0):
        raise ValueError(f"input_range: expected a number > 0, got {input_range!r}")
    rng = np.random.default_rng(seed)
    if at_origin:
        if r != 0:
            raise ValueError(f"rank: at_origin=True places w* at W = 0, which needs rank=0, got {rank!r}")
        layers = [np.zeros((a, b)) for a, b in zip(hs[:-1], hs[1:])]
        layer_ranks = [0] * (len(hs) - 1)
    else:
        layer_ranks = [min(a, b) for a, b in zip(hs[:-1], hs[1:])]
        if r < min(hs):
            layer_ranks[int(rng.integers(len(layer_ranks)))] = int(r)
        layers = _teacher_layers(rng, hs, layer_ranks)
    name = "dln_" + "-".join(map(str, hs)) + f"_r{r}" + ("_origin" if at_origin else "")
    target = _build(
        hs, layers, layer_ranks, n=int(n), seed=seed, input_range=float(input_range), name=name, at_origin=at_origin
    )
    if target.info["product_rank"] != r:  # pragma: no cover - a measure-zero event for Gaussian layers
        raise RuntimeError(f"teacher product has rank {target.info['product_rank']}, requested {r}")
    return target


def sample_dln_architecture(bucket: int, seed: int = 0) -> tuple[list[int], list[int]]:
    """Random (widths, layer_ranks) whose parameter count d lies in [bucket/√10, bucket·√10).

    As in Furman & Lau (2024): the number of layers and each width uniform in the bucket's ranges
    (:data:`DLN_BUCKETS`), redrawn until d lands in the bucket; each layer's rank is cut with
    probability 1/2 to a uniform integer in [1, min(H_s, H_{s+1}) − 1].

    Args:
        bucket: a key of :data:`DLN_BUCKETS` (100, 1000, 10 000 or 100 000).
        seed: numpy seed (combined with ``bucket``).

    Returns:
        (widths, layer_ranks): the L + 1 widths (input and output included) and the L layer ranks.
    """
    if bucket not in DLN_BUCKETS:
        raise ValueError(f"bucket: expected one of {sorted(DLN_BUCKETS)}, got {bucket!r}")
    spec = DLN_BUCKETS[bucket]
    rng = np.random.default_rng([seed, bucket])
    lo, hi = bucket / math.sqrt(10), bucket * math.sqrt(10)
    for _ in range(100_000):
        num_layers = int(rng.integers(spec["layers"][0], spec["layers"][1] + 1))
        widths = [int(w) for w in rng.integers(spec["widths"][0], spec["widths"][1] + 1, size=num_layers + 1)]
        if lo <= theory.num_parameters(widths) < hi:
            break
    else:  # pragma: no cover
        raise RuntimeError(f"no architecture found for bucket {bucket}")
    layer_ranks = []
    for a, b in zip(widths[:-1], widths[1:]):
        full = min(a, b)
        cut = full > 1 and rng.random() < 0.5
        layer_ranks.append(int(rng.integers(1, full)) if cut else full)
    return widths, layer_ranks


def random_dln_teacher(bucket: int, seed: int = 0) -> tuple[list[int], list[int], list[np.ndarray]]:
    """(widths, layer_ranks, float64 teacher layers) of ``random_deep_linear_network(bucket, seed=seed)``.

    No data is drawn, so screening many seeds (e.g. for those whose :func:`dln_local_lam` is
    known) costs only the layers' partial products.

    Args:
        bucket: a key of :data:`DLN_BUCKETS`.
        seed: numpy seed, as in :func:`random_deep_linear_network`.

    Returns:
        (widths, layer_ranks, layers): the architecture of :func:`sample_dln_architecture` and the
        teacher's [W_1, …, W_L] in float64.
    """
    widths, layer_ranks = sample_dln_architecture(bucket, seed)
    return widths, layer_ranks, _teacher_layers(np.random.default_rng([seed, bucket, 1]), widths, layer_ranks)


def random_deep_linear_network(
    bucket: int = 1000,
    *,
    seed: int = 0,
    n: int | None = None,
    input_range: float = 10.0,
) -> Target:
    """A random DLN teacher in a Furman–Lau size bucket (d ≈ ``bucket`` ∈ {1e2, 1e3, 1e4, 1e5}).

    Architecture from :func:`sample_dln_architecture`; teacher layers Gaussian with the chosen
    ranks; r = matrix_rank of the float64 product; λ, m from Aoyagi. ``n`` defaults to the bucket's
    (:data:`DLN_BUCKETS`; mind the memory: n × H_1 inputs and n × H_{L+1} outputs). ``info`` has
    d, widths, layer ranks, r, the suggested step size and, for small networks, the local λ when known.

    Args:
        bucket: a key of :data:`DLN_BUCKETS` (the target parameter count).
        seed: numpy seed for the architecture and teacher (data use a seed derived from it).
        n: number of data points (>= 2; None: the bucket's default).
        input_range: R > 0: inputs are x ~ U[−R, R]^{H_1}.

    Returns:
        A Target as from :func:`deep_linear_network`, with ``info["bucket"]`` set.
    """
    widths, layer_ranks, layers = random_dln_teacher(bucket, seed)
    n = DLN_BUCKETS[bucket]["n"] if n is None else n
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 2:
        raise ValueError(f"n: expected an integer >= 2, got {n!r}")
    name = f"dln_bucket{bucket}_seed{seed}"
    target = _build(
        widths, layers, layer_ranks, n=int(n), seed=seed, input_range=float(input_range), name=name, at_origin=False
    )
    target.info["bucket"] = bucket
    return target
