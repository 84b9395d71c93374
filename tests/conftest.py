"""Shared test helpers. The run dtype is set by JAX_ENABLE_X64 (tox envs x32 / x64)."""

import jax
import numpy as np
import pytest


@pytest.fixture(scope="session")
def x64() -> bool:
    return bool(jax.config.jax_enable_x64)


def assert_close_to_exact(result, exact: float, rel: float, n_se: float = 3.0, bias: float = 0.0):
    """|λ̂ − exact| <= max(rel·|exact|, n_se·MCSE) + |bias|, with a readable failure message.

    ``bias`` is a known, stated systematic offset (e.g. SGLD's step-size bias), never a fudge.
    """
    tol = max(rel * abs(exact), n_se * result.llc_se) + abs(bias)
    err = result.llc - exact
    assert np.isfinite(result.llc) and np.isfinite(result.llc_se)
    assert abs(err) <= tol, (
        f"{result.kernel}: λ̂ = {result.llc:.4f} ± {result.llc_se:.4f}, exact {exact:.4f}, "
        f"error {err:+.4f} exceeds tolerance {tol:.4f}"
    )
