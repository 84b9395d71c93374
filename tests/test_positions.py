"""``sample(..., save_positions=True)``: the sampled parameters come back as a pytree shaped like
``params`` with (chains, draws) leading axes, they are the points whose losses form the loss
trace, they follow the exact posterior, masked weights stay at w*, and they survive save/load.
Off by default (memory: chains × draws × d)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size

import lambda_hat as lh
from lambda_hat import KERNELS

A = np.array([1.0, 4.0, 9.0])  # Hessian eigenvalues of the quadratic below
N = 1000
DATA = jnp.zeros((N, 1))
PARAMS = {"w": jnp.zeros(2), "b": jnp.zeros(())}


def loss(p, batch):
    w = jnp.concatenate([p["w"], p["b"][None]])
    return 0.5 * jnp.sum(jnp.asarray(A, w.dtype) * w**2) + 0.0 * jnp.mean(batch)


def loss_at(positions):
    """L_n at every saved position, (chains, draws)."""
    return np.asarray(jax.vmap(jax.vmap(lambda w, b: loss({"w": w, "b": b}, DATA)))(positions["w"], positions["b"]))


OPTIONS = {"sgld": dict(step_size=1e-4)}


@pytest.mark.parametrize("kernel", KERNELS)
def test_positions_are_the_points_of_the_loss_trace(kernel):
    r = lh.sample(
        loss,
        PARAMS,
        DATA,
        kernel=kernel,
        key=0,
        num_chains=3,
        num_draws=40,
        save_positions=True,
        **OPTIONS.get(kernel, {}),
    )
    assert r.positions["w"].shape == (3, 40, 2) and r.positions["b"].shape == (3, 40)
    assert r.positions["w"].dtype == np.dtype(r.config["dtype"])  # the run dtype
    assert np.all(np.isfinite(r.positions["w"]))
    scale = np.max(np.abs(r.loss_trace))
    np.testing.assert_allclose(loss_at(r.positions), r.loss_trace, rtol=1e-5, atol=1e-6 * scale)
    assert np.ptp(r.positions["w"][:, :, 0]) > 0  # the chains moved


def test_positions_follow_the_exact_posterior():
    """Posterior of ½Σ a_i w_i² localized at 0: Gaussian with Var(w_i) = 1/(nβ a_i + γ). The
    sample variance of NUTS draws is within 4 of its standard errors, sqrt(2/ESS), of it."""
    r = lh.sample(loss, PARAMS, DATA, kernel="nuts", key=1, num_chains=4, num_draws=1000, save_positions=True)
    draws = np.concatenate(
        [np.asarray(r.positions["w"], np.float64), np.asarray(r.positions["b"], np.float64)[..., None]], axis=-1
    )
    exact = 1.0 / (r.nbeta * A + r.gamma)
    for i in range(3):
        ess = float(effective_sample_size(draws[..., i]))
        rel = np.var(draws[..., i]) / exact[i] - 1
        assert abs(rel) <= 4 * np.sqrt(2 / ess), (i, rel, ess)
        assert abs(np.mean(draws[..., i])) <= 4 * np.sqrt(exact[i] / ess)


def test_masked_weights_stay_at_wstar():
    w_star = {"w": jnp.array([0.3, -0.2]), "b": jnp.array(0.1)}
    r = lh.sample(
        loss,
        w_star,
        DATA,
        kernel="sgld",
        key=2,
        num_chains=2,
        num_draws=20,
        step_size=1e-4,
        mask={"w": False, "b": True},
        save_positions=True,
    )
    np.testing.assert_array_equal(r.positions["w"], np.broadcast_to(np.asarray(w_star["w"]), (2, 20, 2)))
    assert np.ptp(r.positions["b"]) > 0


def test_default_saves_none_and_draws_do_not_change():
    kw = dict(kernel="sgld", key=3, num_chains=2, num_draws=30, step_size=1e-4, batch_size=100)
    off = lh.sample(loss, PARAMS, DATA, **kw)
    on = lh.sample(loss, PARAMS, DATA, save_positions=True, **kw)
    assert off.positions is None and off.config["save_positions"] is False
    np.testing.assert_allclose(on.loss_trace, off.loss_trace, rtol=1e-5)
    assert "positions" not in on.to_dict()


def test_positions_survive_save_and_load(tmp_path):
    r = lh.sample(
        loss, PARAMS, DATA, kernel="sgld", key=4, num_chains=2, num_draws=10, step_size=1e-4, save_positions=True
    )
    back = lh.LLCResult.load(r.save(tmp_path / "run"))
    assert set(back.positions) == {"['b']", "['w']"}
    np.testing.assert_array_equal(back.positions["['w']"], r.positions["w"])
    assert lh.LLCResult.load(lh.sample(loss, PARAMS, DATA, num_draws=10).save(tmp_path / "none")).positions is None


@pytest.mark.parametrize("value", ["yes", 1, None])
def test_save_positions_must_be_a_bool(value):
    with pytest.raises(ValueError, match=r"save_positions: expected True or False"):
        lh.sample(loss, PARAMS, DATA, num_draws=10, save_positions=value)
