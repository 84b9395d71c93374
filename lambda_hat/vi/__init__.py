"""BlackJAX-style variational inference for LLC estimation.

``lambda_hat.vi.mfa``: a zero-mean mixture of factor analyzers centred at w*, fitted by
stochastic ELBO ascent (sticking-the-landing + Rao-Blackwellised score gradients); use it as
``lambda_hat.vi.mfa.init``, ``lambda_hat.vi.mfa.step``, ... (or through
``lambda_hat.sample(kernel="vi")``). ``lambda_hat.vi.lanczos``: the Lanczos spectrum of the
Hessian at w*.

The bare names ``lambda_hat.vi.init``, ``step``, ``sample``, ... are deprecated aliases of
``lambda_hat.vi.mfa``'s (``lambda_hat.vi.sample`` is easily mistaken for ``lambda_hat.sample``).
"""

from __future__ import annotations

import warnings
from typing import Any

from lambda_hat.vi import mfa

_DEPRECATED = (
    "ExpectedQuadratic",
    "MFAInfo",
    "MFAState",
    "as_top_level_api",
    "component_logdensities",
    "elbo_grad_estimate",
    "expected_quadratic",
    "init",
    "logdensity",
    "responsibilities",
    "sample",
    "sample_component",
    "scales",
    "step",
    "weights",
)


def __getattr__(name: str) -> Any:
    if name in _DEPRECATED:
        warnings.warn(
            f"lambda_hat.vi.{name} is deprecated; use lambda_hat.vi.mfa.{name}", DeprecationWarning, stacklevel=2
        )
        return getattr(mfa, name)
    raise AttributeError(f"module 'lambda_hat.vi' has no attribute {name!r}")


__all__ = ["mfa"]
