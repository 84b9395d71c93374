"""The validation runner: a fast subset passes (the CI gate), results are written per case,
--resume skips finished pairs, an erroring case is recorded and the run goes on, the report is
regenerated from JSON, and the exit status reflects failures."""

import json

import pytest

from validation import __main__ as cli
from validation import cases as cases_mod
from validation import report, runner
from validation.cases import Case


def test_fast_subset_passes_and_writes_report(tmp_path):
    code = cli.main(["--case", "quadratic_d5_full", "--case", "potential_d8", "--kernel", "sgld",
                     "--out", str(tmp_path)])
    assert code == 0
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [r["status"] for r in doc["results"]] == ["pass", "pass"]
    rec = doc["results"][0]
    for key in ("reference", "llc", "llc_se", "rel_error", "tolerance", "wall_s", "grad_evals", "running_llc"):
        assert key in rec
    text = (tmp_path / "report.md").read_text()
    assert "quadratic_d5_full" in text and "| sgld |" in text
    # regenerating from JSON gives the same report
    again = report.render(doc, tmp_path / "again")
    assert again.read_text().split("## Plots")[0] == text.split("## Plots")[0]


def test_resume_and_errors_are_recorded(tmp_path, monkeypatch, capsys):
    def broken():
        raise RuntimeError("target construction failed on purpose")

    good = cases_mod.CASES["potential_d8"]
    bad = Case("broken_case", "quadratic", broken)
    doc = runner.run([bad, good], ["sgld"], tmp_path, profile="quick", resume=False)
    statuses = {r["case"]: r["status"] for r in doc["results"]}
    assert statuses == {"broken_case": "error", "potential_d8": "pass"}
    assert "on purpose" in [r for r in doc["results"] if r["case"] == "broken_case"][0]["error"]
    capsys.readouterr()
    runner.run([bad, good], ["sgld"], tmp_path, profile="quick", resume=True)
    out = capsys.readouterr().out
    assert "potential_d8 × sgld: already done (resume)" in out
    assert "broken_case × sgld ... ERROR" in out  # errors are retried on resume


def test_failing_case_gives_nonzero_exit(tmp_path, monkeypatch):
    # a tolerance that no estimator meets: the CLI must report failure
    strict = Case("strict", "quadratic", cases_mod.CASES["potential_d8"].build, rel_tol=0.0,
                  settings=lambda k, t, p: dict(step_size=1e-4, num_draws=200, num_warmup=0))
    monkeypatch.setitem(cases_mod.CASES, "strict", strict)
    monkeypatch.setattr(runner, "tolerance", lambda case, target, result: (1.0, 0.0, 0.0, "impossible"))
    assert cli.main(["--case", "strict", "--kernel", "sgld", "--out", str(tmp_path)]) == 1


def test_bad_cli_arguments(tmp_path):
    with pytest.raises(SystemExit):
        cli.main(["--case", "no_such_case", "--out", str(tmp_path)])
    with pytest.raises(SystemExit):
        cli.main(["--kernel", "no_such_kernel", "--out", str(tmp_path)])
