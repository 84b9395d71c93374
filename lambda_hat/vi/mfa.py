"""Variational inference with a zero-mean mixture of factor analyzers (MFA), BlackJAX style.

Everything lives in flat local coordinates v = w - w* in R^d. The family is

    q(v) = sum_m pi_m N(v; 0, Sigma_m),   m = 1..M,
    pi = softmax(logits),  s = softplus(rho) + s_min,  D = diag(s^2),
    Sigma_m = D + K_m K_m^T,  K_m = s (.) A_m,  A_m in R^{d x r} ("whitened" loadings).

Densities use the Woodbury identity and the matrix-determinant lemma on the r x r
capacitance matrix C_m = I_r + A_m^T A_m, so no d x d object is ever formed; memory is
O(M d r) and one log q costs O(M d r + M r^3).

The objective is the ELBO  E_q[log p~(v) - log q(v)], which is *maximised*; the optax
optimizer receives the gradient of -ELBO. See :func:`elbo_grad_estimate` for the estimator.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree
from jax.scipy.linalg import solve_triangular
from jax.scipy.special import logsumexp, ndtr
from jax.typing import DTypeLike

__all__ = [
    "MFAState",
    "MFAInfo",
    "ExpectedQuadratic",
    "init",
    "step",
    "sample",
    "sample_component",
    "as_top_level_api",
    "elbo_grad_estimate",
    "logdensity",
    "component_logdensities",
    "responsibilities",
    "scales",
    "weights",
    "expected_quadratic",
]

Array = jax.Array
_HI = jax.lax.Precision.HIGHEST
_LOG_2PI = math.log(2.0 * math.pi)


class MFAState(NamedTuple):
    """State of an MFA fit.

    Attributes:
        logits:          (M,)      pi = softmax(logits).
        rho:             (d,)      shared diagonal scale parameter; s = softplus(rho) + min_scale.
        loadings:        (M, d, r) whitened loadings A_m; K_m = s[:, None] * A_m.
        opt_state:       optax state over the tuple (logits, rho, loadings).
        baseline:        ()        exponential moving average (un-normalised) of past ELBO estimates.
        baseline_weight: ()        1 - decay^t, so baseline / baseline_weight is the bias-corrected
                                   average; 0 before the first step.
        min_scale:       ()        s_min, the floor on the diagonal scales (not optimised).
    """

    logits: Array
    rho: Array
    loadings: Array
    opt_state: optax.OptState
    baseline: Array
    baseline_weight: Array
    min_scale: Array


class MFAInfo(NamedTuple):
    """Diagnostics of one step, all evaluated at the parameters *before* the update.

    Attributes:
        elbo:           stratified Monte Carlo estimate of the ELBO E_q[log p~ - log q].
                        HIGHER IS BETTER. (BlackJAX's own VI ``elbo`` field stores the loss
                        E_q[log q - log p], i.e. minus this.)
        elbo_stderr:    its Monte Carlo standard error (stratified by component; NaN when
                        num_samples = 1, where no within-component variance is available).
        baseline:       the constant b used in the score gradient for the logits.
        weight_entropy: -sum_m pi_m log pi_m, the entropy of the mixture weights (log M = uniform).
        scale_min:      min_i s_i.
        scale_max:      max_i s_i.
        grad_norm:      global L2 norm of the ELBO-ascent gradient over (logits, rho, loadings).
        rejected:       True when the step was rejected because the ELBO estimate or its gradient
                        was not finite (e.g. log p~ is NaN for a draw); the state is then unchanged.
        log_scale_grad: (d,) the estimated derivative of the ELBO along log s_i, scaling row i of
                        D^1/2 and of every K_m: s_i / sigmoid(rho_i) * dELBO/drho_i. Its expectation
                        is 1 - E_q[v_i dU/dv_i] (the virial identity), so it is 0 at every optimum.
    """

    elbo: Array
    elbo_stderr: Array
    baseline: Array
    weight_entropy: Array
    scale_min: Array
    scale_max: Array
    grad_norm: Array
    rejected: Array
    log_scale_grad: Array


class ExpectedQuadratic(NamedTuple):
    """E_q[1/2 v^T H v] and the Monte Carlo standard error of its Hutchinson part (0 if exact)."""

    value: Array
    stderr: Array


# --------------------------------------------------------------------------------------
# Density math (private helpers on raw parameters so they can be differentiated).
# --------------------------------------------------------------------------------------


class _Factors(NamedTuple):
    log_weights: Array  # (M,) log pi
    s: Array  # (d,)
    loadings: Array  # (M, d, r)
    chol: Array  # (M, r, r) lower Cholesky factor of C_m = I + A_m^T A_m
    log_norm: Array  # (M,) -1/2 (d log 2pi + 2 sum log s + log det C_m)


def _scales(rho: Array, min_scale: Array) -> Array:
    return jax.nn.softplus(rho) + min_scale


def _factors(logits: Array, rho: Array, loadings: Array, min_scale: Array) -> _Factors:
    """Per-parameter precomputation shared by all evaluation points: O(M d r^2 + M r^3)."""
    d = rho.shape[0]
    r = loadings.shape[-1]
    s = _scales(rho, min_scale)
    gram = jnp.einsum("mdr,mdk->mrk", loadings, loadings, precision=_HI)
    cap = jnp.eye(r, dtype=rho.dtype) + gram
    chol = jnp.linalg.cholesky(cap)
    logdet_cap = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol, axis1=-2, axis2=-1)), axis=-1)
    logdet = 2.0 * jnp.sum(jnp.log(s)) + logdet_cap
    log_norm = -0.5 * (d * _LOG_2PI + logdet)
    return _Factors(jax.nn.log_softmax(logits), s, loadings, chol, log_norm)


def _component_logpdfs(fac: _Factors, v: Array) -> Array:
    """log N(v; 0, Sigma_m) for all m, shape (M,), for a single point v of shape (d,).

    x = v / s; g_m = A_m^T x; y_m = L_m^{-1} g_m;  quad_m = x^T x - y_m^T y_m
    (Woodbury: v^T Sigma_m^{-1} v = x^T (I + A_m A_m^T)^{-1} x = x^T x - g_m^T C_m^{-1} g_m).
    """
    x = v / fac.s
    g = jnp.einsum("mdr,d->mr", fac.loadings, x, precision=_HI)
    y = solve_triangular(fac.chol, g[..., None], lower=True)[..., 0]
    quad = jnp.sum(x * x) - jnp.sum(y * y, axis=-1)
    return fac.log_norm - 0.5 * quad


def _logq(fac: _Factors, v: Array) -> Array:
    return logsumexp(fac.log_weights + _component_logpdfs(fac, v))


def _state_factors(state: MFAState) -> _Factors:
    return _factors(state.logits, state.rho, state.loadings, state.min_scale)


# --------------------------------------------------------------------------------------
# Public density helpers.
# --------------------------------------------------------------------------------------


def scales(state: MFAState) -> Array:
    """s = softplus(rho) + s_min, shape (d,); D = diag(s^2).

    Args:
        state: an MFA state.

    Returns:
        (d,) the diagonal scales s.
    """
    return _scales(state.rho, state.min_scale)


def weights(state: MFAState) -> Array:
    """Mixture weights pi = softmax(logits), shape (M,).

    Args:
        state: an MFA state.

    Returns:
        (M,) the mixture weights pi (non-negative, summing to 1).
    """
    return jax.nn.softmax(state.logits)


def component_logdensities(state: MFAState, v: Array) -> Array:
    """log N(v; 0, Sigma_m) for m = 1..M at one point v of shape (d,); returns (M,).

    Args:
        state: an MFA state.
        v: (d,) a point in local coordinates v = w - w*.

    Returns:
        (M,) the log density of each component at v (without the log weights).
    """
    return _component_logpdfs(_state_factors(state), v)


def logdensity(state: MFAState, v: Array) -> Array:
    """log q(v) = logsumexp_m(log pi_m + log N(v; 0, Sigma_m)) at one point v of shape (d,).

    Args:
        state: an MFA state.
        v: (d,) a point in local coordinates v = w - w*.

    Returns:
        () the scalar log q(v).
    """
    return _logq(_state_factors(state), v)


def responsibilities(state: MFAState, v: Array) -> Array:
    """r_m(v) = pi_m N(v; 0, Sigma_m) / q(v) at one point v of shape (d,); returns (M,).

    Args:
        state: an MFA state.
        v: (d,) a point in local coordinates v = w - w*.

    Returns:
        (M,) the posterior component probabilities r_m(v) (summing to 1).
    """
    fac = _state_factors(state)
    return jax.nn.softmax(fac.log_weights + _component_logpdfs(fac, v))


# --------------------------------------------------------------------------------------
# Sampling.
# --------------------------------------------------------------------------------------


def _split_noise(noise: Array, r: int) -> tuple[Array, Array]:
    """One N(0, I) draw of trailing size r + d split into (z, eps): a single PRNG call."""
    return noise[..., :r], noise[..., r:]


def sample(rng_key: Array, state: MFAState, num_samples: int = 1) -> Array:
    """Draw v ~ q: m ~ Cat(pi), z ~ N(0, I_r), eps ~ N(0, I_d), v = K_m z + s (.) eps.

    Args:
        rng_key: PRNG key for the draws.
        state: an MFA state.
        num_samples: number of draws.

    Returns:
        (num_samples, d) draws in local coordinates v = w - w*, in the loadings' dtype.
    """
    loadings = state.loadings
    num_components, d, r = loadings.shape
    dtype = loadings.dtype
    s = scales(state)
    # One PRNG call (each random op costs ~1 s of XLA:CPU compile with jax's default
    # partitionable threefry): column 0 gives u = Phi(g) ~ U(0, 1) for the component,
    # m = #{k < M-1 : u > pi_1 + ... + pi_k}, i.e. inverse-CDF sampling of Cat(pi).
    noise = jax.random.normal(rng_key, (num_samples, 1 + r + d), dtype)
    u = ndtr(noise[:, 0])
    cum = jnp.cumsum(jax.nn.softmax(state.logits))[:-1]
    comp = jnp.sum(u[:, None] > cum[None, :], axis=1)
    z, eps = _split_noise(noise[:, 1:], r)
    # Select A_m z without gathering a (num_samples, d, r) array: one-hot over components.
    zsel = jax.nn.one_hot(comp, num_components, dtype=dtype)[:, :, None] * z[:, None, :]
    lowrank = jnp.einsum("mdr,nmr->nd", loadings, zsel, precision=_HI)
    return s * (lowrank + eps)


def sample_component(rng_key: Array, state: MFAState, component: int | Array, num_samples: int = 1) -> Array:
    """Reparameterised draws from one component: v = s (.) (A_m z + eps), shape (num_samples, d).

    ``component`` may be a traced integer. Use it for stratified estimators
    E_q[g] = sum_m pi_m E_{N_m}[g].

    Args:
        rng_key: PRNG key for the draws.
        state: an MFA state.
        component: the component index m in [0, M) (an int or a traced integer).
        num_samples: number of draws.

    Returns:
        (num_samples, d) draws from N(0, Sigma_m) in local coordinates v = w - w*.
    """
    _, d, r = state.loadings.shape
    dtype = state.loadings.dtype
    z, eps = _split_noise(jax.random.normal(rng_key, (num_samples, r + d), dtype), r)
    a_m = state.loadings[component]
    return scales(state) * (jnp.einsum("dr,nr->nd", a_m, z, precision=_HI) + eps)


# --------------------------------------------------------------------------------------
# Gradient estimator.
# --------------------------------------------------------------------------------------


def _elbo_surrogate(params, min_scale, z, eps, logdensity_fn, baseline, use_baseline):
    """Scalar surrogate whose gradient is the ELBO-ascent estimator described in
    :func:`elbo_grad_estimate`; auxiliary output (elbo_hat, elbo_stderr, b)."""
    sg = jax.lax.stop_gradient
    logits, rho, loadings = params
    num_components, num_samples, d = eps.shape

    # Reparameterised stratified draws v_ms = s (.) (A_m z_ms + eps_ms); live in (rho, A).
    s = _scales(rho, min_scale)
    v = s * (jnp.einsum("mdr,msr->msd", loadings, z, precision=_HI) + eps)
    v_flat = v.reshape(num_components * num_samples, d)

    logp = jax.vmap(logdensity_fn)(v_flat)
    # Sticking the landing: log q with *all* parameters stopped, evaluated at the live v.
    fac = _factors(sg(logits), sg(rho), sg(loadings), min_scale)
    log_comp = jax.vmap(lambda x: _component_logpdfs(fac, x))(v_flat)  # (M*S, M)
    logq = logsumexp(fac.log_weights + log_comp, axis=-1)
    f = (logp - logq).reshape(num_components, num_samples)

    pi = sg(jax.nn.softmax(logits))
    f_sg = sg(f)
    f_mean = jnp.mean(f_sg, axis=1)  # (M,)
    elbo_hat = jnp.sum(pi * f_mean)
    if num_samples > 1:
        var_m = jnp.var(f_sg, axis=1, ddof=1)
        elbo_se = jnp.sqrt(jnp.sum(pi**2 * var_m) / num_samples)
    else:
        elbo_se = jnp.full((), jnp.nan, dtype=f.dtype)
    b = jnp.where(use_baseline, baseline, elbo_hat)

    # (1) continuous parameters: sum_m pi_m mean_s f(v_ms(rho, A)), pi stopped.
    cont = jnp.sum(pi * jnp.mean(f, axis=1))
    # (2) logits: Rao-Blackwellised score, grad_logits log q(v) = r(v) - pi, at stopped v.
    logq_logits = logsumexp(jax.nn.log_softmax(logits) + sg(log_comp), axis=-1)
    score = (f_sg - b) * logq_logits.reshape(num_components, num_samples)
    score_term = jnp.sum(pi * jnp.mean(score, axis=1))
    return cont + score_term, (elbo_hat, elbo_se, b)


def elbo_grad_estimate(
    rng_key: Array,
    state: MFAState,
    logdensity_fn: Callable[[Array], Array],
    num_samples: int,
    baseline: Array | float | None = None,
) -> tuple[tuple[Array, Array, Array], Array, Array, Array]:
    """Unbiased estimate of grad ELBO (ascent direction) w.r.t. (logits, rho, loadings).

    Stratified sampling: for every component m, ``num_samples`` reparameterised draws
    v_ms = s (.) (A_m z_ms + eps_ms), so each step costs M * num_samples target evaluations.
    With f(v) = log p~(v) - log q(v) and ELBO = sum_m pi_m E_{N_m}[f]:

    * (rho, A): sticking-the-landing reparameterisation gradient

          g = sum_m pi_m mean_s d/d(rho,A) [log p~(v_ms) - log q_{stop_grad(theta)}(v_ms)].

      The -log q term is kept (entropy); only its *explicit* parameter dependence is
      dropped, whose expectation is sum_m pi_m E_{N_m}[grad log q] = E_q[grad log q] = 0.
      Exact pi weights (not sampled m) keep this identity exact, so g is unbiased.
    * logits: Rao-Blackwellised score gradient on the same stratified draws,

          g_logits = sum_m pi_m mean_s (r(v_ms) - pi) (f(v_ms) - b),

      since grad_logits log q(v) = r(v) - pi. Its mean is E_q[(grad_logits log q) f]
      = grad_logits ELBO (the explicit term E_q[grad_logits log q] vanishes) for any b that
      does not depend on the current draws, because E_q[r - pi] = 0.

    ``baseline`` is such a constant b (``step`` passes a moving average of past ELBO
    estimates). With ``baseline=None`` the current batch's ELBO estimate is used, which
    biases g_logits by O(1/(M num_samples)); ``step`` does this only on its first call.

    Args:
        rng_key: PRNG key for the draws.
        state: an MFA state (its parameters are where the gradient is taken).
        logdensity_fn: v -> log p~(v), a scalar, for v of shape (d,) in local coordinates.
        num_samples: draws per component (M * num_samples target evaluations in all).
        baseline: the score-gradient baseline b, a scalar; None uses the current ELBO estimate.

    Returns:
        The tuple ((g_logits, g_rho, g_loadings), elbo_hat, elbo_stderr, b_used) of the ascent
        gradients, shaped like (logits, rho, loadings) ((M,), (d,), (M, d, r)), the stratified
        ELBO estimate, its Monte Carlo standard error (NaN when num_samples = 1) and the baseline
        used.
    """
    dtype = state.rho.dtype
    if baseline is None:
        baseline_arr = jnp.zeros((), dtype)
        use_baseline = jnp.zeros((), bool)
    else:
        baseline_arr = jnp.asarray(baseline, dtype)
        use_baseline = jnp.ones((), bool)
    return _grad_estimate(rng_key, state, logdensity_fn, num_samples, baseline_arr, use_baseline)


def _grad_estimate(rng_key, state, logdensity_fn, num_samples, baseline, use_baseline):
    num_components, d, r = state.loadings.shape
    dtype = state.loadings.dtype
    noise = jax.random.normal(rng_key, (num_components, num_samples, r + d), dtype)
    z, eps = _split_noise(noise, r)
    params = (state.logits, state.rho, state.loadings)
    grads, (elbo_hat, elbo_se, b) = jax.grad(_elbo_surrogate, has_aux=True)(
        params, state.min_scale, z, eps, logdensity_fn, baseline, use_baseline
    )
    return grads, elbo_hat, elbo_se, b


# --------------------------------------------------------------------------------------
# init / step / top-level API.
# --------------------------------------------------------------------------------------


def _inverse_softplus(y: Array) -> Array:
    """x with softplus(x) = y > 0, stable for large and small y."""
    return y + jnp.log(-jnp.expm1(-y))


def _default_float_dtype():
    return jax.dtypes.canonicalize_dtype(jnp.float64)


def init(
    position_or_dim: int | Array,
    optimizer: optax.GradientTransformation,
    *,
    num_components: int,
    rank: int,
    rng_key: Array,
    init_scale: float | Array = 0.1,
    init_loading_scale: float = 0.1,
    init_loadings: Array | None = None,
    min_scale: float | Array | None = None,
    dtype: DTypeLike | None = None,
) -> MFAState:
    """Initial MFA state: pi uniform, s = init_scale, small random whitened loadings (plus
    ``init_loadings`` when given).

    Args:
        position_or_dim: d, or the position w* (any pytree; only its flat size and dtype
            are used). The dtype follows it unless ``dtype`` is given (default for an int:
            float64 under x64, else float32).
        optimizer: the optax optimizer; its state is initialised over (logits, rho, loadings).
        num_components: M, the number of mixture components (>= 1).
        rank: r, the number of loading columns per component (>= 1).
        rng_key: key for the random loadings (required: components must differ).
        init_scale: initial s (scalar or (d,)). For a localized LLC posterior a good value
            is about 1/sqrt(n beta * curvature + gamma), much smaller than 1/sqrt(gamma).
        init_loading_scale: A_m entries ~ N(0, init_loading_scale^2 / d), so each loading
            column has norm about init_loading_scale; breaks the symmetry between components.
        init_loadings: optional starting loadings K0 in the units of v, shape (d, r) (shared by
            every component) or (M, d, r); the whitened loadings start at A_m = K0 / s plus the
            random ones above, so component m's covariance starts near D + K0 K0ᵀ.
        min_scale: s_min, the floor of s (default 1e-4 * min(init_scale)).
        dtype: floating dtype of the state; None follows ``position_or_dim`` as above.

    Returns:
        The initial :class:`MFAState` (zero baseline and baseline weight).

    Raises:
        ValueError: if the dtype is not floating, d, ``num_components`` or ``rank`` is < 1, or
            ``init_loadings`` has the wrong shape.
    """
    if isinstance(position_or_dim, numbers.Integral) and not isinstance(position_or_dim, bool):
        d = int(position_or_dim)
        dtype = jnp.dtype(dtype) if dtype is not None else _default_float_dtype()
    else:
        flat, _ = ravel_pytree(position_or_dim)
        d = flat.shape[0]
        dtype = jnp.dtype(dtype) if dtype is not None else flat.dtype
    if not jnp.issubdtype(dtype, jnp.floating):
        raise ValueError(f"dtype must be a floating dtype, got {dtype}")
    if d < 1:
        raise ValueError(f"position_or_dim: need dimension d >= 1, got {d}")
    if int(num_components) < 1:
        raise ValueError(f"num_components must be >= 1, got {num_components}")
    if int(rank) < 1:
        raise ValueError(f"rank must be >= 1, got {rank}")
    num_components, rank = int(num_components), int(rank)

    s0 = jnp.broadcast_to(jnp.asarray(init_scale, dtype), (d,))
    if min_scale is None:
        s_min = 1e-4 * jnp.min(s0)
    else:
        s_min = jnp.asarray(min_scale, dtype)
    s_min = jnp.reshape(s_min, ()).astype(dtype)
    rho = _inverse_softplus(s0 - s_min)
    logits = jnp.zeros((num_components,), dtype)
    loadings = (init_loading_scale / math.sqrt(d)) * jax.random.normal(rng_key, (num_components, d, rank), dtype)
    if init_loadings is not None:
        k0 = jnp.asarray(init_loadings, dtype)
        if k0.shape not in ((d, rank), (num_components, d, rank)):
            raise ValueError(
                f"init_loadings: expected shape ({d}, {rank}) or ({num_components}, {d}, {rank}), got {k0.shape}"
            )
        loadings = loadings + k0 / s0[:, None]
    opt_state = optimizer.init((logits, rho, loadings))
    zero = jnp.zeros((), dtype)
    return MFAState(logits, rho, loadings, opt_state, zero, zero, s_min)


def step(
    rng_key: Array,
    state: MFAState,
    logdensity_fn: Callable[[Array], Array],
    optimizer: optax.GradientTransformation,
    num_samples: int = 4,
    baseline_decay: float = 0.9,
) -> tuple[MFAState, MFAInfo]:
    """One stochastic ELBO-ascent step.

    ``logdensity_fn`` is v -> log p~(v) (scalar) in local coordinates v = w - w*; it may close
    over a minibatch. ``num_samples`` is the number of draws *per component*
    (M * num_samples evaluations).

    The ascent gradient of :func:`elbo_grad_estimate` is negated and handed to optax
    (which minimises), then params <- params + updates. The logits' score-gradient
    baseline is the bias-corrected moving average (decay ``baseline_decay``) of the
    previous steps' ELBO estimates (the current batch's estimate on the first step).

    A step whose ELBO estimate or gradient is not finite (log p~ NaN or ±Inf at some draw, e.g.
    a loss that takes the log of a negative number in part of the space) is rejected: the state,
    optimizer state and baseline are returned unchanged and ``info.rejected`` is True.

    Args:
        rng_key: PRNG key for the step's draws.
        state: the current MFA state.
        logdensity_fn: v -> log p~(v), a scalar, for v of shape (d,) in local coordinates.
        optimizer: the optax optimizer whose state ``state.opt_state`` holds (as made by
            :func:`init`).
        num_samples: draws per component.
        baseline_decay: decay of the moving average of ELBO estimates used as the baseline.

    Returns:
        The pair (new_state, info) of the updated :class:`MFAState` and the step's
        :class:`MFAInfo` (evaluated at the parameters before the update).
    """
    dtype = state.rho.dtype
    has_baseline = state.baseline_weight > 0
    b_prev = state.baseline / jnp.where(has_baseline, state.baseline_weight, 1)
    grads, elbo_hat, elbo_se, b = _grad_estimate(rng_key, state, logdensity_fn, num_samples, b_prev, has_baseline)
    finite = jnp.isfinite(elbo_hat)
    for g in jax.tree.leaves(grads):
        finite &= jnp.all(jnp.isfinite(g))
    params = (state.logits, state.rho, state.loadings)
    # zeroed gradients on a rejected step keep NaN out of the optimizer's arithmetic entirely
    neg_grads = jax.tree.map(lambda g: jnp.where(finite, -g, jnp.zeros_like(g)), grads)
    updates, opt_state = optimizer.update(neg_grads, state.opt_state, params)
    new_params = optax.apply_updates(params, updates)

    decay = jnp.asarray(baseline_decay, dtype)
    new_baseline = decay * state.baseline + (1 - decay) * jnp.where(finite, elbo_hat, 0)
    new_weight = decay * state.baseline_weight + (1 - decay)
    accepted = MFAState(*new_params, opt_state, new_baseline, new_weight, state.min_scale)
    new_state = jax.tree.map(lambda new, old: jnp.where(finite, new, old), accepted, state)

    pi = jax.nn.softmax(state.logits)
    s = scales(state)
    info = MFAInfo(
        elbo=elbo_hat,
        elbo_stderr=elbo_se,
        baseline=b,
        weight_entropy=-jnp.sum(pi * jax.nn.log_softmax(state.logits)),
        scale_min=jnp.min(s),
        scale_max=jnp.max(s),
        grad_norm=optax.tree.norm(grads),
        rejected=jnp.logical_not(finite),
        log_scale_grad=grads[1] * s / jax.nn.sigmoid(state.rho),
    )
    return new_state, info


class VIAlgorithm(NamedTuple):
    """BlackJAX's variational-algorithm container (the fields of ``blackjax.base.VIAlgorithm``):
    ``init(position_or_dim, rng_key)``, ``step(rng_key, state)`` and
    ``sample(rng_key, state, num_samples)``."""

    init: Callable
    step: Callable
    sample: Callable


def as_top_level_api(
    logdensity_fn: Callable[[Array], Array],
    optimizer: optax.GradientTransformation,
    num_samples: int = 4,
    num_components: int = 2,
    rank: int = 2,
    *,
    init_scale: float | Array = 0.1,
    init_loading_scale: float = 0.1,
    min_scale: float | Array | None = None,
    baseline_decay: float = 0.9,
    dtype: DTypeLike | None = None,
) -> VIAlgorithm:
    """MFA variational inference as a :class:`VIAlgorithm` (BlackJAX's container, same fields).

    init_fn(position_or_dim, rng_key) -> MFAState
    step_fn(rng_key, state) -> (MFAState, MFAInfo)
    sample_fn(rng_key, state, num_samples) -> (num_samples, d) array of v = w - w*.

    Args:
        logdensity_fn: v -> log p~(v), a scalar, for v of shape (d,) in local coordinates.
        optimizer: the optax optimizer.
        num_samples: draws per component in each step.
        num_components: M, the number of mixture components.
        rank: r, the number of loading columns per component.
        init_scale: initial diagonal scale s (scalar or (d,)), as in :func:`init`.
        init_loading_scale: scale of the random initial loadings, as in :func:`init`.
        min_scale: s_min, the floor of s, as in :func:`init`.
        baseline_decay: decay of the ELBO moving-average baseline, as in :func:`step`.
        dtype: floating dtype of the state, as in :func:`init`.

    Returns:
        A :class:`VIAlgorithm` with the ``init``, ``step`` and ``sample`` functions above.
    """

    def init_fn(position_or_dim, rng_key):
        return init(
            position_or_dim,
            optimizer,
            num_components=num_components,
            rank=rank,
            rng_key=rng_key,
            init_scale=init_scale,
            init_loading_scale=init_loading_scale,
            min_scale=min_scale,
            dtype=dtype,
        )

    def step_fn(rng_key, state):
        return step(rng_key, state, logdensity_fn, optimizer, num_samples, baseline_decay)

    def sample_fn(rng_key, state, num_samples):
        return sample(rng_key, state, num_samples)

    return VIAlgorithm(init_fn, step_fn, sample_fn)


# --------------------------------------------------------------------------------------
# Control-variate helper.
# --------------------------------------------------------------------------------------


def _map(fn, xs, batch_size):
    if batch_size is None:
        return jax.vmap(fn)(xs)
    return jax.lax.map(fn, xs, batch_size=batch_size)


def expected_quadratic(
    state: MFAState,
    hvp_fn: Callable[[Array], Array],
    rng_key: Array | None = None,
    num_probes: int = 16,
    exact: bool = False,
    batch_size: int | None = None,
) -> ExpectedQuadratic:
    """E_q[1/2 v^T H v] = 1/2 sum_m pi_m (tr(H D) + sum_j k_mj^T H k_mj), using only
    Hessian-vector products hvp_fn(u) = H u (u of shape (d,)).

    The low-rank part costs M*r HVPs. tr(H D) = sum_i s_i^2 H_ii is computed with d HVPs
    on s_i e_i when ``exact`` (a Python bool; for small d), otherwise by Hutchinson:
    mean over ``num_probes`` Rademacher z of (s (.) z)^T H (s (.) z), whose standard error
    is returned in ``stderr`` (0 when exact). ``batch_size`` bounds how many HVPs run at
    once (lax.map); None vmaps the M*r loading columns and the probes, and runs the d
    exact basis HVPs one at a time (so no d x d array is formed).

    Args:
        state: an MFA state.
        hvp_fn: u -> H u for u of shape (d,), with H symmetric (e.g. the Hessian at w*).
        rng_key: PRNG key for the Rademacher probes; required unless ``exact``.
        num_probes: number of Hutchinson probes (>= 2; unused when ``exact``).
        exact: compute tr(H D) exactly with d HVPs instead of by Hutchinson.
        batch_size: the most HVPs run at once (lax.map); None as described above.

    Returns:
        An :class:`ExpectedQuadratic` (scalar ``value`` and ``stderr``).

    Raises:
        ValueError: if ``exact`` is False and ``rng_key`` is None or ``num_probes`` < 2.
    """
    loadings = state.loadings
    num_components, d, r = loadings.shape
    dtype = loadings.dtype
    s = scales(state)
    pi = weights(state)

    def quad(u):
        return jnp.sum(u * hvp_fn(u))

    cols = jnp.swapaxes(s[None, :, None] * loadings, 1, 2).reshape(num_components * r, d)
    k_h_k = _map(quad, cols, batch_size).reshape(num_components, r)
    lowrank = jnp.sum(pi * jnp.sum(k_h_k, axis=1))

    if exact:

        def diag_term(i):
            u = jnp.zeros((d,), dtype).at[i].set(s[i])
            return u[i] * hvp_fn(u)[i]

        tr_hd = jnp.sum(jax.lax.map(diag_term, jnp.arange(d), batch_size=batch_size))
        stderr = jnp.zeros((), dtype)
    else:
        if rng_key is None:
            raise ValueError("expected_quadratic: rng_key is required when exact=False")
        if num_probes < 2:
            raise ValueError(f"num_probes must be >= 2, got {num_probes}")
        probes = s * jax.random.rademacher(rng_key, (num_probes, d), dtype)
        vals = _map(quad, probes, batch_size)
        tr_hd = jnp.mean(vals)
        stderr = 0.5 * jnp.std(vals, ddof=1) / math.sqrt(num_probes)
    return ExpectedQuadratic(0.5 * (tr_hd + lowrank), stderr)
