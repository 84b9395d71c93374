"""Step-size calibration: an ε × nβ × γ sweep of a stochastic-gradient kernel in one program.

For each cell (ε, nβ, γ) of the grid, ``num_chains`` chains of ``kernel`` (``sgld``,
``rmsprop_sgld`` or ``adam_sgld``) run from w*; every cell runs in the same jitted program (vmap
over cells, vmap over chains, lax.scan over steps). Per cell we report:

- λ̂ ± MCSE;
- the virial ratio r = (1/d)Σ_i E[v_i ∂_iU] ± its error: 1 under the exact posterior, and about
  1/(1 − εκ/4) along a direction of curvature κ for SGLD at step ε, so |r − 1| measures the
  step-size and minibatch bias without any ground truth (see docs/math.md);
- the mean MALA acceptance probability of the SGLD moves (``sgld`` only; Furman & Lau 2024);
- whether every chain stayed finite, and a drift statistic: the difference between the λ̂ of the
  second and first half of the draws in MCSE units (a plateaued loss trace gives |drift| ≲ 2).

:meth:`CalibrationResult.recommended` picks, per (nβ, γ), the largest stable ε whose virial ratio
is within 0.01 of 1, whose λ̂ agrees within error with the next smaller ε,
and whose estimated step-size bias (:attr:`CalibrationResult.step_size_bias`, extrapolated to
ε → 0 from those two cells) is at most 5% of λ̂, and says why when no ε qualifies (the virial
condition allows for the ratio's own Monte Carlo error: |r − 1| ≤ 0.01 + se, with se ≤ 0.02).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np

from lambda_hat.api import LLCWarning, _merge_options, _run_settings, as_key
from lambda_hat.checks import non_negative_float, positive_float
from lambda_hat.diagnostics import llc_statistics, virial_statistics
from lambda_hat.kernels import get_kernel
from lambda_hat.models import adapt_model
from lambda_hat.posterior import LocalPosterior

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CALIBRATION_KERNELS = ("sgld", "rmsprop_sgld", "adam_sgld")
VIRIAL_MAX_DEVIATION = 0.01
DIVERGED_VIRIAL = 10.0  # a cell whose virial ratio exceeds this has diverged, even if still finite
VIRIAL_MAX_SE = 0.02  # a ratio measured less precisely than this cannot qualify a step size
# The flatness test compares λ̂ at ε and at the next smaller ε of the grid; it can only vouch for ε
# when the two are measured to a combined standard error of at most this fraction of λ̂. (On a
# 3,466-parameter MLP, λ̂ rose 6% per doubling of ε while the virial ratio moved by under 1%, and
# cells of 1,000 draws, 3-4% MCSE each, called that flat.)
FLAT_MAX_REL_SE = 0.03
# SGLD's bias is first order in ε, λ̂(ε) ≈ λ̂(0) + cε, so with the next smaller ε' = ε/r of the grid
# the bias at ε is estimated as b̂ = r/(r − 1)·(λ̂(ε) − λ̂(ε')) (2·the difference on the default
# grid). A cell whose |b̂| exceeds this fraction of λ̂ does not qualify, even when the difference
# is within 2 standard errors (at 4,000 draws per cell the 3,466-parameter MLP's recommended ε had
# b̂ ≈ 8% and read 5% above NUTS).
MAX_STEP_BIAS = 0.05
DEFAULT_GRID = (0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32)  # × 1/κ_max (SGLD), × 1/√κ_max (preconditioned)


@dataclass
class CalibrationResult:
    """A calibration sweep. Grids are indexed [i_step_size, j_nbeta, k_gamma].

    step_sizes, nbetas, gammas: the grid axes. llc, llc_se: λ̂ ± MCSE per cell. virial, virial_se:
    the overall virial ratio per cell. acceptance: mean MALA acceptance (NaN for the preconditioned
    kernels). stable: every chain finite, with a virial ratio below 10 (runaway chains stay
    finite for a while in float64). drift: second-half minus first-half λ̂ in MCSE units.
    kappa_max: the largest curvature nβ·a_max + γ used to scale the default grid (None when the
    grid was given). kernel: the swept kernel.
    """

    step_sizes: np.ndarray
    nbetas: np.ndarray
    gammas: np.ndarray
    llc: np.ndarray
    llc_se: np.ndarray
    virial: np.ndarray
    virial_se: np.ndarray
    acceptance: np.ndarray
    stable: np.ndarray
    drift: np.ndarray
    loss_at_wstar: float
    seconds: float
    kernel: str = "sgld"
    kappa_max: float | None = None
    reasons: dict[tuple[float, float], str] = field(default_factory=dict)

    def _step_differences(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per cell, against the next smaller ε' = ε/r of the grid: λ̂(ε) − λ̂(ε'), its standard
        error √(se(ε)² + se(ε')²), and the extrapolation factor r/(r − 1) (shaped to broadcast);
        NaN at the smallest ε and next to an unstable cell."""
        diff, se = np.full(self.llc.shape, np.nan), np.full(self.llc.shape, np.nan)
        factor = np.full(self.step_sizes.shape, np.nan)
        ratio = self.step_sizes[1:] / self.step_sizes[:-1]
        factor[1:] = ratio / (ratio - 1)
        both = self.stable[1:] & self.stable[:-1]
        diff[1:] = np.where(both, self.llc[1:] - self.llc[:-1], np.nan)
        se[1:] = np.where(both, np.hypot(self.llc_se[1:], self.llc_se[:-1]), np.nan)
        return diff, se, factor[:, None, None]

    def _bias_and_se(self) -> tuple[np.ndarray, np.ndarray]:
        diff, se, factor = self._step_differences()
        return factor * diff, factor * se

    @property
    def step_size_bias(self) -> np.ndarray:
        """The first-order step-size bias of λ̂ per cell, from the cell and the next smaller ε.

        With λ̂(ε) ≈ λ̂(0) + cε and the next smaller grid value ε' = ε/r:
        b̂(ε) = r/(r − 1)·(λ̂(ε) − λ̂(ε')), the bias of λ̂ at ε against ε → 0 (in λ̂'s units; r = 2
        on the default grid, so b̂ = 2·(λ̂(ε) − λ̂(ε/2))). NaN at the smallest ε and next to an
        unstable cell.

        Returns:
            An array shaped like ``llc``.
        """
        return self._bias_and_se()[0]

    @property
    def step_size_bias_se(self) -> np.ndarray:
        """The standard error of :attr:`step_size_bias`: r/(r − 1)·√(se(ε)² + se(ε')²).

        Returns:
            An array shaped like ``llc`` (NaN where the bias is).
        """
        return self._bias_and_se()[1]

    def _cell_ok(self, i: int, j: int, k: int) -> tuple[bool, str]:
        eps = self.step_sizes[i]
        if not self.stable[i, j, k]:
            return False, f"ε = {eps:.3g} diverged"
        dev, se = abs(self.virial[i, j, k] - 1), self.virial_se[i, j, k]
        if not se <= VIRIAL_MAX_SE:
            return False, (
                f"ε = {eps:.3g}: virial ratio {self.virial[i, j, k]:.4f} ± {se:.2g} is too uncertain "
                f"(se > {VIRIAL_MAX_SE}; lengthen num_draws)"
            )
        if not dev <= VIRIAL_MAX_DEVIATION + se:
            why = "step-size or minibatch bias" if self.virial[i, j, k] > 1 else "not equilibrated: lengthen num_warmup"
            return False, (
                f"ε = {eps:.3g}: virial ratio {self.virial[i, j, k]:.4f} ± {se:.2g} is more than "
                f"{VIRIAL_MAX_DEVIATION} from 1 ({why})"
            )
        diffs, ses, factor = self._step_differences()
        diff, se = diffs[i, j, k], ses[i, j, k]
        if np.isfinite(diff):  # the next smaller ε is stable
            llc, smaller = self.llc[i, j, k], f"{self.llc[i - 1, j, k]:.4g} at ε = {self.step_sizes[i - 1]:.3g}"
            if not se <= FLAT_MAX_REL_SE * abs(llc):
                return False, (
                    f"ε = {eps:.3g}: λ̂ = {llc:.4g} against λ̂ = {smaller} is too uncertain to show λ̂ flat "
                    f"in ε (combined se {se:.2g} > {FLAT_MAX_REL_SE:.0%} of λ̂; lengthen num_draws)"
                )
            if abs(diff) > 2 * se:
                return False, (
                    f"ε = {eps:.3g}: λ̂ = {llc:.4g} differs from λ̂ = {smaller} by {diff / se:+.1f} "
                    "standard errors (not flat in ε)"
                )
            bias, bias_se = factor[i, 0, 0] * diff, factor[i, 0, 0] * se
            if not abs(bias) <= MAX_STEP_BIAS * abs(llc):
                return False, (
                    f"ε = {eps:.3g}: estimated step-size bias {bias / abs(llc):+.1%} ± {bias_se / abs(llc):.1%} "
                    f"of λ̂ (extrapolated to ε → 0 from λ̂ = {llc:.4g} here and {smaller}) is above "
                    f"{MAX_STEP_BIAS:.0%}"
                )
        if np.isfinite(self.drift[i, j, k]) and abs(self.drift[i, j, k]) >= 3:
            return False, f"ε = {eps:.3g}: the λ̂ trace drifts ({self.drift[i, j, k]:+.1f} MCSE between halves)"
        return True, ""

    def recommended(self, gamma: float | None = None) -> dict[float, float] | None:
        """The recommended ε per nβ at one γ (default: the first of the sweep).

        Rule: the largest stable ε

        - whose virial ratio is within 0.01 of 1 (|r − 1| ≤ 0.01 + se, measured to se ≤ 0.02: a
          sweep too short to measure r that well qualifies nothing, so lengthen ``num_draws``
          until ``virial_se`` is below 0.02; r well below 1 at small ε means the chains have not
          spread out yet, so lengthen ``num_warmup``);
        - whose λ̂ agrees within 2 standard errors with the next smaller ε' = ε/r of the grid (when
          that one is stable; the two must be measured to a combined se of at most 3% of λ̂, or
          the cell does not qualify and the reason says to lengthen ``num_draws``);
        - whose estimated step-size bias b̂ = r/(r − 1)·(λ̂(ε) − λ̂(ε')) (:attr:`step_size_bias`,
          the first-order extrapolation to ε → 0) is at most 5% of λ̂. b̂ is a point estimate with
          standard error :attr:`step_size_bias_se` (shown in :meth:`table`): it rejects an ε whose
          bias the sweep resolves, and bounds the bias no better than that error;
        - and whose trace does not drift (|drift| < 3).

        The virial ratio averages over all d coordinates and moves far less than λ̂ on a large
        network (on a 3,466-parameter MLP: under 1% while λ̂ rose 6% per doubling of ε), so the
        bias estimate is what tells ε's apart there. Returns {nbeta: step_size}, or None when no ε
        qualifies for any nβ; the reason for every nβ left out is in ``reasons[(nbeta, gamma)]``
        and is issued as an LLCWarning.

        Args:
            gamma: the γ at which to recommend, one of the swept ``gammas`` (matched with
                ``np.isclose``); None = the first.

        Returns:
            ``{nbeta: step_size}`` (nβ, the product, not β; ε the step size) for every nβ where an ε
            qualifies, or None when none does.

        Raises:
            ValueError: ``gamma`` is not one of the swept values.
        """
        k = 0 if gamma is None else int(np.argmin(np.abs(self.gammas - float(gamma))))
        if gamma is not None and not np.isclose(self.gammas[k], float(gamma)):
            raise ValueError(f"gamma: expected one of the swept values {self.gammas.tolist()}, got {gamma}")
        out = {}
        for j, nb in enumerate(self.nbetas):
            why = []
            for i in reversed(range(self.step_sizes.size)):
                ok, reason = self._cell_ok(i, j, k)
                if ok:
                    out[float(nb)] = float(self.step_sizes[i])
                    break
                why.append(reason)
            else:
                message = (
                    f"calibrate: no step size qualifies at nβ = {nb:.4g}, γ = {self.gammas[k]:.4g}: "
                    + "; ".join(reversed(why))
                    + ". Sweep smaller step sizes, run longer (num_draws), "
                    "or raise γ if the chains leave the basin"
                )
                self.reasons[(float(nb), float(self.gammas[k]))] = message
                warnings.warn(message, LLCWarning, stacklevel=2)
        return out or None

    def table(self) -> str:
        """One line per cell: ε, nβ, γ, λ̂, MCSE, step-size bias b̂ ± se, virial ratio ± se,
        acceptance, drift, stable.

        Returns:
            The table as one string: a header line, then one line per cell (ε slowest, γ fastest).
        """
        lines = [
            f"{'ε':>10} {'nβ':>10} {'γ':>8} {'λ̂':>10} {'MCSE':>8} {'bias':>8} {'± se':>7} {'virial':>8} {'± se':>7} "
            f"{'accept':>7} {'drift':>7} stable"
        ]
        bias, bias_se = self._bias_and_se()
        for i, eps in enumerate(self.step_sizes):
            for j, nb in enumerate(self.nbetas):
                for k, g in enumerate(self.gammas):
                    lines.append(
                        f"{eps:10.3g} {nb:10.4g} {g:8.3g} {self.llc[i, j, k]:10.4g} {self.llc_se[i, j, k]:8.2g} "
                        f"{bias[i, j, k]:8.2g} {bias_se[i, j, k]:7.2g} "
                        f"{self.virial[i, j, k]:8.4f} {self.virial_se[i, j, k]:7.2g} {self.acceptance[i, j, k]:7.3f} "
                        f"{self.drift[i, j, k]:7.2f} {'yes' if self.stable[i, j, k] else 'NO'}"
                    )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """The result as plain Python values (e.g. for JSON).

        Returns:
            A dict of every field and of ``step_size_bias`` / ``step_size_bias_se``: arrays as
            nested lists, and ``reasons`` keyed by strings ``"nbeta=..., gamma=..."`` instead of
            (nβ, γ) tuples.
        """
        bias, bias_se = self._bias_and_se()
        out = {"step_size_bias": bias.tolist(), "step_size_bias_se": bias_se.tolist()}
        for k, v in self.__dict__.items():
            if k == "reasons":
                out[k] = {f"nbeta={a:.6g}, gamma={b:.6g}": m for (a, b), m in v.items()}
            else:
                out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    def plot(self, path: str | None = None) -> Figure:
        """λ̂ and the virial ratio against ε, one line per (nβ, γ).

        Only stable cells are drawn; matplotlib is the optional ``plots`` extra.

        Args:
            path: if given, the figure is also saved to this file (110 dpi).

        Returns:
            The matplotlib Figure (two panels: λ̂ ± MCSE and the virial ratio ± se, log ε axis).
        """
        from lambda_hat.plotting import _pyplot

        plt = _pyplot()
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
        for j, nb in enumerate(self.nbetas):
            for k, g in enumerate(self.gammas):
                ok = self.stable[:, j, k]
                label = f"nβ = {nb:.3g}, γ = {g:.3g}"
                a.errorbar(self.step_sizes[ok], self.llc[ok, j, k], yerr=self.llc_se[ok, j, k], marker="o", label=label)
                b.errorbar(
                    self.step_sizes[ok], self.virial[ok, j, k], yerr=self.virial_se[ok, j, k], marker="o", label=label
                )
        a.set(xscale="log", xlabel="ε (step size)", ylabel="λ̂ ± MCSE", title="λ̂ across the sweep")
        b.axhspan(1 - VIRIAL_MAX_DEVIATION, 1 + VIRIAL_MAX_DEVIATION, color="0.85", label="|r − 1| ≤ 0.01")
        b.axhline(1.0, color="k", ls="--", lw=1)
        b.set(xscale="log", xlabel="ε (step size)", ylabel="virial ratio r ± se", title="self-check (1 = unbiased)")
        a.legend(fontsize=7), b.legend(fontsize=7)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def _largest_curvature(posterior: LocalPosterior, key: jax.Array, iters: int = 30) -> float:
    """κ_max = nβ·a_max + γ, a_max the largest Hessian eigenvalue of L_n at w* (power iteration on
    Hessian-vector products)."""
    grad = jax.grad(posterior.full_loss)

    @jax.jit
    def power(u):
        def body(u, _):
            hu = jax.jvp(grad, (posterior.w_star,), (u,))[1]
            return hu / jnp.maximum(jnp.linalg.norm(hu), jnp.finfo(u.dtype).tiny), None

        u, _ = jax.lax.scan(body, u / jnp.linalg.norm(u), None, length=iters)
        return jnp.dot(u, jax.jvp(grad, (posterior.w_star,), (u,))[1])

    a_max = float(power(jax.random.normal(key, (posterior.dim,), posterior.dtype)))
    return float(posterior.nbeta) * max(a_max, 0.0) + float(posterior.gamma)


