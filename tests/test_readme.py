"""The README's Python example runs and gives a sensible λ̂ (0 < λ̂ <= d/2)."""

import pathlib
import re
import warnings

import numpy as np

README = pathlib.Path(__file__).resolve().parents[1] / "README.md"


def test_readme_example_runs():
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)
    assert blocks, "README has no python example"
    code = blocks[0].replace("print(", "(lambda *a, **k: None)(")  # quiet
    namespace: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        exec(compile(code, str(README), "exec"), namespace)
    result = namespace["result"]
    d = sum(np.size(p) for p in __import__("jax").tree.leaves(namespace["params"]))
    assert 0 < result.llc <= d / 2
    assert result.llc_se < 0.2 * result.llc
