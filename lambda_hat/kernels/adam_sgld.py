"""Adam-SGLD after Hitchcock & Hoogland (2025), written BlackJAX-style (a state NamedTuple,
``init``, ``build_kernel``, and ``run_adam_sgld`` for all chains).

As RMSProp-SGLD (P = 1/(√v + eps), v ← beta2·v + (1 − beta2)·g², v₀ = 1, uncorrected), but the
drift's loss gradient is replaced by its bias-corrected moving average
m̂ = m/(1 − beta1ᵗ), m ← beta1·m + (1 − beta1)·g (m₀ = 0):

    w ← w + (ε/2)·P ⊙ (−m̂ − γ(w − w*)) + N(0, ε P)

m̂ lags the current gradient by about 1/(1 − beta1) steps, which biases the stationary law by
O(ε·κ/(1 − beta1)) along a direction of curvature κ (about 1/(1 − beta1) times SGLD's step
bias); the bias vanishes as ε → 0, so Adam-SGLD needs a smaller ε than RMSProp-SGLD for the same
accuracy. m is updated at every step; ``freeze=True`` (default) holds v fixed after warmup.

Options ``alpha`` (now ``beta2``) and ``stabilizer`` (now ``eps``) are deprecated names.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lambda_hat.checks import boolean, positive_float, probability
from lambda_hat.kernels.base import KernelOutput, KernelSpec
from lambda_hat.kernels.langevin import (
    NARROW_ADVICE,
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
        num_warmup: warmup steps per chain (v adapts), run and dropped.
        batch_size: minibatch size, or None for the full batch.
        step_size: ε, the Langevin step (noise covariance ε P per step, as SGLD's ε); BlackJAX's
            h = ε/2.
        beta1: m's decay rate, in (0, 1).
        beta2: v's decay rate, in (0, 1).
        eps: added to √v in P = 1/(√v + eps).
        freeze: True adapts v during warmup only, then holds v (and so P) fixed; False keeps
            adapting. m is updated at every step either way.
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
    )


def check_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check Adam-SGLD's options.

    Args:
        options: the merged options (``step_size``, ``beta1``, ``beta2``, ``eps``, ``freeze``);
            updated in place.

    Returns:
        ``options`` with each value checked and normalised (ValueError naming a bad option).
    """
    options["step_size"] = positive_float("step_size", options["step_size"])
    options["beta1"] = probability("beta1", options["beta1"])
    options["beta2"] = probability("beta2", options["beta2"])
    options["eps"] = positive_float("eps", options["eps"])
    options["freeze"] = boolean("freeze", options["freeze"])
    return options


ADAM_SGLD = KernelSpec(
    name="adam_sgld",
    run=run_adam_sgld,
    options={"step_size": 1e-4, "beta1": 0.9, "beta2": 0.99, "eps": 0.1, "freeze": True},
    default_num_draws=2000,
    default_num_warmup=500,
    minibatch=True,
    progress=True,
    check_options=check_options,
    aliases={"alpha": "beta2", "stabilizer": "eps"},
    bias_advice="use a smaller step_size (m̂ lags the gradient, a bias of order ε/(1 − beta1)), or rmsprop_sgld",
    narrow_advice=NARROW_ADVICE,
)
