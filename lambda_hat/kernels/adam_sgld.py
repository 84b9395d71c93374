"""Adam-SGLD after Hitchcock & Hoogland (2025), written BlackJAX-style (a state NamedTuple,
``init``, ``build_kernel``, and ``run_adam_sgld`` for all chains).

As RMSProp-SGLD (P = 1/(√v + eps), v ← beta2·v + (1 − beta2)·g², v₀ = 1, uncorrected), but the
drift's loss gradient is replaced by its bias-corrected moving average
m̂ = m/(1 − beta1ᵗ), m ← beta1·m + (1 − beta1)·g (m₀ = 0):

    w ← w + (ε/2)·P ⊙ (−m̂ − γ(w − w*)) + N(0, ε P)

m is updated at every step; ``freeze=True`` (default) holds v fixed after the first half of the
warmup (see :mod:`lambda_hat.kernels.langevin`).

**The lag's bias.** With h = ε/2 and the potential U, m̂ = Σ_k a_k ∇U(w_{t−k}) with weights
a_k = (1 − beta1)·beta1ᵏ (in the stationary regime, where beta1ᵗ ≈ 0), whose mean lag is
L = Σ_k k·a_k = beta1/(1 − beta1) steps. Over k steps a reversible chain moves by Δ = w_t − w_{t−k}
with E[Δ | w_t] = k·h·P∇U(w_t) and E[ΔΔᵀ] = 2k·h·P to first order in h, so expanding
∇U(w_t − Δ) about w_t,

    E[m̂ | w_t] = ∇U − L·h·(∇²U P∇U − ∇tr(P∇²U)) = ∇(U − L·h·G),   G = ½∇UᵀP∇U − tr(P∇²U),

i.e. the chain is the Euler–Maruyama step on the potential U − L·h·G. Its stationary law is
Euler–Maruyama's first-order correction exp(h(¼∇UᵀP∇U − ½tr(P∇²U))) times exp(L·h·G), and
L·h·G = 2L·h·(¼∇UᵀP∇U − ½tr(P∇²U)): the first-order bias of any E[φ] is (1 + 2L) =
(1 + beta1)/(1 − beta1) times SGLD's at the same ε and P (19× at beta1 = 0.9). On a Gaussian the
discrete chain's stationary variance confirms the factor exactly to first order. So with
full-batch gradients and ``freeze`` the kernel reports the first-order estimate
(:func:`lambda_hat.kernels.langevin.step_bias_terms`, scaled by (1 + beta1)/(1 − beta1)) in
``diagnostics["step_size_bias"]`` and, with ``step_size_correction=True`` (default), subtracts it
from λ̂. Adam-SGLD therefore needs about (1 + beta1)/(1 − beta1) times smaller ε than RMSProp-SGLD
for the same uncorrected bias; with minibatches the estimate is not made and the virial
self-check measures the law's bias instead. (m̂ averages the loss gradient only; the localizer's
γ(w − w*) is current, a part of relative size about γ/(nβ·a) along a direction of loss curvature
a that the factor slightly overstates.)

Options ``alpha`` (now ``beta2``) and ``stabilizer`` (now ``eps``) are deprecated names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lambda_hat.checks import probability
from lambda_hat.kernels.base import KernelOutput, KernelSpec
from lambda_hat.kernels.langevin import (
    NARROW_ADVICE,
    check_common_options,
    langevin_step,
    preconditioner,
    run_preconditioned,
    second_moment,
)
from lambda_hat.posterior import LocalPosterior


class AdamSGLDState(NamedTuple):
    """Position w, the gradient average m (starts at 0), the statistic v (starts at 1) and the
    number of m updates t (for the bias correction 1 − beta1ᵗ)."""

    position: jax.Array
    first_moment: jax.Array
    second_moment: jax.Array
    count: jax.Array


def init(position: jax.Array) -> AdamSGLDState:
    """The state at ``position`` with m = 0, v = 1, t = 0.

    Args:
        position: the initial w.

    Returns:
        An :class:`AdamSGLDState`.
    """
    return AdamSGLDState(position, jnp.zeros_like(position), jnp.ones_like(position), jnp.zeros((), position.dtype))


def build_kernel(*, beta1: jax.Array, beta2: jax.Array, eps: jax.Array) -> Callable[..., AdamSGLDState]:
    """``kernel(rng_key, state, loss_grad, localizer_grad, step_size, adapt=True) -> state``.

    Args:
        beta1: m's decay rate.
        beta2: v's decay rate.
        eps: added to √v in P = 1/(√v + eps).

    Returns:
        One Adam-SGLD step; m is updated at every step (it is the drift); adapt=False keeps v
        (and P) fixed.
    """

    def kernel(rng_key, state, loss_grad, localizer_grad, step_size, adapt=True):
        count = state.count + 1
        m = beta1 * state.first_moment + (1 - beta1) * loss_grad
        m_hat = m / (1 - beta1**count)
        v = second_moment(state.second_moment, loss_grad, beta2, adapt)
        position = langevin_step(rng_key, state.position, -m_hat + localizer_grad, preconditioner(v, eps), step_size)
        return AdamSGLDState(position, m, v, count)

    return kernel


def run_adam_sgld(
    key: jax.Array,
    posterior: LocalPosterior,
    *,
    first_chain: jax.Array | int = 0,
    num_chains: int,
    num_draws: int,
    num_warmup: int,
    batch_size: int | None,
    step_size: float,
    beta1: float,
    beta2: float,
    eps: float,
    freeze: bool = True,
    step_size_correction: bool = True,
    progress: bool = False,
    save_positions: bool = False,
) -> KernelOutput:
    """Adam-SGLD chains: P = 1/(√v + eps), drift −m̂ − γ(w − w*).

    Args:
        key: the run's PRNG key; chain c's randomness derives from fold_in(key, c).
        posterior: the localized posterior; every chain starts at w*.
        first_chain: global index of this program's first chain (an int or a traced integer).
        num_chains: chains run by this program (vmapped).
        num_draws: kept steps per chain.
        num_warmup: warmup steps per chain, run and dropped (with ``freeze``: v adapts over the
            first half, then the chain relaxes under the fixed P).
        batch_size: minibatch size, or None for the full batch.
        step_size: ε, the Langevin step (noise covariance ε P per step, as SGLD's ε); BlackJAX's
            h = ε/2.
        beta1: m's decay rate, in (0, 1).
        beta2: v's decay rate, in (0, 1).
        eps: added to √v in P = 1/(√v + eps).
        freeze: True adapts v during the warmup's first half, then holds v (and so P) fixed; False keeps
            adapting. m is updated at every step either way.
        step_size_correction: with full-batch gradients and ``freeze``, subtract the first-order
            estimate of the step size's bias, (1 + beta1)/(1 − beta1) times SGLD's
            (:func:`~lambda_hat.kernels.langevin.step_bias_terms`), from λ̂; reported either way
            in ``diagnostics["step_size_bias"]``.
        progress: print step progress to stderr.
        save_positions: also return the sampled positions.

    Returns:
        A :class:`KernelOutput` with a :class:`~lambda_hat.kernels.langevin.PreconditionerInfo`;
        every chain is valid and ``grad_evals`` = num_warmup + num_draws.
    """
    dtype = posterior.dtype
    kernel = build_kernel(beta1=jnp.asarray(beta1, dtype), beta2=jnp.asarray(beta2, dtype), eps=jnp.asarray(eps, dtype))
    return run_preconditioned(
        key,
        posterior,
        kernel,
        init,
        "adam_sgld",
        first_chain=first_chain,
        num_chains=num_chains,
        num_draws=num_draws,
        num_warmup=num_warmup,
        batch_size=batch_size,
        step_size=step_size,
        eps=eps,
        freeze=freeze,
        progress=progress,
        save_positions=save_positions,
        step_size_correction=step_size_correction,
        bias_factor=(1 + beta1) / (1 - beta1),
    )


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check Adam-SGLD's options.

    Args:
        options: the merged options (``step_size``, ``beta1``, ``beta2``, ``eps``, ``freeze``,
            ``step_size_correction``); updated in place.

    Returns:
        ``options`` with each value checked and normalised (ValueError naming a bad option).
    """
    options["beta1"] = probability("beta1", options["beta1"])
    options["beta2"] = probability("beta2", options["beta2"])
    return check_common_options(options)


ADAM_SGLD = KernelSpec(
    name="adam_sgld",
    run=run_adam_sgld,
    options={"step_size": 1e-4, "beta1": 0.9, "beta2": 0.99, "eps": 0.1, "freeze": True, "step_size_correction": True},
    default_num_draws=2000,
    default_num_warmup=500,
    minibatch=True,
    progress=True,
    check_options=check_options,
    aliases={"alpha": "beta2", "stabilizer": "eps"},
    bias_advice=(
        "use a smaller step_size (m̂ lags the gradient: the step-size bias is (1 + beta1)/(1 − beta1) times "
        "SGLD's at the same ε), or rmsprop_sgld"
    ),
    narrow_advice=NARROW_ADVICE,
)
