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

from typing import Any

import blackjax
import jax
import jax.numpy as jnp

from lambda_hat.kernels.base import KernelOutput, KernelSpec, boolean, positive_float
from lambda_hat.posterior import LocalPosterior
from lambda_hat.progress import tick
from lambda_hat.sharding import chain_index


def chain_keys(key: jax.Array, num_chains: int) -> jax.Array:
    """Per-chain keys: chain c gets fold_in(key, c), independent of num_chains and of how the
    chains are split over devices (c is the global chain index)."""
    return jax.vmap(lambda c: jax.random.fold_in(key, c))(chain_index(num_chains))


def excess_loss_and_grad(posterior: LocalPosterior, w: jax.Array, batch: Any | None):
    """((log p̂(w), L_B(w) − L_n(w*)), ∇log p̂(w)) with one forward/backward pass."""

    def neg_potential(x):
        excess = posterior.excess_loss(x, batch)
        return -posterior.nbeta * excess - posterior.localizer(x), excess

    (logp, excess), grad = jax.value_and_grad(neg_potential, has_aux=True)(w)
    return (logp, excess), grad


def mala_acceptance_probability(posterior, w, w_new, logp, grad, batch, h):
    """MH acceptance probability of the move w → w_new as a MALA proposal with step h."""
    (logp_new, _), grad_new = excess_loss_and_grad(posterior, w_new, batch)
    fwd = jnp.sum((w_new - w - h * grad) ** 2)
    bwd = jnp.sum((w - w_new - h * grad_new) ** 2)
    log_ratio = logp_new - logp + (fwd - bwd) / (4 * h)
    return jnp.exp(jnp.minimum(0.0, log_ratio))


def run_sgld(
    key: jax.Array,
    posterior: LocalPosterior,
    *,
    num_chains: int,
    num_draws: int,
    num_warmup: int,
    batch_size: int | None,
    step_size: float,
    mala_acceptance: bool = False,
    progress: bool = False,
    save_positions: bool = False,
) -> KernelOutput:
    """All chains vmapped in one lax.scan; warmup steps are run and dropped."""
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
        virial = posterior.virial_terms(w, -grad) if keep else None  # ∂U = −∇log p̂ at the draw
        return w_new, (excess, (accept, virial))

    init = jnp.broadcast_to(posterior.w_star, (num_chains, posterior.dim))
    _, excess, (accept, virial), positions = run_chains(
        key,
        posterior,
        init,
        chain_step,
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
    diagnostics = {"mala_acceptance": jnp.mean(accept, axis=0)} if mala_acceptance else {}
    return KernelOutput(
        excess_loss=excess,
        grad_evals=evals,
        data_passes=evals * (used / posterior.n),
        diagnostics=diagnostics,
        extra={},
        positions=positions,
        virial=jnp.swapaxes(virial, 0, 1),
    )


KEY_CHUNK = 256  # steps whose keys are drawn in one vectorized split


def run_chains(
    key,
    posterior,
    init_state,
    chain_step,
    *,
    num_draws,
    num_warmup,
    batch_size,
    label,
    progress,
    save_positions=False,
    position_of=lambda state: state,
):
    """The shared loop of the stochastic-gradient kernels: all chains vmapped in one lax.scan.

    ``chain_step(state, noise_key, batch, keep) -> (state, (excess, aux))`` is one chain's step;
    ``keep`` (a Python bool) is False during warmup; ``batch`` is None for the full batch.
    Randomness: chain c's phase p (0 = warmup, 1 = draws) has key k = fold_in(fold_in(key, c), p);
    its steps come in chunks of KEY_CHUNK, and chunk j's (minibatch, noise) keys are
    split(fold_in(k, j), (KEY_CHUNK, 2)) — one vectorized hash per chunk instead of two per step.
    Returns (final states, excess (chains, draws), aux (draws, chains, ...), positions) for the
    kept draws; positions (chains, draws, d) are ``position_of(state)`` before each kept step (the
    points whose losses are ``excess``) when ``save_positions``, else None.
    """
    num_chains = jax.tree.leaves(init_state)[0].shape[0]
    keys = chain_keys(key, num_chains)
    steps = num_warmup + num_draws

    def one(state, step_keys, keep):
        batch = None if batch_size is None else posterior.sample_batch(step_keys[0], batch_size)
        new, out = chain_step(state, step_keys[1], batch, keep)
        return new, (out, position_of(state) if keep and save_positions else None)

    def phase(states, phase_index, start, length, keep):
        phase_keys = jax.vmap(lambda k: jax.random.fold_in(k, phase_index))(keys)
        full, rest = divmod(length, KEY_CHUNK)

        def chunk(states, j, size):
            chunk_keys = jax.vmap(lambda k: jax.random.split(jax.random.fold_in(k, j), (KEY_CHUNK, 2)))(phase_keys)
            chunk_keys = jnp.swapaxes(chunk_keys, 0, 1)[:size]  # (size, chains, 2)

            def body(states, xs):
                i, step_keys = xs
                tick(start + j * KEY_CHUNK + i, steps, label, progress)
                return jax.vmap(one, in_axes=(0, 0, None))(states, step_keys, keep)

            return jax.lax.scan(body, states, (jnp.arange(size), chunk_keys))

        outs = []
        if full:
            states, out = jax.lax.scan(lambda st, j: chunk(st, j, KEY_CHUNK), states, jnp.arange(full))
            outs.append(jax.tree.map(lambda x: x.reshape((full * KEY_CHUNK,) + x.shape[2:]), out))
        if rest:
            states, out = chunk(states, full, rest)
            outs.append(out)
        return states, jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)

    states = init_state
    if num_warmup:
        states, _ = phase(states, 0, 0, num_warmup, False)
    states, ((excess, aux), positions) = phase(states, 1, num_warmup, num_draws, True)
    return states, excess.T, aux, None if positions is None else jnp.swapaxes(positions, 0, 1)


def _check(options: dict[str, Any]) -> dict[str, Any]:
    options["step_size"] = positive_float("step_size", options["step_size"])
    options["mala_acceptance"] = boolean("mala_acceptance", options["mala_acceptance"])
    return options


SGLD = KernelSpec(
    name="sgld",
    run=run_sgld,
    options={"step_size": 1e-4, "mala_acceptance": False},
    default_num_draws=2000,
    default_num_warmup=500,
    minibatch=True,
    check_options=_check,
    description="SGLD (blackjax.sgld); step_size is the literature's ε (BlackJAX's h = ε/2)",
    bias_advice="use a smaller step_size (SGLD's bias shrinks about linearly with ε) or a larger batch_size",
)
