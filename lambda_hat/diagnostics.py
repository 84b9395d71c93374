"""Monte Carlo diagnostics of the λ̂ trace (host-side NumPy, via numpyro.diagnostics).

λ̂_t = nβ·(L(w_t) − L_n(w*)) per draw; λ̂ is its mean over valid chains and draws.
MCSE = sd(λ̂_t) / sqrt(ESS), ESS the multi-chain effective sample size (Geyer's initial
monotone sequence, as numpyro/Stan compute it). R-hat is the split Gelman–Rubin statistic.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from numpyro.diagnostics import effective_sample_size, split_gelman_rubin

RHAT_WARN = 1.01


def llc_statistics(llc_trace: np.ndarray) -> dict[str, Any]:
    """Mean, MCSE, ESS, R-hat and per-chain means of a (chains, draws) λ̂ trace."""
    trace = np.asarray(llc_trace, dtype=np.float64)
    chains, draws = trace.shape
    mean = float(trace.mean())
    per_chain = trace.mean(axis=1)
    sd = float(trace.std(ddof=1)) if trace.size > 1 else 0.0
    if draws >= 4 and sd > 0:
        ess = float(effective_sample_size(trace))
        ess = min(max(ess, 1.0), float(trace.size))  # guard: the estimator can exceed N on anticorrelated chains
        rhat = float(split_gelman_rubin(trace))
        ess_per_chain = [float(effective_sample_size(trace[c : c + 1])) for c in range(chains)]
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
