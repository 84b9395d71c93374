"""Many localized posteriors of one shape in one compiled program (checkpoints, weight groups).

:func:`run_vectorised` vmaps a kernel's run over a stack of posteriors (and their keys), compiles
it once (cached like ``sample``'s programs), and calls it on groups of ``group_size``
posteriors; the last group is padded by repeating its final posterior, whose copies are dropped.
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
from lambda_hat.sharding import block_program


def stack_trees(trees: Sequence[Any]) -> Any:
    """Stack pytrees of one structure along a new leading axis.

    Args:
        trees: pytrees with the same structure and leaf shapes.

    Returns:
        One pytree whose leaves have a new leading axis of length ``len(trees)``.
    """
    return jax.tree.map(lambda *xs: jnp.stack(xs), *trees)


def run_vectorised(
    run: _RunSettings,
    keys: Sequence[jax.Array],
    posteriors: Sequence[LocalPosterior],
    group_size: int,
    what: str,
    progress: bool = False,
) -> tuple[list[tuple[KernelOutput, float]], float, float]:
    """Run ``run``'s kernel on every (key, posterior) pair from one compiled program.

    Args:
        run: the validated run settings (kernel, static arguments), shared by all posteriors.
        keys: one PRNG key per posterior.
        posteriors: localized posteriors of one pytree structure and leaf shapes.
        group_size: posteriors per call of the compiled program (1 … len(posteriors)).
        what: what a posterior is, for cache keys and progress lines ("checkpoints", "masks").
        progress: print a line per group to stderr.

    Returns:
        ([(the posterior's KernelOutput as NumPy arrays, its share of the sampling seconds)] in
        order, compile seconds (0 when the program was cached), sampling seconds in all).
    """
    spec, num = run.spec, len(posteriors)

    def pick(ks: list[int]):
        ks = ks + [ks[-1]] * (group_size - len(ks))  # pad the last group with copies of its final member
        return stack_trees([keys[k] for k in ks]), stack_trees([posteriors[k] for k in ks])

    treedef, avals = _avals(pick([0])[1])
    cache_key = (what, spec.name, tuple(sorted(run.static.items())), treedef, avals, group_size)
    if progress:
        say(f"{spec.name}: {num} {what} in groups of {group_size}, d = {posteriors[0].dim}; compiling ...")
    program = jax.jit(jax.vmap(block_program(spec.run, run.static), in_axes=(0, 0, None)))
    compiled, compile_s = _cached(cache_key, lambda: program.lower(*pick([0]), jnp.int32(0)).compile())
    if progress:
        say(f"{spec.name}: compiled in {compile_s:.1f} s; sampling ...")
    outputs: list[tuple[KernelOutput, float]] = []
    run_s = 0.0
    for first in range(0, num, group_size):
        ks = list(range(first, min(first + group_size, num)))
        start = time.perf_counter()
        out = jax.tree.map(np.asarray, jax.block_until_ready(compiled(*pick(ks), jnp.int32(0))))
        elapsed = time.perf_counter() - start
        run_s += elapsed
        outputs += [(jax.tree.map(lambda x, i=i: x[i], out), elapsed / len(ks)) for i in range(len(ks))]
        if progress:
            close_bars()
            say(f"{spec.name}: {what} {ks[0] + 1}–{ks[-1] + 1} of {num} sampled in {elapsed:.1f} s")
    return outputs, compile_s, run_s
