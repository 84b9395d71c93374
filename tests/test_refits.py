"""rank="auto": VI fits again at a larger rank while its certificate fails and improves."""

from types import SimpleNamespace

import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat.kernels import KernelOutput
from lambda_hat.kernels.vi import AUTO_RANK_MIN_GAIN, refit_rank
from lambda_hat.targets import linear_regression

AUTO = {"rank": 4, "rank_auto": True, "max_rank": 64}


def fake_output(pareto_k, wide, short, grads=100, valid=None, excess=(1.0, 1.1, 0.9, 1.0, 1.0), log_weights=None):
    """A KernelOutput with what refit_rank reads: k̂, the wide-direction counts, validity, cost,
    the evaluation draws' excess losses and their log importance weights (default: uniform)."""
    k = np.asarray(pareto_k, float)
    chains = k.size
    excess = np.tile(np.asarray(excess, float), (chains, 1))
    uniform = np.full(excess.shape, -np.log(excess.shape[1]))
    return KernelOutput(
        excess_loss=excess,
        log_weights=uniform if log_weights is None else np.tile(np.asarray(log_weights, float), (chains, 1)),
        valid=np.ones(chains, bool) if valid is None else np.asarray(valid),
        info=SimpleNamespace(wide_directions=np.full(chains, wide), rank_short=np.full(chains, short)),
        grad_evals=np.full(chains, grads),
        data_passes=np.full(chains, float(grads)),
        pareto_k=k,
    )


def test_a_fixed_rank_does_not_search():
    options, record = refit_rank({**AUTO, "rank_auto": False}, [fake_output([2.0], 9, True)], 50, [])
    assert options is None and record is None


def test_a_certified_fit_stops_the_search():
    options, record = refit_rank(AUTO, [fake_output([0.3, 0.5], 2, False)], 50, [])
    assert options is None
    assert record["outcome"] == "certified" and record["report"] == 0 and "message" not in record


def test_a_rank_short_of_the_wide_directions_is_raised_past_them():
    # 9 wide directions at rank 4: the next rank covers them (w + 2 = 11 > 2r = 8), whatever k̂ is
    options, record = refit_rank(AUTO, [fake_output([0.2, 0.4], 9, True)], 50, [])
    assert options["rank"] == 11 and record["outcome"] == "raised to 11"
    assert record["grad_evals"] == 200 and record["rank_short"] and record["wide_directions"] == 9
    # a large k̂ with every wide direction covered: the rank doubles
    options, _ = refit_rank(AUTO, [fake_output([1.5], 2, False)], 50, [])
    assert options["rank"] == 8


def test_weights_that_move_llc_far_from_q_are_not_a_certificate():
    # k̂ < 0.7 and no rank shortfall, but the weights sit on one draw whose loss is 10x the others':
    # the weighted λ̂ is far from q's raw mean (the result would warn), so the rank is raised
    excess = (1.0, 1.0, 1.0, 1.0, 10.0)
    heavy = np.log([1e-6, 1e-6, 1e-6, 1e-6, 1.0 - 4e-6])
    options, record = refit_rank(AUTO, [fake_output([0.3], 2, False, excess=excess, log_weights=heavy)], 50, [])
    assert options["rank"] == 8 and record["weights_shift"]
    # at the cap it stops, uncertified, with the message
    options, record = refit_rank(
        {**AUTO, "rank": 8, "max_rank": 8}, [fake_output([0.3], 2, False, excess=excess, log_weights=heavy)], 50, []
    )
    assert options is None and "without a certified q" in record["message"]


def test_the_search_stops_when_khat_does_not_improve_and_reports_the_best_attempt():
    first = {"rank": 4, "pareto_k_max": 1.5, "rank_short": False}
    # raising the rank made k̂ worse: stop, report the first attempt, warn
    options, record = refit_rank({**AUTO, "rank": 8}, [fake_output([1.8], 3, False)], 50, [first])
    assert options is None and record["report"] == 0
    assert record["outcome"].startswith("k̂ fell by less than")
    assert "ranks [4, 8]" in record["message"] and "λ̂ is from rank 4" in record["message"]
    assert "MCMC" in record["message"]
    # better, but by less than the minimum gain: stop, report the second
    k = 1.5 - AUTO_RANK_MIN_GAIN / 2
    options, record = refit_rank({**AUTO, "rank": 8}, [fake_output([k], 3, False)], 50, [first])
    assert options is None and record["report"] == 1
    # still short of rank: the search goes on to cover the wide directions, whatever k̂ did
    options, record = refit_rank({**AUTO, "rank": 8}, [fake_output([1.45], 12, True)], 50, [first])
    assert options["rank"] == 16 and record["outcome"] == "raised to 16"
    # short of rank with a certified k̂: raised whatever the gain (the covering is what is missing)
    options, record = refit_rank({**AUTO, "rank": 8}, [fake_output([0.3], 12, True)], 50, [first])
    assert options["rank"] == 16
    # better by more than the gain: go on
    options, record = refit_rank({**AUTO, "rank": 8}, [fake_output([1.0], 3, False)], 50, [first])
    assert options["rank"] == 16


