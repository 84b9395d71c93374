"""Determinism, for every kernel, in the precision the suite runs in (tox: x32 and x64).

1. The same key (as an int seed or a typed key) gives bit-identical LLCResult numbers: λ̂, its
   MCSE, the λ̂ and loss traces, per-chain values, ESS and R-hat. Another key gives other draws.
2. Chain c uses fold_in(key, c), so a run with more chains starts its first chains from the same
   random numbers. Their draws are bit-identical in float64. In float32 they are bit-identical
   for the SG kernels (SGLD, RMSProp-SGLD, Adam-SGLD) here, but not in general: XLA:CPU
   evaluates float32 exp/log with vectorized code whose last-bit rounding depends on the array
   length (the number of chains batched together), and the adaptive kernels (HMC/NUTS window
   adaptation, MCLMC tuning) and VI's optimisation amplify one ulp into different, equally valid,
   draws. Measured: float32 HMC/NUTS/VI differ on this problem, MCLMC matched here but not on
   pure_potential(d=5). So in float32 the check runs for the SG kernels only (docs/api.md,
   docs/kernels.md "Keys, chains and devices").

Tiny problem, few draws: the cost is compilation (one program per chain count).
"""

import warnings

import jax
import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat.targets import linear_regression

X64 = bool(jax.config.jax_enable_x64)
RUNS = {
    "sgld": dict(step_size=1e-3, batch_size=10),
    "rmsprop_sgld": dict(step_size=1e-3, batch_size=10),
    "adam_sgld": dict(step_size=1e-3, batch_size=10),
    "hmc": dict(num_warmup=30, num_integration_steps=4),
    "nuts": dict(num_warmup=30, max_num_doublings=4),
    "mclmc": dict(num_warmup=20),
    "vi": dict(num_warmup=50, num_components=2, rank=1, num_probes=2),
}
PREFIX_BIT_EXACT_IN_X32 = {"sgld", "rmsprop_sgld", "adam_sgld"}


@pytest.fixture(scope="module")
def target():
    return linear_regression(d=3, n=50, seed=0)


def _sample(target, kernel, key, num_chains):
    kw = dict(num_draws=20, num_warmup=10) | RUNS[kernel]
    with warnings.catch_warnings():  # short runs warn about R-hat; not under test here
        warnings.simplefilter("ignore", lh.LLCWarning)
        return lh.sample(target.loss_fn, target.params, target.data, kernel=kernel, key=key,
                         num_chains=num_chains, **kw)


@pytest.mark.parametrize("kernel", sorted(RUNS))
def test_same_key_gives_bit_identical_results(target, kernel):
    a = _sample(target, kernel, 3, 2)
    b = _sample(target, kernel, jax.random.key(3), 2)  # the same key, typed
    assert a.timings["compile_s"] >= 0 and b.timings["compile_s"] == 0.0  # one program
    assert a.llc == b.llc and a.llc_se == b.llc_se
    for name in ("llc_trace", "loss_trace", "llc_per_chain", "valid_chains"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    for name in ("ess", "rhat"):
        np.testing.assert_array_equal(a.diagnostics[name], b.diagnostics[name], err_msg=name)
    assert a.grad_evals == b.grad_evals
    c = _sample(target, kernel, 4, 2)
    assert not np.array_equal(c.llc_trace, a.llc_trace)
    assert not np.array_equal(a.llc_trace[0], a.llc_trace[1])  # chains differ from each other


@pytest.mark.parametrize("kernel", sorted(RUNS))
def test_adding_chains_keeps_existing_chains(target, kernel):
    if not X64 and kernel not in PREFIX_BIT_EXACT_IN_X32:
        pytest.skip("float32: XLA:CPU's vectorized exp/log round differently for other chain counts "
                    "(see the module docstring); bit-exact in float64")
    two = _sample(target, kernel, 3, 2)
    three = _sample(target, kernel, 3, 3)
    np.testing.assert_array_equal(three.llc_trace[:2], two.llc_trace)
    np.testing.assert_array_equal(three.loss_trace[:2], two.loss_trace)
