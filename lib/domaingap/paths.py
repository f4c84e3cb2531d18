"""The one source of repository paths and of the data directory.

Environment variables (documented in README.md):

- ``DOMAINGAP_DATA``: folder holding the raw dataset files (default ``data/cache``).
  Point it at an offline mirror, e.g. ``../shared/data``.
- ``DOMAINGAP_CACHE``: folder for decoded arrays and extracted archives (default ``data/cache/_decoded``);
  must be writable (the mirror need not be).
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


DATA_ENV = "DOMAINGAP_DATA"
CACHE_ENV = "DOMAINGAP_CACHE"
ARTEFACTS_ENV = "DOMAINGAP_ARTEFACTS"


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
    return _env_path(DATA_ENV, REPO_ROOT / "data" / "cache")


def cache_dir() -> Path:
    """Writable folder for decoded arrays and extracted archives (``$DOMAINGAP_CACHE``)."""
    return _env_path(CACHE_ENV, REPO_ROOT / "data" / "cache" / "_decoded")


def artefacts_dir() -> Path:
    """Folder for cached, resumable run artefacts (``$DOMAINGAP_ARTEFACTS``, default ``artefacts``)."""
    return _env_path(ARTEFACTS_ENV, REPO_ROOT / "artefacts")


def executed_dir() -> Path:
    """Where papermill writes executed notebooks for the book (ignored by git)."""
    return BOOK_DIR / "executed"
