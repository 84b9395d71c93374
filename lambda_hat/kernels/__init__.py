"""Kernel registry. Every BlackJAX sampler call in lambda_hat lives in this package (lambda_hat.vi.mfa
only returns its algorithm in BlackJAX's VIAlgorithm container, so it works with BlackJAX code)."""

from __future__ import annotations

from lambda_hat.kernels.adjusted_mclmc import ADJUSTED_MCLMC
from lambda_hat.kernels.base import KernelOutput, KernelSpec
from lambda_hat.kernels.hmc import HMC, NUTS
from lambda_hat.kernels.mclmc import MCLMC
from lambda_hat.kernels.preconditioned_sgld import ADAM_SGLD, RMSPROP_SGLD
from lambda_hat.kernels.sgld import SGLD
from lambda_hat.kernels.vi import VI

KERNELS: dict[str, KernelSpec] = {
    spec.name: spec for spec in (SGLD, RMSPROP_SGLD, ADAM_SGLD, HMC, NUTS, MCLMC, ADJUSTED_MCLMC, VI)
}


def get_kernel(name: str) -> KernelSpec:
    """The registered kernel called ``name`` (ValueError listing the choices otherwise)."""
    if not isinstance(name, str) or name not in KERNELS:
        raise ValueError(f"kernel: unknown kernel {name!r}; expected one of {sorted(KERNELS)}")
    return KERNELS[name]


__all__ = ["KERNELS", "KernelOutput", "KernelSpec", "get_kernel"]
