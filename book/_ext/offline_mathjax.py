"""Serve MathJax from the book itself, so the equations render for readers without internet.

Sphinx loads MathJax 3 from cdn.jsdelivr.net by default; offline (this project's machines, a reader's laptop on
a train) the equations then stay raw TeX. The pinned ``django-static-mathjax`` wheel ships the MathJax 3.2.2
release files; this extension points ``mathjax_path`` at ``_static/mathjax/tex-mml-chtml.js`` and copies the
combined component plus the files it loads lazily (CHTML fonts, TeX extensions, menu, accessibility) into the
built HTML (~3 MB of the wheel's 24 MB). Without the wheel the CDN default stays and the build says so.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from sphinx.util import logging

logger = logging.getLogger(__name__)
ENTRY = "tex-mml-chtml.js"  # Sphinx's default MathJax 3 component
LAZY = ("output/chtml", "input/tex/extensions", "ui", "a11y")  # loaded on demand by the component


def mathjax_release() -> Path | None:
    """The ``es5`` folder of the installed MathJax release, or None."""
    spec = importlib.util.find_spec("mathjax")
    for base in (spec.submodule_search_locations or []) if spec else []:
        es5 = Path(base) / "static" / "mathjax" / "es5"
        if (es5 / ENTRY).is_file():
            return es5
    return None


def _configure(app, config):
    if mathjax_release() is None:
        logger.info("offline_mathjax: django-static-mathjax is not installed; MathJax is loaded from its CDN")
        return
    config.mathjax_path = f"mathjax/{ENTRY}"  # relative paths are resolved against _static/


def _copy(app, exception):
    es5 = mathjax_release()
    if exception is not None or es5 is None or app.builder.format != "html":
        return
    dest = Path(app.outdir) / "_static" / "mathjax"
    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(es5 / ENTRY, dest / ENTRY)
    for sub in LAZY:
        shutil.copytree(es5 / sub, dest / sub, dirs_exist_ok=True)


def setup(app):
    app.connect("config-inited", _configure, priority=900)
    app.connect("build-finished", _copy)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
