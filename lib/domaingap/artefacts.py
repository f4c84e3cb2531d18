"""Cached, resumable run artefacts: every training/evaluation run is a hashable spec whose result is on disk.

A *run spec* is a JSON-able dict (dataset, task, model, N, seed, profile, ...). Its key is the SHA-256 of the
canonical JSON of the spec plus a *code version*: the hash of the lib modules the run depends on. So a changed
configuration or changed code never reuses a stale artefact, and an interrupted sweep resumes where it stopped::

    result = artefacts.cached("p1_train", spec, train_one, depends=("training", "models", "data"))

Each artefact is a folder ``<artefacts_dir>/<kind>/<key>/`` with ``spec.json``, ``result.json`` and optional
extra files (e.g. ``model.pt``), written into a temporary folder and renamed into place, so a crash never leaves
a half-written artefact that looks finished.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import os
import shutil
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from . import paths

RESULT = "result.json"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def code_version(depends: Sequence[str]) -> str:
    """Hash of the source of the named ``domaingap`` modules (e.g. ``("training", "models")``).

    Memoised per process: the code that runs is the code that was imported, so a file edited while a sweep runs
    must not change the keys of that sweep's runs halfway through.
    """
    return _code_version(tuple(sorted(set(depends))))


@lru_cache(maxsize=None)
def _code_version(depends: tuple[str, ...]) -> str:
    digest = hashlib.sha256()
    for name in depends:
        module = importlib.import_module(f"domaingap.{name}")
        digest.update(name.encode())
        digest.update(Path(module.__file__).read_bytes())
    return digest.hexdigest()[:16]


def key(spec: dict, depends: Sequence[str] = ()) -> str:
    """Stable key of a run spec (and of the code it depends on)."""
    payload = {"spec": spec, "code": code_version(depends) if depends else None}
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:20]


def folder(kind: str, spec: dict, depends: Sequence[str] = ()) -> Path:
    return paths.artefacts_dir() / kind / key(spec, depends)


def load(kind: str, spec: dict, depends: Sequence[str] = ()) -> dict | None:
    """The stored result of ``spec``, or None when it has not been computed (or was left incomplete)."""
    result = folder(kind, spec, depends) / RESULT
    if not result.is_file():
        return None
    try:
        return json.loads(result.read_text())
    except json.JSONDecodeError:
        return None


def cached(kind: str, spec: dict, compute: Callable[[dict, Path], dict], depends: Sequence[str] = ()) -> dict:
    """Result of ``compute(spec, workdir)``, computed once and stored atomically.

    ``compute`` gets a fresh folder to write extra files into (models, arrays) and returns a JSON-able dict.
    The returned dict gains ``"_dir"``: the artefact folder (for the extra files).
    """
    final = folder(kind, spec, depends)
    found = load(kind, spec, depends)
    if found is not None:
        found["_dir"] = str(final)
        return found
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        result = compute(spec, work)
        (work / "spec.json").write_text(json.dumps({"spec": spec, "depends": list(depends),
                                                    "code": code_version(depends) if depends else None},
                                                   indent=1, sort_keys=True, default=str))
        (work / RESULT).write_text(json.dumps(result, indent=1, sort_keys=True, default=float))
        if final.exists():  # a concurrent worker finished the same spec first: keep its copy
            shutil.rmtree(work)
        else:
            os.replace(work, final)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    result = dict(result)
    result["_dir"] = str(final)
    return result


def sweep(kind: str, specs: Iterable[dict], compute: Callable[[dict, Path], dict], depends: Sequence[str] = (),
          progress: bool = True, desc: str | None = None, executor: str | None = None) -> list[dict]:
    """Results of every spec in order; only missing ones are computed, by the executor that
    ``$DOMAINGAP_EXECUTOR`` (or ``executor``) names -- see :mod:`domaingap.executors`."""
    from . import executors

    return executors.run(kind, list(specs), compute, depends, executor=executor, progress=progress, desc=desc)
