"""calibrate(): the ε × nβ sweep gives the exact λ̂ per nβ at small ε, acceptance falls with ε,
and a diverging cell is flagged; the MALA acceptance diagnostic of sample(kernel="sgld")."""

import warnings

import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat.targets import linear_regression


@pytest.fixture(scope="module")
def target():
    return linear_regression(d=4, seed=5)


def test_calibration_sweep(target):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        cal = lh.calibrate(target.loss_fn, target.params, target.data, step_sizes=[2e-4, 1e-3, 3e-2],
                           nbetas=[30.0, 144.8], num_chains=4, num_draws=3000, num_warmup=1000, key=1)
    assert cal.llc.shape == (3, 2)
    for j, nb in enumerate(cal.nbetas):
        exact = target.expected_llc(nb, 1.0)
        # ε = 2e-4: step-size bias ≈ hκ_max/4 < 2% (κ_max = nβ·a_max + γ ≈ 330); 3 MCSE + 3%
        assert abs(cal.llc[0, j] - exact) <= 3 * cal.llc_se[0, j] + 0.03 * exact, (nb, cal.llc[0, j], exact)
        assert cal.acceptance[0, j] > cal.acceptance[1, j] > 0.5
    assert not cal.stable[2, 1]  # hκ ≫ 2: diverges
    assert cal.recommended()[144.8] in (2e-4, 1e-3)
    assert "accept" in cal.table()


def test_mala_acceptance_diagnostic(target):
    kw = dict(key=0, num_chains=2, num_draws=500, num_warmup=100, mala_acceptance=True)
    small = lh.sample(target.loss_fn, target.params, target.data, step_size=1e-5, **kw)
    large = lh.sample(target.loss_fn, target.params, target.data, step_size=2e-3, **kw)
    acc_small, acc_large = small.diagnostics["mala_acceptance"], large.diagnostics["mala_acceptance"]
    assert acc_small.shape == (2,)
    assert np.all(acc_small > 0.99) and np.all(acc_large < acc_small) and np.all(acc_large > 0)
    assert small.grad_evals == 2 * (100 + 2 * 500)  # one extra gradient per kept draw, counted
