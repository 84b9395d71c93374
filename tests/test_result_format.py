"""LLCResult file format: the version entry, reading the previous format, rejecting what is not a result.

tests/data/result_format1.{json,npz} were written by LLCResult.save of lambda_hat 0.1.0, before
files carried "format_version" (format 1).
"""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from lambda_hat import LLCResult
from lambda_hat.result import FORMAT_VERSION, SUPPORTED_FORMAT_VERSIONS

DATA = Path(__file__).parent / "data"


@pytest.fixture
def v1(tmp_path) -> Path:
    for suffix in (".json", ".npz"):
        shutil.copy(DATA / f"result_format1{suffix}", tmp_path / f"run{suffix}")
    return tmp_path / "run"


def _edit_json(base: Path, edit) -> None:
    path = base.with_suffix(".json")
    meta = json.loads(path.read_text())
    edit(meta)
    path.write_text(json.dumps(meta))


def test_format_1_file_loads(v1):
    assert "format_version" not in json.loads(v1.with_suffix(".json").read_text())
    r = LLCResult.load(v1)
    assert (r.llc, r.llc_se, r.loss_at_wstar, r.nbeta, r.gamma) == (1.25, 0.05, 0.125, 144.8, 1.0)
    assert r.kernel == "sgld" and r.grad_evals == 600 and r.data_passes == 6.0
    assert r.config == {"num_chains": 2, "num_draws": 3, "step_size": 1e-4}
    assert r.diagnostics == {"ess": 5.5, "rhat": 1.01} and r.warnings == ["a warning"]
    np.testing.assert_array_equal(r.llc_trace, np.arange(6.0).reshape(2, 3))
    np.testing.assert_array_equal(r.loss_trace, np.arange(6.0).reshape(2, 3) / 10)
    np.testing.assert_array_equal(r.llc_per_chain, [1.2, 1.3])
    np.testing.assert_array_equal(r.valid_chains, [True, True])
    np.testing.assert_array_equal(r.extra["elbo"], [1.0, 2.0])
    assert list(r.positions) == ["['w']"] and r.positions["['w']"].shape == (2, 3, 2)


def test_save_writes_the_current_version_and_reads_it_back(v1, tmp_path):
    r = LLCResult.load(v1)
    path = r.save(tmp_path / "again")
    meta = json.loads(path.read_text())
    assert meta["format_version"] == FORMAT_VERSION == 2 and FORMAT_VERSION in SUPPORTED_FORMAT_VERSIONS
    back = LLCResult.load(path)
    for name in (
        "llc",
        "llc_se",
        "loss_at_wstar",
        "nbeta",
        "gamma",
        "kernel",
        "config",
        "diagnostics",
        "timings",
        "grad_evals",
        "data_passes",
        "warnings",
    ):
        assert getattr(back, name) == getattr(r, name), name
    for name in ("llc_per_chain", "loss_trace", "llc_trace", "valid_chains"):
        np.testing.assert_array_equal(getattr(back, name), getattr(r, name))
    np.testing.assert_array_equal(back.extra["elbo"], r.extra["elbo"])
    # positions come back keyed by their saved path (the loaded dict's key is itself a path)
    (leaf,) = back.positions.values()
    np.testing.assert_array_equal(leaf, r.positions["['w']"])


@pytest.mark.parametrize("version", [3, 0, "2", 2.5, True, None])
def test_unknown_version_is_rejected(v1, version):
    _edit_json(v1, lambda m: m.update(format_version=version))
    with pytest.raises(ValueError, match=r"format version .* is not supported.*reads format versions 1, 2") as err:
        LLCResult.load(v1)
    assert repr(version) in str(err.value)


def test_unexpected_field_is_rejected(v1):
    _edit_json(v1, lambda m: m.update(bogus=1))
    with pytest.raises(ValueError, match=r"unexpected fields \['bogus'\]"):
        LLCResult.load(v1)


def test_missing_required_field_is_rejected(v1):
    _edit_json(v1, lambda m: m.pop("nbeta"))
    with pytest.raises(ValueError, match=r"missing fields \['nbeta'\]"):
        LLCResult.load(v1)


def test_missing_optional_field_takes_its_default(v1):
    _edit_json(v1, lambda m: m.pop("warnings"))
    assert LLCResult.load(v1).warnings == []


def test_unexpected_or_missing_array_is_rejected(v1):
    npz = v1.with_suffix(".npz")
    with np.load(npz) as f:
        arrays = {k: f[k] for k in f.files}
    np.savez(npz, **arrays, bogus=np.zeros(2))
    with pytest.raises(ValueError, match=r"unexpected arrays \['bogus'\]"):
        LLCResult.load(v1)
    del arrays["llc_trace"]
    np.savez(npz, **arrays)
    with pytest.raises(ValueError, match=r"missing arrays \['llc_trace'\]"):
        LLCResult.load(v1)


def test_non_numeric_value_is_a_clear_error(v1):
    _edit_json(v1, lambda m: m.update(llc="abc"))
    with pytest.raises(ValueError, match=r"field 'llc': expected a number, got 'abc'"):
        LLCResult.load(v1)


def test_not_a_json_object_is_rejected(v1):
    v1.with_suffix(".json").write_text("[1, 2]")
    with pytest.raises(ValueError, match="expected a JSON object"):
        LLCResult.load(v1)
