"""Sphinx configuration: the user guides (Markdown, MyST) and the API reference
(autodoc + numpydoc over the public ``hftsig`` and ``connectors`` modules).

Build with ``make docs`` (HTML in ``docs/_build/html``); ``tests/test_docs.py``
builds it with warnings as errors.  Nothing here reaches the network: no
intersphinx, and the theme's assets are packaged with it.
"""
import os
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
# the source tree (with its built extensions) wins over an installed copy
sys.path.insert(0, ROOT)

import hftsig  # noqa: E402

project = "hftsig"
author = "hftsig contributors"
copyright = "hftsig contributors"
version = release = hftsig.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "numpydoc",
    "myst_parser",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# Markdown guides: `#` headings get anchors (the guides link to sections),
# `$` math as in the stopping guide.
myst_heading_anchors = 3
myst_enable_extensions = ["dollarmath"]

# API reference: members in source order, numpydoc renders the docstrings.
autodoc_member_order = "bysource"
autodoc_default_options = {"members": True, "show-inheritance": False}
autosummary_generate = False
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

html_theme = "pydata_sphinx_theme"
html_title = f"hftsig {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path = []


def _skip_sklearn_request_methods(app, what, name, obj, skip, options):
    # scikit-learn attaches set_fit_request/set_transform_request/... to every
    # estimator class; their docstrings link into scikit-learn's own docs
    # (glossary terms, labels) that do not exist here.
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return None


def setup(app):
    app.connect("autodoc-skip-member", _skip_sklearn_request_methods)
