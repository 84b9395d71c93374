"""The contract between a kernel and :func:`lambda_hat.sample`.

A kernel is a :class:`KernelSpec`: its name, the options it accepts (with defaults), default
draw counts, option checks, capabilities, and ``run``. ``run`` is traced once inside ``jax.jit``
and must run all chains (vmapped) in one program; it returns a :class:`KernelOutput`, whose
fields are the same for every kernel. What is specific to one kernel travels in its typed
``info`` (a NamedTuple of per-chain arrays, one class per kernel) and is read only by that
kernel's own host-side ``messages``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import jax
import numpy as np

from lambda_hat.posterior import DrawTerms


class KernelOutput(NamedTuple):
    """What a kernel's jitted run returns (all arrays, leading axis = chains).

    Attributes:
        excess_loss: (chains, draws) post-warmup estimates of L_n(w_t) − L_n(w*) (minibatch
            estimates for stochastic-gradient kernels, exact full-batch values otherwise).
        valid: (chains,) bool: False where the kernel's own checks failed (a non-finite state or
            tuned parameter, a chain that never moved, ...); such chains are excluded from λ̂.
        info: the kernel's typed diagnostics, a NamedTuple of (chains,) arrays (acceptance,
            divergences, tuned step sizes, ...); its non-None fields appear in
            ``LLCResult.diagnostics`` under their field names.
        grad_evals: (chains,) number of log-density gradient evaluations, warmup and tuning included.
        data_passes: (chains,) the same work in full-data passes (grad evals × batch size / n).
        traces: per-chain arrays with their own time axis, e.g. VI's ELBO trace (chains, steps);
            they appear in ``LLCResult.extra``. None when there are none.
        positions: (chains, draws, d) flat positions whose losses are ``excess_loss`` (sampled
            coordinates only when masked), when the run was asked to save them; otherwise None.
        draw_terms: what :meth:`LocalPosterior.draw_terms` records at the same draws as
            ``excess_loss``, from the gradient the kernel already computed there, with leading axes
            (chains, draws): ``virial`` (chains, draws, num_groups), the group means of v_i·∂_iU
            (the self-check E_p[v_i ∂_iU] = 1); ``distance_sq`` (chains, draws), ‖w − w*‖²; and
            ``observables`` (chains, draws, num_observables) or None. None when the kernel does not
            provide them.
        log_weights: (chains, draws) normalised log importance weights of the draws within each chain
            (Pareto-smoothed; their exps sum to 1 per chain) when the draws come from a proposal
            rather than the posterior itself (VI). None for MCMC draws (equal weights).
        pareto_k: (chains,) Pareto-smoothing shape k̂ of each chain's importance weights, with
            ``log_weights``: below 0.7 the self-normalised estimate is reliable.
        excess_loss_cv: (chains, draws) a control-variate version of ``excess_loss`` on the same
            draws (same expectation, smaller variance; VI's quadratic control variate), or None.
        step_bias_terms: (chains, draws, 2) per-draw terms (h·∇φᵀP∇U, h·∇UᵀP∇U) of the first-order
            estimate of the step size's bias on λ̂ (see
            :func:`lambda_hat.kernels.langevin.step_bias_terms`), for Langevin kernels with
            full-batch gradients; None otherwise.
        step_bias_correction: (chains,) bool, True where λ̂ is to be corrected by that estimate
            (the kernel's ``step_size_correction`` option); None without ``step_bias_terms``.
    """

    excess_loss: jax.Array
    valid: jax.Array
    info: Any
    grad_evals: jax.Array
    data_passes: jax.Array
    traces: Mapping[str, jax.Array] | None = None
    positions: jax.Array | None = None
    draw_terms: DrawTerms | None = None
    log_weights: jax.Array | None = None
    pareto_k: jax.Array | None = None
    excess_loss_cv: jax.Array | None = None
    step_bias_terms: jax.Array | None = None
    step_bias_correction: jax.Array | None = None


def draws_first(tree: Any) -> Any:
    """Swap the two leading axes of every leaf: a scan's (draws, chains, ...) outputs as
    (chains, draws, ...), the layout of :class:`KernelOutput`.

    Args:
        tree: a pytree of arrays with at least two axes each (None leaves stay None).

    Returns:
        The same pytree with axes 0 and 1 of every leaf swapped.
    """
    return jax.tree.map(lambda x: jax.numpy.swapaxes(x, 0, 1), tree)


def info_dict(info: Any) -> dict[str, np.ndarray]:
    """A kernel's typed ``info`` as {field: numpy array}, leaving out fields that are None.

    Args:
        info: the kernel's Info NamedTuple (``KernelOutput.info``), or None.

    Returns:
        {field name: NumPy array} for the non-None fields ({} when ``info`` is None).
    """
    if info is None:
        return {}
    return {k: np.asarray(v) for k, v in info._asdict().items() if v is not None}


def no_messages(info: dict[str, np.ndarray], valid: np.ndarray) -> list[str]:
    """The default ``KernelSpec.messages``: nothing to add.

    Args:
        info: the kernel's per-chain ``info`` as {field: NumPy array} (unused).
        valid: (chains,) bool validity of the chains (unused).

    Returns:
        An empty list.
    """
    return []


def no_explanation(info: dict[str, np.ndarray], chain: int) -> str | None:
    """The default ``KernelSpec.explain_invalid``: no kernel-specific reason.

    Args:
        info: the kernel's per-chain ``info`` as {field: NumPy array} (unused).
        chain: index of the invalid chain (unused).

    Returns:
        None.
    """
    return None


@dataclass(frozen=True)
class KernelSpec:
    """Registry entry for one kernel.

    Attributes:
        name: the ``kernel=`` name.
        run: ``run(key, posterior, *, first_chain, num_chains, num_draws, num_warmup, batch_size,
            save_positions, [progress,] **options) -> KernelOutput``. ``first_chain`` is the global
            index of the first chain this program runs (a traced int; 0 unless the chains are
            split over devices): chain c's randomness derives from ``fold_in(key, c)``.
        options: accepted keyword options and their defaults (None = tuned automatically).
        default_num_draws, default_num_warmup: used when ``sample`` is given None.
        minibatch: whether the kernel can use ``batch_size``; full-batch kernels reject it.
        progress: whether ``run`` reports step progress (it then takes ``progress=``); kernels
            without it show only the host-side stages.
        check_options: validates and normalises the merged options (raise naming the option).
        aliases: deprecated option names → current names; a deprecated name still works (with a
            DeprecationWarning) and its errors name it as given.
        messages: ``messages(info, valid) -> list[str]``, warnings the kernel wants shown, composed
            on the host from its per-chain ``info`` (NumPy arrays) and validity after the run.
        explain_invalid: ``explain_invalid(info, c) -> str | None``, the kernel's reason why chain
            c was flagged invalid, when it knows one.
        bias_advice: what to do when the virial self-check fails for this kernel with a ratio
            above 1 (draws spread too wide; shown in the warning).
        narrow_advice: what to do when it fails with a ratio below 1 (draws narrower than the
            posterior: chains that have not yet spread out from w*, where they start).
        check_posterior: raises ValueError for a posterior the kernel cannot handle (before compiling).
        virial_tolerance: |r − 1| below max(this, 3·se) passes the virial self-check.
        mcse_block: draws per block for λ̂'s ESS (1: Geyer's initial monotone sequence on the
            draws; > 1: on the means of blocks of that many draws, for a kernel that is not
            reversible and whose autocorrelation oscillates; see
            :func:`lambda_hat.diagnostics.llc_statistics`).
        refit: ``refit(options, outputs, dim, history) -> (options or None, record or None)``,
            called on the host after each run (``outputs``: one KernelOutput per posterior;
            ``history``: the records of the earlier attempts): the options of another run, or None
            to stop; the record describes the attempt (None: the kernel does not search with these
            options). A record may name the attempt to report (``"report"``, an index into the
            attempts) and carry a ``"message"`` (a warning shown with the result). See
            :func:`lambda_hat.refits.run_with_refits`. None: one run.
        host_options: names of options that only the host reads (e.g. ``refit``'s settings). They
            are checked and recorded like the others, but not passed to ``run`` and not part of the
            compiled program's cache key, so changing one does not recompile.
    """

    name: str
    run: Callable[..., KernelOutput]
    options: Mapping[str, Any]
    default_num_draws: int
    default_num_warmup: int
    minibatch: bool
    progress: bool = False
    check_options: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda o: o)
    aliases: Mapping[str, str] = field(default_factory=dict)
    messages: Callable[[dict[str, np.ndarray], np.ndarray], list[str]] = no_messages
    explain_invalid: Callable[[dict[str, np.ndarray], int], str | None] = no_explanation
    bias_advice: str = "use a smaller step size or a longer warmup"
    narrow_advice: str = (
        "a ratio below 1 means the draws are narrower than the posterior, as for chains that have not yet "
        "spread out from w* (where they start): raise num_warmup (and num_draws)"
    )
    check_posterior: Callable[[Any], None] = field(default=lambda posterior: None)
    virial_tolerance: float = 0.02
    mcse_block: int = 1
    refit: Callable[..., tuple[dict[str, Any] | None, dict[str, Any] | None]] | None = None
    host_options: frozenset[str] = frozenset()

    def program_options(self, options: Mapping[str, Any]) -> dict[str, Any]:
        """The checked options that ``run`` takes: ``options`` without the host-only ones.

        Args:
            options: the kernel's checked options.

        Returns:
            A new dict without the names in ``host_options``.
        """
        return {k: v for k, v in options.items() if k not in self.host_options}
