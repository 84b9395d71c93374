"""Weight-restricted LLC: sampling only the masked weights matches the exact λ̂ of the
restricted quadratic, ½ Σ nβ b_i/(nβ b_i + γ) with b_i the eigenvalues of H[S, S]."""

import jax
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
        ({"a": True, "c": True}, r"mask: \['c'\] at <root> not in params"),
        ({"a": {"x": True}}, r"mask: a dict at \['a'\], where params holds"),
        (lambda path, leaf: 1, r"mask: a predicate must return True or False"),
    ],
)
def test_bad_masks_are_rejected(problem, mask, pattern):
    t, params, loss_fn, _, _ = problem
    with pytest.raises(ValueError, match=pattern):
        lh.sample(loss_fn, params, t.data, mask=mask, num_draws=10)


def test_prefix_dict_masks_name_subtrees_and_equal_the_full_mask():
    """A dict mask is a prefix: keys left out are False, a bool covers its subtree; the predicate's
    path is jax.tree_util.keystr of the leaf's path."""
    from lambda_hat.flat import ravel
    from lambda_hat.posterior import _mask_indices

    params = {
        "params": {
            "dense0": {"kernel": jnp.ones((3, 4)), "bias": jnp.ones(4)},
            "dense1": {"kernel": jnp.ones((4, 2)), "bias": jnp.ones(2)},
        }
    }
    spec = ravel(params)[1]
    full = jax.tree.map(lambda x: False, params)
    full["params"]["dense1"] = {"kernel": True, "bias": True}
    expected = _mask_indices(full, params, spec)
    np.testing.assert_array_equal(_mask_indices({"params": {"dense1": True}}, params, spec), expected)
    paths = []

    def predicate(path, leaf):
        paths.append(path)
        return "['dense1']" in path

    np.testing.assert_array_equal(_mask_indices(predicate, params, spec), expected)
    assert "['params']['dense1']['kernel']" in paths
    kernels_only = _mask_indices({"params": {"dense0": {"kernel": True}, "dense1": {"kernel": True}}}, params, spec)
    assert len(kernels_only) == 3 * 4 + 4 * 2
