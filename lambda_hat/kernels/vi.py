"""Variational LLC estimate with the mixture of factor analyzers of ``lambda_hat.vi.mfa``.

q(v) = Σ_m π_m N(v; 0, D + K_m K_mᵀ) over v = w − w*, fitted by stochastic ELBO ascent on
log p̃(v) = −U(v) = −nβ (L_B(w* + v) − L_n(w*)) − (γ/2)‖v‖² (minibatch L_B when ``batch_size`` is set).

How the sampling arguments map onto VI:
- ``num_chains``: independent fits (different initial loadings and optimisation noise), vmapped.
- ``num_warmup``: the cap on optimisation steps per fit (the fit usually stops earlier, see below).
- ``num_draws``: evaluation draws v_s ~ q per fit, on the *full* loss L_n(w* + v_s) − L_n(w*).

The fit, per chain:

1. **Diagonal start by the virial identity.** Stein's identity for the target, E_p[v_i ∂_iU] = 1,
   also holds at every optimum of the ELBO of a family closed under per-coordinate scaling (the
   MFA is: the derivative of the ELBO along log s_i is 1 − E_q[v_i ∂_iU]). Starting from
   s_i = 1/sqrt(nβ·max(Ĥ_ii, 0) + γ) (Ĥ_ii a Hutchinson estimate of the Hessian diagonal at w*),
   ``num_prefit_steps`` fixed-point steps s_i ← s_i · clip(r̂_i, 1/16, 16)^(−1/4) on a diagonal
   Gaussian, r̂_i = mean over M·num_samples draws of v_i ∂_iU, bring each scale near its optimum
   along directions where the Hessian vanishes (on w⁴ the optimum is ∝ (nβ)^(−1/4), far below
   the curvature-based 1/√γ). Without it the first ELBO gradients are huge and Adam's
   second-moment estimate, remembering them, stalls the fit for thousands of steps.
   **Loadings along the flattest directions** (``spectral_init``, default True). Where the
   Hessian H = ∇²L_n(w*) is flat in a rotated direction u (a rank-deficient or singular model),
   the posterior is wide along u while a diagonal q must stay narrow in every coordinate u
   touches, and small random loadings take thousands of steps to grow and turn onto u. So block
   Lanczos (Hessian-vector products only, :func:`spectral_basis`) finds the rank + 4 flattest
   eigenpairs (θ_j, u_j); the same virial fixed point as above, along u_j, on the Gaussian
   N(0, D + Σ_j c_j² u_j u_jᵀ), gives each direction's width t_j (from 1/sqrt(nβ·θ_j + γ)), and the
   loadings start at c_j u_j, c_j² = max(t_j² − u_jᵀDu_j, 0), for the rank flattest (plus the
   small random part that tells the components apart). A direction whose c_j² exceeds u_jᵀDu_j
   needs a loading of its own: when more of the examined directions need one than q has columns
   (``diagnostics["wide_directions"]`` > rank), the result warns and names the rank to use.
2. **Search.** Adam (b2 = 0.99) at a constant learning rate (``learning_rate`` for the logits and
   the diagonal, ``loading_learning_rate`` for the whitened loadings A, K = s ⊙ A), checked every
   ``check_every`` steps: the search ends when the mean ELBO of the last block no longer exceeds
   the previous block's by more than 3 standard errors and the block's mean ELBO gradient along
   each log s_i (an estimate of 1 − r_i, free from the steps' own draws) is zero within
   max(0.02, z·se) (z Bonferroni-corrected over the d coordinates; 3·se for its mean over the
   coordinates), in two consecutive blocks, or after 60% of the cap.
3. **Anneal.** The learning rates decay (cosine) to ``final_lr_fraction`` of their value over
   as many steps as the search took (at least 4·``check_every``, at most the steps left under the
   cap), which removes the optimiser's noise from the final q.
4. **Check, and search again if it fails.** At the end of the anneal, ``num_draws`` fresh draws
   v_s ~ q give the per-coordinate virial ratios r_i = mean_s v_si ∂_iU(v_s). The fit is
   converged when the overall ratio is 1 within max(0.03, 3·se) and every r_i within
   max(0.03, z·se) (z Bonferroni-corrected at a 1% family-wise level). A fit that fails with
   steps left under the cap returns to the search (step 2) at the full learning rate and anneals
   again; one that fails when the cap is reached is reported as not converged
   (``diagnostics["converged"]``) with a warning. ``diagnostics["fit_rounds"]`` counts the
   search-and-anneal rounds. A check whose draws hit a non-finite gradient does not retry (the
   fit is flagged below, not hidden by new draws), and neither does one whose importance weights
   have k̂ >= 0.7 (q misses posterior mass: the result is flagged whatever the virial ratios).
5. **Evaluate and certify.** The last check's draws (same key, same q) are the evaluation draws:
   their loss gives λ̂, their gradients the virial ratios (``LLCResult.diagnostics["virial"]``),
   and their log importance weights log w_s = −U(v_s) − log q(v_s), Pareto-smoothed (PSIS),
   certify it. With every fit's k̂ < 0.7 the reported λ̂ is the self-normalised
   importance-sampling estimate (``llc_source`` "importance-weighted"); the raw mean
   (``llc_raw``) and the control-variate estimate (``llc_cv``) stay beside it. With k̂ >= 0.7 q
   misses posterior mass and the result warns. It also warns when the weights move λ̂ by more
   than 5% (and 3 standard errors) from the raw mean: q is then far from p and the weighted
   estimate rests on a few heavy weights (on a rotated rank-deficient quadratic such fits read
   −6% to −9% after weighting, from −20% raw, with every k̂ < 0.7).

**Rank search** (``rank="auto"``, the default). The fit above runs at rank 4; on the host,
:func:`refit_rank` then asks for another run at a larger rank while q is not certified (k̂ >= 0.7,
more wide directions than loading columns, or weights that move λ̂ far from q's raw mean),
unless no fit is short of rank, k̂ >= 0.7 and the previous raise lowered k̂ by less than
``AUTO_RANK_MIN_GAIN``; up to min(d, ``max_rank``). The reported attempt and the cost of the
whole search are described there; an integer ``rank`` fits once.

Control variate (``control_variate=True``): with H = ∇²L_n(w*), E_q[½vᵀHv] =
½ Σ_m π_m (tr(HD) + Σ_j k_mjᵀHk_mj) is computed with Hessian-vector products only (tr(HD)
exactly for d <= ``exact_trace_max_dim``, else by ``num_probes`` Hutchinson probes), and
nβ·(mean_s[L_n(w*+v_s) − L* − ½v_sᵀHv_s] + E_q[½vᵀHv]) is reported beside the raw estimate as
``diagnostics["llc_cv"]`` ± ``llc_cv_se``. On a quadratic loss it is exact up to the
Hutchinson error, so it measures the fit, not the sampling noise.

Numerical faults: an optimisation step whose ELBO estimate or gradient is not finite (log p̃ NaN
or ±Inf at one of its draws) is rejected by ``mfa.step`` (state unchanged) and counted in
``diagnostics["rejected_steps"]``; a fit whose final state or evaluation losses are not finite is
flagged (``diagnostics`` ``valid`` False), so it is excluded from λ̂ with a warning, like a
diverged chain. ``final_elbo`` averages the accepted steps of the last block only;
``extra["elbo_trace"]`` keeps the raw per-step estimates (NaN at rejected steps and after the
fit stopped).

VI needs γ > 0: at γ = 0 the localized posterior is improper along every direction where the
loss is flat, and no fit can be certified, so ``gamma=0`` is rejected.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from blackjax.diagnostics import psis_weights

from lambda_hat.checks import boolean, positive_float, positive_int, probability
from lambda_hat.diagnostics import PARETO_K_MAX, importance_shift_message, importance_statistics, llc_statistics
from lambda_hat.kernels.base import KernelOutput, KernelSpec
from lambda_hat.kernels.chains import chain_keys
from lambda_hat.posterior import LocalPosterior
from lambda_hat.progress import advance
from lambda_hat.vi import lanczos, mfa


def _hvp_fn(posterior: LocalPosterior):
    grad = jax.grad(posterior.full_loss)

    def hvp(u):
        return jax.jvp(grad, (posterior.w_star,), (u,))[1]

    return hvp


BAR_LABEL = "vi optimisation"  # its total is the step cap; converged fits stop earlier
PREFIT_MAX_FACTOR = 16.0  # the virial ratio is clipped to [1/16, 16] in a pre-fit step
SEARCH_VIRIAL_TOLERANCE = 0.02
FINAL_VIRIAL_TOLERANCE = 0.03
IS_FLAT_SPREAD = 1e-3  # log-weight spread (nats) below which the weights are taken as uniform
ADAM_B2 = 0.99  # Adam's second-moment decay: short memory, so early transients do not stall the fit
SPECTRAL_EXTRA = 4  # Ritz pairs found beyond the rank: they show flat directions the rank cannot cover
SPECTRAL_KEY = 0x5BEC  # fold_in data of the key of the Lanczos start block (one block for every fit)
SPECTRAL_STEPS = 20  # block Lanczos steps: a Krylov basis of up to 20·(rank + 4) vectors
AUTO_RANK_START = 4  # rank="auto": the first attempt's rank
AUTO_RANK_MIN_GAIN = 0.1  # rank="auto" stops when raising the rank lowered k̂ by less than this


def spectral_basis(key: jax.Array, posterior: LocalPosterior, rank: int) -> lanczos.Eigenpairs:
    """The min(rank + 4, d) flattest eigenpairs (θ_j, u_j) of H = ∇²L_n(w*), by block Lanczos.

    Uses Hessian-vector products only (``lambda_hat.vi.lanczos.smallest_eigenpairs``,
    ``SPECTRAL_STEPS`` = 20 block steps: at most 20·min(rank + 4, d) products, each about two
    gradient evaluations). θ_j is in
    the units of L_n (the posterior's curvature along u_j is nβ·θ_j + γ).

    Args:
        key: the run's PRNG key (the start block uses ``fold_in(key, SPECTRAL_KEY)``, so every fit
            and every sharded block of fits sees the same directions).
        posterior: the localized posterior.
        rank: q's rank r.

    Returns:
        The :class:`~lambda_hat.vi.lanczos.Eigenpairs`, ascending.
    """
    hvp = _hvp_fn(posterior)
    # Padding coordinates (``LocalPosterior.padded``) do not enter the loss, so H is zero there:
    # lifted to 1e3·γ/nβ (a width below 1/sqrt(1000γ), which needs no loading), they do not take the
    # flattest slots from the sampled weights' directions.
    padding = (jnp.arange(posterior.dim) >= jnp.sum(posterior.group_sizes)).astype(posterior.dtype)
    lift = 1e3 * posterior.gamma / posterior.nbeta
    return lanczos.smallest_eigenpairs(
        lambda u: hvp(u) + lift * padding * u,
        posterior.dim,
        rank + SPECTRAL_EXTRA,
        jax.random.fold_in(key, SPECTRAL_KEY),
        num_iters=SPECTRAL_STEPS,
        dtype=posterior.dtype,
    )


def _spectral_lanczos_hvps(dim: int, rank: int) -> int:
    """The Hessian-vector products :func:`spectral_basis` spends (its Krylov basis size)."""
    return min(min(rank + SPECTRAL_EXTRA, dim) * SPECTRAL_STEPS, dim)


def _bonferroni_z(dim: int, family_alpha: float = 0.01) -> float:
    """Two-sided normal quantile at level family_alpha / dim (a per-coordinate threshold whose
    chance of any false alarm over the d coordinates of an exact fit is about family_alpha)."""
    return NormalDist().inv_cdf(1 - family_alpha / (2 * max(dim, 1)))


def coordinate_virial(vs: jax.Array, grads: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Per-coordinate virial ratios r_i = mean_s v_si ∂_iU(v_s) and their iid standard errors.

    Args:
        vs: (S, d) draws v_s in local coordinates v = w − w*.
        grads: (S, d) the potential's gradients ∂U(v_s) at those draws.

    Returns:
        The pair (r, se) of (d,) arrays, the ratios r_i and their standard errors std_s/√S (NaN
        for S = 1).
    """
    t = vs * grads
    n = t.shape[0]
    return jnp.mean(t, axis=0), jnp.std(t, axis=0, ddof=1) / jnp.sqrt(n)


