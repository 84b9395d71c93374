"""Kernel registry. Every BlackJAX call in lambda_hat lives in this package.

One module per algorithm (sgld, rmsprop_sgld, adam_sgld, hmc, mclmc, adjusted_mclmc, vi), each
with its typed Info and its :class:`KernelSpec`. The algorithm modules import only these shared
modules, never each other: ``base`` (the contract: KernelSpec, KernelOutput), ``chains`` (chain
keys and the scan loop of the SGLD family), ``langevin`` (the preconditioned Langevin update of
RMSProp-/Adam-SGLD), ``mass_matrix`` (the inverse_mass_matrix option) and ``isokinetic`` (the
d = 1 padding of the MCLMC samplers).
"""

from __future__ import annotations

from lambda_hat.kernels.adam_sgld import ADAM_SGLD
from lambda_hat.kernels.adjusted_mclmc import ADJUSTED_MCLMC
from lambda_hat.kernels.base import KernelOutput, KernelSpec
from lambda_hat.kernels.hmc import HMC, NUTS
from lambda_hat.kernels.mclmc import MCLMC
from lambda_hat.kernels.rmsprop_sgld import RMSPROP_SGLD
from lambda_hat.kernels.sgld import SGLD
from lambda_hat.kernels.vi import VI

KERNELS: dict[str, KernelSpec] = {
    spec.name: spec for spec in (SGLD, RMSPROP_SGLD, ADAM_SGLD, HMC, NUTS, MCLMC, ADJUSTED_MCLMC, VI)
}


def get_kernel(name: str) -> KernelSpec:
    """The registered kernel called ``name``.

    Args:
        name: one of ``KERNELS``.

    Returns:
        Its :class:`KernelSpec` (ValueError listing the choices for an unknown name).
    """
    if not isinstance(name, str) or name not in KERNELS:
        raise ValueError(f"kernel: unknown kernel {name!r}; expected one of {sorted(KERNELS)}")
    return KERNELS[name]


__all__ = ["KERNELS", "KernelOutput", "KernelSpec", "get_kernel"]
