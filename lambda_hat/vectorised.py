"""Many localized posteriors of one shape in one compiled program (checkpoints, weight groups).

:func:`run_vectorised` vmaps a kernel's run over a stack of posteriors (and their keys), compiles
it once (cached like ``sample``'s programs), and calls it on groups of ``group_size``
posteriors; the last group is padded by repeating its final posterior, whose copies are dropped.
Leaves that every posterior shares (the data, the observables) are passed once and not batched,
so memory does not grow with the number of posteriors times n.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lambda_hat.api import _avals, _cached, _RunSettings
from lambda_hat.kernels import KernelOutput
from lambda_hat.posterior import LocalPosterior
from lambda_hat.progress import close_bars, say
from lambda_hat.refits import run_with_refits
from lambda_hat.sharding import block_program


def shared_inputs(posterior: LocalPosterior) -> tuple[Any, dict[str, Any] | None]:
    """``posterior``'s data and observables as it cast them to the run dtype, for constructing
    further posteriors on the same arrays: they are then not copied to the device again, and
    :func:`run_vectorised` finds them identical and passes them once.

    Args:
        posterior: the first of the posteriors to be vectorised.

    Returns:
        (data, {name: dataset} or None), to pass as ``data`` and ``observables``.
    """
    return posterior.data, dict(zip(posterior.observable_names, posterior.observable_data)) or None


def run_vectorised(
    run: _RunSettings,
    keys: Sequence[jax.Array],
    posteriors: Sequence[LocalPosterior],
    group_size: int,
    what: str,
    progress: bool = False,
) -> tuple[list[KernelOutput], _RunSettings, float, float, list[dict[str, Any]], list[float]]:
    """Run ``run``'s kernel on every (key, posterior) pair from one compiled program, again
    while the kernel's ``refit`` asks for another attempt (one decision for all posteriors; see
    :func:`lambda_hat.refits.run_with_refits`).

    Args:
        run: the validated run settings (kernel, static arguments) of the first attempt, shared
            by all posteriors.
        keys: one PRNG key per posterior.
        posteriors: localized posteriors of one pytree structure and leaf shapes.
        group_size: posteriors per call of the compiled program (1 … len(posteriors)).
        what: what a posterior is, for cache keys and progress lines ("checkpoints", "masks").
        progress: print a line per group to stderr.

    Returns:
        (the reported attempt's KernelOutputs as NumPy arrays, in order, with every attempt's
        gradient evaluations added in; its run settings; compile seconds of all attempts (0 for a
        cached program); sampling seconds of all attempts; the kernel's records of the attempts
        ([] without a search); each posterior's share of the sampling seconds of all attempts).
    """
    spec, num = run.spec, len(posteriors)
    leaves = [jax.tree.leaves(p) for p in posteriors]
    treedef = jax.tree.structure(posteriors[0])
    # leaves equal in every posterior (the data, the observables, the layout) are passed once,
    # unbatched; only the others (w*, L_n(w*), the gradient terms at w*, ...) get a leading axis
    mapped = [not all(_same(leaf[i], leaves[0][i]) for leaf in leaves[1:]) for i in range(len(leaves[0]))]
    axes = treedef.unflatten([0 if m else None for m in mapped])

    def pick(ks: list[int]):
        ks = ks + [ks[-1]] * (group_size - len(ks))  # pad the last group with copies of its final member
        # stacked on the host: jnp.stack would compile a small program per leaf shape
        stacked = [_host_stack([leaves[k][i] for k in ks]) if m else leaves[0][i] for i, m in enumerate(mapped)]
        key_data = np.stack([np.asarray(jax.random.key_data(keys[k])) for k in ks])
        return jax.random.wrap_key_data(key_data, impl=jax.random.key_impl(keys[0])), treedef.unflatten(stacked)

    _, avals = _avals(pick([0])[1])
    seconds = [0.0] * num

    def execute(attempt: _RunSettings) -> tuple[list[KernelOutput], float, float]:
        cache_key = (what, spec.name, tuple(sorted(attempt.static.items())), treedef, avals, tuple(mapped), group_size)
        if progress:
            say(f"{spec.name}: {num} {what} in groups of {group_size}, d = {posteriors[0].dim}; compiling ...")
        program = jax.jit(jax.vmap(block_program(spec.run, attempt.static), in_axes=(0, axes, None)))
        compiled, compile_s = _cached(cache_key, lambda: program.lower(*pick([0]), jnp.int32(0)).compile())
        if progress:
            say(f"{spec.name}: compiled in {compile_s:.1f} s; sampling ...")
        outputs: list[KernelOutput] = []
        run_s = 0.0
        for first in range(0, num, group_size):
            ks = list(range(first, min(first + group_size, num)))
            start = time.perf_counter()
            out = jax.tree.map(np.asarray, jax.block_until_ready(compiled(*pick(ks), jnp.int32(0))))
            elapsed = time.perf_counter() - start
            run_s += elapsed
            outputs += [jax.tree.map(lambda x, i=i: x[i], out) for i in range(len(ks))]
            for k in ks:
                seconds[k] += elapsed / len(ks)
            if progress:
                close_bars()
                say(f"{spec.name}: {what} {ks[0] + 1}–{ks[-1] + 1} of {num} sampled in {elapsed:.1f} s")
        return outputs, compile_s, run_s

    outputs, run, compile_s, run_s, refits = run_with_refits(
        run,
        execute,
        max(p.num_sampled for p in posteriors),
        posteriors[0],
        say if progress else None,
    )
    return outputs, run, compile_s, run_s, refits, seconds


def _host_stack(arrays: list[Any]) -> jax.Array:
    """Stack arrays along a new leading axis on the host, then put the result on the device once."""
    return jnp.asarray(np.stack([np.asarray(a) for a in arrays]))


def _same(a: Any, b: Any) -> bool:
    """Whether two posterior leaves hold the same values (the same array, or equal ones)."""
    if a is b:
        return True
    if np.shape(a) != np.shape(b) or jnp.result_type(a) != jnp.result_type(b):
        return False
    return bool(np.array_equal(np.asarray(a), np.asarray(b)))