def test_the_search_stops_at_max_rank_and_at_d():
    options, record = refit_rank({**AUTO, "rank": 8, "max_rank": 8}, [fake_output([1.2], 3, False)], 50, [])
    assert options is None and record["outcome"] == "rank reached max_rank = 8"
    assert "Raise max_rank" in record["message"]
    options, record = refit_rank(AUTO, [fake_output([1.2], 3, False)], 6, [])  # d = 6: the cap
    assert options["rank"] == 6
    options, record = refit_rank({**AUTO, "rank": 6}, [fake_output([1.0], 3, False)], 6, [])
    assert options is None and record["outcome"] == "rank reached d = 6"
    assert "full covariance" in record["message"] and "max_rank" not in record["message"]


def test_an_attempt_that_lost_every_fit_is_not_reported_over_a_valid_one():
    first = {"rank": 4, "pareto_k_max": 1.5, "rank_short": False}
    options, record = refit_rank({**AUTO, "rank": 8}, [fake_output([1.0], 3, False, valid=[False])], 50, [first])
    assert options is None and record["outcome"] == "no valid fit" and record["report"] == 0
    assert "lost to non-finite values" in record["message"]


def test_the_decision_covers_every_posterior_and_skips_invalid_fits():
    # two checkpoints: the second's fit is short of rank, so both are fitted again
    outputs = [fake_output([0.2], 1, False), fake_output([0.3], 7, True)]
    options, _ = refit_rank(AUTO, outputs, 50, [])
    assert options["rank"] == 9
    # an invalid fit's k̂ does not count
    options, record = refit_rank(AUTO, [fake_output([0.2, 5.0], 1, False, valid=[True, False])], 50, [])
    assert options is None and record["outcome"] == "certified"


def test_auto_rank_raises_the_rank_past_the_flat_directions_and_certifies(capsys):
    """The rotated rank-5 design in d = 12 has 7 flat directions (a fixed rank 4 warns: see
    test_vi_kernel.py). rank="auto" fits at 4, sees the directions it cannot cover, fits again at
    a rank that covers them, and reports a certified λ̂ with the cost of both fits."""
    t = linear_regression(d=12, rank=5, seed=0)
    r = lh.sample(t.loss_fn, t.params, t.data, kernel="vi", key=0, num_chains=2, num_draws=500, progress=True)
    assert "raised to" in capsys.readouterr().err  # the progress display says why it fits again
    refits = r.diagnostics["refits"]
    assert refits[0]["rank"] == 4 and refits[0]["rank_short"], refits
    assert refits[-1]["outcome"] == "certified" and r.config["rank"] == refits[-1]["rank"] >= 7, refits
    assert not any("set rank" in w for w in r.warnings), r.warnings
    assert r.grad_evals == sum(x["grad_evals"] for x in refits)
    assert np.max(r.diagnostics["pareto_k"]) < 0.7 and r.diagnostics["llc_source"] == "importance-weighted"
    exact = t.expected_llc(r.nbeta, r.gamma)
    assert abs(r.llc - exact) <= max(0.05 * exact, 3 * r.llc_se), (r.llc, r.llc_se, exact)
    assert "rank search: rank 4" in r.summary()


def test_auto_rank_searches_once_for_all_checkpoints():
    t = linear_regression(d=10, rank=4, seed=2)  # 6 flat directions
    results = lh.sample_checkpoints(
        t.loss_fn, [t.params, t.params], t.data, kernel="vi", key=0, num_chains=2, num_draws=300
    )
    ranks = {r.config["rank"] for r in results}
    assert len(ranks) == 1 and ranks.pop() >= 6
    assert all(r.diagnostics["refits"][0]["rank"] == 4 for r in results)


@pytest.mark.parametrize("options, match", [({"rank": "full"}, "rank: expected 'auto'"), ({"max_rank": 0}, "max_rank")])
def test_bad_rank_options(options, match):
    t = linear_regression(d=3, seed=0)
    with pytest.raises(ValueError, match=match):
        lh.sample(t.loss_fn, t.params, t.data, kernel="vi", **options)


def test_host_only_options_stay_out_of_the_compiled_program():
    """max_rank and rank_auto are read by the search on the host: a change does not recompile,
    and both are still recorded in the config."""
    t = linear_regression(d=3, seed=0)
    common = dict(kernel="vi", key=0, rank=2, num_chains=2, num_draws=100, num_warmup=200)
    first = lh.sample(t.loss_fn, t.params, t.data, max_rank=8, **common)
    again = lh.sample(t.loss_fn, t.params, t.data, max_rank=16, **common)
    assert again.timings["compile_s"] == 0.0
    assert (first.config["max_rank"], again.config["max_rank"]) == (8, 16)
    assert again.config["rank_auto"] is False
    assert lh.kernels.get_kernel("vi").host_options == {"rank_auto", "max_rank"}
