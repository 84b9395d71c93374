"""SGLD step-size × nβ calibration sweep in one vectorized program.

For each cell (ε, nβ) of the grid, ``num_chains`` SGLD chains run from w*; every cell runs in
the same jitted program (vmap over cells, vmap over chains, lax.scan over steps). Per cell we
report λ̂ ± MCSE, the mean MALA acceptance probability of the SGLD moves (Furman & Lau 2024:
aim for ≈ 0.9 or more), whether every chain stayed finite, and a drift statistic: the
difference between the λ̂ of the second and first half of the draws in MCSE units (a plateaued
loss trace gives |drift| ≲ 2). This is what devinterp's ε–β analysis offers.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from lambda_hat.api import as_key
from lambda_hat.diagnostics import llc_statistics
from lambda_hat.kernels.base import positive_float, positive_int
from lambda_hat.kernels.sgld import run_sgld
from lambda_hat.models import adapt_model
from lambda_hat.posterior import LocalPosterior


@dataclass
class CalibrationResult:
    """Grids are indexed [i_step_size, j_nbeta]."""

    step_sizes: np.ndarray
    nbetas: np.ndarray
    llc: np.ndarray
    llc_se: np.ndarray
    acceptance: np.ndarray
    stable: np.ndarray
    drift: np.ndarray
    loss_at_wstar: float
    seconds: float

    def recommended(self, min_acceptance: float = 0.9) -> dict[str, float] | None:
        """For each nβ, the largest ε that is stable, has acceptance >= min_acceptance and
        |drift| < 3; returns {nbeta: step_size} (cells failing everywhere are left out)."""
        out = {}
        for j, nb in enumerate(self.nbetas):
            ok = self.stable[:, j] & (self.acceptance[:, j] >= min_acceptance) & (np.abs(self.drift[:, j]) < 3)
            if ok.any():
                out[float(nb)] = float(self.step_sizes[np.flatnonzero(ok).max()])
        return out or None

    def table(self) -> str:
        lines = [f"{'ε':>10} {'nβ':>10} {'λ̂':>10} {'MCSE':>8} {'accept':>7} {'drift':>7} stable"]
        for i, eps in enumerate(self.step_sizes):
            for j, nb in enumerate(self.nbetas):
                lines.append(
                    f"{eps:10.3g} {nb:10.4g} {self.llc[i, j]:10.4g} {self.llc_se[i, j]:8.2g} "
                    f"{self.acceptance[i, j]:7.3f} {self.drift[i, j]:7.2f} {'yes' if self.stable[i, j] else 'NO'}"
                )
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.__dict__.items()}

    def plot(self, path: str | None = None):
        """λ̂ against ε, one line per nβ, with MALA acceptance on a second panel."""
        from lambda_hat.plotting import _pyplot

        plt = _pyplot()
        fig, (a, b) = plt.subplots(1, 2, figsize=(10, 3.8))
        for j, nb in enumerate(self.nbetas):
            ok = self.stable[:, j]
            a.errorbar(self.step_sizes[ok], self.llc[ok, j], yerr=self.llc_se[ok, j], marker="o", label=f"nβ = {nb:.3g}")
            b.plot(self.step_sizes, self.acceptance[:, j], marker="o", label=f"nβ = {nb:.3g}")
        a.set(xscale="log", xlabel="ε (step size)", ylabel="λ̂ ± MCSE", title="λ̂ across the sweep")
        b.axhline(0.9, color="k", ls="--", lw=1)
        b.set(xscale="log", xlabel="ε (step size)", ylabel="MALA acceptance", ylim=(0, 1.02), title="acceptance")
        a.legend(fontsize=7), b.legend(fontsize=7)
        fig.tight_layout()
        if path is not None:
            fig.savefig(path, dpi=110)
        return fig


def calibrate(
    loss_fn: Callable[[Any, Any], jax.Array],
    params: Any,
    data: Any,
    *,
    step_sizes: Sequence[float],
    nbetas: Sequence[float] | None = None,
    gamma: float = 1.0,
    key: Any = 0,
    num_chains: int = 4,
    num_draws: int = 1000,
    num_warmup: int = 200,
    batch_size: int | None = None,
) -> CalibrationResult:
    """Sweep SGLD step size ε × nβ (default nβ = n/log n) and report λ̂, acceptance, stability."""
    steps = np.asarray([positive_float("step_sizes", s) for s in np.atleast_1d(step_sizes)])
    if steps.size == 0:
        raise ValueError("step_sizes: expected at least one step size")
    loss_fn, params = adapt_model(loss_fn, params)
    posterior = LocalPosterior(loss_fn, params, data, gamma=gamma)
    nbs = np.asarray([float(posterior.nbeta)] if nbetas is None else
                     [positive_float("nbetas", b) for b in np.atleast_1d(nbetas)])
    num_chains = positive_int("num_chains", num_chains)
    num_draws = positive_int("num_draws", num_draws, minimum=4)
    num_warmup = positive_int("num_warmup", num_warmup, minimum=0)
    if batch_size is not None:
        batch_size = positive_int("batch_size", batch_size)
        if batch_size > posterior.n:
            raise ValueError(f"batch_size: expected 1 <= batch_size <= n = {posterior.n}, got {batch_size}")
    rng_key = as_key(key)
    grid_eps, grid_nb = (x.ravel() for x in np.meshgrid(steps, nbs, indexing="ij"))

    def cell(eps, nb):
        out = run_sgld(rng_key, posterior.replace(nbeta=nb), num_chains=num_chains, num_draws=num_draws,
                       num_warmup=num_warmup, batch_size=batch_size, step_size=eps, mala_acceptance=True)
        return out.excess_loss, out.diagnostics["mala_acceptance"]

    start = time.perf_counter()
    dtype = posterior.dtype
    excess, accept = jax.block_until_ready(
        jax.jit(jax.vmap(cell))(jnp.asarray(grid_eps, dtype), jnp.asarray(grid_nb, dtype)))
    seconds = time.perf_counter() - start
    excess, accept = np.asarray(excess, np.float64), np.asarray(accept, np.float64)
    shape = (steps.size, nbs.size)
    llc, se, acc, stable, drift = (np.full(shape, np.nan) for _ in range(5))
    stable = np.zeros(shape, bool)
    for c, (i, j) in enumerate(np.ndindex(*shape)):
        trace = grid_nb[c] * excess[c]
        finite = bool(np.all(np.isfinite(trace)))
        stable[i, j] = finite
        acc[i, j] = float(np.nanmean(accept[c]))
        if not finite:
            continue
        stats = llc_statistics(trace)
        llc[i, j], se[i, j] = stats["llc"], stats["llc_se"]
        half = trace.shape[1] // 2
        first, second = llc_statistics(trace[:, :half]), llc_statistics(trace[:, half:])
        denom = math.hypot(first["llc_se"], second["llc_se"]) or 1.0
        drift[i, j] = (second["llc"] - first["llc"]) / denom
    return CalibrationResult(steps, nbs, llc, se, acc, stable, drift, float(posterior.loss_at_wstar), seconds)
