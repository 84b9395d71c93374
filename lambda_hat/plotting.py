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


def plot_result(result: Any, path: str | None = None) -> Figure:
    """Loss traces, running λ̂ per chain and the distribution of per-draw λ̂; returns the Figure.

    Args:
        result: an :class:`~lambda_hat.LLCResult` (its loss and λ̂ traces, ``valid_chains``,
            ``llc`` ± ``llc_se`` and ``loss_at_wstar`` are drawn; invalid chains dotted and left
            out of the histogram).
        path: if given, the figure is also saved to this file (110 dpi).

    Returns:
        The matplotlib Figure (three panels).

    Raises:
        ImportError: matplotlib is not installed (the ``plots`` extra).
    """
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    draws = np.arange(result.num_draws)
    for c in range(result.num_chains):
        style = {} if result.valid_chains[c] else {"ls": ":", "alpha": 0.5}
        axes[0].plot(draws, result.loss_trace[c], lw=0.6, label=f"chain {c}", **style)
        running = np.cumsum(result.llc_trace[c]) / (draws + 1)
        axes[1].plot(draws, running, lw=1, **style)
    axes[0].axhline(result.loss_at_wstar, color="k", ls="--", lw=1, label="L_n(w*)")
    axes[0].set(title="loss trace", xlabel="draw", ylabel="loss")
    axes[0].legend(fontsize=7)
    axes[1].axhline(result.llc, color="k", lw=1)
    axes[1].axhspan(result.llc - 2 * result.llc_se, result.llc + 2 * result.llc_se, color="k", alpha=0.1)
    axes[1].set(title=f"running λ̂ per chain (λ̂ = {result.llc:.3g} ± {result.llc_se:.2g})", xlabel="draw")
    valid = result.llc_trace[np.asarray(result.valid_chains, bool)]
    axes[2].hist(valid.ravel(), bins=60, color="C0", alpha=0.8)
    axes[2].axvline(result.llc, color="k", lw=1)
    axes[2].set(title="per-draw nβ(L − L*)", xlabel="λ̂ draw")
    fig.suptitle(f"{result.kernel}: {result.num_chains} chains × {result.num_draws} draws", fontsize=10)
    fig.tight_layout()
    if path is not None:
        fig.savefig(path, dpi=110)
    return fig
