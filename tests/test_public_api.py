"""Every public function of the package has full type hints and an Args/Returns docstring.

Public: a function or method whose name and module path have no leading underscore (dunder
methods excepted). Checked statically, from the source, so the test is fast and names each
offender.
"""

import ast
from pathlib import Path

import lambda_hat

ROOT = Path(lambda_hat.__file__).parent


def _public_functions():
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        if any(p.startswith("_") and p != "__init__" for p in parts):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        stack = [(node, "", False) for node in tree.body]
        while stack:
            node, prefix, in_class = stack.pop()
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                stack.extend((child, f"{prefix}{node.name}.", True) for child in node.body)
            elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                yield f"{path.relative_to(ROOT.parent)}:{prefix}{node.name}", node, in_class


def _arguments(node, in_class):
    a = node.args
    args = a.posonlyargs + a.args + a.kwonlyargs
    if in_class and args and args[0].arg in ("self", "cls"):
        args = args[1:]
    return args + [x for x in (a.vararg, a.kwarg) if x]


def _is_property(node):
    return any(
        (getattr(d, "id", None) or getattr(d, "attr", None)) in ("property", "cached_property")
        for d in node.decorator_list
    )


def test_the_scan_finds_the_entry_points():
    names = {name.split(":")[1] for name, _, _ in _public_functions()}
    assert {"sample", "sample_checkpoints", "calibrate", "LLCResult.save", "run_sgld"} <= names


def test_public_functions_have_type_hints():
    missing = []
    for name, node, in_class in _public_functions():
        absent = [x.arg for x in _arguments(node, in_class) if x.annotation is None]
        if node.returns is None:
            absent.append("return")
        if absent:
            missing.append(f"{name}: {absent}")
    assert not missing, "public functions without type hints:\n" + "\n".join(missing)


def test_public_functions_have_args_and_returns_sections():
    missing = []
    for name, node, in_class in _public_functions():
        doc = ast.get_docstring(node) or ""
        if _arguments(node, in_class) and "Args:" not in doc:
            missing.append(f"{name}: no Args section")
        returns_none = isinstance(node.returns, ast.Constant) and node.returns.value is None
        if not returns_none and not _is_property(node) and "Returns:" not in doc and "Yields:" not in doc:
            missing.append(f"{name}: no Returns section")
    assert not missing, "public functions without Args/Returns docstring sections:\n" + "\n".join(missing)
