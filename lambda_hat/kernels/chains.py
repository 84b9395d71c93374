"""The chains of every kernel: per-chain keys, and the vmapped scan loop of the
stochastic-gradient kernels (SGLD, RMSProp-SGLD, Adam-SGLD)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from lambda_hat.posterior import LocalPosterior
from lambda_hat.progress import tick


def chain_keys(key: jax.Array, num_chains: int, first_chain: jax.Array | int = 0) -> jax.Array:
    """Per-chain keys of a program that runs chains first_chain, …, first_chain + num_chains − 1:
    chain c gets fold_in(key, c), independent of num_chains and of how the chains are split over
    devices (c is the global chain index; ``first_chain`` may be traced).

    Args:
        key: the run's PRNG key.
        num_chains: chains this program runs.
        first_chain: global index of its first chain (an int or a traced integer).

    Returns:
        (num_chains,) keys, row i = fold_in(key, first_chain + i).
    """
    return jax.vmap(lambda c: jax.random.fold_in(key, c))(jnp.arange(num_chains) + first_chain)


KEY_CHUNK = 256  # steps whose keys are drawn in one vectorized split


def run_chains(
    key: jax.Array,
    posterior: LocalPosterior,
    init_state: Any,
    chain_step: Callable[[Any, jax.Array, Any | None, bool], tuple[Any, tuple[jax.Array, Any]]],
    *,
    first_chain: jax.Array | int,
    num_draws: int,
    num_warmup: int,
    batch_size: int | None,
    label: str,
    progress: bool,
    save_positions: bool = False,
    position_of: Callable[[Any], jax.Array] = lambda state: state,
) -> tuple[Any, jax.Array, Any, jax.Array | None]:
    """The shared loop of the stochastic-gradient kernels: all chains vmapped in one lax.scan.

    ``chain_step(state, noise_key, batch, keep) -> (state, (excess, aux))`` is one chain's step;
    ``keep`` (a Python bool) is False during warmup; ``batch`` is None for the full batch.
    ``first_chain`` is the global index of the first chain in ``init_state`` (see chain_keys).
    Randomness: chain c's phase p (0 = warmup, 1 = draws) has key k = fold_in(fold_in(key, c), p);
    its steps come in chunks of KEY_CHUNK, and chunk j's (minibatch, noise) keys are
    split(fold_in(k, j), (KEY_CHUNK, 2)) — one vectorized hash per chunk instead of two per step.

    Args:
        key: the run's PRNG key.
        posterior: the localized posterior (its ``sample_batch`` draws the minibatches).
        init_state: the chains' initial states, a pytree whose leaves have a leading chain axis.
        chain_step: one chain's step, as above; ``excess`` is the step's L_B(w) − L_n(w*) and
            ``aux`` any pytree (or None) to collect per kept draw.
        first_chain: global index of the first chain in ``init_state`` (an int or a traced integer).
        num_draws: kept steps per chain.
        num_warmup: warmup steps per chain, run with ``keep=False`` and dropped.
        batch_size: minibatch size, or None for the full batch.
        label: the kernel's name in progress messages.
        progress: print step progress (a Python bool; only the program running chain 0 prints).
        save_positions: also collect ``position_of(state)`` at each kept draw.
        position_of: the flat position (d,) of one chain's state (the identity for a bare position).

    Returns:
        (final states, excess (chains, draws), aux (draws, chains, ...), positions) for the kept
        draws; positions (chains, draws, d) are ``position_of(state)`` before each kept step (the
        points whose losses are ``excess``) when ``save_positions``, else None.
    """
    num_chains = jax.tree.leaves(init_state)[0].shape[0]
    keys = chain_keys(key, num_chains, first_chain)
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
                tick(start + j * KEY_CHUNK + i, steps, label, progress, first_chain == 0)
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
