"""SGLD on the localized posterior, built on ``blackjax.sgld``.

Update (the literature's convention, e.g. Lau et al. 2023, devinterp):

    w ← w + (ε/2)·∇log p̂(w) + N(0, ε·I),   ∇log p̂(w) = −nβ ∇L_B(w) − γ (w − w*)

with L_B the mean loss over a minibatch B. BlackJAX writes the same step as
w + h·∇log p + N(0, 2h), so its step size is h = ε/2. ``step_size`` here is ε.

The loss trace records L_B(w_t) − L_n(w*) at the position *before* each update, an unbiased
estimate of L_n(w_t) − L_n(w*); with ``batch_size=None`` the full, exact L_n is used.
"""

from __future__ import annotations

from typing import Any

import blackjax
import jax
import jax.numpy as jnp

from lambda_hat.kernels.base import KernelOutput, KernelSpec, positive_float
from lambda_hat.posterior import LocalPosterior


def chain_keys(key: jax.Array, num_chains: int) -> jax.Array:
    """Per-chain keys: chain c gets fold_in(key, c), independent of num_chains."""
    return jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(num_chains))


def excess_loss_and_grad(posterior: LocalPosterior, w: jax.Array, batch: Any | None):
    """(L_B(w) − L_n(w*), ∇log p̂(w)) with one forward/backward pass."""

    def neg_potential(x):
        loss = posterior.full_loss(x) if batch is None else posterior.batch_loss(x, batch)
        excess = loss - posterior.loss_at_wstar
        return -posterior.nbeta * excess - posterior.localizer(x), excess

    (_, excess), grad = jax.value_and_grad(neg_potential, has_aux=True)(w)
    return excess, grad


def run_sgld(
    key: jax.Array,
    posterior: LocalPosterior,
    *,
    num_chains: int,
    num_draws: int,
    num_warmup: int,
    batch_size: int | None,
    step_size: float,
) -> KernelOutput:
    """All chains vmapped in one lax.scan; warmup steps are run and dropped."""
    h = 0.5 * step_size  # BlackJAX's step size
    kernel = blackjax.sgld.build_kernel()

    def use_given_grad(position, grad):  # the gradient is computed once, with the loss
        del position
        return grad

    def chain_step(w, chain_key, t):
        k_batch, k_noise = jax.random.split(jax.random.fold_in(chain_key, t))
        batch = None if batch_size is None else posterior.sample_batch(k_batch, batch_size)
        excess, grad = excess_loss_and_grad(posterior, w, batch)
        return kernel(k_noise, w, use_given_grad, grad, h), excess

    keys = chain_keys(key, num_chains)
    all_step = jax.vmap(chain_step, in_axes=(0, 0, None))

    def warm(ws, t):
        ws, _ = all_step(ws, keys, t)
        return ws, None

    def draw(ws, t):
        return all_step(ws, keys, t)

    ws = jnp.broadcast_to(posterior.w_star, (num_chains, posterior.dim))
    ws, _ = jax.lax.scan(warm, ws, jnp.arange(num_warmup))
    _, excess = jax.lax.scan(draw, ws, jnp.arange(num_warmup, num_warmup + num_draws))
    steps = num_warmup + num_draws
    evals = jnp.full((num_chains,), steps)
    used = posterior.n if batch_size is None else batch_size
    return KernelOutput(
        excess_loss=excess.T,
        grad_evals=evals,
        data_passes=evals * (used / posterior.n),
        diagnostics={},
        extra={},
    )


def _check(options: dict[str, Any]) -> dict[str, Any]:
    options["step_size"] = positive_float("step_size", options["step_size"])
    return options


SGLD = KernelSpec(
    name="sgld",
    run=run_sgld,
    options={"step_size": 1e-4},
    default_num_draws=2000,
    default_num_warmup=500,
    minibatch=True,
    check_options=_check,
    description="SGLD (blackjax.sgld); step_size is the literature's ε (BlackJAX's h = ε/2)",
)
