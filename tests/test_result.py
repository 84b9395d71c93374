"""LLCResult: summary, to_dict JSON-safety, save/load round trip, plot, ArviZ export."""

import json
import warnings

import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat.targets import linear_regression


@pytest.fixture(scope="module")
def result():
    t = linear_regression(d=3, seed=0)
    return lh.sample(t.loss_fn, t.params, t.data, key=0, num_chains=2, num_draws=300, num_warmup=50, step_size=1e-4)


def test_summary_and_dict(result):
    text = result.summary()
    assert "λ̂ =" in text and "ESS" in text and "compile" in text
    doc = json.loads(json.dumps(result.to_dict()))
    assert doc["kernel"] == "sgld" and np.isclose(doc["llc"], result.llc)
    assert np.asarray(doc["loss_trace"]).shape == (2, 300)
    for key in ("num_chains", "num_draws", "num_warmup", "step_size", "nbeta", "gamma", "dtype"):
        assert key in doc["config"]


def test_save_load_round_trip(result, tmp_path):
    path = result.save(tmp_path / "run")
    assert path.exists() and (tmp_path / "run.npz").exists()
    back = lh.LLCResult.load(tmp_path / "run")
    for name in ("llc", "llc_se", "loss_at_wstar", "nbeta", "gamma", "kernel", "grad_evals", "config"):
        assert getattr(back, name) == getattr(result, name), name
    np.testing.assert_array_equal(back.loss_trace, result.loss_trace)
    np.testing.assert_array_equal(back.llc_trace, result.llc_trace)
    np.testing.assert_array_equal(back.valid_chains, result.valid_chains)
    assert back.summary() == result.summary()


def test_save_keeps_dots_in_the_name(result, tmp_path):
    """run_beta0.5 and run_beta0.7 are two results, not one file run_beta0.json written twice."""
    for name in ("run_beta0.5", "run_beta0.7"):
        assert result.save(tmp_path / name) == tmp_path / f"{name}.json"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "run_beta0.5.json", "run_beta0.5.npz", "run_beta0.7.json", "run_beta0.7.npz",
    ]  # fmt: skip
    back = lh.LLCResult.load(tmp_path / "run_beta0.5")
    assert back.llc == result.llc and lh.LLCResult.load(tmp_path / "run_beta0.7.json").llc == result.llc


def test_plot(result, tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    fig = result.plot(tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 1000
    assert len(fig.axes) == 3
    labels = [t.get_text() for t in fig.legends[0].get_texts()]  # one legend, below the panels
    assert "L_n(w*)" in labels and "λ̂ ± 2 MCSE" in labels and "chain 1" in labels
    loss_lines = fig.axes[0].get_lines()  # per chain a faint raw trace and its moving average
    assert loss_lines[0].get_color() == loss_lines[1].get_color() != loss_lines[2].get_color()


def test_vi_plot_has_an_elbo_panel(tmp_path):
    pytest.importorskip("matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    t = lh.targets.linear_regression(d=3, seed=0)
    r = lh.sample(t.loss_fn, t.params, t.data, kernel="vi", num_chains=2, num_draws=200)
    fig = r.plot(tmp_path / "vi.png")
    assert len(fig.axes) == 4 and "ELBO" in fig.axes[3].get_title()
    assert len(fig.axes[3].get_lines()) == 2  # one ELBO curve per fit


def test_to_arviz(result):
    az = pytest.importorskip("arviz")
    idata = result.to_arviz()
    assert idata.posterior["llc"].shape == (2, 300)
    np.testing.assert_allclose(float(idata.posterior["llc"].mean()), result.llc, rtol=1e-12)
    np.testing.assert_array_equal(idata.posterior["loss"].values, result.loss_trace)
    assert float(az.ess(idata, var_names=["llc"])["llc"]) > 0


def test_progress_is_shown_when_asked_and_quiet_otherwise(capfd):
    t = linear_regression(d=3, seed=0)
    kw = dict(key=0, num_chains=2, num_draws=100, num_warmup=20, step_size=1e-4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lh.sample(t.loss_fn, t.params, t.data, **kw)
    assert "[lambda_hat]" not in capfd.readouterr().err
    lh.sample(t.loss_fn, t.params, t.data, progress=True, **kw)
    import jax

    jax.effects_barrier()
    err = capfd.readouterr().err
    assert "compiling" in err and "sampled in" in err
    bar = [
        line for line in err.replace("\r", "\n").splitlines() if line.startswith("[lambda_hat] sgld:") and "%|" in line
    ]
    assert bar and "120/120" in bar[-1] and "step/s" in bar[-1]  # a tqdm bar: steps done, rate, time
    assert "nan" not in err


@pytest.mark.parametrize("kernel, label, total", [("nuts", "nuts draws", 30), ("vi", "vi optimisation", 400)])
def test_every_kernel_shows_a_progress_bar(capfd, kernel, label, total):
    t = linear_regression(d=3, seed=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lh.sample(
            t.loss_fn,
            t.params,
            t.data,
            kernel=kernel,
            key=0,
            num_chains=2,
            num_draws=30,
            num_warmup=400 if kernel == "vi" else 50,
            progress=True,
        )
    err = capfd.readouterr().err.replace("\r", "\n")
    bars = [line for line in err.splitlines() if line.startswith(f"[lambda_hat] {label}") and "%|" in line]
    assert bars, err
    assert f"/{total} [" in bars[-1] and "step/s" in bars[-1]
    if kernel == "nuts":  # the warmup (BlackJAX's window adaptation) has its own bar first
        warm = [line for line in err.splitlines() if line.startswith("[lambda_hat] nuts warmup") and "%|" in line]
        assert warm and "50/50 [" in warm[-1]
