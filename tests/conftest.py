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


def assert_virial_passes(result, tolerance: float = 0.0, n_se: float = 3.0):
    """The virial self-check of an exact sampler: E[v_i·∂_iU] = 1, overall and per parameter leaf,
    within max(tolerance, n_se·se), and no virial warning in the result."""
    virial = result.diagnostics["virial"]
    rows = [("overall", virial["ratio"], virial["se"])] + [
        (name, g["ratio"], g["se"]) for name, g in virial["groups"].items()
    ]
    for name, ratio, se in rows:
        assert np.isfinite(ratio) and se > 0, (name, ratio, se)
        assert abs(ratio - 1) <= max(tolerance, n_se * se), (
            f"{result.kernel}: virial ratio of {name} = {ratio:.4f} ± {se:.4f}, expected 1"
        )
    assert not any("virial self-check" in w for w in result.warnings), result.warnings
