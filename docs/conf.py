"""Sphinx configuration: MyST Markdown pages plus an API reference generated from the docstrings.

Build (warnings are errors, as in CI):

    pip install -e ".[docs]"
    sphinx-build -W --keep-going -b html docs docs/_build/html
"""

from importlib import metadata

project = "lambda_hat"
author = "lambda_hat developers"
copyright = "2026, lambda_hat developers"
release = metadata.version("lambda_hat")
version = release

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",  # Google-style Args/Returns sections, as the docstrings are written
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links resolve

autodoc_member_order = "bysource"
autodoc_typehints = "description"  # type hints go into the parameter list, not the signature
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_google_docstring = True
napoleon_numpy_docstring = False

html_theme = "furo"
html_title = f"lambda_hat {release}"
napoleon_use_ivar = True  # Attributes sections as fields (no second entry beside autodoc's members)


def _escape_bars(app, what, name, obj, options, lines):
    """Docstrings write absolute values and norms as |x| and ‖x‖; reStructuredText reads |x| as
    a substitution. Escape | outside inline literals (``...``) and literal blocks (after ::)."""
    literal_indent = None
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if literal_indent is not None:
            if not line.strip() or indent > literal_indent:
                continue
            literal_indent = None
        parts = line.split("``")
        parts[::2] = [p.replace("|", r"\|") for p in parts[::2]]  # even parts lie outside ``...``
        lines[i] = "``".join(parts)
        if line.rstrip().endswith("::"):
            literal_indent = indent


def setup(app):
    app.connect("autodoc-process-docstring", _escape_bars)
