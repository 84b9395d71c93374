"""Weight-restricted LLC: sampling only the masked weights matches the exact λ̂ of the
restricted quadratic, ½ Σ nβ b_i/(nβ b_i + γ) with b_i the eigenvalues of H[S, S]."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import assert_close_to_exact

import lambda_hat as lh
from lambda_hat.targets import gaussian_expected_llc, linear_regression


@pytest.fixture(scope="module")
def problem():
    t = linear_regression(d=6, seed=9)
    w = jnp.asarray(t.params)
    params = {"a": w[:3], "b": w[3:]}

    def loss_fn(p, batch):
        return t.loss_fn(jnp.concatenate([p["a"], p["b"]]), batch)

    X, y = (np.asarray(a, np.float64) for a in t.data)
    H = X.T @ X / t.n
    g = X.T @ (X @ np.asarray(w, np.float64) - y) / t.n
    return t, params, loss_fn, H, g


KW = dict(key=4, num_chains=4, num_draws=4000, num_warmup=1000, step_size=1e-4)


@pytest.mark.parametrize("how", ["pytree", "predicate"])
def test_masked_llc_matches_restricted_quadratic(problem, how):
    t, params, loss_fn, H, g = problem
    if how == "pytree":
        mask = {"a": np.array([True, False, True]), "b": np.array([True, False, False])}
        idx = np.array([0, 2, 3])
    else:
        mask = lambda path, leaf: "'b'" in path  # noqa: E731 — the whole leaf "b"
        idx = np.array([3, 4, 5])
    r = lh.sample(loss_fn, params, t.data, mask=mask, **KW)
    assert r.config["dim"] == len(idx) and r.config["masked"]
    exact = gaussian_expected_llc(H[np.ix_(idx, idx)], g[idx], r.nbeta, r.gamma)
    assert exact < 0.5 * len(idx) + 1e-9 and exact > 0.45 * len(idx)
    assert_close_to_exact(r, exact, rel=0.05)


@pytest.mark.parametrize(
    "mask, pattern",
    [
        ({"a": np.array([True, False]), "b": np.ones(3, bool)}, r"mask: leaf .* not broadcastable"),
        ({"a": np.zeros(3, bool), "b": np.zeros(3, bool)}, r"mask: selects no weights"),
        ({"a": np.ones(3), "b": np.ones(3)}, r"mask: leaf .* expected booleans"),
        ({"a": True}, r"mask: expected a pytree of booleans with the structure of params"),
        (lambda path, leaf: 1, r"mask: a predicate must return True or False"),
    ],
)
def test_bad_masks_are_rejected(problem, mask, pattern):
    t, params, loss_fn, _, _ = problem
    with pytest.raises(ValueError, match=pattern):
        lh.sample(loss_fn, params, t.data, mask=mask, num_draws=10)
