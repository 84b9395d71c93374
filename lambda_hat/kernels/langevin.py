"""What the preconditioned SGLD kernels (RMSProp-SGLD, Adam-SGLD) share: the Langevin update
with a diagonal preconditioner, the RMSProp second-moment statistic, and their chain loop.

With g = nβ∇L_B(w) the gradient of the tempered minibatch loss and a per-coordinate
preconditioner P = 1/(√v + eps), one step is

    w ← w + (ε/2)·P ⊙ drift + N(0, ε P)

(``step_size`` = ε, as for SGLD; BlackJAX's h = ε/2). The preconditioner's derivative
correction (pSGLD's Γ term) is omitted, as in Hitchcock & Hoogland (2025); with the default
``freeze=True`` v is adapted during the first half of the warmup only. It is then fixed at the
mean of g² over that half's second half, and the chain spends the rest of the warmup relaxing
under the fixed P, so the kept draws come from Langevin dynamics with a constant P, whose
stationary law is the localized posterior as ε → 0. (A chain whose P follows its recent
gradients samples a different law — P depends on where the chain is, and the Γ term that would
correct for that is omitted — and its draws would start from that law: on the normal crossing
w1² + w2⁴ at ε = 1.5e-4, 40,000 draws, adapting through the whole warmup read λ̂ +6.0% high over
50 seeds, and relaxing under the fixed P +1.2%.)

SGLD (P = I) also uses :func:`step_bias_terms`, the per-draw terms of the first-order estimate
of the step size's bias on λ̂ (Adam-SGLD scales them by (1 + beta1)/(1 − beta1), its lag's factor).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lambda_hat.checks import boolean, positive_float
from lambda_hat.kernels.base import KernelOutput, draws_first
from lambda_hat.kernels.chains import run_chains
from lambda_hat.posterior import LocalPosterior

# The virial warning's advice for the SGLD family when the ratio is below 1 (draws too narrow).
NARROW_ADVICE = (
    "a ratio below 1 means the draws are narrower than the posterior, as for chains that have not yet spread "
    "out from w* (where they start): raise num_warmup, or the step_size if the chains move too little per step "
    "to mix within it (check the ratio again: the step-size bias grows with ε)"
)


class PreconditionerInfo(NamedTuple):
    """Per-chain diagnostics of a preconditioned SGLD run: the range of the preconditioner
    P = 1/(√v + eps) in use at the end (a ratio precond_max/precond_min near 1 means P is
    close to plain SGLD with step ε/(1 + eps))."""

    precond_min: jax.Array
    precond_max: jax.Array


def langevin_step(
    rng_key: jax.Array, position: jax.Array, drift: jax.Array, precond: jax.Array, step_size: jax.Array
) -> jax.Array:
    """w + (ε/2)·P ⊙ drift + √(ε P) ⊙ ξ, ξ ~ N(0, I).

    Args:
        rng_key: key of the Gaussian noise.
        position: w.
        drift: the estimated ∇log p̂(w) (or its smoothed version).
        precond: P, the diagonal preconditioner (same shape as w).
        step_size: ε.

    Returns:
        The new position.
    """
    noise = jax.random.normal(rng_key, position.shape, position.dtype)
    return position + 0.5 * step_size * precond * drift + jnp.sqrt(step_size * precond) * noise


def second_moment(v: jax.Array, loss_grad: jax.Array, decay: jax.Array, adapt: bool | jax.Array) -> jax.Array:
    """RMSProp's statistic v ← decay·v + (1 − decay)·g² (kept as is when ``adapt`` is False).

    Args:
        v: the current statistic (same shape as w).
        loss_grad: g = nβ∇L_B(w), the tempered minibatch loss gradient.
        decay: v's decay rate (RMSProp's ρ).
        adapt: update v (a Python bool, or a traced boolean array); False returns ``v`` unchanged.

    Returns:
        The new v.
    """
    if isinstance(adapt, bool):
        return decay * v + (1 - decay) * loss_grad**2 if adapt else v
    return jnp.where(adapt, decay * v + (1 - decay) * loss_grad**2, v)


def preconditioner(v: jax.Array, eps: jax.Array) -> jax.Array:
    """P = 1/(√v + eps).

    Args:
        v: the second-moment statistic.
        eps: added to √v.

    Returns:
        The diagonal preconditioner P (same shape as ``v``).
    """
    return 1 / (jnp.sqrt(v) + eps)


def step_bias_terms(
    h: jax.Array | float, loss_grad: jax.Array, potential_grad: jax.Array, precond: jax.Array | None = None
) -> jax.Array:
    """Per-draw terms of the first-order (in ε) bias of λ̂ caused by a finite Langevin step.

    For the discretised Langevin dynamics w' = w − hP∇U(w) + √(2hP)·ξ with exact gradients and
    a constant diagonal P (h = ε/2, BlackJAX's step size), the stationary law p_h satisfies, for
    a smooth φ (Talay & Tubaro 1990; for Euler–Maruyama the correction density is
    ¼∇UᵀP∇U − ½tr(P∇²U)),

        E_{p_h}[φ] − E_p[φ] = h·Cov_p(φ, ¼∇UᵀP∇U − ½tr(P∇²U)) + O(h²).

    Stein's identity E_p[ψ·tr(P∇²U)] = E_p[ψ·∇UᵀP∇U] − E_p[∇ψᵀP∇U] removes the Hessian:

        bias(φ) = ½·E[h∇φᵀP∇U] − ¼·Cov(φ, h∇UᵀP∇U) + O(h²).

    With φ = nβ(L_n(w) − L_n(w*)) (so that E[φ] = λ̂), ∇φ = nβ∇L_n: the bias needs only the
    gradients the step already computed. The expectations may be taken under p_h (the error is
    O(h²)). With minibatch gradients the products pick up the gradient noise, so the estimate
    is only made from full-batch gradients.

    Args:
        h: BlackJAX's step size, ε/2.
        loss_grad: ∇φ = nβ∇L_n(w), shape (d,).
        potential_grad: ∇U(w) = nβ∇L_n(w) + γ(w − w*), shape (d,).
        precond: the diagonal P, shape (d,), or None for P = I.

    Returns:
        (2,) array (h·∇φᵀP∇U, h·∇UᵀP∇U).
    """
    scaled = potential_grad if precond is None else precond * potential_grad
    return h * jnp.stack([jnp.vdot(loss_grad, scaled), jnp.vdot(potential_grad, scaled)])


def check_common_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check the options RMSProp-SGLD and Adam-SGLD share: ``step_size``, ``eps``, ``freeze`` and
    ``step_size_correction``.

    Args:
        options: the merged options; updated in place.

    Returns:
        ``options`` with those values checked and normalised (ValueError or TypeError naming a bad
        option).
    """
    options["step_size"] = positive_float("step_size", options["step_size"])
    options["eps"] = positive_float("eps", options["eps"])
    options["freeze"] = boolean("freeze", options["freeze"])
    options["step_size_correction"] = boolean("step_size_correction", options["step_size_correction"])
    return options


def tempered_loss_and_grad(posterior: LocalPosterior, w: jax.Array, batch: Any) -> tuple[jax.Array, jax.Array]:
    """(L_B(w) − L_n(w*), nβ∇L_B(w)) with one forward/backward pass (full batch when None).

    Args:
        posterior: the localized posterior.
        w: (d,) flat position.
        batch: a minibatch (a pytree like the data), or None for the full batch.

    Returns:
        (L_B(w) − L_n(w*), nβ∇L_B(w)): a scalar and a (d,) gradient (the localizer left out).
    """

    def tempered(x):
        excess = posterior.excess_loss(x, batch)
        return posterior.nbeta * excess, excess

    (_, excess), grad = jax.value_and_grad(tempered, has_aux=True)(w)
    return excess, grad


def run_preconditioned(
    key: jax.Array,
    posterior: LocalPosterior,
    kernel: Callable[..., Any],
    init_fn: Callable[[jax.Array], Any],
    label: str,
    *,
    first_chain: jax.Array | int,
    num_chains: int,
    num_draws: int,
    num_warmup: int,
    batch_size: int | None,
    step_size: float,
    eps: float,
    freeze: bool,
    progress: bool,
    save_positions: bool,
    step_size_correction: bool | None = None,
    bias_factor: float = 1.0,
) -> KernelOutput:
    """All chains of a preconditioned SGLD kernel vmapped in one lax.scan; warmup dropped.

    ``kernel(rng_key, state, loss_grad, localizer_grad, step_size, adapt)`` is one step on a
    state with ``position`` and ``second_moment`` fields; ``init_fn(position)`` its initial state.

    Args:
        key: the run's PRNG key; chain c's randomness derives from fold_in(key, c).
        posterior: the localized posterior; every chain starts at w*.
        kernel: one step, as above (loss_grad = nβ∇L_B(w), localizer_grad = −γ(w − w*)).
        init_fn: the initial state at a position.
        label: the kernel's name in progress messages.
        first_chain: global index of this program's first chain (an int or a traced integer).
        num_chains: chains run by this program (vmapped).
        num_draws: kept steps per chain.
        num_warmup: warmup steps per chain, run and dropped: with ``freeze``, v adapts over the
            first half and is then fixed at the mean of g² over the second quarter; the second
            half relaxes under that fixed P.
        batch_size: minibatch size, or None for the full batch.
        step_size: ε, the Langevin step (noise covariance ε P per step); BlackJAX's h = ε/2.
        eps: the preconditioner's eps, used here to report the final P's range.
        freeze: hold v (and so P) fixed during the kept draws (False keeps adapting it).
        progress: print step progress to stderr.
        save_positions: also return the sampled positions.
        step_size_correction: None for a kernel without a first-order bias estimate; otherwise
            whether λ̂ is corrected by that estimate, which is computed when ``freeze`` holds P
            fixed and the gradients are full-batch.
        bias_factor: the kernel's first-order bias in units of the Euler–Maruyama step's
            (:func:`step_bias_terms`): 1 when the drift is the current gradient, (1 + beta1)/(1 − beta1)
            for Adam-SGLD's lagged average of gradients (see :mod:`lambda_hat.kernels.adam_sgld`).

    Returns:
        A :class:`KernelOutput` with a :class:`PreconditionerInfo`; every chain is valid and
        ``grad_evals`` = num_warmup + num_draws.
    """
    step = jnp.asarray(step_size, posterior.dtype)
    eps_ = jnp.asarray(eps, posterior.dtype)
    estimate_bias = step_size_correction is not None and freeze

    # with freeze: v adapts over the first half of the warmup; it is then fixed at the mean of g²
    # over that half's second half, and the chain relaxes under the fixed P for the rest
    adapt_end, window_start = (num_warmup // 2, num_warmup // 4) if freeze else (num_warmup, num_warmup)
    width = adapt_end - window_start

    def chain_step(carry, k_noise, batch, keep):
        state, (g2_sum, seen) = carry
        if width > 0 and not keep:  # fix v at the window's mean when the adaptation ends
            fixed = jnp.where(seen == adapt_end, g2_sum / width, state.second_moment)
            state = state._replace(second_moment=fixed)
        excess, g = tempered_loss_and_grad(posterior, state.position, batch)
        localizer_grad = -posterior.gamma * (state.position - posterior.w_star)
        terms = posterior.draw_terms(state.position, g - localizer_grad) if keep else None  # ∂U = g + γv
        bias = None
        if keep and estimate_bias and batch is None:  # P is held fixed over the kept draws
            precond = preconditioner(state.second_moment, eps_)
            bias = step_bias_terms(0.5 * step * bias_factor, g, g - localizer_grad, precond)
        if keep:
            adapt = not freeze
        else:
            adapt = seen < adapt_end
            if width > 0:
                g2_sum = g2_sum + jnp.where((seen >= window_start) & adapt, g**2, 0)
            seen = seen + 1
        new_state = kernel(k_noise, state, g, localizer_grad, step, adapt=adapt)
        return (new_state, (g2_sum, seen)), (excess, (terms, bias))

    init_states = jax.vmap(init_fn)(jnp.broadcast_to(posterior.w_star, (num_chains, posterior.dim)))
    window = (jnp.zeros_like(init_states.position), jnp.zeros((num_chains,), jnp.int32))
    final, excess, (terms, bias), positions = run_chains(
        key,
        posterior,
        (init_states, window),
        chain_step,
        first_chain=first_chain,
        num_draws=num_draws,
        num_warmup=num_warmup,
        batch_size=batch_size,
        label=label,
        progress=progress,
        save_positions=save_positions,
        position_of=lambda carry: carry[0].position,
    )
    final = final[0]
    evals = jnp.full((num_chains,), num_warmup + num_draws)
    used = posterior.n if batch_size is None else batch_size
    p_last = preconditioner(final.second_moment, eps_)  # in use at the end
    return KernelOutput(
        excess_loss=excess,
        valid=jnp.ones((num_chains,), bool),
        info=PreconditionerInfo(jnp.min(p_last, axis=-1), jnp.max(p_last, axis=-1)),
        grad_evals=evals,
        data_passes=evals * (used / posterior.n),
        positions=positions,
        draw_terms=draws_first(terms),
        step_bias_terms=None if bias is None else draws_first(bias),
        step_bias_correction=None if bias is None else jnp.full((num_chains,), bool(step_size_correction)),
    )
