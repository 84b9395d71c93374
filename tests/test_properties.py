"""Property tests (hypothesis): random pytree layouts round-trip through ravel/unravel, and the
exact quadratic oracle agrees with a dense Monte Carlo of the Gaussian posterior it describes."""

import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from lambda_hat.flat import float_dtype, ravel
from lambda_hat.targets import gaussian_expected_llc

shapes = st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple)
trees = st.recursive(
    shapes.map(lambda s: ("leaf", s)),
    lambda children: st.one_of(
        st.lists(children, min_size=1, max_size=3).map(lambda xs: ("list", xs)),
        st.dictionaries(st.text("abcdef", min_size=1, max_size=3), children, min_size=1, max_size=3).map(lambda d: ("dict", d)),
    ),
    max_leaves=6,
)


def build(spec, counter):
    kind, body = spec
    if kind == "leaf":
        size = int(np.prod(body)) if body else 1
        start = counter[0]
        counter[0] += size
        return jnp.arange(start, start + size, dtype=jnp.float32).reshape(body)
    if kind == "list":
        return [build(c, counter) for c in body]
    return {k: build(v, counter) for k, v in body.items()}


@settings(max_examples=40, deadline=None)
@given(trees)
def test_ravel_unravel_round_trip(spec):
    params = build(spec, [0])
    flat, layout = ravel(params)
    assert flat.dtype == float_dtype() and flat.shape == (layout.size,)
    back = layout.unravel(flat)
    assert jax.tree.structure(back) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(back), jax.tree.leaves(params)):
        assert a.shape == b.shape
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 12), st.integers(0, 10_000), st.floats(0.0, 4.0), st.floats(0.1, 10.0))
def test_gaussian_oracle_matches_monte_carlo(d, seed, log_cond, gamma):
    """E[nβ(gᵀv + ½vᵀHv)] under N(μ, P⁻¹) by 200k draws agrees with the closed form."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.standard_normal((d, d)))[0]
    eigs = np.logspace(0, log_cond, d) * (rng.random(d) > 0.3)  # some zero: rank-deficient
    H = q @ np.diag(eigs) @ q.T
    g = 1e-3 * rng.standard_normal(d)
    nbeta = 50.0
    P = nbeta * H + gamma * np.eye(d)
    cov = np.linalg.inv(P)
    mu = -nbeta * cov @ g
    v = rng.multivariate_normal(mu, cov, size=200_000)
    vals = nbeta * (v @ g + 0.5 * np.einsum("ij,jk,ik->i", v, H, v))
    exact = gaussian_expected_llc(H, g, nbeta, gamma)
    assert abs(vals.mean() - exact) <= 5 * vals.std() / np.sqrt(len(vals)) + 1e-12
