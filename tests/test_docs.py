"""Every ```python block in docs/*.md runs (blocks of one page share a namespace, in order)."""

import pathlib
import re
import warnings

import pytest

DOCS = pathlib.Path(__file__).resolve().parents[1] / "docs"
PAGES = sorted(p for p in DOCS.glob("*.md") if "```python" in p.read_text())


# pages whose examples run long chains: compiled with XLA's optimizations (see tests/conftest.py)
RUN_TIME_BOUND = {"llc_over_training.md"}


@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=pytest.mark.xla_optimized) if p.name in RUN_TIME_BOUND else p for p in PAGES],
    ids=[p.name for p in PAGES],
)
def test_doc_examples_run(page, capsys):
    namespace: dict = {}
    for block in re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            exec(compile(block, str(page), "exec"), namespace)


def test_kernel_tables_match_the_registry():
    """docs/kernels.md lists every kernel with every option and its default, and the defaults of
    num_draws and num_warmup, as the registry (lambda_hat.KERNELS) has them."""
    import lambda_hat as lh

    text = (DOCS / "kernels.md").read_text()
    for name, spec in lh.KERNELS.items():
        rows = [line for line in text.splitlines() if line.startswith(f"| `{name}` |")]
        assert len(rows) == 2, (name, rows)  # the options table and the draws/warmup table
        options_row, counts_row = rows
        for option, default in spec.options.items():
            assert f"`{option}`" in options_row, (name, option)
            if default is not None:
                shown = re.search(rf"`{option}`[^(|]*\(([^)]*)\)", options_row)
                assert shown, (name, option, default)
                value = shown.group(1)
                if isinstance(default, bool):
                    ok = value == str(default)
                elif isinstance(default, str):  # e.g. (`"auto"`: what it means)
                    ok = value.split(":")[0].strip("`\"' ") == default
                else:
                    ok = float(value) == float(default)
                assert ok, (name, option, default, value)
        cells = [c.strip() for c in counts_row.strip("|").split("|")]
        assert cells[1:] == [str(spec.default_num_draws), str(spec.default_num_warmup)], (name, cells)
