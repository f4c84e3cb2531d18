"""The one source of repository paths and of the data directory.

Environment variables (documented in README.md):

- ``DOMAINGAP_DATA``: folder holding the raw dataset files (default ``data/cache``).
  Point it at an offline mirror, e.g. ``../shared/data``.
- ``DOMAINGAP_CACHE``: folder for decoded arrays and extracted archives (default ``data/cache/_decoded``);
  must be writable (the mirror need not be).
- ``DOMAINGAP_ARTEFACTS``: folder for cached run artefacts (trained models, metrics;
  default ``artefacts/``).

In a checkout the defaults are folders of the repository. A package installed with ``pip install .`` has no
repository around it: its defaults are then under the user's cache folder (``$XDG_CACHE_HOME/domaingap``, else
``~/.cache/domaingap``), never inside the virtual environment.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT: Path = Path(__file__).resolve().parents[2]
IN_CHECKOUT: bool = (REPO_ROOT / "pyproject.toml").is_file() and (REPO_ROOT / "lib" / "domaingap").is_dir()
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
    # Relative values are taken from the repository root, not the caller's cwd: papermill and Jupyter Book
    # execute notebooks from different folders (an installed package takes them from the cwd).
    return path if path.is_absolute() else ((REPO_ROOT if IN_CHECKOUT else Path.cwd()) / path).resolve()


def _home() -> Path:
    """The checkout's root, or the user's cache folder for an installed package."""
    if IN_CHECKOUT:
        return REPO_ROOT
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "domaingap"


def data_dir() -> Path:
    """Folder with the raw dataset files (``$DOMAINGAP_DATA``, default ``data/cache``)."""
    return _env_path(DATA_ENV, _home() / "data" / "cache")


def cache_dir() -> Path:
    """Writable folder for decoded arrays and extracted archives (``$DOMAINGAP_CACHE``)."""
    return _env_path(CACHE_ENV, _home() / "data" / "cache" / "_decoded")


def artefacts_dir() -> Path:
    """Folder for cached, resumable run artefacts (``$DOMAINGAP_ARTEFACTS``, default ``artefacts``)."""
    return _env_path(ARTEFACTS_ENV, _home() / "artefacts")


def executed_dir() -> Path:
    """Where papermill writes executed notebooks for the book (ignored by git)."""
    return BOOK_DIR / "executed"
