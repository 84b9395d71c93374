"""The lambda-hat CLI: demo prints a kernel table with the exact value; validate forwards."""

from lambda_hat.cli import main


def test_demo_linreg_sgld(capsys):
    assert main(["demo", "--problem", "linreg", "--kernel", "sgld"]) == 0
    out = capsys.readouterr().out
    assert "kernel" in out and "sgld" in out and "exact E[λ̂]" in out


def test_validate_forwards_to_validation(tmp_path, capsys):
    code = main(["validate", "--case", "potential_d8", "--kernel", "sgld", "--out", str(tmp_path)])
    assert code == 0 and (tmp_path / "report.md").exists()
