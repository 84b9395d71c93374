"""SGLD on the localized posterior, built on ``blackjax.sgld``.

Update (the literature's convention, e.g. Lau et al. 2023, devinterp):

    w ← w + (ε/2)·∇log p̂(w) + N(0, ε·I),   ∇log p̂(w) = −nβ ∇L_B(w) − γ (w − w*)

with L_B the mean loss over a minibatch B. BlackJAX writes the same step as
w + h·∇log p + N(0, 2h), so its step size is h = ε/2. ``step_size`` here is ε.

With ``mala_acceptance=True`` each kept draw also computes the Metropolis–Hastings acceptance
probability that the same move would have under MALA (Furman & Lau 2024), on the same minibatch:
min(1, p̂(w′) q(w|w′) / (p̂(w) q(w′|w))), q(b|a) = N(b; a + h∇log p̂(a), 2h). Values near 0.9 mean
the step size is well calibrated; it costs one more gradient evaluation per kept draw.

The loss trace records L_B(w_t) − L_n(w*) at the position *before* each update, an unbiased
estimate of L_n(w_t) − L_n(w*); with ``batch_size=None`` the full, exact L_n is used.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import blackjax
import jax
import jax.numpy as jnp

from lambda_hat.checks import boolean, positive_float
from lambda_hat.kernels.base import KernelOutput, KernelSpec, draws_first
from lambda_hat.kernels.chains import run_chains
from lambda_hat.kernels.langevin import NARROW_ADVICE, step_bias_terms
from lambda_hat.posterior import LocalPosterior


class SGLDInfo(NamedTuple):
    """Per-chain diagnostics of an SGLD run.

    Attributes:
        mala_acceptance: mean over the kept draws of the MALA acceptance probability of each
            move (``mala_acceptance=True``; None otherwise).
    """

    mala_acceptance: jax.Array | None = None


def excess_loss_and_grad(
    posterior: LocalPosterior, w: jax.Array, batch: Any | None
) -> tuple[tuple[jax.Array, jax.Array], jax.Array]:
    """((log p̂(w), L_B(w) − L_n(w*)), ∇log p̂(w)) with one forward/backward pass.

    Here log p̂(w) = −nβ (L_B(w) − L_n(w*)) − (γ/2)‖w − w*‖², the minibatch estimate of the
    localized log-density.

    Args:
        posterior: the localized posterior.
        w: (d,) flat position.
        batch: a minibatch (a pytree like the data), or None for the full batch (L_B = L_n).

    Returns:
        ((log p̂(w), L_B(w) − L_n(w*)), ∇log p̂(w)): two scalars and a (d,) gradient.
    """

    def neg_potential(x):
        excess = posterior.excess_loss(x, batch)
        return -posterior.nbeta * excess - posterior.localizer(x), excess

    (logp, excess), grad = jax.value_and_grad(neg_potential, has_aux=True)(w)
    return (logp, excess), grad


def mala_acceptance_probability(
    posterior: LocalPosterior,
    w: jax.Array,
    w_new: jax.Array,
    logp: jax.Array,
    grad: jax.Array,
    batch: Any | None,
    h: float | jax.Array,
) -> jax.Array:
    """MH acceptance probability of the move w → w_new as a MALA proposal with step h.

    min(1, p̂(w_new) q(w|w_new) / (p̂(w) q(w_new|w))) with q(b|a) = N(b; a + h∇log p̂(a), 2h),
    evaluated on ``batch``; costs one more gradient evaluation (at w_new).

    Args:
        posterior: the localized posterior.
        w: (d,) current position.
        w_new: (d,) proposed position.
        logp: log p̂(w) on ``batch`` (from :func:`excess_loss_and_grad`).
        grad: ∇log p̂(w) on ``batch``.
        batch: the minibatch of the move, or None for the full batch.
        h: BlackJAX's step size, h = ε/2 for the SGLD step size ε.

    Returns:
        The acceptance probability, a scalar in [0, 1].
    """
    (logp_new, _), grad_new = excess_loss_and_grad(posterior, w_new, batch)
    fwd = jnp.sum((w_new - w - h * grad) ** 2)
    bwd = jnp.sum((w - w_new - h * grad_new) ** 2)
    log_ratio = logp_new - logp + (fwd - bwd) / (4 * h)
    return jnp.exp(jnp.minimum(0.0, log_ratio))


def run_sgld(
    key: jax.Array,
    posterior: LocalPosterior,
    *,
    first_chain: jax.Array | int = 0,
    num_chains: int,
    num_draws: int,
    num_warmup: int,
    batch_size: int | None,
    step_size: float,
    mala_acceptance: bool = False,
    step_size_correction: bool = True,
    progress: bool = False,
    save_positions: bool = False,
) -> KernelOutput:
    """All chains vmapped in one lax.scan; warmup steps are run and dropped.

    Args:
        key: the run's PRNG key; chain c's randomness derives from fold_in(key, c).
        posterior: the localized posterior; every chain starts at w*.
        first_chain: global index of this program's first chain (an int or a traced integer).
        num_chains: chains run by this program (vmapped).
        num_draws: kept steps per chain.
        num_warmup: burn-in steps per chain, run and dropped.
        batch_size: minibatch size, or None for the full batch.
        step_size: ε, the Langevin step (noise variance ε per step); BlackJAX's step size is ε/2.
        mala_acceptance: also record each kept move's MALA acceptance probability (one more
            gradient evaluation per kept draw).
        step_size_correction: with full-batch gradients, subtract the first-order estimate of the
            step size's bias from λ̂ (reported either way in ``diagnostics["step_size_bias"]``; see
            :func:`~lambda_hat.kernels.langevin.step_bias_terms`).
        progress: print step progress to stderr.
        save_positions: also return the sampled positions.

    Returns:
        A :class:`KernelOutput`; ``info`` is an :class:`SGLDInfo`, every chain is valid, and
        ``grad_evals`` = num_warmup + num_draws (+ num_draws with ``mala_acceptance``).
    """
    h = 0.5 * step_size  # BlackJAX's step size
    kernel = blackjax.sgld.build_kernel()

    def use_given_grad(position, grad):  # the gradient is computed once, with the loss
        del position
        return grad

    def chain_step(w, k_noise, batch, keep):
        (logp, excess), grad = excess_loss_and_grad(posterior, w, batch)
        w_new = kernel(k_noise, w, use_given_grad, grad, h)
        accept = (
            mala_acceptance_probability(posterior, w, w_new, logp, grad, batch, h) if keep and mala_acceptance else None
        )
        terms = posterior.draw_terms(w, -grad) if keep else None  # ∂U = −∇log p̂ at the draw
        bias = None
        if keep and batch is None:  # ∇φ = nβ∇L_n = ∂U − γ(w − w*)
            bias = step_bias_terms(h, -grad - posterior.gamma * (w - posterior.w_star), -grad)
        return w_new, (excess, (accept, terms, bias))

    init = jnp.broadcast_to(posterior.w_star, (num_chains, posterior.dim))
    _, excess, (accept, terms, bias), positions = run_chains(
        key,
        posterior,
        init,
        chain_step,
        first_chain=first_chain,
        num_draws=num_draws,
        num_warmup=num_warmup,
        batch_size=batch_size,
        label="sgld",
        progress=progress,
        save_positions=save_positions,
    )
    steps = num_warmup + num_draws
    evals = jnp.full((num_chains,), steps + (num_draws if mala_acceptance else 0))
    used = posterior.n if batch_size is None else batch_size
    return KernelOutput(
        excess_loss=excess,
        valid=jnp.ones((num_chains,), bool),
        info=SGLDInfo(jnp.mean(accept, axis=0) if mala_acceptance else None),
        grad_evals=evals,
        data_passes=evals * (used / posterior.n),
        positions=positions,
        draw_terms=draws_first(terms),
        step_bias_terms=None if bias is None else draws_first(bias),
        step_bias_correction=None if bias is None else jnp.full((num_chains,), step_size_correction),
    )


def _check(options: dict[str, Any]) -> dict[str, Any]:
    options["step_size"] = positive_float("step_size", options["step_size"])
    options["mala_acceptance"] = boolean("mala_acceptance", options["mala_acceptance"])
    options["step_size_correction"] = boolean("step_size_correction", options["step_size_correction"])
    return options


SGLD = KernelSpec(
    name="sgld",
    run=run_sgld,
    options={"step_size": 1e-4, "mala_acceptance": False, "step_size_correction": True},
    default_num_draws=2000,
    default_num_warmup=500,
    minibatch=True,
    progress=True,
    check_options=_check,
    bias_advice="use a smaller step_size (SGLD's bias shrinks about linearly with ε) or a larger batch_size",
    narrow_advice=NARROW_ADVICE,
)