def calibrate(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    *,
    kernel: str = "sgld",
    step_sizes: Sequence[float] | None = None,
    nbetas: Sequence[float] | None = None,
    gammas: Sequence[float] | None = None,
    gamma: float = 1.0,
    beta: float | None = None,
    nbeta: float | None = None,
    key: Any = 0,
    num_chains: int = 4,
    num_draws: int = 1000,
    num_warmup: int = 200,
    batch_size: int | None = None,
    chunk_size: int | None = None,
    mask: Any = None,
    **kernel_options: Any,
) -> CalibrationResult:
    """Sweep the step size ε × nβ × γ of a stochastic-gradient kernel in one compiled program.

    Args:
        loss_fn, params, data, beta, nbeta, batch_size, chunk_size, mask: as for
            :func:`lambda_hat.sample` (``beta``/``nbeta`` set the single nβ when ``nbetas`` is None).
        kernel: ``"sgld"``, ``"rmsprop_sgld"`` or ``"adam_sgld"``.
        step_sizes: the ε grid. Default: scaled to the problem, ε = c/κ_max for SGLD and c/√κ_max
            for the preconditioned kernels, c in 0.0025 … 0.32, with κ_max = nβ·a_max + γ from a
            power iteration on the Hessian at w* (SGLD's bias along the stiffest direction is
            about εκ/4: 0.06% … 8%).
        nbetas: nβ values (default: the one ``sample`` would use).
        gammas: γ values to sweep (default: ``[gamma]``).
        key: seed or PRNG key.
        num_chains, num_draws, num_warmup: per cell.
        **kernel_options: further options of ``kernel`` (e.g. ``decay`` for rmsprop_sgld);
            ``step_size`` is the swept axis.

    Returns:
        A :class:`CalibrationResult`; its ``recommended()`` gives ε per nβ.

    Example:
        Choose SGLD's ε on linear regression (d = 5, minibatches of 100), then sample there:

        >>> import lambda_hat
        >>> from lambda_hat.targets import linear_regression
        >>> t = linear_regression(d=5, seed=0)
        >>> cal = lambda_hat.calibrate(t.loss_fn, t.params, t.data, batch_size=100, num_draws=20000)
        >>> print(cal.table())  # doctest: +ELLIPSIS
                 ε         nβ        γ         λ̂     MCSE     bias    ± se   virial    ± se  accept   drift stable
        ...
        >>> (nbeta, eps), = cal.recommended().items()
        >>> bool(1e-5 < eps < 1e-3)
        True
        >>> r = lambda_hat.sample(t.loss_fn, t.params, t.data, step_size=eps, batch_size=100, num_draws=20000)
    """
    if kernel not in CALIBRATION_KERNELS:
        raise ValueError(f"kernel: expected one of {list(CALIBRATION_KERNELS)}, got {kernel!r}")
    spec = get_kernel(kernel)
    if "step_size" in kernel_options:
        raise ValueError("step_size: the swept axis; give step_sizes=[...] instead")
    options = _merge_options(spec, kernel_options)
    loss_fn, params = adapt_model(loss_fn, params)
    posterior = LocalPosterior(
        loss_fn, params, data, gamma=gamma, beta=beta, nbeta=nbeta, chunk_size=chunk_size, mask=mask
    )
    # the run arguments are checked (and batch_size == n normalised to the full batch) as in sample
    run = _run_settings(spec, posterior, options, num_chains, num_draws, num_warmup, batch_size, False, False)
    num_chains, num_draws, num_warmup, batch_size = run.num_chains, run.num_draws, run.num_warmup, run.batch_size
    options.pop("step_size")
    nbs = np.asarray(
        [float(posterior.nbeta)] if nbetas is None else [positive_float("nbetas", b) for b in np.atleast_1d(nbetas)]
    )
    gms = np.asarray(
        [float(posterior.gamma)] if gammas is None else [non_negative_float("gammas", g) for g in np.atleast_1d(gammas)]
    )
    rng_key = as_key(key)
    kappa_max = None
    if step_sizes is None:
        kappa_max = _largest_curvature(
            posterior.replace(
                nbeta=jnp.asarray(nbs.max(), posterior.dtype), gamma=jnp.asarray(gms.max(), posterior.dtype)
            ),
            jax.random.fold_in(rng_key, 1),
        )
        scale = 1 / kappa_max if kernel == "sgld" else 1 / math.sqrt(kappa_max)
        steps = np.asarray(DEFAULT_GRID) * scale
    else:
        steps = np.sort(np.asarray([positive_float("step_sizes", s) for s in np.atleast_1d(step_sizes)]))
        if steps.size == 0:
            raise ValueError("step_sizes: expected at least one step size")
    grid = [x.ravel() for x in np.meshgrid(steps, nbs, gms, indexing="ij")]
    if kernel == "sgld":
        options["mala_acceptance"] = True

    def cell(eps, nb, g):
        out = spec.run(
            rng_key,
            posterior.replace(nbeta=nb, gamma=g),
            num_chains=num_chains,
            num_draws=num_draws,
            num_warmup=num_warmup,
            batch_size=batch_size,
            step_size=eps,
            **spec.program_options(options),
        )
        accept = getattr(out.info, "mala_acceptance", None)
        if accept is None:
            accept = jnp.full((num_chains,), jnp.nan, posterior.dtype)
        return out.excess_loss, accept, out.draw_terms.virial

    start = time.perf_counter()
    dtype = posterior.dtype
    excess, accept, virial = jax.block_until_ready(jax.jit(jax.vmap(cell))(*(jnp.asarray(x, dtype) for x in grid)))
    seconds = time.perf_counter() - start
    excess, accept = np.asarray(excess, np.float64), np.asarray(accept, np.float64)
    virial = np.asarray(virial, np.float64)
    shape = (steps.size, nbs.size, gms.size)
    llc, se, vr, vse, acc, drift = (np.full(shape, np.nan) for _ in range(6))
    stable = np.zeros(shape, bool)
    sizes = np.asarray(posterior.group_sizes)
    for c, idx in enumerate(np.ndindex(*shape)):
        trace = grid[1][c] * excess[c]
        finite = bool(np.all(np.isfinite(trace))) and bool(np.all(np.isfinite(virial[c])))
        stable[idx] = finite
        acc[idx] = float(np.nanmean(accept[c])) if np.any(np.isfinite(accept[c])) else np.nan
        if not finite:
            continue
        v = virial_statistics(virial[c], sizes, posterior.group_names)
        if not abs(v["ratio"]) < DIVERGED_VIRIAL:  # finite, but the chains have run away (float64)
            stable[idx] = False
            continue
        stats = llc_statistics(trace)
        llc[idx], se[idx] = stats["llc"], stats["llc_se"]
        vr[idx], vse[idx] = v["ratio"], v["se"]
        half = trace.shape[1] // 2
        first, second = llc_statistics(trace[:, :half]), llc_statistics(trace[:, half:])
        denom = math.hypot(first["llc_se"], second["llc_se"]) or 1.0
        drift[idx] = (second["llc"] - first["llc"]) / denom
    return CalibrationResult(
        steps,
        nbs,
        gms,
        llc,
        se,
        vr,
        vse,
        acc,
        stable,
        drift,
        float(posterior.loss_at_wstar),
        seconds,
        kernel=kernel,
        kappa_max=kappa_max,
    )
