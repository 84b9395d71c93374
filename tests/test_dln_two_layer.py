"""The two-layer DLN oracle (one layer integrated out, the other sampled): against the exact origin
value, the two choices of layer against each other and against the library's own NUTS on the full
posterior, and its input checks.

The second test also pins down what the oracle is for: at γ = 1 a regular teacher's E[λ̂] can sit
well below its local λ = rank D/2, and an equilibrated sampler of the full posterior agrees with
the oracle, not with rank D/2.
"""

import dataclasses
import math
import warnings

import pytest

import lambda_hat as lh
from lambda_hat.targets import deep_linear_network, dln_two_layer_expected_llc


@pytest.mark.xla_optimized
def test_matches_the_exact_origin_value():
    # at w* = 0 the W_2 integral is the one dln_origin_expected_llc does by quadrature
    target = deep_linear_network((3, 2, 1), rank=0, n=1000, at_origin=True, seed=0)
    nbeta = 1000 / math.log(1000)
    exact = target.expected_llc_fn(nbeta, 1.0)
    oracle = dln_two_layer_expected_llc(target, gamma=1.0, num_warmup=400, num_samples=800, seed=1)
    assert oracle.rhat < 1.05
    assert abs(oracle.mean - exact) <= 4 * oracle.se, (oracle.mean, oracle.se, exact)


@pytest.mark.xla_optimized
def test_full_posterior_nuts_agrees_and_rank_over_two_does_not():
    # a rank-1 teacher of a (4, 3, 2) network: constant-rank, local λ = rank D/2 = 4
    target = deep_linear_network((4, 3, 2), rank=1, n=1000, seed=1)
    assert float(target.info["local_lam"]) == 4.0
    oracle = dln_two_layer_expected_llc(target, gamma=1.0, num_warmup=400, num_samples=800, seed=2, integrate="first")
    other = dln_two_layer_expected_llc(target, gamma=1.0, num_warmup=400, num_samples=800, seed=3, integrate="second")
    # integrating out either layer is the same integral (measured 3.489 ± 0.024 and 3.488 ± 0.018)
    assert abs(oracle.mean - other.mean) <= 4 * math.hypot(oracle.se, other.se), (oracle, other)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", lh.LLCWarning)  # a few divergent transitions are reported
        result = lh.sample(
            target.loss_fn, target.params, target.data, kernel="nuts", gamma=1.0,
            num_chains=4, num_warmup=400, num_draws=800, key=0, progress=False,
        )  # fmt: skip
    joint_se = math.hypot(oracle.se, result.llc_se)
    assert abs(result.llc - oracle.mean) <= 4 * joint_se, (result.llc, result.llc_se, oracle.mean, oracle.se)
    # measured E[λ̂] ≈ 3.48 ± 0.02: 13% below the local λ, far outside the Monte Carlo error
    assert oracle.mean < 4.0 - 10 * oracle.se
    assert oracle.at_wstar == pytest.approx(4.0, rel=0.02)  # pinned at W_2*, the Laplace value


def test_bad_inputs():
    two = deep_linear_network((3, 2, 1), rank=1, n=100, seed=0)
    three = deep_linear_network((2, 2, 2, 1), rank=1, n=100, seed=0)
    with pytest.raises(ValueError, match="two-layer"):
        dln_two_layer_expected_llc(three)
    with pytest.raises(ValueError, match="gamma"):
        dln_two_layer_expected_llc(two, gamma=0.0)
    with pytest.raises(ValueError, match="nbeta"):
        dln_two_layer_expected_llc(two, nbeta=-1.0)
    with pytest.raises(ValueError, match="integrate"):
        dln_two_layer_expected_llc(two, integrate="both")
    with pytest.raises(ValueError, match="num_chains"):
        dln_two_layer_expected_llc(two, num_chains=1)
    noisy = dataclasses.replace(two, data=(two.data[0], two.data[1] + 1.0))
    with pytest.raises(ValueError, match="noiseless"):
        dln_two_layer_expected_llc(noisy)


def test_warns_when_the_chains_have_not_converged():
    target = deep_linear_network((3, 2, 1), rank=1, n=100, seed=0)
    with pytest.warns(lh.LLCWarning, match="not converged"):
        oracle = dln_two_layer_expected_llc(target, num_warmup=5, num_samples=10)
    assert oracle.ess < 100 or oracle.rhat > 1.01
