"""What every kernel provides to :func:`lambda_hat.sample`.

A kernel is a :class:`KernelSpec`: its name, the options it accepts (with defaults), default
draw counts, option checks, and ``run``. ``run`` is traced once inside ``jax.jit`` and must run
all chains (vmapped) in one program; it returns a :class:`KernelOutput`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax


class KernelOutput(NamedTuple):
    """What a kernel's jitted run returns (all arrays, leading axis = chains).

    Attributes:
        excess_loss: (chains, draws) post-warmup estimates of L_n(w_t) − L_n(w*) (minibatch
            estimates for stochastic-gradient kernels, exact full-batch values otherwise).
        grad_evals: (chains,) number of log-density gradient evaluations, warmup and tuning included.
        data_passes: (chains,) the same work in full-data passes (grad evals × batch size / n).
        diagnostics: per-chain arrays, kernel specific (acceptance, divergences, tuned step sizes, ...).
        extra: kernel-specific arrays that are not per-chain diagnostics (e.g. the ELBO trace).
        positions: (chains, draws, d) flat positions whose losses are ``excess_loss`` (sampled
            coordinates only when masked), when the run was asked to save them; otherwise None.
        virial: (chains, draws, num_groups) per-draw group means of v_i·∂_iU (see
            ``LocalPosterior.virial_terms``) at the same draws as ``excess_loss``, from the gradient
            the kernel already computed there; the self-check E_p[v_i ∂_iU] = 1. None when the
            kernel does not provide it.
        log_weights: (chains, draws) normalised log importance weights of the draws within each chain
            (Pareto-smoothed; their exps sum to 1 per chain) when the draws come from a proposal
            rather than the posterior itself (VI). None for MCMC draws (equal weights).
        pareto_k: (chains,) Pareto-smoothing shape k̂ of each chain's importance weights, with
            ``log_weights``: below 0.7 the self-normalised estimate is reliable.
    """

    excess_loss: jax.Array
    grad_evals: jax.Array
    data_passes: jax.Array
    diagnostics: dict[str, jax.Array]
    extra: dict[str, Any]
    positions: jax.Array | None = None
    virial: jax.Array | None = None
    log_weights: jax.Array | None = None
    pareto_k: jax.Array | None = None


def positive_float(name: str, value: Any) -> float:
    """Check a strictly positive finite float option."""
    try:
        out = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name}: expected a number > 0, got {value!r}") from None
    if not (math.isfinite(out) and out > 0):
        raise ValueError(f"{name}: expected a finite number > 0, got {value!r}")
    return out


def positive_int(name: str, value: Any, minimum: int = 1) -> int:
    """Check an integer option >= minimum."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (hasattr(value, "__index__")):
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    out = int(value)
    if out < minimum:
        raise ValueError(f"{name}: expected an integer >= {minimum}, got {value!r}")
    return out


def boolean(name: str, value: Any) -> bool:
    """Check a True/False option (no truthy stand-ins: 1, "yes" and None are rejected)."""
    if not isinstance(value, bool):
        raise ValueError(f"{name}: expected True or False, got {value!r}")
    return value


def probability(name: str, value: Any) -> float:
    """Check a number strictly between 0 and 1."""
    try:
        out = positive_float(name, value)
    except ValueError:
        raise ValueError(f"{name}: expected a number in (0, 1), got {value!r}") from None
    if not out < 1:
        raise ValueError(f"{name}: expected a number in (0, 1), got {value!r}")
    return out


@dataclass(frozen=True)
class KernelSpec:
    """Registry entry for one kernel.

    Attributes:
        options: accepted keyword options and their defaults (None = tuned automatically).
        check_options: validates and normalises the merged options (raise ValueError naming the option).
        run: ``run(key, posterior, *, num_chains, num_draws, num_warmup, batch_size, **options)``.
        minibatch: whether the kernel can use ``batch_size``; full-batch kernels reject it.
        messages: ``messages(diagnostics) -> list[str]``, warnings the kernel wants shown, composed on
            the host from its per-chain diagnostics (NumPy arrays) after the run.
        bias_advice: what to do when the virial self-check fails for this kernel (shown in the warning).
        check_posterior: raises ValueError for a posterior the kernel cannot handle (before compiling).
        virial_tolerance: |r − 1| below max(this, 3·se) passes the virial self-check.
    """

    name: str
    run: Callable[..., KernelOutput]
    options: Mapping[str, Any]
    default_num_draws: int
    default_num_warmup: int
    minibatch: bool
    check_options: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda o: o)
    description: str = ""
    messages: Callable[[dict[str, Any]], list[str]] = field(default=lambda diagnostics: [])
    bias_advice: str = "use a smaller step size or a longer warmup"
    check_posterior: Callable[[Any], None] = field(default=lambda posterior: None)
    virial_tolerance: float = 0.02
