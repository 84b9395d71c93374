"""``lambda_hat.sample_masks``: one weight-restricted λ̂ per group of weights, in one compiled program.

A weight-restricted LLC samples only the weights a mask selects and holds the others at w*. For
several masks (say one per layer) the restricted posteriors differ only in which coordinates are
free, so one program serves them all: each masked posterior is padded to the largest group's size
with coordinates the loss does not see (independent N(0, 1/γ) under the posterior; see
:meth:`lambda_hat.LocalPosterior.padded`), the posteriors are stacked, and the kernel's run is
vmapped over them and compiled once.

Mask k's λ̂ has the law of ``lambda_hat.sample(loss_fn, params, data, mask=masks[k], key=key, ...)``
(the same key for every mask), not the same draws: the padding coordinates enter the random
numbers and the adaptation of adaptive kernels, and the vectorised program may round sums in
another order. So the estimates agree with separate masked calls within Monte Carlo error. When
every mask selects the same number of weights nothing is padded, and the SGLD family's draws then
follow the separate calls' to the run dtype's rounding.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import jax

from lambda_hat.api import LLCWarning, _assemble, _merge_options, _run_settings, as_key
from lambda_hat.checks import boolean, positive_int
from lambda_hat.kernels import get_kernel
from lambda_hat.models import adapt_model
from lambda_hat.posterior import LocalPosterior
from lambda_hat.result import LLCResult
from lambda_hat.vectorised import run_vectorised, shared_inputs


def sample_masks(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    masks: Mapping[str, Any],
    *,
    kernel: str = "sgld",
    key: Any = 0,
    num_chains: int = 4,
    num_draws: int | None = None,
    num_warmup: int | None = None,
    beta: float | None = None,
    nbeta: float | None = None,
    gamma: float = 1.0,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    observables: Mapping[str, Any] | None = None,
    group_size: int | None = None,
    progress: bool = False,
    save_positions: bool = False,
    warn_stationarity: bool = True,
    **kernel_options: Any,
) -> dict[str, LLCResult]:
    """Estimate a weight-restricted λ̂ for each of several masks, in one compiled program.

    For each mask m_k, λ̂_k = nβ·(E_{p_k}[L_n(w)] − L_n(w*)) where p_k samples only the weights m_k
    selects (``sample(..., mask=m_k)``): the posterior
    p_k(u) ∝ exp(−nβ (L_n(w*[u]) − L_n(w*)) − (γ/2)‖u − u*‖²) over the selected weights u, the
    others held at w*. Per-group LLCs are not additive: λ̂ of two layers together is not the sum
    of their separate λ̂s.

    Every argument but ``masks`` and ``group_size`` is that of :func:`lambda_hat.sample`, shared
    by every mask; every mask uses the same ``key``.

    Args:
        loss_fn: ``loss_fn(params, batch) -> scalar`` mean loss, as for ``sample``.
        params: w*, a pytree of float arrays (or a flax nnx Module), as for ``sample``.
        data: a pytree of arrays with a shared leading axis n.
        masks: ``{name: mask}``, each mask as ``sample``'s ``mask`` (a pytree of booleans, a
            prefix dict such as ``{"params": {"dense1": True}}``, or a predicate
            ``mask(path, leaf) -> bool`` with ``path`` the ``jax.tree_util.keystr`` string).
        group_size: masks per call of the compiled program (default: all at once). Memory grows
            with group_size × num_chains; a smaller group bounds it at no extra compilation.
        kernel: the kernel's name, as for ``sample``.
        key: an int seed or a PRNG key, used for every mask.
        num_chains: chains per mask.
        num_draws: kept draws per chain (the kernel's default when None).
        num_warmup: warmup steps per chain (the kernel's default when None).
        beta: inverse temperature β, as for ``sample``.
        nbeta: nβ directly, as for ``sample`` (give at most one of beta / nbeta).
        gamma: localization strength γ; masks that select different numbers of weights need
            ``gamma > 0`` (the padding coordinates are N(0, 1/γ)).
        batch_size: minibatch size for stochastic-gradient kernels (None = full batch).
        chunk_size: examples per chunk of the full-batch loss.
        observables: ``{name: dataset}`` recorded at every draw of every mask, as for ``sample``.
        progress: print progress lines to stderr.
        save_positions: also return each mask's sampled parameters (padding left out).
        warn_stationarity: warn when ‖∇L_n(w*)‖ shifts E[λ̂] noticeably.
        **kernel_options: options of the chosen kernel, as for ``sample``.

    Returns:
        ``{name: LLCResult}`` in the order of ``masks``; each result's ``config`` holds ``mask``
        (its name) and ``dim`` (the number of weights it sampled). Warnings are issued per mask,
        prefixed by its name.

    Raises:
        TypeError: ``masks`` is not a non-empty dict with string names.
        ValueError: a bad mask (as for ``sample``), or ``gamma = 0`` with masks of different sizes.

    Example:
        >>> import numpy as np, lambda_hat
        >>> from lambda_hat.targets import linear_regression
        >>> t = linear_regression(d=5, seed=0)
        >>> first = np.arange(5) < 2
        >>> runs = lambda_hat.sample_masks(t.loss_fn, t.params, t.data, {"first": first, "rest": ~first})
        >>> [(name, r.config["dim"]) for name, r in runs.items()]
        [('first', 2), ('rest', 3)]
    """
    if not isinstance(masks, Mapping) or not masks:
        raise TypeError(f"masks: expected a non-empty dict {{name: mask}}, got {type(masks).__name__}")
    names = list(masks)
    bad = [n for n in names if not isinstance(n, str)]
    if bad:
        raise TypeError(f"masks: expected string names, got {bad}")
    spec = get_kernel(kernel)
    options = _merge_options(spec, kernel_options)
    rng_key = as_key(key)
    warn_stationarity = boolean("warn_stationarity", warn_stationarity)
    loss_fn, params = adapt_model(loss_fn, params)
    posteriors = []
    for name in names:
        try:
            posteriors.append(
                LocalPosterior(
                    loss_fn,
                    params,
                    data,
                    beta=beta,
                    nbeta=nbeta,
                    gamma=gamma,
                    chunk_size=chunk_size,
                    mask=masks[name],
                    observables=observables,
                )  # fmt: skip
            )
        except (TypeError, ValueError) as err:
            raise type(err)(f"masks[{name!r}]: {err}") from None
        data, observables = shared_inputs(posteriors[0])  # the others share the first one's arrays
    dims = [p.dim for p in posteriors]
    if len(set(dims)) > 1 and float(posteriors[0].gamma) == 0:
        raise ValueError(
            f"gamma: masks of different sizes ({dict(zip(names, dims))}) are padded with coordinates that only "
            "the localizer holds (N(0, 1/γ)); expected gamma > 0"
        )
    union = tuple(dict.fromkeys(g for p in posteriors for g in p.group_names))  # in order of first appearance
    padded = [p.padded(max(dims), union) for p in posteriors]
    group = len(names) if group_size is None else min(positive_int("group_size", group_size), len(names))
    run = _run_settings(
        spec, padded[0], options, num_chains, num_draws, num_warmup, batch_size, progress, save_positions
    )
    outputs, run, compile_s, run_s, refits, seconds_each = run_vectorised(
        run, [rng_key] * len(names), padded, group, "masks", progress
    )
    results: dict[str, LLCResult] = {}
    for k, (name, posterior, out, seconds) in enumerate(zip(names, padded, outputs, seconds_each)):
        grad_norm, shift = (float(x) for x in posterior.stationarity())
        config = run.config(key=repr(key), beta=beta, posterior=posterior, masked=True, devices=1)
        config.update(mask=name)
        results[name] = _assemble(
            spec, posterior, out, config, compile_s if k == 0 else 0.0, seconds, grad_norm, shift,
            run.exact_trace, emit=False, warn_stationarity=warn_stationarity, refits=refits,
        )  # fmt: skip
    for name, result in results.items():
        for message in result.warnings:
            warnings.warn(f"mask {name!r}: {message}", LLCWarning, stacklevel=2)
    return results