def virial_within(vs: jax.Array, grads: jax.Array, tolerance: float, z: float) -> jax.Array:
    """True when the overall ratio (1/d)Σ_i r_i is within max(tolerance, 3·se) of 1 and every
    coordinate's r_i within max(tolerance, z·se_i), from iid draws vs with gradients ∂U.

    Args:
        vs: (S, d) draws v_s in local coordinates v = w − w*.
        grads: (S, d) the potential's gradients ∂U(v_s) at those draws.
        tolerance: the absolute tolerance on |r − 1| (overall and per coordinate).
        z: the per-coordinate threshold in standard errors (e.g. Bonferroni-corrected).

    Returns:
        A () bool array, True when the check passes.
    """
    r, se = coordinate_virial(vs, grads)
    overall = jnp.mean(vs * grads, axis=1)  # XLA computes vs * grads once
    r_all = jnp.mean(overall)
    se_all = jnp.std(overall, ddof=1) / jnp.sqrt(overall.shape[0])
    ok = jnp.abs(r_all - 1) <= jnp.maximum(tolerance, 3 * se_all)
    return ok & jnp.all(jnp.abs(r - 1) <= jnp.maximum(tolerance, z * se))


class _FitLoop(NamedTuple):
    """The carry of one fit's optimisation loop (a lax.while_loop over blocks of steps)."""

    state: mfa.MFAState
    step: jax.Array  # optimisation steps done
    phase: jax.Array  # 0 = search at the full learning rate, 1 = anneal
    anneal_start: jax.Array
    anneal_len: jax.Array
    elbo_mean: jax.Array  # the last block's mean ELBO and the variance of that mean
    elbo_var: jax.Array
    searched: jax.Array  # the search ended by its criterion (not by the step budget)
    done: jax.Array
    elbo_trace: jax.Array  # (num_blocks · block,) per-step ELBO, NaN at rejected and unused steps
    rejected: jax.Array  # rejected steps
    block: jax.Array  # blocks done
    passes: jax.Array  # consecutive blocks that met the search criterion
    round: jax.Array  # search-and-anneal rounds begun (a round whose final check fails is followed by another)
    round_over: jax.Array  # the current round's anneal has ended (or the step budget ran out)


