"""Sphinx configuration of the ophyd-cs800 documentation.

Build: ``python -m sphinx -W -b html docs docs/_build/html``; run the examples:
``python -m sphinx -W -b doctest docs docs/_build/doctest`` (needs the ``[docs]`` extra).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent / "_ext"))

from ophyd_cs800.version import package_version  # noqa: E402

project = "ophyd-cs800"
author = "ophyd-cs800 developers"
copyright = "2026, ophyd-cs800 developers"  # noqa: A001 - the name Sphinx reads
release = package_version()
version = ".".join(release.split(".")[:2])

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.doctest",
    "sphinx.ext.intersphinx",
    "sphinx.ext.viewcode",
    "cs800_docs",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
myst_enable_extensions = ["colon_fence", "deflist"]
myst_heading_anchors = 3

# API reference: numpy-style docstrings (napoleon also reads the Google-style ones left).
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": False}
napoleon_numpy_docstring = True
napoleon_google_docstring = True
# The screens' widgets need PyDM and Qt (the [screens] extra); their API page does not.
autodoc_mock_imports = ["pydm", "qtpy", "PyQt5"]
# Type hints name classes of ophyd, caproto, numpy ... that have no page here: not an error.
nitpicky = False

intersphinx_mapping: dict[str, tuple[str, None]] = {}

html_theme = "pydata_sphinx_theme"
html_title = f"ophyd-cs800 {release}"
html_theme_options = {
    "navigation_with_keys": False,
    "show_toc_level": 2,
}
html_static_path: list[str] = []

# The doctest builder runs the ``{doctest}`` blocks; the simulator tutorial starts its own
# cs800-sim-ioc in a ``{testsetup}`` block and stops it in ``{testcleanup}``.
# Examples name files as seen from the top of the source tree (``examples/...``).
doctest_global_setup = f"""
import os
os.chdir({str(Path(__file__).resolve().parent.parent)!r})
os.environ.setdefault("OPHYD_CONTROL_LAYER", "caproto")
"""
