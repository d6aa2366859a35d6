"""Sphinx configuration for the ipcluster documentation.

Build: ``sphinx-build -W --keep-going -b html docs docs/_build/html`` (no network needed).
The configuration and command-line references are generated from the installed package by the
local extension in ``_ext/ipcluster_docs.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "_ext"))
if importlib.util.find_spec("ipcluster") is None:  # building from a checkout that is not installed
    sys.path.insert(0, str(HERE.parent))

import ipcluster  # noqa: E402

project = "ipcluster"
author = "the ipcluster developers"
copyright = "the ipcluster developers"
release = ipcluster.__version__
version = ".".join(release.split(".")[:2])

extensions = ["myst_parser", "ipcluster_docs"]
source_suffix = {".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

myst_heading_anchors = 3  # `page.md#heading-slug` links for h1-h3

# Every documented class exists: a missing one fails the build.
ipcluster_docs_require_all = True

html_theme = "alabaster"
html_title = f"ipcluster {release}"
html_theme_options = {"description": "Interactive parallel computing for IPython and Jupyter"}
