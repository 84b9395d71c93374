"""The basin-exit check (chains moving away from w*) and observables (data-refined LLCs).

Oracles: on linear regression the localized posterior is Gaussian, N(w* + μ, P⁻¹) with
P = nβH + γI and μ = −nβP⁻¹∇L_n(w*), so the data-refined λ̂ on any dataset k with loss
L_k(w* + v) − L_k(w*) = g_kᵀv + ½vᵀH_kv has the exact expectation
nβ·(g_kᵀμ + ½(tr(H_kP⁻¹) + μᵀH_kμ)). The basin check is tested on a trained classifier whose
cross-entropy keeps falling as the weights grow (the chains drift outward at γ = 1 and stay put
at γ = 100), and on traces built to drift or not.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import lambda_hat as lh
from lambda_hat.diagnostics import basin_message, basin_statistics
from lambda_hat.flat import float_dtype


def _mse(w, batch):
    x, y = batch
    return 0.5 * jnp.mean((y - x @ w) ** 2)


def _regression_data(rng, n, scales, w0, noise=0.5, x_scale=1.0):
    x = rng.standard_normal((n, len(scales))) * scales
    return x_scale * x, x @ w0 + noise * rng.standard_normal(n)


@pytest.fixture(scope="module")
def regression():
    rng = np.random.default_rng(3)
    scales, w0 = np.array([0.6, 1.0, 1.4, 2.0]), rng.standard_normal(4)
    dtype = float_dtype()
    cast = lambda a: np.asarray(jnp.asarray(a, dtype), np.float64)  # noqa: E731  (the data as sampled)
    x, y = (cast(a) for a in _regression_data(rng, 1000, scales, w0))
    w_star = cast(np.linalg.lstsq(x, y, rcond=None)[0])
    same = tuple(cast(a) for a in _regression_data(rng, 50_000, scales, w0))
    shifted = tuple(cast(a) for a in _regression_data(rng, 50_000, scales, w0, x_scale=2.0))
    return {"data": (x, y), "w_star": w_star, "same": same, "shifted": shifted}


def _exact_refined_llc(reg, dataset, nbeta, gamma):
    """nβ·E_p[L_k(w) − L_k(w*)] under the Gaussian localized posterior of the sampling data."""
    (x, y), w = reg["data"], reg["w_star"]
    h, g = x.T @ x / len(y), x.T @ (x @ w - y) / len(y)
    cov = np.linalg.inv(nbeta * h + gamma * np.eye(len(w)))
    mu = -nbeta * cov @ g
    xk, yk = dataset
    hk, gk = xk.T @ xk / len(yk), xk.T @ (xk @ w - yk) / len(yk)
    return nbeta * (gk @ mu + 0.5 * (np.trace(hk @ cov) + mu @ hk @ mu))


def _sample(reg, kernel, **kwargs):
    observables = {"train": reg["data"], "same": reg["same"], "shifted": reg["shifted"]}
    return lh.sample(_mse, reg["w_star"], reg["data"], kernel=kernel, key=0, observables=observables, **kwargs)


@pytest.fixture(scope="module")
def nuts_run(regression):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = _sample(regression, "nuts")
    return result, [str(w.message) for w in caught]


def test_data_refined_llc_matches_the_exact_gaussian_value(regression, nuts_run):
    r, _ = nuts_run
    obs = r.diagnostics["observables"]
    assert set(obs) == {"train", "same", "shifted"}
    for name in ("same", "shifted"):
        exact = _exact_refined_llc(regression, regression[name], r.nbeta, r.gamma)
        assert abs(obs[name]["llc"] - exact) <= 4 * obs[name]["llc_se"], (name, obs[name], exact)
        assert obs[name]["llc_se"] > 0 and obs[name]["ess"] > 100
    exact_train = _exact_refined_llc(regression, regression["data"], r.nbeta, r.gamma)
    exact_same = _exact_refined_llc(regression, regression["same"], r.nbeta, r.gamma)
    exact_shifted = _exact_refined_llc(regression, regression["shifted"], r.nbeta, r.gamma)
    # same distribution: agrees with the sampling λ̂ within the errors plus the exact finite-sample gap
    gap = abs(exact_same - exact_train)
    assert gap < 0.05 * exact_train
    assert abs(obs["same"]["llc"] - r.llc) <= 4 * np.hypot(r.llc_se, obs["same"]["llc_se"]) + gap
    # another distribution (inputs scaled by 2): H_k = 4H, so about 4 times larger, as predicted
    assert 3.5 < exact_shifted / exact_train < 4.5
    assert abs(obs["shifted"]["llc"] - r.llc) > 4 * np.hypot(r.llc_se, obs["shifted"]["llc_se"])


def test_an_observable_on_the_sampling_data_reproduces_the_llc_trace(nuts_run):
    r, _ = nuts_run
    train = r.diagnostics["observables"]["train"]
    tol = 1e-9 if float_dtype() == jnp.float64 else 2e-5
    assert train["llc"] == pytest.approx(r.llc, rel=tol, abs=tol)
    assert train["loss_at_wstar"] == pytest.approx(r.loss_at_wstar, rel=tol)
    loss = np.asarray(r.loss_trace)
    within_chain_variance = np.mean(np.var(loss, axis=1))
    assert train["loss_covariance"] == pytest.approx(within_chain_variance, rel=1e-3)


def test_a_gaussian_posterior_stays_in_its_basin(nuts_run):
    r, caught = nuts_run
    basin = r.diagnostics["basin"]
    assert not any("leaving w*'s basin" in m for m in caught + r.warnings)
    assert abs(basin["distance_z"]) < 4 and abs(basin["distance_growth"]) < 0.1
    assert basin["localizer_scale"] == pytest.approx(1 / np.sqrt(r.gamma))
    assert 0 < basin["localizer_share"] < 0.05  # the loss, not the localizer, holds these chains
    text = r.summary()
    assert "distance from w*" in text and "observable 'shifted'" in text


def test_importance_weighted_vi_gives_exact_data_refined_llcs(regression):
    r = _sample(regression, "vi")
    assert r.diagnostics["llc_source"] == "importance-weighted"
    obs = r.diagnostics["observables"]
    for name in ("same", "shifted"):
        exact = _exact_refined_llc(regression, regression[name], r.nbeta, r.gamma)
        assert abs(obs[name]["llc"] - exact) <= 4 * obs[name]["llc_se"], (name, obs[name], exact)
        assert "ess_per_chain" in obs[name]


def test_checkpoint_observables_equal_separate_calls(regression):
    observables = {"same": regression["same"]}
    checkpoints = [regression["w_star"], regression["w_star"] + 0.01]
    kwargs = dict(batch_size=100, num_draws=1000, num_warmup=200, warn_stationarity=False)
    runs = lh.sample_checkpoints(_mse, checkpoints, regression["data"], observables=observables, **kwargs)
    llc, se = runs.observable("same")
    assert llc.shape == se.shape == (2,)
    for k, w in enumerate(checkpoints):
        key = jax.random.fold_in(jax.random.key(0), k)
        one = lh.sample(_mse, w, regression["data"], key=key, observables=observables, **kwargs)
        assert one.llc == runs.llc[k]  # SGLD: bit-identical draws ...
        # ... but the observable's 50,000-term mean is reduced in another order in the program
        # vectorised over checkpoints: equal up to the run dtype's rounding of that sum
        rel = 1e-9 if float_dtype() == jnp.float64 else 1e-4
        assert one.diagnostics["observables"]["same"]["llc"] == pytest.approx(llc[k], rel=rel)
    with pytest.raises(KeyError, match="not recorded"):
        runs.observable("test")
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    labels = [t.get_text() for t in runs.plot().axes[0].get_legend().get_texts()]
    assert labels == ["λ̂ ± 2 MCSE", "λ̂ on 'same' ± 2 MCSE"]


@pytest.mark.parametrize(
    "observables, error, match",
    [
        ([1, 2], TypeError, "expected a non-empty dict"),
        ({}, TypeError, "expected a non-empty dict"),
        ({3: "x"}, TypeError, "expected string names"),
        ({"x": np.zeros((5, 4))}, ValueError, "pytree structure of data"),
        ({"x": (np.zeros((5, 3)), np.zeros(5))}, ValueError, "same shape after the leading"),
        ({"x": (np.zeros((5, 4)), np.zeros(4))}, ValueError, "same leading length"),
        ({"x": (np.full((5, 4), np.nan), np.zeros(5))}, ValueError, r"observables\['x'\]: leaf .* NaN"),
    ],
)
def test_bad_observables_are_rejected(regression, observables, error, match):
    with pytest.raises(error, match=match):
        lh.sample(_mse, regression["w_star"], regression["data"], observables=observables)


def _trained_classifier():
    """A 8→16→3 tanh classifier trained to near-zero cross-entropy on separable data: the loss keeps
    decreasing as the output weights grow, so w*'s basin has no edge at the scale 1/√γ = 1."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    y = np.argmax(x @ rng.standard_normal((8, 3)), axis=1).astype(np.int32)

    def loss_fn(p, batch):
        inputs, labels = batch
        logits = jnp.tanh(inputs @ p["w1"] + p["b1"]) @ p["w2"] + p["b2"]
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()

    k1, k2 = jax.random.split(jax.random.key(0))
    params = {
        "w1": jax.random.normal(k1, (8, 16)) / 3,
        "b1": jnp.zeros(16),
        "w2": jax.random.normal(k2, (16, 3)) / 4,
        "b2": jnp.zeros(3),
    }
    opt = optax.adam(1e-2)
    grad = jax.jit(jax.grad(loss_fn))

    def step(carry, _):
        p, s = carry
        updates, s = opt.update(grad(p, (x, y)), s, p)
        return (optax.apply_updates(p, updates), s), None

    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), length=1500)
    return loss_fn, params, (x, y)


