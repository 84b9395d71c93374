"""Monte Carlo diagnostics of the λ̂ trace (host-side NumPy, via numpyro.diagnostics).

λ̂_t = nβ·(L(w_t) − L_n(w*)) per draw; λ̂ is its mean over valid chains and draws.
MCSE = sd(λ̂_t) / sqrt(ESS), ESS the multi-chain effective sample size (Geyer's initial
monotone sequence, as numpyro/Stan compute it). R-hat is the split Gelman–Rubin statistic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

RHAT_WARN = 1.01
PARETO_K_MAX = 0.7  # importance weights with a larger Pareto k̂ are not trusted
IS_SHIFT_MAX = 0.05  # an importance-weighted λ̂ this far (relative) from q's raw mean is not trusted


MIN_MCSE_BLOCKS = 50  # block averaging (``block`` > 1) keeps at least this many blocks per chain


def _ess(trace: np.ndarray, block: int, variance: float) -> float:
    """ESS of a (chains, draws) trace in units of draws, clipped to [1, chains·draws] (the
    estimator can exceed the draw count on anticorrelated chains). With ``block`` b > 1 it comes
    from the means of consecutive blocks of b draws: ESS = Var(draws)·ESS_b / Var(block means),
    ESS_b the block means' ESS; ``variance`` is Var(draws) (ddof = 1)."""
    chains, draws = trace.shape
    if block <= 1:
        ess = float(effective_sample_size(trace))
    else:
        means = trace[:, : (draws // block) * block].reshape(chains, draws // block, block).mean(axis=2)
        spread = float(means.var(ddof=1))
        ess = variance * float(effective_sample_size(means)) / spread if spread > 0 else float(trace.size)
    return min(max(ess, 1.0), float(trace.size))


def llc_statistics(llc_trace: np.ndarray, block: int = 1) -> dict[str, Any]:
    """Mean, MCSE, ESS, R-hat and per-chain means of a (chains, draws) λ̂ trace.

    The ESS is the multi-chain estimate of Geyer's initial monotone sequence (numpyro's
    ``effective_sample_size``), whose truncation assumes a reversible chain (an autocorrelation
    that decays monotonically in pairs of lags). For a chain that is not reversible, and whose
    autocorrelation oscillates, ``block`` = b > 1 estimates it from the means of consecutive
    blocks of b draws instead: Var(mean) = Var(block means)/ESS_b, whatever the autocorrelation
    does within a block (b is lowered so that each chain keeps at least ``MIN_MCSE_BLOCKS``
    blocks; with fewer than 2·that many draws the plain estimate is used). Unadjusted MCLMC uses
    b = 10: on a rotated rank-deficient quadratic (d = 10, rank 4) its λ̂ autocorrelation is 0.33,
    0.06, 0.19, 0.14 at lags 1, 2, 5 and 10, the plain estimate's MCSE was 1.27× too small over 100
    seeds and the blocked one's 1.07×.

    Args:
        llc_trace: (chains, draws) per-draw λ̂_t = nβ·(L(w_t) − L_n(w*)) of the valid chains.
        block: draws per block for the ESS (1 = the plain estimate).

    Returns:
        dict with ``llc`` (the mean over all draws), ``llc_se`` (the MCSE sd/√ESS, 0 when sd = 0),
        ``llc_sd`` (the sd of all draws), ``llc_per_chain`` ((chains,) means), ``ess`` (the
        multi-chain ESS, clipped to [1, chains·draws]), ``ess_per_chain`` ((chains,), each clipped to
        [1, draws]) and ``rhat``
        (split R-hat). With fewer than 4 draws or zero spread, ``ess`` is chains·draws,
        ``ess_per_chain`` is draws and ``rhat`` is NaN.
    """
    trace = np.asarray(llc_trace, dtype=np.float64)
    chains, draws = trace.shape
    block = max(1, min(int(block), draws // MIN_MCSE_BLOCKS))
    mean = float(trace.mean())
    per_chain = trace.mean(axis=1)
    sd = float(trace.std(ddof=1)) if trace.size > 1 else 0.0
    if draws >= 4 and sd > 0:
        ess = _ess(trace, block, sd**2)
        rhat = float(split_gelman_rubin(trace))
        ess_per_chain = [_ess(trace[c : c + 1], block, float(trace[c].var(ddof=1))) for c in range(chains)]
    else:
        ess, rhat, ess_per_chain = float(trace.size), float("nan"), [float(draws)] * chains
    se = sd / math.sqrt(ess) if sd > 0 else 0.0
    return {
        "llc": mean,
        "llc_se": se,
        "llc_sd": sd,
        "llc_per_chain": per_chain,
        "ess": ess,
        "ess_per_chain": np.asarray(ess_per_chain),
        "rhat": rhat,
    }


VIRIAL_TOLERANCE = 0.02  # |r − 1| beyond max(this, 3·se) is reported


def _mean_and_mcse(trace: np.ndarray, block: int = 1) -> tuple[float, float]:
    """Mean of a (chains, draws) trace and its MCSE sd/√ESS (ESS as for λ̂, with ``block``)."""
    stats = llc_statistics(trace, block)
    return stats["llc"], stats["llc_se"]


def virial_statistics(
    group_trace: np.ndarray, group_sizes: np.ndarray, group_names: tuple[str, ...], block: int = 1
) -> dict[str, Any]:
    """The virial self-check from per-draw group means of v_i·∂_iU.

    For p ∝ exp(−U) on v = w − w* (U = nβ(L_n(w) − L_n(w*)) + (γ/2)‖v‖², γ > 0), Stein's identity
    gives E_p[v_i ∂_iU] = 1 for every coordinate i. The ratio of a group of coordinates G is

        r_G = (1/|G|) Σ_{i∈G} E[v_i ∂_iU],        r = (1/d) Σ_i E[v_i ∂_iU]  (overall),

    estimated by its mean over draws with an ESS-based Monte Carlo error. An exact sampler gives
    r = 1 within that error; SGLD at step ε along a direction of curvature κ gives about
    1/(1 − εκ/4), the same factor by which it inflates that direction's share of λ̂.

    Args:
        group_trace: (chains, draws, num_groups) per-draw group means (valid chains only).
        group_sizes: (num_groups,) coordinates per group.
        group_names: the groups' names (parameter leaf paths).
        block: draws per block for the ESS, as for :func:`llc_statistics` (the kernel's
            ``mcse_block``).

    Returns:
        dict with ``ratio`` and ``se`` (overall), ``groups`` (``{name: {"ratio", "se", "size"}}``),
        ``worst_group``, ``worst_deviation`` (max |r_G − 1| over the groups and the overall ratio)
        and ``worst_z`` (the largest |r − 1|/se among them).
    """
    trace = np.asarray(group_trace, np.float64)
    sizes = np.asarray(group_sizes, np.float64)
    overall = trace @ sizes / sizes.sum()
    ratio, se = _mean_and_mcse(overall, block)
    groups = {}
    worst = ("<overall>", abs(ratio - 1))
    worst_z = abs(ratio - 1) / se if se > 0 else (0.0 if ratio == 1 else math.inf)
    for g, name in enumerate(group_names):
        r_g, se_g = _mean_and_mcse(trace[..., g], block)
        groups[name] = {"ratio": r_g, "se": se_g, "size": int(sizes[g])}
        if abs(r_g - 1) > worst[1]:
            worst = (name, abs(r_g - 1))
        z = abs(r_g - 1) / se_g if se_g > 0 else (0.0 if r_g == 1 else math.inf)
        worst_z = max(worst_z, z)
    return {
        "ratio": ratio,
        "se": se,
        "groups": groups,
        "worst_group": worst[0],
        "worst_deviation": worst[1],
        "worst_z": float(worst_z),
    }


def virial_failures(virial: dict[str, Any], tolerance: float = VIRIAL_TOLERANCE) -> list[tuple[str, float, float]]:
    """(name, ratio, se) of the overall ratio and each group with |r − 1| > max(tolerance, 3·se).

    Args:
        virial: the dict returned by :func:`virial_statistics`.
        tolerance: the smallest deviation |r − 1| that counts as a failure (when 3·se is smaller).

    Returns:
        The failing entries as (name, ratio, se) tuples: ``"overall"`` first, then the groups in
        order (groups are checked only when there are more than one). Empty when the check passes.
    """
    rows = [("overall", virial["ratio"], virial["se"])]
    if len(virial["groups"]) > 1:
        rows += [(name, g["ratio"], g["se"]) for name, g in virial["groups"].items()]
    return [(name, r, se) for name, r, se in rows if abs(r - 1) > max(tolerance, 3 * se)]


def virial_message(virial: dict[str, Any], kernel: str, advice: str, tolerance: float = VIRIAL_TOLERANCE) -> str | None:
    """The warning for a failed virial self-check, or None when it passes.

    Args:
        virial: the dict returned by :func:`virial_statistics`.
        kernel: the kernel's name, shown in the warning.
        advice: what to do about it (the kernel's ``bias_advice``), appended to the warning.
        tolerance: as for :func:`virial_failures`.

    Returns:
        The warning text, or None when no ratio fails.
    """
    bad = virial_failures(virial, tolerance)
    if not bad:
        return None
    shown = "; ".join(f"{name}: {r:.3f} ± {se:.3f}" for name, r, se in bad[:4]) + ("; ..." if len(bad) > 4 else "")
    r = virial["ratio"]
    return (
        f"virial self-check failed for {kernel}: E[v_i·∂_iU] should be 1 under the posterior, measured {shown} "
        f"(|r − 1| > max({tolerance}, 3·se)). The draws do not follow the localized posterior, so λ̂ is "
        f"likely biased, by roughly {r - 1:+.1%} if the error is spread like the ratio; {advice}"
    )


STEP_BIAS_LARGE = 0.05  # a first-order correction larger than this fraction of λ̂ is flagged


def step_size_bias_statistics(
    llc_trace: np.ndarray, terms: np.ndarray
) -> tuple[dict[str, Any], dict[str, Any], np.ndarray]:
    """First-order estimate of the step size's bias on λ̂, and the corrected λ̂ statistics.

    With φ_t = λ̂_t the per-draw λ̂ and (a_t, b_t) = (h·∇φᵀP∇U, h·∇UᵀP∇U) at the same draws
    (:func:`lambda_hat.kernels.langevin.step_bias_terms`), the bias of E[φ] under the
    discretised Langevin dynamics is, to first order in h,

        b̂ = mean_t c_t,   c_t = ½a_t − ¼(φ_t − φ̄)(b_t − b̄),

    and the corrected per-draw trace is φ_t − c_t; both get their MCSE from the same ESS-based
    estimator as λ̂ (:func:`llc_statistics`).

    Args:
        llc_trace: (chains, draws) per-draw λ̂ of the valid chains.
        terms: (chains, draws, 2) the (a_t, b_t) of the same draws.

    Returns:
        (the :func:`llc_statistics` of the corrected trace, a dict with ``estimate`` (b̂),
        ``se`` (its MCSE), ``relative`` (b̂ over the uncorrected λ̂), ``llc_uncorrected`` and
        ``llc_uncorrected_se``, the corrected (chains, draws) trace φ_t − c_t).
    """
    phi = np.asarray(llc_trace, np.float64)
    a, b = (np.asarray(terms[..., i], np.float64) for i in range(2))
    correction = 0.5 * a - 0.25 * (phi - phi.mean()) * (b - b.mean())
    raw = llc_statistics(phi)
    bias = llc_statistics(correction)
    summary = {
        "estimate": bias["llc"],
        "se": bias["llc_se"],
        "relative": bias["llc"] / raw["llc"] if raw["llc"] != 0 else float("nan"),
        "llc_uncorrected": raw["llc"],
        "llc_uncorrected_se": raw["llc_se"],
    }
    return llc_statistics(phi - correction), summary, phi - correction


def step_size_bias_message(bias: dict[str, Any], applied: bool, llc_se: float, kernel: str) -> str | None:
    """The warning about the step size's bias on λ̂, or None.

    When the correction was applied, warns when it exceeds ``STEP_BIAS_LARGE`` of λ̂ (the
    first-order estimate then leaves an O(ε²) error of unknown size). When it was not, warns
    when the estimated bias is resolved (beyond 2 of its own standard errors) and larger than
    half of λ̂'s standard error, i.e. when it would visibly shift the error bar.

    Args:
        bias: the second dict returned by :func:`step_size_bias_statistics`.
        applied: whether λ̂ was corrected by the estimate.
        llc_se: the reported λ̂'s standard error.
        kernel: the kernel's name, shown in the warning.

    Returns:
        The warning text, or None.
    """
    est, se, rel = bias["estimate"], bias["se"], bias["relative"]
    if applied:
        if not abs(rel) > STEP_BIAS_LARGE:
            return None
        return (
            f"{kernel}: the step size biases λ̂ by an estimated {est:+.4g} ({rel:+.1%} of the uncorrected "
            f"{bias['llc_uncorrected']:.4g}); λ̂ is corrected to first order in step_size, but a correction "
            f"beyond {STEP_BIAS_LARGE:.0%} leaves an error of order step_size² that is not estimated: reduce "
            "step_size (the bias shrinks about linearly with it) until the estimate is a few percent"
        )
    if abs(est) > 2 * se and abs(est) > 0.5 * llc_se:
        return (
            f"{kernel}: the step size biases λ̂ by an estimated {est:+.4g} ({rel:+.1%}; first order in "
            f"step_size, ± {se:.2g}), comparable to or larger than its standard error {llc_se:.2g}: pass "
            "step_size_correction=True to remove it, or reduce step_size"
        )
    return None


def importance_statistics(llc_trace: np.ndarray, log_weights: np.ndarray) -> dict[str, Any]:
    """Self-normalised importance-sampling estimate per chain and pooled over chains.

    With normalised weights w̃_cs (Σ_s w̃_cs = 1 per chain c) on the λ̂ draws x_cs:

        λ̂_c = Σ_s w̃_cs x_cs,   se_c² = Σ_s w̃_cs² (x_cs − λ̂_c)²   (the delta-method error),
        λ̂ = mean_c λ̂_c,        se = max( √(Σ_c se_c²)/C, sd_c(λ̂_c)/√C ),

    the second term of se being the spread between independent chains (fits), which also covers
    errors that the within-chain weights cannot see. ESS per chain is 1/Σ_s w̃_cs².

    Args:
        llc_trace: (chains, draws) λ̂ draws x_cs of the valid chains.
        log_weights: (chains, draws) log importance weights of the same draws, normalised per
            chain as the kernels return them (they are renormalised here).

    Returns:
        dict with ``llc`` and ``llc_se`` (λ̂ and se above), ``llc_per_chain`` ((chains,) λ̂_c),
        ``se_per_chain`` ((chains,) se_c) and ``ess_per_chain`` ((chains,) 1/Σ_s w̃_cs²).
    """
    x = np.asarray(llc_trace, np.float64)
    w = np.exp(np.asarray(log_weights, np.float64))
    w = w / w.sum(axis=1, keepdims=True)
    per_chain = np.sum(w * x, axis=1)
    se_c = np.sqrt(np.sum(w**2 * (x - per_chain[:, None]) ** 2, axis=1))
    chains = x.shape[0]
    within = float(np.sqrt(np.sum(se_c**2)) / chains)
    between = float(np.std(per_chain, ddof=1) / math.sqrt(chains)) if chains > 1 else 0.0
    return {
        "llc": float(per_chain.mean()),
        "llc_se": max(within, between),
        "llc_per_chain": per_chain,
        "se_per_chain": se_c,
        "ess_per_chain": 1.0 / np.sum(w**2, axis=1),
    }


def importance_message(pareto_k: np.ndarray, valid: np.ndarray, kernel: str) -> str:
    """The warning for importance weights whose Pareto k̂ reaches PARETO_K_MAX.

    Args:
        pareto_k: (chains,) Pareto k̂ of each fit's importance weights.
        valid: (chains,) boolean mask of the chains used.
        kernel: the kernel's name, shown in the warning.

    Returns:
        The warning text (always; the caller checks k̂ first).
    """
    k = np.asarray(pareto_k, np.float64)
    bad = [int(c) for c in np.flatnonzero(np.asarray(valid) & ~(k < PARETO_K_MAX))]
    return (
        f"{kernel}: Pareto k̂ of the importance weights is {np.nanmax(k[np.asarray(valid)]):.2f} >= {PARETO_K_MAX} "
        f"(per fit: {np.round(k, 2).tolist()}; fits {bad}): the fitted q misses posterior mass, so its λ̂ "
        "cannot be trusted (the raw estimate is reported; it is usually too high); estimate λ̂ with an "
        "MCMC kernel (nuts, or sgld/rmsprop_sgld for large models)"
    )


def importance_shift_message(llc_raw: float, llc_raw_se: float, llc_is: float, kernel: str) -> str | None:
    """The warning for importance weights that move λ̂ far from the proposal's own estimate.

    Self-normalised importance sampling corrects a proposal q that is close to p. When the weights
    move λ̂ by more than ``IS_SHIFT_MAX`` of its value (and by more than 3 standard errors of the
    raw mean), q is far from p and the correction rests on a few heavy weights: the weighted
    estimate is then biased towards q's (the mass q misses is never drawn) even when k̂ < 0.7.

    Args:
        llc_raw: λ̂ as the unweighted mean over q's draws.
        llc_raw_se: the MCSE of ``llc_raw``.
        llc_is: the importance-weighted λ̂.
        kernel: the kernel's name, shown in the warning.

    Returns:
        The warning text, or None when the shift is within the tolerance.
    """
    shift = llc_is - llc_raw
    if abs(shift) <= max(IS_SHIFT_MAX * abs(llc_is), 3 * llc_raw_se):
        return None
    relative = f"{shift / abs(llc_is):+.1%}" if llc_is != 0 else f"by {shift:+.3g}"
    return (
        f"{kernel}: the importance weights move λ̂ from q's raw mean {llc_raw:.4g} to {llc_is:.4g} "
        f"({relative}): q is far from the posterior, so the weighted λ̂ can still be "
        "biased towards the raw one even though k̂ < 0.7; refit with a larger rank (one loading column "
        "per flat direction) or more steps, or estimate λ̂ with an MCMC kernel (nuts, or sgld/"
        "rmsprop_sgld for large models)"
    )


# -- the text of the warnings ``sample`` attaches to a result ---------------------------------
def invalid_chains_message(
    valid: np.ndarray, finite: np.ndarray, explain: Callable[[int], str | None] = lambda c: None
) -> str | None:
    """The warning for chains excluded from λ̂, or None when every chain is valid.

    Args:
        valid: (chains,) the chains used.
        finite: (chains, draws) whether each draw's loss is finite.
        explain: the kernel's reason why chain c was flagged, when it has one.

    Returns:
        The warning text, or None when every chain is valid.
    """
    bad = np.flatnonzero(~np.asarray(valid)).tolist()
    if not bad:
        return None

    def why(c: int) -> str:
        if not finite[c].all():
            return f"chain {c}: first non-finite loss at draw {int(np.argmin(finite[c]))}"
        return explain(c) or f"chain {c}: flagged by the kernel's checks (non-finite state or step, or never moved)"

    what = "; ".join(why(c) for c in bad[:8]) + ("; ..." if len(bad) > 8 else "")
    return (
        f"chains {bad} produced non-finite losses or diverged and are excluded from λ̂ "
        f"({int(np.sum(valid))} of {len(valid)} chains used): {what}. The loss is NaN/Inf somewhere "
        "the chains reached (e.g. a log of a negative number) or the step size is too large"
    )


def divergence_message(divergences: np.ndarray) -> str | None:
    """The warning for divergent transitions of a Metropolis-adjusted kernel, or None.

    Args:
        divergences: (chains,) post-warmup count of divergent transitions per chain.

    Returns:
        The warning text, or None when there are no divergences.
    """
    divergences = np.asarray(divergences)
    if divergences.sum() <= 0:
        return None
    return (
        f"{int(divergences.sum())} divergent transitions (per chain: {divergences.tolist()}): "
        "the step size is too large for parts of the posterior, or the loss is NaN/Inf where "
        "trajectories went (those proposals are rejected); λ̂ may be biased"
    )


def divergence_messages(info: dict[str, np.ndarray], valid: np.ndarray) -> list[str]:
    """``KernelSpec.messages`` of kernels whose ``info`` counts ``divergences``.

    Args:
        info: the kernel's per-chain info as {field: array}, with a ``"divergences"`` entry.
        valid: (chains,) boolean mask of the chains used (not used: the divergences of every
            chain are counted).

    Returns:
        A list with the divergence warning, or an empty list.
    """
    message = divergence_message(info["divergences"])
    return [message] if message else []


def stationarity_message(grad_norm: float, shift: float, llc: float, llc_se: float) -> str | None:
    """The warning for a w* whose gradient shifts E[λ̂] by more than max(2% of λ̂, its MCSE).

    Args:
        grad_norm: ‖∇L_n(w*)‖, shown in the warning.
        shift: the estimated first-order shift of E[λ̂] caused by that gradient (as computed by
            ``LocalPosterior.stationarity``), in units of λ̂.
        llc: λ̂.
        llc_se: the MCSE of λ̂.

    Returns:
        The warning text, or None when the shift is within the tolerance.
    """
    if abs(shift) <= max(0.02 * abs(llc), llc_se):
        return None
    return (
        f"w* is not near-stationary: ‖∇L_n(w*)‖ = {grad_norm:.3g}, which shifts E[λ̂] by about "
        f"{shift:+.3g}; train w* closer to a minimum"
    )


def below_wstar_message(fraction_below: float) -> str | None:
    """The warning for draws whose full-batch loss falls below L_n(w*) (more than 1% of them).

    Args:
        fraction_below: the fraction (in [0, 1], not percent) of draws with L_n(w) < L_n(w*).

    Returns:
        The warning text, or None when at most 1% of the draws fall below.
    """
    if fraction_below <= 0.01:
        return None
    return f"{fraction_below:.1%} of draws have L_n(w) < L_n(w*): w* is not a local minimum of the loss"


def rhat_message(rhat: float, num_valid_chains: int) -> str | None:
    """The warning for chains that disagree (R-hat above RHAT_WARN).

    Args:
        rhat: the split R-hat of the λ̂ trace (NaN when it could not be computed).
        num_valid_chains: the number of chains used; one chain gives no warning.

    Returns:
        The warning text, or None when R-hat is not finite, is at most RHAT_WARN, or there is only
        one valid chain.
    """
    if not (np.isfinite(rhat) and rhat > RHAT_WARN and num_valid_chains > 1):
        return None
    return f"R-hat of the λ̂ trace is {rhat:.3f} > {RHAT_WARN}: chains disagree; run longer"


def negative_llc_message(llc: float) -> str | None:
    """The warning for λ̂ < 0 (which a minimum w* cannot give).

    Args:
        llc: λ̂.

    Returns:
        The warning text, or None when λ̂ >= 0.
    """
    if llc >= 0:
        return None
    return (
        f"λ̂ = {llc:.3g} < 0: draws fall below L_n(w*), so w* is not a local minimum "
        "of the loss (train further or check w*)"
    )


BASIN_GROWTH_MAX = 0.10  # mean ‖w − w*‖² growing by more than this between thirds of the draws ...
BASIN_TREND_Z = 4.0  # ... and by more than this many standard errors: the chains are leaving


def _thirds_trend(trace: np.ndarray, block: int = 1) -> tuple[float, float]:
    """(relative growth, z) of a positive (chains, draws) trace's mean from the first to the last
    third of the draws; z uses each third's MCSE (ESS with ``block``). NaN for fewer than 12
    draws."""
    draws = trace.shape[1]
    if draws < 12:
        return float("nan"), float("nan")
    first, first_se = _mean_and_mcse(trace[:, : draws // 3], block)
    last, last_se = _mean_and_mcse(trace[:, -(draws // 3) :], block)
    spread = math.hypot(first_se, last_se)
    growth = last / first - 1 if first != 0 else float("nan")
    z = (last - first) / spread if spread > 0 else (0.0 if last == first else math.copysign(math.inf, last - first))
    return float(growth), float(z)


def basin_statistics(
    distance_sq: np.ndarray, llc_trace: np.ndarray, dim: int, gamma: float, block: int = 1
) -> dict[str, Any]:
    """Where the chains are relative to w* and to the localizer's scale, and whether they drift.

    The localized posterior p ∝ exp(−nβ(L_n − L*) − (γ/2)‖v‖²), v = w − w*, is meant to sit in
    w*'s basin. Chains start at w*; when the basin is wider than the localizer's scale 1/√γ per
    weight (or the loss keeps falling away from w*), they keep moving outward during the run and
    λ̂ measures how far they got, not the basin. Two numbers show this: the localizer's share of
    the virial identity, γ·E‖v‖²/d (E[v·nβ∇L_n]/d + γE‖v‖²/d = 1; a share near 1 means the
    localizer, not the loss, sets the width in most directions), and the trend of E‖v‖² over the
    draws: its relative growth from the first to the last third, in units of the thirds' MCSE.

    Args:
        distance_sq: (chains, draws) ‖w_t − w*‖² over the sampled coordinates, valid chains only.
        llc_trace: (chains, draws) the per-draw λ̂ of the same chains (its trend is reported too).
        dim: d, the number of sampled coordinates.
        gamma: γ, the localization strength.
        block: draws per block for the thirds' MCSE, as for :func:`llc_statistics`.

    Returns:
        dict with ``rms_distance`` (√(E‖v‖²/d), per sampled weight), ``localizer_scale`` (1/√γ;
        inf at γ = 0), ``localizer_share`` (γ·E‖v‖²/d), ``distance_growth`` and ``distance_z``
        (the first-to-last-third growth of E‖v‖² and its z-score), and ``llc_growth`` / ``llc_z``
        (the same for the λ̂ trace). Growths and z-scores are NaN with fewer than 12 draws.
    """
    d2 = np.asarray(distance_sq, np.float64)
    mean_sq = float(d2.mean())
    growth, z = _thirds_trend(d2, block)
    llc_growth, llc_z = _thirds_trend(np.asarray(llc_trace, np.float64), block)
    return {
        "rms_distance": math.sqrt(mean_sq / dim),
        "localizer_scale": 1 / math.sqrt(gamma) if gamma > 0 else math.inf,
        "localizer_share": gamma * mean_sq / dim,
        "distance_growth": growth,
        "distance_z": z,
        "llc_growth": llc_growth,
        "llc_z": llc_z,
    }


def basin_message(basin: dict[str, Any], gamma: float) -> str | None:
    """The warning for chains that are still moving away from w* over the kept draws.

    Fires when E‖w − w*‖² grows by more than ``BASIN_GROWTH_MAX`` from the first to the last
    third of the draws and by more than ``BASIN_TREND_Z`` standard errors.

    Args:
        basin: the output of :func:`basin_statistics`.
        gamma: γ of the run (for the advice).

    Returns:
        The warning text, or None.
    """
    growth, z = basin["distance_growth"], basin["distance_z"]
    if not (growth > BASIN_GROWTH_MAX and z > BASIN_TREND_Z):
        return None
    trend = ""
    if basin["llc_z"] > BASIN_TREND_Z:
        trend = f"; the λ̂ trace rose by {basin['llc_growth']:+.0%} over the same draws"
    suggestion = f"e.g. gamma={10 * gamma:g}" if gamma > 0 else "gamma > 0"
    return (
        f"chains are leaving w*'s basin: the mean ‖w − w*‖² grew by {growth:+.0%} from the first to the last third "
        f"of the draws (z = {z:.1f}), to an rms distance of {basin['rms_distance']:.3g} per sampled weight against "
        f"the localizer's scale 1/√γ = {basin['localizer_scale']:.3g}{trend}. λ̂ then measures how far the chains "
        f"wandered in this run, not the basin at w*. Raise gamma ({suggestion}) so the localizer holds the chains "
        "near w*, and compare λ̂ across γ with lambda_hat.calibrate(..., gammas=[...]); if λ̂ does not depend on "
        "γ there, the chains only need a longer num_warmup"
    )


def observable_statistics(
    observables: np.ndarray,
    sampling_excess: np.ndarray,
    names: tuple[str, ...],
    loss_at_wstar: np.ndarray,
    nbeta: float,
    log_weights: np.ndarray | None = None,
    block: int = 1,
) -> dict[str, dict[str, Any]]:
    """Data-refined LLCs: λ̂_k = nβ·E_p[L_k(w) − L_k(w*)] for each observable dataset k, at the
    draws of the sampling posterior, and the covariance of L_k with the sampling loss.

    The posterior p is the one of the sampling data (its L_n and nβ); only the loss averaged
    differs. On a dataset from the sampling distribution λ̂_k estimates the same λ as λ̂ (up to
    the finite-sample difference between the two datasets' losses); on another distribution it
    measures the sampled weights' effect on that data (Wang et al. 2024). ``loss_covariance`` is
    Cov_p(L_k(w), L(w)) with L the recorded sampling loss (the minibatch loss for stochastic
    gradient kernels: its noise is independent of L_k given w, so the covariance is unbiased);
    −nβ·Cov_p(L_k, L) is the response of E_p[L_k] to a change of nβ (a susceptibility).

    Args:
        observables: (chains, draws, k) per-draw L_k(w_t) − L_k(w*) of the valid chains.
        sampling_excess: (chains, draws) the recorded sampling L(w_t) − L_n(w*) at the same draws.
        names: the k observable names.
        loss_at_wstar: (k,) L_k(w*).
        nbeta: nβ of the run (the product, not β).
        log_weights: (chains, draws) normalised log importance weights when the draws come from
            a proposal and λ̂ is importance-weighted (VI); None for equally weighted draws.
        block: draws per block for the ESS of equally weighted draws, as in :func:`llc_statistics`.

    Returns:
        {name: {"llc", "llc_se", "loss_at_wstar", "loss_covariance"}} plus ``ess`` and ``rhat``
        for equally weighted draws (``ess_per_chain`` of the importance weights otherwise).
    """
    obs = np.asarray(observables, np.float64)
    base = np.asarray(sampling_excess, np.float64)
    if log_weights is None:
        weights = np.full(base.shape, 1.0 / base.shape[1])
    else:
        weights = np.exp(np.asarray(log_weights, np.float64))
        weights = weights / weights.sum(axis=1, keepdims=True)
    out: dict[str, dict[str, Any]] = {}
    for j, name in enumerate(names):
        trace = nbeta * obs[..., j]
        if log_weights is None:
            s = llc_statistics(trace, block)
            entry = {"llc": s["llc"], "llc_se": s["llc_se"], "ess": s["ess"], "rhat": s["rhat"]}
        else:
            s = importance_statistics(trace, log_weights)
            entry = {"llc": s["llc"], "llc_se": s["llc_se"], "ess_per_chain": s["ess_per_chain"]}
        a, b = obs[..., j], base
        a_mean = np.sum(weights * a, axis=1, keepdims=True)
        b_mean = np.sum(weights * b, axis=1, keepdims=True)
        entry["loss_covariance"] = float(np.mean(np.sum(weights * (a - a_mean) * (b - b_mean), axis=1)))
        entry["loss_at_wstar"] = float(loss_at_wstar[j])
        out[name] = entry
    return out
