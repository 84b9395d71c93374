"""sample_checkpoints: one compiled program for many checkpoints, each equal to its own sample call."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lambda_hat as lh
from lambda_hat.api import LLCWarning
from lambda_hat.targets import linear_regression

TARGET = linear_regression(d=5, seed=0)
U = jnp.ones(5, TARGET.params.dtype) / 5
# a minimum and three points beside it (the last two are far enough to warn about stationarity)
CHECKPOINTS = [TARGET.params, TARGET.params + 0.02 * U, TARGET.params - 0.05 * U, TARGET.params + 0.3 * U]
SGLD = dict(kernel="sgld", batch_size=100, num_draws=2000, num_warmup=200, step_size=4e-4)


def separate(k, checkpoint, key=3, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLCWarning)
        return lh.sample(TARGET.loss_fn, checkpoint, TARGET.data, key=jax.random.fold_in(jax.random.key(key), k), **kw)


def test_sgld_checkpoints_equal_separate_calls_bit_for_bit_and_compile_once():
    with pytest.warns(LLCWarning) as caught:
        runs = lh.sample_checkpoints(
            TARGET.loss_fn, CHECKPOINTS, TARGET.data, key=3, steps=[0, 10, 20, 30], group_size=3, **SGLD
        )
    assert runs.llc.shape == runs.llc_se.shape == (4,) and len(runs) == 4
    np.testing.assert_array_equal(runs.steps, [0, 10, 20, 30])
    for k, c in enumerate(CHECKPOINTS):  # the padded last group (1 of 3 used) included
        one = separate(k, c, **SGLD)
        np.testing.assert_array_equal(runs[k].llc_trace, one.llc_trace)
        assert runs[k].llc == one.llc and runs[k].config["step"] == 10 * k
    # the stationarity warning comes once, naming the checkpoints, not once per checkpoint
    texts = [str(w.message) for w in caught]
    stationarity = [t for t in texts if "not near-stationary" in t]
    assert len(stationarity) == 1 and "of 4 checkpoints" in stationarity[0], texts
    assert "30:" in stationarity[0]
    # the same settings again: the program is cached (one compilation for all checkpoints, ever)
    assert runs.compile_s > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLCWarning)
        again = lh.sample_checkpoints(TARGET.loss_fn, CHECKPOINTS[:3], TARGET.data, key=3, group_size=3, **SGLD)
    assert again.compile_s == 0
    np.testing.assert_array_equal(again[1].llc_trace, runs[1].llc_trace)
    # turned off per call: no stationarity warning, the shift still in the diagnostics
    with warnings.catch_warnings(record=True) as quiet:
        warnings.simplefilter("always", LLCWarning)
        off = lh.sample_checkpoints(
            TARGET.loss_fn, CHECKPOINTS[:3], TARGET.data, key=3, group_size=3, warn_stationarity=False, **SGLD
        )
    assert not any("near-stationary" in str(w.message) for w in quiet)
    assert off[2].diagnostics["stationarity_shift"] == runs[2].diagnostics["stationarity_shift"] != 0


def test_stacked_pytree_equals_list_of_checkpoints():
    stacked = {"w": jnp.stack(CHECKPOINTS[:3])}
    as_list = [{"w": c} for c in CHECKPOINTS[:3]]

    def loss(params, batch):
        return TARGET.loss_fn(params["w"], batch)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLCWarning)
        a = lh.sample_checkpoints(loss, stacked, TARGET.data, key=1, **SGLD)
        b = lh.sample_checkpoints(loss, as_list, TARGET.data, key=1, **SGLD)
    for ra, rb in zip(a.results, b.results, strict=True):
        np.testing.assert_array_equal(ra.llc_trace, rb.llc_trace)


def test_nuts_checkpoints_agree_with_separate_calls_within_error():
    """NUTS's U-turn decisions can turn a last-bit difference (vectorised reductions) into a
    different chain, so the check is statistical: within 3 combined standard errors."""
    kw = dict(kernel="nuts", num_draws=400, num_warmup=200)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLCWarning)
        runs = lh.sample_checkpoints(TARGET.loss_fn, CHECKPOINTS[:2], TARGET.data, key=5, **kw)
    for k, c in enumerate(CHECKPOINTS[:2]):
        one = separate(k, c, key=5, **kw)
        assert abs(runs.llc[k] - one.llc) <= 3 * np.hypot(runs.llc_se[k], one.llc_se), (runs.llc[k], one.llc)
    exact = TARGET.expected_llc(runs[0].nbeta, runs[0].gamma)
    assert abs(runs.llc[0] - exact) <= max(0.03 * exact, 3 * runs.llc_se[0])


def test_table_plot_save_and_load(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LLCWarning)
        runs = lh.sample_checkpoints(TARGET.loss_fn, CHECKPOINTS[:3], TARGET.data, steps=[5, 50, 500], **SGLD)
    table = runs.table()
    assert len(table.splitlines()) == 2 + 3 and "λ̂" in table and "500" in table
    fig = runs.plot(train_loss=[0.3, 0.2, 0.1], test_loss=[0.4, 0.3, 0.3], path=tmp_path / "llc.png")
    assert (tmp_path / "llc.png").stat().st_size > 0 and len(fig.axes) == 2  # λ̂ and the losses beside it
    assert fig.axes[0].get_xscale() == "symlog"  # steps 5 … 500 span a factor of 100
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["train loss", "test loss"]
    assert len(runs.plot().axes) == 1
    with pytest.raises(ValueError, match="train_loss: expected 3 values"):
        runs.plot(train_loss=[0.1, 0.2])
    back = lh.CheckpointResults.load(runs.save(tmp_path / "runs"))
    np.testing.assert_array_equal(back.steps, runs.steps)
    np.testing.assert_array_equal(back.llc, runs.llc)
    np.testing.assert_array_equal(back[2].llc_trace, runs[2].llc_trace)
    (tmp_path / "runs" / "index.json").write_text('{"format_version": 99}')
    with pytest.raises(ValueError, match="format_version 99"):
        lh.CheckpointResults.load(tmp_path / "runs")
    with pytest.raises(FileNotFoundError, match="no checkpoint collection"):
        lh.CheckpointResults.load(tmp_path / "nothing")


@pytest.mark.parametrize(
    "checkpoints, kw, error, match",
    [
        ([], {}, ValueError, "at least one checkpoint"),
        ([TARGET.params, {"w": TARGET.params}], {}, ValueError, "checkpoint 1 has a different tree structure"),
        ({"a": jnp.zeros((3, 5)), "b": jnp.zeros((2, 5))}, {}, ValueError, "one shared leading checkpoint axis"),
        ([TARGET.params, TARGET.params], {"steps": [1, 2, 3]}, ValueError, "steps: expected 2 numbers"),
        ([TARGET.params], {"group_size": 0}, ValueError, "group_size"),
        ([TARGET.params], {"num_chains": 0}, ValueError, "num_chains"),
        ([TARGET.params], {"step_sizes": 1e-4}, ValueError, "step_sizes: not an option"),
    ],
)
def test_bad_input(checkpoints, kw, error, match):
    with pytest.raises(error, match=match):
        lh.sample_checkpoints(TARGET.loss_fn, checkpoints, TARGET.data, **kw)
