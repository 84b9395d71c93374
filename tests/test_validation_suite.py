"""The validation runner: a fast subset passes (the CI gate), results are written per case,
--resume skips finished pairs, an erroring case is recorded and the run goes on, the report is
regenerated from JSON, and the exit status reflects failures."""

import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import jax
import pytest

from validation import __main__ as cli
from validation import cases as cases_mod
from validation import report, runner
from validation.cases import Case


@pytest.mark.xla_optimized
def test_fast_subset_passes_and_writes_report(tmp_path):
    code = cli.main(
        ["--case", "quadratic_d5_full", "--case", "potential_d8", "--kernel", "sgld", "--out", str(tmp_path)]
    )
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
    strict = Case(
        "strict",
        "quadratic",
        cases_mod.CASES["potential_d8"].build,
        rel_tol=0.0,
        settings=lambda k, t, p: dict(step_size=1e-4, num_draws=200, num_warmup=0),
    )
    monkeypatch.setitem(cases_mod.CASES, "strict", strict)
    monkeypatch.setattr(runner, "tolerance", lambda case, target, result: (1.0, 0.0, 0.0, "impossible"))
    # this short run warns (R-hat, ...): outside tolerance with a warning is "flagged", exit 0
    assert cli.main(["--case", "strict", "--kernel", "sgld", "--out", str(tmp_path / "warned")]) == 0
    doc = json.loads((tmp_path / "warned" / "results.json").read_text())
    assert [r["status"] for r in doc["results"]] == ["flagged"] and doc["results"][0]["warnings"]
    # the same wrong number with no warning is a confident wrong answer: "fail", exit 1
    real_sample = runner.lh.sample

    def silent_sample(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return real_sample(*args, **kwargs)

    monkeypatch.setattr(runner.lh, "sample", silent_sample)
    assert cli.main(["--case", "strict", "--kernel", "sgld", "--out", str(tmp_path / "silent")]) == 1
    doc = json.loads((tmp_path / "silent" / "results.json").read_text())
    assert [r["status"] for r in doc["results"]] == ["fail"]


def _results_file(tmp_path, text):
    (tmp_path / "results.json").write_text(text)


X64 = bool(jax.config.jax_enable_x64)
BAD_CLI = [
    (
        "unknown kernel",
        ["--kernel", "no_such_kernel"],
        None,
        r"--kernel: unknown kernel\(s\) \['no_such_kernel'\]; expected some of",
    ),
    (
        "unknown case",
        ["--case", "no_such_case"],
        None,
        r"--case: unknown case\(s\) \['no_such_case'\]; expected some of",
    ),
    ("unknown profile", ["--profile", "huge"], None, r"argument --profile: invalid choice: 'huge'"),
    ("non-integer seed", ["--seed", "abc"], None, r"argument --seed: invalid int value"),
    ("unknown flag", ["--frobnicate"], None, r"unrecognized arguments: --frobnicate"),
    ("resume without results", ["--resume"], None, r"--resume: no results file at .*results.json"),
    (
        "resume from corrupt JSON",
        ["--resume"],
        '{"meta": {}, "results": [',
        r"--resume: cannot read .*results.json as JSON",
    ),
    (
        "resume from a non-results file",
        ["--resume"],
        "[1, 2]",
        r"--resume: .*results.json is not a validation results file",
    ),
    (
        "resume from records without names",
        ["--resume"],
        '{"results": [{"llc": 1.0}]}',
        r"--resume: .* is not a validation results file",
    ),
    (
        "resume from another profile",
        ["--resume", "--profile", "quick"],
        '{"meta": {"profile": "full"}, "results": []}',
        r"--resume: .* holds results of profile 'full', not 'quick'",
    ),
    (
        "resume from another precision",
        ["--resume"],
        json.dumps({"meta": {"x64": not X64}, "results": []}),
        r"--resume: .* holds float(32|64) results; this run is float(32|64)",
    ),
]


@pytest.mark.parametrize("argv,results,pattern", [c[1:] for c in BAD_CLI], ids=[c[0] for c in BAD_CLI])
def test_bad_cli_arguments(tmp_path, capsys, argv, results, pattern):
    """Exit status 2 (argparse's usage error) and a message that names the argument; nothing run."""
    if results is not None:
        _results_file(tmp_path, results)
    with pytest.raises(SystemExit) as exc:
        cli.main(
            [*argv, "--case", "potential_d8", "--kernel", "sgld", "--out", str(tmp_path)]
            if argv[0] not in ("--kernel", "--case")
            else [*argv, "--out", str(tmp_path)]
        )
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert re.search(pattern, err), err
    if results is not None:  # a bad results file is left as it was, for the user to look at
        assert (tmp_path / "results.json").read_text() == results


def test_bad_cli_argument_exit_status_from_the_shell(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "validation", "--resume", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parents[1],
        timeout=120,
    )
    assert proc.returncode == 2, proc.stderr
    assert "--resume: no results file" in proc.stderr


def test_results_are_written_as_each_case_finishes(tmp_path, monkeypatch):
    """Long runs lose nothing: each finished pair is in results.json before the next starts, so an
    interrupted run keeps what it finished and --resume picks up from there."""
    seen = []

    def record(case, kernel):
        return dict(
            case=case.name,
            family=case.family,
            kernel=kernel,
            status="pass",
            reference=1.0,
            llc=1.0,
            llc_se=0.1,
            wall_s=0.0,
        )

    def fake_run_one(case, kernel, target, profile, seed):
        on_disk = json.loads((tmp_path / "results.json").read_text())
        seen.append([(r["case"], r["status"]) for r in on_disk["results"]])
        if case.name == "interrupted":
            raise KeyboardInterrupt  # not an Exception: the run stops here, as on Ctrl-C
        return record(case, kernel)

    def build():
        return None

    monkeypatch.setattr(runner, "run_one", fake_run_one)
    first, broken = Case("first", "quadratic", build), Case("broken", "quadratic", lambda: 1 / 0)
    later = Case("interrupted", "quadratic", build)
    with pytest.raises(KeyboardInterrupt):
        runner.run([first, broken, later], ["sgld"], tmp_path, profile="quick", resume=False)
    # "broken" fails in case.build (run_one is never called); before "interrupted" ran, both the
    # finished "first" and broken's error were already on disk
    assert seen == [[], [("first", "pass"), ("broken", "error")]]
    doc = json.loads((tmp_path / "results.json").read_text())
    assert [(r["case"], r["status"]) for r in doc["results"]] == [("first", "pass"), ("broken", "error")]
    assert "ZeroDivisionError" in doc["results"][1]["error"] and "Traceback" in doc["results"][1]["traceback"]
    # resuming runs only what is not finished (errors are retried)
    seen.clear()
    monkeypatch.setattr(runner, "run_one", lambda case, kernel, *a: record(case, kernel))
    doc = runner.run([first, broken, later], ["sgld"], tmp_path, profile="quick", resume=True)
    assert [(r["case"], r["status"]) for r in doc["results"]] == [
        ("first", "pass"),
        ("broken", "error"),
        ("interrupted", "pass"),
    ]
