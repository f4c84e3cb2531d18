"""The one source of repository paths and of the data directory.

Environment variables (documented in README.md):

- ``DOMAINGAP_DATA``: folder holding the raw dataset files (default ``data/cache``).
  Point it at an offline mirror, e.g. ``../shared/data``.
- ``DOMAINGAP_ARTEFACTS``: folder for cached run artefacts (trained models, metrics;
  default ``artefacts/``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR: Path = REPO_ROOT / "notebooks"
BOOK_DIR: Path = REPO_ROOT / "book"
TESTS_DIR: Path = REPO_ROOT / "tests"
BENCHMARKS_DIR: Path = REPO_ROOT / "benchmarks"


def _env_path(name: str, default: Path) -> Path:
    value = os.environ.get(name)
    if not value:
        return default
    path = Path(value).expanduser()
    # Relative values are taken from the repository root, not the caller's cwd:
    # papermill and Jupyter Book execute notebooks from different folders.
    return path if path.is_absolute() else (REPO_ROOT / path).resolve()


def data_dir() -> Path:
    """Folder with the raw dataset files (``$DOMAINGAP_DATA``, default ``data/cache``)."""
    return _env_path("DOMAINGAP_DATA", REPO_ROOT / "data" / "cache")


def artefacts_dir() -> Path:
    """Folder for cached, resumable run artefacts (``$DOMAINGAP_ARTEFACTS``, default ``artefacts``)."""
    return _env_path("DOMAINGAP_ARTEFACTS", REPO_ROOT / "artefacts")


def executed_dir() -> Path:
    """Where papermill writes executed notebooks for the book (ignored by git)."""
    return BOOK_DIR / "executed"
