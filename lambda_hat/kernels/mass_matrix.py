"""The ``inverse_mass_matrix`` option of the Hamiltonian kernels (HMC, NUTS, MCLMC, adjusted
MCLMC): a diagonal inverse mass matrix M⁻¹, given as a scalar or a length-d vector in
flat-parameter order (BlackJAX's convention: kinetic energy ½ pᵀ M⁻¹ p)."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from lambda_hat.flat import float_dtype


def check_inverse_mass_matrix(value: Any) -> float | tuple[float, ...] | None:
    """None, a positive scalar, or a vector of positive floats -> hashable (float or tuple).

    Args:
        value: the option as given.

    Returns:
        None, a float, or a tuple of floats (hashable, so it can be a static argument).
    """
    if value is None:
        return None
    try:
        arr = jnp.asarray(value, dtype=float_dtype())
    except (TypeError, ValueError):
        raise ValueError(
            f"inverse_mass_matrix: expected a positive scalar or a length-d vector, got {value!r}"
        ) from None
    if arr.ndim > 1:
        raise ValueError(
            f"inverse_mass_matrix: expected a positive scalar or a length-d vector (diagonal), "
            f"got an array of shape {arr.shape}"
        )
    if arr.size == 0 or not bool(jnp.all(jnp.isfinite(arr) & (arr > 0))):
        raise ValueError(
            f"inverse_mass_matrix: expected finite entries > 0 (a diagonal inverse mass matrix), got {value!r}"
        )
    if arr.ndim == 0:
        return float(arr)
    return tuple(float(x) for x in arr)


def inverse_mass_matrix_vector(value: float | tuple[float, ...] | None, dim: int, dtype: Any) -> jax.Array:
    """The checked option as a length-``dim`` vector in the run dtype (the identity when None).

    Args:
        value: the output of :func:`check_inverse_mass_matrix`.
        dim: d, the number of sampled parameters.
        dtype: the run dtype.

    Returns:
        A (dim,) array of M⁻¹'s diagonal.
    """
    if value is None:
        return jnp.ones((dim,), dtype)
    if isinstance(value, float):
        return jnp.full((dim,), value, dtype)
    if len(value) != dim:
        raise ValueError(
            f"inverse_mass_matrix: expected a scalar or a vector of length d = {dim} "
            f"(the number of parameters), got length {len(value)}"
        )
    return jnp.asarray(value, dtype)
