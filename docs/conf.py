"""Sphinx configuration of the dcgan-suite site: `make docs` builds it into site/.

The source directory is the repository's root (`sphinx-build -c docs . site`), holding the
pages in docs/ and the committed reports in benchmarks/results/, so a relative link between
them works the same on the site and on a forge that renders the Markdown.

Pages are MyST Markdown. Everything a page shows that the code or a committed result can
give is generated when the site is built (docs/_ext/dcgan_site.py): code blocks are pulled
from the live source by module and symbol name, tables and charts from benchmarks/results/,
the CLI reference from the argparse parser and the config reference from the dataclasses.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS / "_ext")]
os.environ.setdefault("KERAS_BACKEND", "jax")  # autodoc imports keras_impl; Keras needs a backend at import

project = "dcgan-suite"
author = "dcgan-suite contributors"
copyright = "2026, dcgan-suite contributors"

extensions = [
    "myst_parser",
    "sphinx_design",
    "sphinxarg.ext",
    "sphinx.ext.autodoc",
    "dcgan_site",
    "config_reference",
]
source_suffix = {".md": "markdown"}
root_doc = "docs/index"
include_patterns = ["docs/**", "benchmarks/results/**"]
# What is not a page; the folders that are not walked at all (.venv alone holds ~67,000 files).
exclude_patterns = [
    "docs/_generated/**",
    "docs/_ext/**",
    "docs/_static/**",
    ".venv",
    ".git",
    "runs",
    "site",
    "build",
]
html_extra_path = ["_root"]  # index.html at the site's root, leading to docs/index.html

myst_enable_extensions = ["colon_fence", "deflist", "attrs_inline", "attrs_block"]
myst_heading_anchors = 3  # `page.md#a-heading` links resolve, and are checked
# The committed bench and scaling reports (benchmarks/results/) start their sections at H3: they
# are written to be read inside a longer report; on the site each is a page of its own.
suppress_warnings = ["myst.header"]
nitpicky = False

html_theme = "furo"
html_title = "dcgan-suite"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_show_sourcelink = False
html_copy_source = False
html_last_updated_fmt = None
pygments_style = "friendly"
pygments_dark_style = "monokai"

autodoc_member_order = "bysource"
autodoc_typehints = "none"  # the signatures keep them; repeating them under each parameter adds noise
autodoc_default_options = {"members": True}
