"""``sample_masks``: one weight-restricted λ̂ per mask from one compiled program.

Oracle: on linear regression the posterior restricted to a set S of weights (the others held at
w*) is Gaussian with Hessian H_SS and gradient g_S, so E[λ̂_S] is the closed form of
``gaussian_expected_llc(H_SS, g_S, nβ, γ)``. Each mask's λ̂ is checked against it and against a
separate ``sample(..., mask=...)`` call.
"""

import warnings

import jax.numpy as jnp
import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat import api
from lambda_hat.flat import float_dtype
from lambda_hat.targets import linear_regression
from lambda_hat.targets.quadratic import gaussian_expected_llc

SLICES = {"a": slice(0, 1), "b": slice(1, 3), "c": slice(3, 6)}
MASKS = {"a only": {"a": True}, "b only": {"b": True}, "b and c": {"b": True, "c": True}}
INDICES = {"a only": [0], "b only": [1, 2], "b and c": [1, 2, 3, 4, 5]}


@pytest.fixture(scope="module")
def problem():
    t = linear_regression(d=6, seed=2)
    params = {k: t.params[s] for k, s in SLICES.items()}

    def loss_fn(p, batch):
        return t.loss_fn(jnp.concatenate([p["a"], p["b"], p["c"]]), batch)

    x, y = (np.asarray(a, np.float64) for a in t.data)
    w = np.asarray(t.params, np.float64)
    return {
        "loss_fn": loss_fn,
        "params": params,
        "data": t.data,
        "H": x.T @ x / len(y),
        "g": x.T @ (x @ w - y) / len(y),
    }


def _exact(problem, name, nbeta, gamma):
    idx = INDICES[name]
    return gaussian_expected_llc(problem["H"][np.ix_(idx, idx)], problem["g"][idx], nbeta, gamma)


@pytest.fixture(scope="module")
def nuts_masks(problem):
    lh.clear_cache()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)
        runs = lh.sample_masks(problem["loss_fn"], problem["params"], problem["data"], MASKS, kernel="nuts", key=0)
        programs = len(api._COMPILED)
        again = lh.sample_masks(problem["loss_fn"], problem["params"], problem["data"], MASKS, kernel="nuts", key=1)
    return runs, again, programs


def test_each_mask_matches_its_exact_value_and_a_separate_call(problem, nuts_masks):
    runs, _, _ = nuts_masks
    assert list(runs) == list(MASKS)
    for name, r in runs.items():
        assert r.config["dim"] == len(INDICES[name]) and r.config["mask"] == name
        exact = _exact(problem, name, r.nbeta, r.gamma)
        assert abs(r.llc - exact) <= 4 * r.llc_se, (name, r.llc, r.llc_se, exact)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", lh.LLCWarning)
            one = lh.sample(
                problem["loss_fn"], problem["params"], problem["data"], kernel="nuts", key=0, mask=MASKS[name]
            )
        assert abs(r.llc - one.llc) <= 4 * np.hypot(r.llc_se, one.llc_se), (name, r.llc, one.llc)
        # the virial self-check and the basin check see only the mask's weights, not the padding
        assert set(r.diagnostics["virial"]["groups"]) <= {"['a']", "['b']", "['c']", "<overall>"}
        assert abs(r.diagnostics["virial"]["ratio"] - 1) <= max(0.03, 4 * r.diagnostics["virial"]["se"])


def test_all_masks_come_from_one_compilation(nuts_masks):
    runs, again, programs = nuts_masks
    assert programs == 1  # the cache was cleared before the first call
    assert runs["a only"].timings["compile_s"] > 0
    assert all(r.timings["compile_s"] == 0 for r in again.values())  # the second call reuses it
    assert [r.llc for r in again.values()] != [r.llc for r in runs.values()]  # another key


def test_sgld_masks_of_equal_size_follow_the_separate_calls_to_rounding(problem):
    masks = {"first two": {"b": True}, "last two": {"a": True, "c": np.array([True, False, False])}}
    kwargs = dict(num_draws=500, num_warmup=100, key=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)
        runs = lh.sample_masks(problem["loss_fn"], problem["params"], problem["data"], masks, **kwargs)
        for name, mask in masks.items():
            one = lh.sample(problem["loss_fn"], problem["params"], problem["data"], mask=mask, **kwargs)
            # the same random numbers; the vectorised program rounds some sums differently
            rtol = 1e-9 if float_dtype() == jnp.float64 else 1e-4
            np.testing.assert_allclose(runs[name].llc_trace, one.llc_trace, rtol=rtol, atol=rtol)


def test_positions_leave_out_the_padding(problem):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)
        runs = lh.sample_masks(
            problem["loss_fn"],
            problem["params"],
            problem["data"],
            MASKS,
            num_draws=20,
            num_warmup=10,
            save_positions=True,
        )
    a_only = runs["a only"].positions
    assert a_only["a"].shape == (4, 20, 1) and a_only["c"].shape == (4, 20, 3)
    np.testing.assert_array_equal(a_only["c"], np.broadcast_to(np.asarray(problem["params"]["c"]), (4, 20, 3)))
    assert np.all(a_only["a"] != np.asarray(problem["params"]["a"]))  # the sampled weight moved
    assert runs["a only"].diagnostics["basin"]["rms_distance"] > 0


@pytest.mark.parametrize(
    "masks, kwargs, error, match",
    [
        ([{"a": True}], {}, TypeError, "non-empty dict"),
        ({}, {}, TypeError, "non-empty dict"),
        ({1: {"a": True}}, {}, TypeError, "string names"),
        ({"x": {"z": True}}, {}, ValueError, r"masks\['x'\]: mask: \['z'\]"),
        ({"x": {"a": True}, "y": {"b": True}}, {"gamma": 0.0}, ValueError, "expected gamma > 0"),
    ],
)
def test_bad_masks_are_rejected(problem, masks, kwargs, error, match):
    with pytest.raises(error, match=match):
        lh.sample_masks(problem["loss_fn"], problem["params"], problem["data"], masks, **kwargs)


def test_sample_points_to_sample_masks(problem):
    with pytest.raises(TypeError, match="sample_masks"):
        lh.sample(problem["loss_fn"], problem["params"], problem["data"], masks=MASKS)


def test_padding_keeps_the_run_dtype(problem):
    posterior = lh.LocalPosterior(problem["loss_fn"], problem["params"], problem["data"], mask={"a": True})
    padded = posterior.padded(4, ("['a']", "['b']"))
    assert padded.dim == 4 and padded.num_sampled == 1 and padded.w_star.dtype == float_dtype()
    assert padded.group_names == ("['a']", "['b']") and list(np.asarray(padded.group_sizes)) == [1, 0]
    with pytest.raises(ValueError, match="smaller"):
        posterior.padded(0, ("['a']",))
    with pytest.raises(ValueError, match="lacks"):
        posterior.padded(2, ("['b']",))