class Certificate(NamedTuple):
    """Evaluation draws of a fitted q and what certifies them (one fit, S draws).

    draws: (S, d) v_s ~ q.  excess: (S,) L_n(w* + v_s) − L_n(w*).  grad_potential: (S, d) ∂U(v_s).
    log_weights: (S,) Pareto-smoothed log importance weights of p/q, normalised (Σ exp = 1).
    pareto_k: () the Pareto k̂ of the raw weights (< 0.7: the weighted estimate is reliable).
    """

    draws: jax.Array
    excess: jax.Array
    grad_potential: jax.Array
    log_weights: jax.Array
    pareto_k: jax.Array


def certify(rng_key: jax.Array, posterior: LocalPosterior, state: mfa.MFAState, num_draws: int) -> Certificate:
    """Draw from a fitted q and weight the draws against the localized posterior p ∝ exp(−U).

        log w_s = −U(v_s) − log q(v_s),   v_s ~ q,

    smoothed by PSIS (``blackjax.diagnostics.psis_weights``). The self-normalised estimate
    λ̂_IS = nβ Σ_s w̃_s (L_n(w* + v_s) − L_n(w*)) is consistent for the posterior's λ̂ when k̂ < 0.7.
    Each draw costs one full-batch loss and gradient evaluation (the gradient is the virial check's).

    Args:
        rng_key: key for the draws.
        posterior: the localized posterior.
        state: a fitted MFA state (flat local coordinates v = w − w*).
        num_draws: S.

    Returns:
        A :class:`Certificate`.
    """
    vs = mfa.sample(rng_key, state, num_draws)

    def evaluate(v):
        logp, g = jax.value_and_grad(posterior.logdensity)(posterior.w_star + v)
        excess = posterior.excess_loss_from_logdensity(posterior.w_star + v, logp)
        return excess, -g, logp - mfa.logdensity(state, v)

    excess, grads, log_ratio = jax.lax.map(evaluate, vs)
    log_ratio = jnp.where(jnp.isfinite(log_ratio), log_ratio, -jnp.inf)
    log_weights, pareto_k = psis_weights(log_ratio)
    # q = p up to rounding: the ratios are constant and the Pareto fit degenerates (k̂ NaN); the
    # weights are then uniform, which is exact
    flat = (jnp.max(log_ratio) - jnp.min(log_ratio)) < IS_FLAT_SPREAD
    log_weights = jnp.where(flat, -jnp.log(jnp.asarray(num_draws, log_ratio.dtype)), log_weights)
    pareto_k = jnp.where(flat, jnp.zeros_like(pareto_k), pareto_k)
    return Certificate(vs, excess, grads, log_weights, pareto_k)


class VIInfo(NamedTuple):
    """Per-fit diagnostics of a VI run.

    Attributes:
        final_elbo: the mean ELBO over the last window of optimisation steps.
        weight_entropy: entropy of the mixture weights (log M when the components share the mass).
        scale_min, scale_max: the range of the fitted diagonal scales s.
        rejected_steps: optimisation steps rejected for a non-finite ELBO or gradient.
        optimization_steps: steps used (the fit stops when converged, at most ``num_warmup``).
        search_converged: whether the search phase's virial check passed before the step cap.
        fit_rounds: rounds of (optimise, check) run.
        wide_directions: how many of the Hessian's min(rank + 4, d) flattest directions have a
            posterior wider than q's diagonal alone (they need a loading column each; 0 without
            ``spectral_init``). More than ``rank`` means q cannot cover them.
        rank_short: wide_directions > rank (the result warns).
        wide_lower_bound: every direction examined was wide, so wide_directions is a lower bound.
        converged: whether the final virial check passed (every coordinate's ratio 1 within
            max(tolerance, z·se)).
        worst_coordinate: the coordinate whose ratio is most standard errors from 1.
        worst_coordinate_ratio: its ratio E_q[v_i·∂_iU].
        worst_coordinate_z: its distance from 1 in standard errors.
        hutchinson_se: the standard error of the control variate's trace term (nβ units), or
            None without the control variate.
    """

    final_elbo: jax.Array
    weight_entropy: jax.Array
    scale_min: jax.Array
    scale_max: jax.Array
    rejected_steps: jax.Array
    optimization_steps: jax.Array
    search_converged: jax.Array
    fit_rounds: jax.Array
    wide_directions: jax.Array
    rank_short: jax.Array
    wide_lower_bound: jax.Array
    converged: jax.Array
    worst_coordinate: jax.Array
    worst_coordinate_ratio: jax.Array
    worst_coordinate_z: jax.Array
    hutchinson_se: jax.Array | None = None


