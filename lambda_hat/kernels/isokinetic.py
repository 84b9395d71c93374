"""What the two isokinetic samplers (MCLMC and adjusted MCLMC) share: the d = 1 padding of the
target, and the smallest warmup their tuners accept."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from lambda_hat.checks import optional_positive_float
from lambda_hat.kernels.mass_matrix import check_inverse_mass_matrix
from lambda_hat.posterior import LocalPosterior

MIN_TUNING_WARMUP = 10


class PaddedTarget(NamedTuple):
    """The log-density an isokinetic sampler runs on: the posterior's, or for d = 1 the posterior's
    times an independent N(z; 0, 1) on an appended coordinate z (the velocity lives on a sphere,
    which needs d >= 2; the loss never sees z, so λ̂ is unchanged)."""

    pad: bool
    dim: int
    logdensity: Callable[[jax.Array], jax.Array]
    excess_loss: Callable[[jax.Array, jax.Array], jax.Array]
    w0: jax.Array

    def unpad(self, x: jax.Array) -> jax.Array:
        """The posterior's coordinates of a sampler position (drops z when padded).

        Args:
            x: a sampler position (or gradient), of length ``dim``.

        Returns:
            Its first d entries (``x`` itself when not padded).
        """
        return x[:-1] if self.pad else x

    def pad_vector(self, x: jax.Array) -> jax.Array:
        """A length-d vector of the posterior (e.g. M⁻¹'s diagonal) extended with 1 for z when padded.

        Args:
            x: a (d,) vector in the posterior's coordinates.

        Returns:
            A (``dim``,) vector (``x`` itself when not padded).
        """
        return jnp.concatenate([x, jnp.ones((1,), x.dtype)]) if self.pad else x


def pad_to_two_dimensions(posterior: LocalPosterior) -> PaddedTarget:
    """:class:`PaddedTarget` of ``posterior`` (padded only when d = 1).

    Args:
        posterior: the localized posterior.

    Returns:
        The target the sampler runs on, with ``excess_loss(x, logdensity)`` recovering
        L_n(w) − L_n(w*) from a sampler position and its log-density.
    """
    d, dtype = posterior.dim, posterior.dtype
    if d != 1:
        return PaddedTarget(False, d, posterior.logdensity, posterior.excess_loss_from_logdensity, posterior.w_star)

    def logdensity(x):
        return posterior.logdensity(x[:d]) - 0.5 * x[d] ** 2

    def excess_loss(x, logdens):
        return posterior.excess_loss_from_logdensity(x[:d], logdens + 0.5 * x[d] ** 2)

    return PaddedTarget(True, 2, logdensity, excess_loss, jnp.concatenate([posterior.w_star, jnp.zeros((1,), dtype)]))


def check_tuning_options(options: dict[str, Any]) -> dict[str, Any]:
    """Check the options both samplers share: ``L`` and ``step_size`` (both given, to skip
    tuning, or neither) and ``inverse_mass_matrix`` (only with both given).

    Args:
        options: the merged options; ``L``, ``step_size`` and ``inverse_mass_matrix`` are
            checked and updated in place.

    Returns:
        ``options`` with those three normalised (ValueError naming a bad option).
    """
    options["L"] = optional_positive_float("L", options["L"])
    options["step_size"] = optional_positive_float("step_size", options["step_size"])
    if (options["L"] is None) != (options["step_size"] is None):
        raise ValueError(
            "L and step_size: give both (to skip tuning) or neither (to tune them), "
            f"got L={options['L']!r}, step_size={options['step_size']!r}"
        )
    options["inverse_mass_matrix"] = check_inverse_mass_matrix(options["inverse_mass_matrix"])
    if options["inverse_mass_matrix"] is not None and options["L"] is None:
        raise ValueError(
            "inverse_mass_matrix: only used when L and step_size are given (tuning estimates "
            "its own diagonal preconditioner); give L and step_size too, or leave it None"
        )
    return options
