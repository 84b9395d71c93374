"""The virial self-check E_p[v_i·∂_iU] = 1 in every result (Stein's identity for p ∝ exp(−U)).

Exact kernels are checked against it in test_full_batch_kernels.py and
test_ground_truth_sampling.py; here: the group bookkeeping, SGLD's step-size bias, and agreement
with a ratio computed independently from the saved positions.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat.diagnostics import virial_failures, virial_statistics
from lambda_hat.posterior import LocalPosterior
from lambda_hat.targets import pure_potential


def test_a_ratio_below_one_asks_for_a_longer_warmup_not_a_smaller_step():
    """Chains start at w*; with no warmup and a tiny ε they have not spread to the posterior's
    width, so the ratio is below 1 and the advice is the warmup (a smaller step would make it
    worse)."""
    t = pure_potential(d=4, spectrum=(1.0, 2.0), seed=0)
    with pytest.warns(lh.LLCWarning, match=r"virial self-check failed") as caught:
        r = lh.sample(t.loss_fn, t.params, t.data, kernel="sgld", key=0, step_size=1e-6, num_warmup=0, num_draws=400)
    assert r.diagnostics["virial"]["ratio"] < 0.9
    message = next(str(w.message) for w in caught if "virial self-check failed" in str(w.message))
    assert "narrower than the posterior" in message and "num_warmup" in message
    assert "smaller step_size" not in message and "already corrected" not in message


def test_sgld_step_size_bias_warns_and_matches_the_saved_positions():
    """Curvatures up to nβ·30: at the default ε = 1e-4 SGLD reads ≈ +7% high. The virial ratio sees
    it (1/(1 − εκ/4) per direction), and equals the one recomputed from the positions."""
    t = pure_potential(d=10, spectrum=(1.0, 30.0), seed=1)
    with pytest.warns(lh.LLCWarning, match=r"virial self-check failed for sgld: .*smaller step_size"):
        # uncorrected, so that llc is the draws' own mean (the step-size correction is tested in
        # test_step_size_bias.py)
        r = lh.sample(
            t.loss_fn, t.params, t.data, kernel="sgld", key=0, save_positions=True, step_size_correction=False
        )
    exact = t.expected_llc(r.nbeta, r.gamma)
    virial = r.diagnostics["virial"]
    assert virial["ratio"] - 1 > max(0.02, 3 * virial["se"])
    assert r.llc > exact  # the bias the ratio reports is real

    post = LocalPosterior(t.loss_fn, t.params, t.data)
    flat = jnp.asarray(r.positions).reshape(-1, post.dim)
    grads = jax.vmap(post.potential_grad)(flat)
    independent = float(jnp.mean(jnp.sum((flat - post.w_star) * grads, axis=1)) / post.dim)
    assert abs(independent - virial["ratio"]) <= 0.01, (independent, virial["ratio"])


def test_groups_are_parameter_leaves_and_masks_drop_unsampled_ones():
    params = {"a": jnp.zeros((2, 3)), "b": jnp.zeros(4), "c": jnp.zeros(())}

    def loss(p, batch):
        return 0.5 * sum(jnp.sum(x**2) for x in jax.tree.leaves(p)) + 0.0 * jnp.sum(batch)

    data = jnp.zeros((10, 1))
    post = LocalPosterior(loss, params, data)
    assert post.group_names == ("['a']", "['b']", "['c']")
    assert np.asarray(post.group_sizes).tolist() == [6, 4, 1]
    masked = LocalPosterior(loss, params, data, mask={"a": True, "b": False, "c": True})
    assert masked.group_names == ("['a']", "['c']")
    assert np.asarray(masked.group_sizes).tolist() == [6, 1]
    # v_i ∂_iU at v = 1: ∂U = (nβ + γ)·v, so each group mean is nβ + γ
    w = masked.w_star + 1.0
    terms = masked.virial_terms(w, masked.potential_grad(w))
    np.testing.assert_allclose(terms, float(masked.nbeta + masked.gamma), rtol=1e-5)


def test_virial_statistics_known_values():
    rng = np.random.default_rng(0)
    trace = 1.0 + 0.1 * rng.standard_normal((4, 2000, 2))
    trace[..., 1] += 0.2  # one biased group
    v = virial_statistics(trace, np.array([3, 1]), ("w", "b"))
    assert abs(v["groups"]["w"]["ratio"] - 1) < 0.01 and abs(v["groups"]["b"]["ratio"] - 1.2) < 0.01
    assert abs(v["ratio"] - 1.05) < 0.01  # size-weighted: (3·1 + 1·1.2)/4
    assert v["worst_group"] == "b"
    assert np.isclose(v["groups"]["w"]["se"], 0.1 / np.sqrt(8000), rtol=0.2)
    failed = [name for name, _, _ in virial_failures(v)]
    assert failed == ["overall", "b"]