def run_vi(
    key: jax.Array,
    posterior: LocalPosterior,
    *,
    first_chain: jax.Array | int = 0,
    num_chains: int,
    num_draws: int,
    num_warmup: int,
    batch_size: int | None,
    num_components: int,
    rank: int,
    learning_rate: float,
    loading_learning_rate: float,
    final_lr_fraction: float,
    num_samples: int,
    control_variate: bool,
    num_probes: int,
    exact_trace_max_dim: int,
    num_prefit_steps: int,
    check_every: int,
    spectral_init: bool = True,
    save_positions: bool = False,
    progress: bool = False,
) -> KernelOutput:
    """Fit ``num_chains`` independent MFA approximations q and estimate λ̂ from draws of each.

    The fit, the certificate and the control variate are described in the module docstring.

    Args:
        key: the run's PRNG key; fit c uses fold_in(key, c) (see ``chain_keys``).
        posterior: the localized posterior (its ``gamma`` must be > 0).
        first_chain: global index of this program's first fit (an int or a traced integer).
        num_chains: independent fits, vmapped.
        num_draws: evaluation draws v_s ~ q per fit (each round's final check draws as many).
        num_warmup: the cap on optimisation steps per fit (below 1: no optimisation).
        batch_size: minibatch size for the optimisation and pre-fit steps (None = full batch);
            the evaluation always uses the full batch.
        num_components: M, the number of mixture components.
        rank: r, the number of loading columns per component (``rank="auto"`` arrives here as
            the attempt's integer rank).
        learning_rate: Adam's learning rate for the logits and the diagonal scales.
        loading_learning_rate: Adam's learning rate for the whitened loadings A.
        final_lr_fraction: the fraction of the learning rates reached at the end of an anneal.
        num_samples: draws per component in each optimisation step.
        control_variate: also compute the quadratic control-variate estimate ``excess_loss_cv``.
        num_probes: Hutchinson probes for the Hessian diagonal of the initial scales and (without
            an exact trace) for tr(HD) in the control variate.
        exact_trace_max_dim: compute tr(HD) exactly (d Hessian-vector products) when d is at most
            this.
        num_prefit_steps: virial fixed-point steps on the diagonal start.
        check_every: optimisation steps per block between convergence checks.
        spectral_init: start the loadings along the Hessian's flattest directions, at the widths
            their virial fixed point gives (see the module docstring); False starts them small and
            random.
        save_positions: also return the evaluation draws w* + v_s as ``positions``.
        progress: advance a progress bar over the optimisation steps (up to the cap ``num_warmup``;
            the host closes it where the fits stopped).

    Returns:
        A :class:`~lambda_hat.kernels.base.KernelOutput` over the fits with the (chains, num_draws)
        excess losses of the evaluation draws, a :class:`VIInfo` as ``info``, the per-step ELBO trace
        (chains, max(num_warmup, 1)) under ``traces["elbo_trace"]``, the virial terms, the
        Pareto-smoothed log weights and k̂, and the control-variate excess losses when requested.
    """
    d, dtype = posterior.dim, posterior.dtype
    cap = max(num_warmup, 1)
    block = min(check_every, cap)
    num_blocks = -(-cap // block)
    z_final = _bonferroni_z(d)
    z_search = _bonferroni_z(d, 0.05)

    def adam(lr):
        return optax.adam(lr, b2=ADAM_B2)

    # The whitened loadings A (K = s ⊙ A) get their own rate: without the spectral start they must
    # travel far when flat directions are much wider than s (|A| ~ sqrt(nβ·a + γ)/sqrt(γ); Adam
    # moves ~lr per step). A larger rate is noise at the end, and more so with more columns: 0.3 left
    # a rotated rank-deficient quadratic 0.4 nats of KL short of its optimum (λ̂ −22% with d = 10,
    # rank 8; 0.1 reaches it), and 0.1 one with d = 50 at rank 30 (−27%; 0.05 reads +0.2%).
    base = optax.multi_transform(
        {"logits": adam(learning_rate), "rho": adam(learning_rate), "loadings": adam(loading_learning_rate)},
        ("logits", "rho", "loadings"),
    )
    hvp = _hvp_fn(posterior)

    def logp_fn(k_batch):
        if batch_size is None:
            return lambda v: posterior.logdensity(posterior.w_star + v)
        batch = posterior.sample_batch(k_batch, batch_size)
        return lambda v: posterior.logdensity_minibatch(posterior.w_star + v, batch)

    def grad_u(logp, vs):
        return jax.vmap(lambda v: -jax.grad(logp)(v))(vs)

    lo, hi = jnp.asarray(1 / PREFIT_MAX_FACTOR, dtype), jnp.asarray(PREFIT_MAX_FACTOR, dtype)

    def prefit_ratio(k_batch, vs, project):
        # The virial ratios mean_s project(v_s)·project(∂U(v_s)) of the pre-fit steps, over the draws
        # where the potential is finite, clipped to [1/16, 16] (no finite draw at all: 16, shrink).
        t = project(vs) * project(grad_u(logp_fn(k_batch), vs))
        ok = jnp.all(jnp.isfinite(t), axis=1, keepdims=True)
        r = jnp.sum(jnp.where(ok, t, 0), axis=0) / jnp.sum(ok)
        return jnp.clip(jnp.where(jnp.isfinite(r), r, hi), lo, hi)

    def init_scale(k):
        k_probe, k_fit = jax.random.split(k)
        z = jax.random.rademacher(k_probe, (num_probes, d), dtype)
        diag = jnp.mean(z * jax.vmap(hvp)(z), axis=0)
        s0 = 1.0 / jnp.sqrt(posterior.nbeta * jnp.maximum(diag, 0) + posterior.gamma)

        def prefit(scale, kk):  # virial fixed point on a diagonal Gaussian
            k_b, k_v = jax.random.split(kk)
            vs = scale * jax.random.normal(k_v, (num_components * num_samples, d), dtype)
            return scale * prefit_ratio(k_b, vs, lambda x: x) ** -0.25, None

        s, _ = jax.lax.scan(prefit, s0, jax.random.split(k_fit, num_prefit_steps))
        return s

    def spectral_loadings(k, s, basis):
        # Widths t_j along the flattest directions u_j, from their virial fixed point
        # E_q[(u_jᵀv)(u_jᵀ∂U)] = 1 on the Gaussian N(0, D + Σ_j c_j² u_j u_jᵀ) with the fitted
        # diagonal D = diag(s²): c_j² = max(t_j² − u_jᵀDu_j, 0). The loadings are c_j u_j; a
        # direction is wide (it needs a loading) where c_j² > u_jᵀDu_j.
        u = basis.vectors
        diag_var = jnp.sum(u * u * (s * s)[:, None], axis=0)

        def loading_scale(log_t):
            return jnp.sqrt(jnp.maximum(jnp.exp(2 * log_t) - diag_var, 0))

        def prefit(log_t, kk):
            k_b, k_e, k_h = jax.random.split(kk, 3)
            eps = jax.random.normal(k_e, (num_components * num_samples, d), dtype)
            eta = jax.random.normal(k_h, (num_components * num_samples, u.shape[1]), dtype)
            vs = s * eps + (eta * loading_scale(log_t)) @ u.T
            log_t = log_t - 0.25 * jnp.log(prefit_ratio(k_b, vs, lambda x: x @ u))
            return log_t, log_t

        log_t0 = -0.5 * jnp.log(posterior.nbeta * jnp.maximum(basis.values, 0) + posterior.gamma)
        _, path = jax.lax.scan(prefit, log_t0, jax.random.split(k, num_prefit_steps))
        # the mean over the second half of the steps averages out the draws' noise
        log_t = jnp.mean(path[num_prefit_steps // 2 :], axis=0) if num_prefit_steps else log_t0
        c = loading_scale(log_t)
        loadings = u[:, :rank] * c[:rank]
        loadings = jnp.pad(loadings, ((0, 0), (0, rank - loadings.shape[1])))  # d < rank: zero columns
        return loadings, jnp.sum(c * c > diag_var)

    def lr_factor(t, phase, anneal_start, anneal_len):
        frac = jnp.clip((t - anneal_start) / jnp.maximum(anneal_len, 1), 0, 1).astype(dtype)
        cosine = final_lr_fraction + (1 - final_lr_fraction) * 0.5 * (1 + jnp.cos(jnp.pi * frac))
        return jnp.where(phase == 0, jnp.ones((), dtype), cosine)

    zero = jnp.zeros((), dtype)

    basis = spectral_basis(key, posterior, rank) if spectral_init else None

    def one_fit(chain_key):
        k_diag, k_init, k_opt, k_draw, k_probe = jax.random.split(chain_key, 5)
        s0 = init_scale(k_diag)
        if spectral_init:
            loadings0, wide = spectral_loadings(jax.random.fold_in(k_diag, 1), s0, basis)
        else:
            loadings0, wide = None, jnp.zeros((), jnp.int32)
        state = mfa.init(
            d,
            optax.chain(base, optax.scale(1.0)),
            num_components=num_components,
            rank=rank,
            rng_key=k_init,
            init_scale=s0,
            init_loadings=loadings0,
            dtype=dtype,
        )

        def run_block(c: _FitLoop) -> _FitLoop:
            state, t, phase, a_start, a_len = c.state, c.step, c.phase, c.anneal_start, c.anneal_len
            j, passes, searched = c.block, c.passes, c.searched

            def opt_step(carry, i):
                st, g_sum, g_sq, o_sum, o_sq = carry
                step_t = t + i
                factor = lr_factor(step_t, phase, a_start, a_len)
                optimizer = optax.chain(base, optax.scale(factor))
                k_batch, k_step = jax.random.split(jax.random.fold_in(k_opt, step_t))
                new, info = mfa.step(k_step, st, logp_fn(k_batch), optimizer, num_samples)
                live = step_t < cap  # the last block may overrun the cap: those steps are no-ops
                new = jax.tree.map(lambda x, y: jnp.where(live, x, y), new, st)
                use = live & ~info.rejected
                g = jnp.where(use, info.log_scale_grad, 0)  # estimates 1 − r_i (virial identity)
                o = jnp.mean(g)
                carry = (new, g_sum + g, g_sq + g * g, o_sum + o, o_sq + o * o)
                elbo = jnp.where(live, jnp.where(info.rejected, jnp.nan, info.elbo), jnp.nan)
                return carry, (elbo, use, live & info.rejected)

            zeros_d = jnp.zeros((d,), dtype)
            (state, g_sum, g_sq, o_sum, o_sq), (elbo, used, rej) = jax.lax.scan(
                opt_step, (state, zeros_d, zeros_d, zero, zero), jnp.arange(block)
            )
            buf = jax.lax.dynamic_update_slice(c.elbo_trace, elbo, (j * block,))
            t_new = jnp.minimum(t + block, cap)
            advance(t_new - 1, cap, BAR_LABEL, progress, first_chain == 0)
            mean = jnp.nanmean(elbo)
            var = jnp.nanvar(elbo) / jnp.maximum(jnp.sum(jnp.isfinite(elbo)), 1)
            plateau = (j > 0) & (mean - c.elbo_mean <= 3 * jnp.sqrt(var + c.elbo_var))
            # the block's mean ELBO gradient along each log s_i estimates 1 − r_i: zero at an optimum
            count = jnp.maximum(jnp.sum(used), 2).astype(dtype)
            g_mean, o_mean = g_sum / count, o_sum / count
            g_se = jnp.sqrt(jnp.maximum(g_sq / count - g_mean**2, 0) / (count - 1))
            o_se = jnp.sqrt(jnp.maximum(o_sq / count - o_mean**2, 0) / (count - 1))
            virial_ok = jnp.abs(o_mean) <= jnp.maximum(SEARCH_VIRIAL_TOLERANCE, 3 * o_se)
            virial_ok &= jnp.all(jnp.abs(g_mean) <= jnp.maximum(SEARCH_VIRIAL_TOLERANCE, z_search * g_se))
            passes = jnp.where(plateau & virial_ok, passes + 1, 0)
            start_anneal = (phase == 0) & ((passes >= 2) | (t_new >= int(0.6 * cap)))
            searched = jnp.where(start_anneal, passes >= 2, searched)
            a_len = jnp.where(start_anneal, jnp.clip(t_new, 4 * block, cap - t_new), a_len)
            a_start = jnp.where(start_anneal, t_new, a_start)
            phase = jnp.where(start_anneal, 1, phase)
            over = (t_new >= cap) | ((phase == 1) & ~start_anneal & (t_new >= a_start + a_len))
            over |= (phase == 1) & (a_len == 0)
            return c._replace(
                state=state,
                step=t_new,
                phase=phase,
                anneal_start=a_start,
                anneal_len=a_len,
                elbo_mean=mean,
                elbo_var=var,
                searched=searched,
                elbo_trace=buf,
                rejected=c.rejected + jnp.sum(rej, dtype=jnp.int32),
                block=j + 1,
                passes=passes,
                round_over=over,
            )

        def run_round(c: _FitLoop) -> _FitLoop:
            # One search and anneal (blocks until the anneal ends), then the final check on the draws
            # the evaluation will use: a fit that fails it with steps left searches and anneals again.
            # (Under vmap each round's check runs once for all fits, not once per block.)
            c = jax.lax.while_loop(lambda c: ~c.round_over, run_block, c._replace(round_over=c.done))
            check = certify(jax.random.fold_in(k_draw, c.round), posterior, c.state, num_draws)
            passed = virial_within(check.draws, check.grad_potential, FINAL_VIRIAL_TOLERANCE, z_final)
            # No retry when a draw's gradient is not finite (the fit is flagged below; new draws
            # would only hide it), nor when q already misses posterior mass (k̂ >= 0.7: the result
            # is flagged whatever the virial ratios, and more rounds only move q to the family's
            # own optimum, measured 2-7x the cost on singular targets without lowering k̂).
            retry = ~c.done & ~passed & jnp.all(jnp.isfinite(check.grad_potential)) & (c.step < cap)
            retry &= ~(check.pareto_k >= PARETO_K_MAX)
            return c._replace(
                done=~retry,
                phase=jnp.where(retry, 0, c.phase),
                passes=jnp.where(retry, 0, c.passes),
                round=c.round + retry.astype(jnp.int32),
            )

        zero_i = jnp.zeros((), jnp.int32)
        no_steps = jnp.asarray(num_warmup < 1)
        loop = _FitLoop(
            state,
            zero_i,
            zero_i,
            zero_i,
            zero_i,
            zero,
            zero,
            jnp.zeros((), bool),
            no_steps,
            jnp.full((num_blocks * block,), jnp.nan, dtype),
            zero_i,
            zero_i,
            zero_i,
            zero_i,
            no_steps,
        )
        loop = jax.lax.while_loop(lambda c: ~c.done, run_round, loop)
        state, steps_used, last_mean, buf = loop.state, loop.step, loop.elbo_mean, loop.elbo_trace

        # the last round's check draws (same key, same state): certified as checked
        vs, excess, grads, log_weights, pareto_k = certify(
            jax.random.fold_in(k_draw, loop.round), posterior, state, num_draws
        )
        terms = jax.lax.map(lambda vg: posterior.draw_terms(posterior.w_star + vg[0], vg[1]), (vs, grads))
        r, se = coordinate_virial(vs, grads)
        deviation = jnp.abs(r - 1) / jnp.maximum(se, jnp.finfo(dtype).tiny)
        converged = virial_within(vs, grads, FINAL_VIRIAL_TOLERANCE, z_final)
        state_ok = jnp.all(jnp.isfinite(mfa.scales(state))) & jnp.all(jnp.isfinite(state.loadings))
        state_ok &= jnp.all(jnp.isfinite(state.logits))
        out = {
            "excess": excess,
            "elbo": buf[:cap],
            "draw_terms": terms,
            "log_weights": log_weights,
            "pareto_k": pareto_k,
            "weight_entropy": -jnp.sum(mfa.weights(state) * jax.nn.log_softmax(state.logits)),
            "scale_min": jnp.min(mfa.scales(state)),
            "scale_max": jnp.max(mfa.scales(state)),
            "final_elbo": last_mean,
            "rejected_steps": loop.rejected,
            "optimization_steps": steps_used,
            "search_converged": loop.searched,
            "converged": converged,
            "fit_rounds": loop.round + 1,
            "wide_directions": wide,
            "rank_short": wide > rank,
            "wide_lower_bound": spectral_init & (wide >= min(rank + SPECTRAL_EXTRA, d)) & (rank + SPECTRAL_EXTRA < d),
            "worst_coordinate": jnp.argmax(deviation),
            "worst_coordinate_ratio": r[jnp.argmax(deviation)],
            "worst_coordinate_z": jnp.max(deviation),
            # a fit whose evaluation draws hit a non-finite loss is flagged (excluded from λ̂)
            "valid": state_ok & jnp.all(jnp.isfinite(excess)),
        }
        if save_positions:  # the evaluation draws from q, whose losses are the trace
            out["positions"] = posterior.w_star + vs
        if control_variate:
            quad = jax.lax.map(lambda v: 0.5 * jnp.dot(v, hvp(v)), vs)
            eq = mfa.expected_quadratic(state, hvp, k_probe, num_probes=num_probes, exact=d <= exact_trace_max_dim)
            out["excess_cv"] = excess - quad + eq.value
            out["eq_stderr"] = eq.stderr
        return out

    res = jax.vmap(one_fit)(chain_keys(key, num_chains, first_chain))
    samples_per_step = num_components * num_samples
    opt_evals = res["optimization_steps"] * samples_per_step
    used = posterior.n if batch_size is None else batch_size
    prefit_evals = num_prefit_steps * samples_per_step * (2 if spectral_init else 1)
    # Hessian-vector products cost about two gradient evaluations each.
    probes_hvps = (
        num_probes
        + (_spectral_lanczos_hvps(d, rank) if spectral_init else 0)
        + (
            num_components * rank + (d if d <= exact_trace_max_dim else num_probes) + num_draws
            if control_variate
            else 0
        )
    )
    # each round's final check draws num_draws full-batch gradients; the evaluation repeats the last
    check_evals = (res["fit_rounds"] + 1) * num_draws
    grad_evals = opt_evals + prefit_evals + 2 * probes_hvps + check_evals
    data_passes = (opt_evals + prefit_evals) * used / posterior.n + 2 * probes_hvps + check_evals
    fields = [f for f in VIInfo._fields if f != "hutchinson_se"]
    info = VIInfo(
        **{f: res[f] for f in fields},
        hutchinson_se=posterior.nbeta * res["eq_stderr"] if control_variate else None,
    )
    return KernelOutput(
        excess_loss=res["excess"],
        valid=res["valid"],
        info=info,
        grad_evals=grad_evals,
        data_passes=data_passes,
        traces={"elbo_trace": res["elbo"]},
        positions=res.get("positions"),
        draw_terms=res["draw_terms"],
        log_weights=res["log_weights"],
        pareto_k=res["pareto_k"],
        excess_loss_cv=res["excess_cv"] if control_variate else None,
    )


def _rank_message(diagnostics: dict[str, Any], valid: np.ndarray) -> str | None:
    """The warning when the Hessian's flat directions outnumber q's loading columns."""
    valid = np.asarray(valid, bool)
    short = np.flatnonzero(valid & np.asarray(diagnostics["rank_short"], bool)).tolist()
    if not short:
        return None
    wide = np.asarray(diagnostics["wide_directions"])
    c = max(short, key=lambda i: wide[i])
    at_least = "at least " if bool(np.asarray(diagnostics["wide_lower_bound"])[c]) else ""
    return (
        f"vi: the posterior is wider than q's diagonal along {at_least}{int(wide[c])} of the Hessian's flattest "
        f"directions at w* (fits {short}), more than q's rank covers (one loading column per direction): q misses "
        f"posterior mass there and λ̂ can be biased; set rank to at least {int(wide[c])}"
        f"{' (and check again)' if at_least else ''}, or use an MCMC kernel"
    )


def _messages(diagnostics: dict[str, Any], valid: np.ndarray) -> list[str]:
    """Warnings about the rank and about fits that did not converge (host side, from the
    per-fit diagnostics)."""
    rank = _rank_message(diagnostics, valid)
    out = [] if rank is None else [rank]
    valid = np.asarray(valid, bool)
    converged = np.asarray(diagnostics["converged"], bool)
    bad = np.flatnonzero(valid & ~converged).tolist()
    if not bad:
        return out
    c = bad[0]
    steps = np.asarray(diagnostics["optimization_steps"]).tolist()
    return out + [
        f"vi: fits {bad} did not converge: their virial ratios E_q[v_i·∂_iU] are not 1 within max("
        f"{FINAL_VIRIAL_TOLERANCE}, z·se) (fit {c}: coordinate {int(diagnostics['worst_coordinate'][c])} has "
        f"r = {float(diagnostics['worst_coordinate_ratio'][c]):.3f}, {float(diagnostics['worst_coordinate_z'][c]):.1f} "
        f"standard errors from 1; optimisation steps used: {steps}). The ELBO is not at an optimum of the "
        "family, so λ̂ is biased (r > 1: q too wide along that coordinate; r < 1: too narrow); raise num_warmup "
        "(the step cap), or use an MCMC kernel"
    ]


def refit_rank(
    options: dict[str, Any], outputs: list[KernelOutput], dim: int, history: list[dict[str, Any]]
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """``rank="auto"``: fit again at a larger rank while q's certificate fails and improves.

    After each attempt at rank r (the first at r = 4), with k̂ the largest Pareto k̂ over the valid
    fits (of every posterior) and w the largest count of wide directions (``wide_directions``):

    - q is certified (k̂ < 0.7, no fit is short of rank, w <= r, and the importance weights do
      not move λ̂ far from q's raw mean, :func:`lambda_hat.diagnostics.importance_shift_message`):
      stop;
    - r has reached min(d, ``max_rank``): stop;
    - no fit is short of rank, k̂ >= 0.7, and k̂ fell by less than ``AUTO_RANK_MIN_GAIN`` since
      the previous attempt (a larger family does not bring q closer to p, as on singular models,
      where the mixture of Gaussians cannot follow the posterior's shape at any rank): stop. While
      fits are short of rank the search goes on whatever k̂ does (requiring a gain there stopped
      the rotated d = 50 quadratic at rank 10 in float64, uncertified, where covering its wide
      directions certifies it at rank 40), so it costs at most log2(max_rank / 4) refits;
    - otherwise fit again at min(d, max_rank, max(2r, w + 2)).

    The reported attempt is the last one when it is certified, else the one with the smallest k̂
    (the later one on ties). A search that stops without a certified q adds a warning.

    Args:
        options: the checked options of the attempt just run (``rank``, ``rank_auto``, ``max_rank``).
        outputs: its KernelOutputs (one per posterior).
        dim: the number of sampled coordinates d.
        history: the records of the earlier attempts.

    Returns:
        (the options of the next attempt or None, this attempt's record: ``rank``,
        ``pareto_k_max``, ``wide_directions``, ``rank_short``, ``weights_shift``, ``grad_evals``,
        ``outcome``, and when the search stops ``report`` and ``message``), or (None, None)
        without ``rank="auto"``.
    """
    if not options.get("rank_auto"):
        return None, None
    rank = int(options["rank"])
    k_max, wide, short, shifted, grads = -np.inf, 0, False, False, 0
    for out in outputs:
        grads += int(np.sum(np.asarray(out.grad_evals)))
        excess = np.asarray(out.excess_loss, np.float64)
        valid = np.asarray(out.valid, bool) & np.all(np.isfinite(excess), axis=1)
        if not valid.any():
            continue
        k = np.asarray(out.pareto_k, np.float64)[valid]
        k_max = max(k_max, float(np.max(np.where(np.isnan(k), np.inf, k))))
        wide = max(wide, int(np.max(np.asarray(out.info.wide_directions)[valid])))
        short |= bool(np.any(np.asarray(out.info.rank_short)[valid]))
        # the weights move λ̂ far from q's raw mean (the result would warn): q is far from p
        raw = llc_statistics(excess[valid])
        weighted = importance_statistics(excess[valid], np.asarray(out.log_weights, np.float64)[valid])
        shifted |= importance_shift_message(raw["llc"], raw["llc_se"], weighted["llc"], "vi") is not None
    record: dict[str, Any] = dict(
        rank=rank, pareto_k_max=k_max, wide_directions=wide, rank_short=short, weights_shift=shifted, grad_evals=grads
    )
    records = [*history, record]
    cap = min(dim, int(options["max_rank"]))
    if k_max == -np.inf:
        record["outcome"] = "no valid fit"  # reported as it is: the result raises or warns
    elif k_max < PARETO_K_MAX and not short and not shifted:
        record["outcome"] = "certified"
    elif rank >= cap:
        record["outcome"] = f"rank reached {'d' if cap == dim else 'max_rank'} = {cap}"
    elif history and not short and k_max >= PARETO_K_MAX and history[-1]["pareto_k_max"] - k_max < AUTO_RANK_MIN_GAIN:
        record["outcome"] = f"k̂ fell by less than {AUTO_RANK_MIN_GAIN} when the rank was raised"
    else:
        new_rank = min(cap, max(2 * rank, wide + 2))
        record["outcome"] = f"raised to {new_rank}"
        return {**options, "rank": new_rank}, record
    if record["outcome"] == "certified" or (record["outcome"] == "no valid fit" and not history):
        record["report"] = len(records) - 1
        return None, record
    # uncertified (or the last attempt lost every fit): the attempt whose certificate is best
    scores = [r["pareto_k_max"] if r["pareto_k_max"] > -np.inf else np.inf for r in records]
    record["report"] = max(i for i, k in enumerate(scores) if k == min(scores))
    ranks = [r["rank"] for r in records]
    reported = records[record["report"]]["rank"]
    record["message"] = (
        f"vi: rank='auto' fitted q at ranks {ranks} (largest Pareto k̂ {[round(k, 2) for k in scores]}) and stopped "
        f"without a certified q: {record['outcome']}; λ̂ is from rank {reported}. "
        + (
            "A larger family did not bring q closer to the posterior (as on singular models, whose posterior no "
            "mixture of Gaussians follows): set a larger rank yourself, or use an MCMC kernel"
            if record["outcome"].startswith("k̂")
            else f"Every fit at rank {rank} was lost to non-finite values: use a fixed rank, or an MCMC kernel"
            if record["outcome"] == "no valid fit"
            else "Raise max_rank to search further, or use an MCMC kernel"
            if cap < dim
            else "Each component already has a full covariance (rank d): use an MCMC kernel"
        )
    )
    return None, record


def _check_posterior(posterior: LocalPosterior) -> None:
    if not float(posterior.gamma) > 0:
        raise ValueError(
            f"gamma: kernel 'vi' needs gamma > 0, got {float(posterior.gamma)}; at gamma = 0 the localized "
            "posterior is improper along every direction where the loss is flat, and no variational fit can "
            "be certified (use gamma > 0, e.g. the default 1.0, or an MCMC kernel)"
        )


def _check(options: dict[str, Any]) -> dict[str, Any]:
    options["rank_auto"] = isinstance(options["rank"], str) and options["rank"] == "auto"
    if options["rank_auto"]:
        options["rank"] = AUTO_RANK_START
    elif isinstance(options["rank"], str):
        raise ValueError(f"rank: expected 'auto' or an integer >= 1, got {options['rank']!r}")
    options["max_rank"] = positive_int("max_rank", options["max_rank"])
    for name in ("num_components", "rank", "num_samples", "num_probes"):
        options[name] = positive_int(name, options[name], minimum=2 if name == "num_probes" else 1)
    options["exact_trace_max_dim"] = positive_int("exact_trace_max_dim", options["exact_trace_max_dim"], minimum=0)
    options["learning_rate"] = positive_float("learning_rate", options["learning_rate"])
    options["loading_learning_rate"] = positive_float("loading_learning_rate", options["loading_learning_rate"])
    options["final_lr_fraction"] = probability("final_lr_fraction", options["final_lr_fraction"])
    options["control_variate"] = boolean("control_variate", options["control_variate"])
    options["num_prefit_steps"] = positive_int("num_prefit_steps", options["num_prefit_steps"], minimum=0)
    options["check_every"] = positive_int("check_every", options["check_every"], minimum=10)
    options["spectral_init"] = boolean("spectral_init", options["spectral_init"])
    return options


VI = KernelSpec(
    name="vi",
    run=run_vi,
    options={
        "num_components": 4,
        "rank": "auto",
        "max_rank": 64,
        "learning_rate": 0.02,
        "loading_learning_rate": 0.05,
        "final_lr_fraction": 0.01,
        "num_samples": 4,
        "control_variate": True,
        "num_probes": 16,
        "exact_trace_max_dim": 256,
        "num_prefit_steps": 30,
        "check_every": 250,
        "spectral_init": True,
    },
    default_num_draws=1000,
    default_num_warmup=20000,
    minibatch=True,
    progress=True,
    check_options=_check,
    messages=_messages,
    check_posterior=_check_posterior,
    bias_advice="the fit has not reached the ELBO optimum (raise num_warmup, the step cap), or q cannot "
    "represent the posterior; use an MCMC kernel",
    narrow_advice="a ratio below 1 means q is narrower than the posterior: the fit has not reached the ELBO "
    "optimum (raise num_warmup, the step cap), or q cannot represent the posterior's flat directions "
    "(raise rank or num_components); use an MCMC kernel",
    virial_tolerance=FINAL_VIRIAL_TOLERANCE,
    refit=refit_rank,
    host_options=frozenset({"rank_auto", "max_rank"}),  # read by refit_rank; a fit has the integer rank
)
