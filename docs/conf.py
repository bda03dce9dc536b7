"""Sphinx configuration for the lowrank_sur documentation.

Build with warnings as errors::

    python -m sphinx -W --keep-going -b html docs docs/_build/html
"""

from __future__ import annotations

import datetime
import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import lowrank_sur  # noqa: E402

project = "lowrank_sur"
author = "lowrank_sur developers"
copyright = f"{datetime.date.today().year}, {author}"  # noqa: A001
version = release = lowrank_sur.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
# benchmark_results/ holds generated tables pulled into benchmarks.md by {include}.
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "benchmark_results"]

# MyST: $...$ and $$...$$ math, ::: fences, anchors for ## and ### headings.
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

# autodoc / autosummary: document what the package itself defines; the API page
# lists members explicitly, so no stub files are generated into the source tree.
autosummary_generate = False
autodoc_default_options = {"members": True, "member-order": "bysource"}
autodoc_typehints = "none"  # numpydoc renders the types from the docstrings
autodoc_inherit_docstrings = False

# numpydoc: members are listed by autodoc, not again by numpydoc.
numpydoc_show_class_members = False
numpydoc_show_inherited_class_members = False
numpydoc_class_members_toctree = False

# No network access at build time, so no intersphinx; unresolved cross-references to
# numpy/statsmodels objects render as plain text (nitpicky mode stays off).
nitpicky = False

html_theme = "alabaster"
html_theme_options = {
    "description": "SUR with a low-rank plus diagonal error covariance",
    "fixed_sidebar": True,
}
html_title = f"lowrank_sur {release}"
html_static_path: list[str] = []
