"""BlackJAX-style variational inference for LLC estimation.

``lambda_hat.vi.mfa``: a zero-mean mixture of factor analyzers centred at w*, fitted by
stochastic ELBO ascent (sticking-the-landing + Rao-Blackwellised score gradients).
"""

from lambda_hat.vi import mfa
from lambda_hat.vi.mfa import (
    ExpectedQuadratic,
    MFAInfo,
    MFAState,
    as_top_level_api,
    component_logdensities,
    elbo_grad_estimate,
    expected_quadratic,
    init,
    logdensity,
    responsibilities,
    sample,
    sample_component,
    scales,
    step,
    weights,
)

__all__ = [
    "mfa",
    "MFAState",
    "MFAInfo",
    "ExpectedQuadratic",
    "init",
    "step",
    "sample",
    "sample_component",
    "as_top_level_api",
    "elbo_grad_estimate",
    "logdensity",
    "component_logdensities",
    "responsibilities",
    "scales",
    "weights",
    "expected_quadratic",
]
