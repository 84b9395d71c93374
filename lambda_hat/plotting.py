"""Plots of an LLCResult (matplotlib is the optional ``plots`` extra)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as err:
        raise ImportError("plotting needs matplotlib: pip install 'lambda_hat[plots]'") from err
    return plt


def _moving_average(x: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average over the last axis (the first window − 1 values average fewer)."""
    c = np.cumsum(np.nan_to_num(x, nan=0.0), axis=-1)
    shifted = np.concatenate([np.zeros(x.shape[:-1] + (window,)), c[..., :-window]], axis=-1)
    counts = np.minimum(np.arange(1, x.shape[-1] + 1), window)
    return (c - shifted[..., : x.shape[-1]]) / counts


def plot_result(result: Any, path: str | None = None) -> Figure:
    """Loss traces, running λ̂ per chain, the distribution of per-draw λ̂ and, for VI, the
    optimisation's ELBO trace; returns the Figure.

    Each chain has its own colour in every panel. The loss panel shows each chain's loss as a
    moving average over 2% of the draws (the raw trace faint behind it) against L_n(w*); the
    running-λ̂ panel shows the running mean of each chain's λ̂ trace, the estimate λ̂ and its
    band λ̂ ± 2·MCSE; the histogram pools the valid chains' per-draw λ̂. Invalid chains are
    dotted and left out of the histogram. The legend sits below the panels.

    Args:
        result: an :class:`~lambda_hat.LLCResult` (its loss and λ̂ traces, ``valid_chains``,
            ``llc`` ± ``llc_se``, ``loss_at_wstar`` and, for VI, ``extra["elbo_trace"]``).
        path: if given, the figure is also saved to this file (110 dpi).

    Returns:
        The matplotlib Figure (three panels, four with an ELBO trace).

    Raises:
        ImportError: matplotlib is not installed (the ``plots`` extra).
    """
    plt = _pyplot()
    elbo = result.extra.get("elbo_trace") if isinstance(result.extra, dict) else None
    panels = 3 if elbo is None else 4
    fig, axes = plt.subplots(1, panels, figsize=(4.4 * panels, 3.9))
    draws = np.arange(result.num_draws)
    window = max(1, result.num_draws // 50)
    smooth = _moving_average(np.asarray(result.loss_trace, np.float64), window)
    for c in range(result.num_chains):
        color = f"C{c % 10}"
        style = {"color": color} if result.valid_chains[c] else {"color": color, "ls": ":", "alpha": 0.6}
        axes[0].plot(draws, result.loss_trace[c], lw=0.4, alpha=0.2, color=color)
        axes[0].plot(
            draws, smooth[c], lw=1.2, label=f"chain {c}" + ("" if result.valid_chains[c] else " (invalid)"), **style
        )
        running = np.cumsum(result.llc_trace[c]) / (draws + 1)
        axes[1].plot(draws, running, lw=1, **style)
    axes[0].axhline(result.loss_at_wstar, color="k", ls="--", lw=1, label="L_n(w*)")
    axes[0].set(title=f"loss (moving average over {window} draws)", xlabel="draw", ylabel="loss")
    axes[1].axhspan(
        result.llc - 2 * result.llc_se, result.llc + 2 * result.llc_se, color="k", alpha=0.12, label="λ̂ ± 2 MCSE"
    )
    axes[1].axhline(result.llc, color="k", lw=1, label=f"λ̂ = {result.llc:.3g}")
    axes[1].set(title="running λ̂ per chain", xlabel="draw", ylabel="λ̂")
    valid = result.llc_trace[np.asarray(result.valid_chains, bool)]
    axes[2].hist(valid.ravel(), bins=60, color="0.55")
    axes[2].axvline(result.llc, color="k", lw=1)
    axes[2].set(title="per-draw nβ(L − L_n(w*)), valid chains", xlabel="λ̂ draw", ylabel="draws")
    if elbo is not None:
        elbo = np.asarray(elbo, np.float64)
        for c in range(elbo.shape[0]):
            steps = np.flatnonzero(np.isfinite(elbo[c]))
            if steps.size:
                axes[3].plot(
                    steps, _moving_average(elbo[c, steps][None], max(1, steps.size // 50))[0], lw=1, color=f"C{c % 10}"
                )
        axes[3].set(title="VI: ELBO per fit (moving average)", xlabel="optimisation step", ylabel="ELBO")
    handles, labels = [], []
    for ax in axes[:2]:
        h, lab = ax.get_legend_handles_labels()
        handles += h
        labels += lab
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 8), fontsize=8, frameon=False)
    fig.suptitle(
        f"{result.kernel}: {result.num_chains} chains × {result.num_draws} draws, λ̂ = {result.llc:.4g} ± {result.llc_se:.2g}",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0.1, 1, 1))
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