@pytest.mark.parametrize("gamma, leaves", [(1.0, True), (100.0, False)])
def test_basin_exit_warning_on_a_classifier_fires_at_small_gamma_only(gamma, leaves):
    loss_fn, params, data = _trained_classifier()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        r = lh.sample(loss_fn, params, data, gamma=gamma, key=0)
    messages = [str(w.message) for w in caught if "leaving w*'s basin" in str(w.message)]
    basin = r.diagnostics["basin"]
    if leaves:
        assert len(messages) == 1 and f"gamma={10 * gamma:g}" in messages[0] and "calibrate" in messages[0]
        assert basin["distance_growth"] > 0.5 and basin["distance_z"] > 4
    else:
        assert not messages, messages
        assert abs(basin["distance_growth"]) < 0.1
        assert basin["rms_distance"] == pytest.approx(basin["localizer_scale"], rel=0.1)


def test_basin_statistics_on_built_traces():
    rng = np.random.default_rng(0)
    steady = 2.0 + 0.2 * rng.standard_normal((4, 600)) ** 2
    drifting = steady * np.linspace(1.0, 2.0, 600)
    llc = rng.standard_normal((4, 600))
    quiet = basin_statistics(steady, llc, dim=4, gamma=1.0)
    assert abs(quiet["distance_growth"]) < 0.05 and basin_message(quiet, 1.0) is None
    assert quiet["rms_distance"] == pytest.approx(np.sqrt(steady.mean() / 4))
    assert quiet["localizer_share"] == pytest.approx(steady.mean() / 4)
    loud = basin_statistics(drifting, llc, dim=4, gamma=1.0)
    assert loud["distance_growth"] > 0.5 and loud["distance_z"] > 4
    assert "gamma=10" in basin_message(loud, 1.0)
    at_zero = basin_statistics(drifting, llc, dim=4, gamma=0.0)
    assert at_zero["localizer_scale"] == np.inf and at_zero["localizer_share"] == 0
    assert "gamma > 0" in basin_message(at_zero, 0.0)
    short = basin_statistics(drifting[:, :10], llc[:, :10], dim=4, gamma=1.0)
    assert np.isnan(short["distance_growth"]) and basin_message(short, 1.0) is None


def test_non_finite_diagnostics_survive_save_and_load(tmp_path, regression):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r = lh.sample(_mse, regression["w_star"], regression["data"], gamma=0.0, num_draws=8, num_warmup=10)
    assert r.diagnostics["basin"]["localizer_scale"] == np.inf and np.isnan(r.diagnostics["basin"]["distance_z"])
    r.save(tmp_path / "run")
    back = lh.LLCResult.load(tmp_path / "run")
    assert back.diagnostics["basin"]["localizer_scale"] == np.inf
    assert np.isnan(back.diagnostics["basin"]["distance_z"])
    assert back.summary() == r.summary()
