"""The examples in the public docstrings run and print what they show (doctest)."""

import doctest
import importlib
import warnings

import pytest

MODULES = [
    "lambda_hat.api",
    # its sweep's run time dominates: XLA's optimizations pay for themselves (tests/conftest.py)
    pytest.param("lambda_hat.calibrate", marks=pytest.mark.xla_optimized),
    "lambda_hat.checkpoints",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    tests = [t for t in finder.find(module) if t.examples]
    assert tests, f"{name} has no docstring examples"
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a warning is text on stderr, not part of an example's output
        for t in tests:
            runner.run(t)
    assert runner.failures == 0, f"{runner.failures} of {runner.tries} examples in {name} failed (output above)"
