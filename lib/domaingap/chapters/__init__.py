"""The book's chapters, one package each: ``p1`` (Konz & Mazurowski 2024), ``p2`` (Mouton et al. 2026),
``p3`` (Juodelyte et al. 2023).

Every chapter package has the same shape:

- ``tasks``: the chapter's tasks, listed in YAML (``tasks.yaml`` or the chapter's profile section);
- ``runs``: its run kinds (:func:`domaingap.runs.kind`: the only code that enters artefact keys);
- ``specs``: profile settings -> run specs and :class:`~domaingap.runs.Run` nodes;
- ``analysis``: tables and tests on the computed results (never part of a key);
- ``published.yaml``: the paper's own numbers that the notebooks compare with;
- ``sweeps(profile) -> {sweep name: [Run, ...]}``: every run the chapter's notebooks read.

``python -m domaingap.chapters.p1 --profile default`` computes one chapter's sweeps (:mod:`.cli`);
``python -m domaingap.chapters --profile default`` computes every chapter's runs as ONE graph, so an executor with
several workers keeps every core busy across chapters and trains nothing twice.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from pathlib import Path
from types import ModuleType

CHAPTERS = ("p1", "p2", "p3")

__all__ = ["CHAPTERS", "chapter", "published", "sweeps"]


def chapter(name: str) -> ModuleType:
    """The chapter package ``name`` (``"p1"``, ``"p2"``, ``"p3"``)."""
    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; the chapters are {', '.join(CHAPTERS)}")
    return importlib.import_module(f"{__name__}.{name}")


def sweeps(name: str, profile: str) -> dict:
    """``{sweep name: [Run, ...]}`` of chapter ``name`` at ``profile``."""
    return chapter(name).sweeps(profile)


@lru_cache(maxsize=None)
def _published(name: str) -> dict:
    import yaml

    path = Path(__file__).with_name(name) / "published.yaml"
    with open(path, encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def published(name: str) -> dict:
    """The published numbers of chapter ``name``'s paper (``chapters/<name>/published.yaml``), as data; every entry
    says where in the paper (or its code) it comes from."""
    import copy

    if name not in CHAPTERS:
        raise ValueError(f"unknown chapter {name!r}; the chapters are {', '.join(CHAPTERS)}")
    return copy.deepcopy(_published(name))
