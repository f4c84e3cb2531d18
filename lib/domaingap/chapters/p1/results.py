"""P1's results as the notebooks read them: :func:`domaingap.runs.compute` on the chapter's runs.

After ``python -m domaingap.chapters.p1 --profile X`` these only load verified entries; otherwise they compute
what is missing, upstream first (an attack sweep trains its models), so every notebook can run first. Nothing
here enters a key.

Each sweep returns one result dict per spec, in order: what the run returned (JSON data), plus ``"_dir"``, the
entry's folder (``str``), for its extra files.
"""

from __future__ import annotations

from typing import Sequence

from ... import runs
from . import runs as kinds
from .specs import SWEEPS, sweeps

__all__ = ["attack_sweep", "geometry_sweep", "repr_sweep", "run_all", "train_sweep", "trained"]


def _results(kind: runs.Kind, specs: Sequence[dict], progress: bool, desc: str) -> list[dict]:
    entries = runs.compute([kind(s) for s in specs], progress=progress, desc=desc)
    return [{**e.result, "_dir": str(e.path)} for e in entries]


def geometry_sweep(specs: Sequence[dict], progress: bool = True) -> list[dict]:
    """Results of ``p1_geometry`` runs (:func:`.specs.geometry_specs`): d_data, K_F and the K_F pair."""
    return _results(kinds.geometry, specs, progress, "P1 d_data and K_F")


def train_sweep(specs: Sequence[dict], progress: bool = True) -> list[dict]:
    """Results of ``p1_train`` runs (:func:`.specs.train_specs`): test/train loss, accuracy, AUC, history."""
    return _results(kinds.train, specs, progress, "P1 training runs")


def attack_sweep(specs: Sequence[dict], progress: bool = True) -> list[dict]:
    """Results of ``p1_attack`` runs (:func:`.specs.attack_specs`): ``{"rows": [...]}`` per attacked model;
    trains the models that are missing first."""
    return _results(kinds.attack, specs, progress, "P1 attacks")


def repr_sweep(specs: Sequence[dict], progress: bool = True) -> list[dict]:
    """Results of ``p1_repr`` runs (:func:`.specs.repr_specs`): d_repr and d_data of each model's training set;
    trains the models that are missing first."""
    return _results(kinds.repr_dim, specs, progress, "P1 d_repr")


def trained(spec: dict):
    """The trained model of a training spec (trained now if it is not in the store), in eval mode on
    :func:`domaingap.devices.default_device`, and its result dict (with ``"_dir"``)."""
    entry = runs.compute([kinds.train(spec)], progress=False)[0]
    model = kinds.load_model(spec, entry)
    return model.eval(), {**entry.result, "_dir": str(entry.path)}


def run_all(profile: str, only: Sequence[str] = SWEEPS, progress: bool = True) -> dict[str, int]:
    """Compute every sweep of the chapter at ``profile`` (``only`` a subset of :data:`.specs.SWEEPS`) as one
    graph; returns the number of runs per sweep. The CLI (``python -m domaingap.chapters.p1``) does the same."""
    bad = [s for s in only if s not in SWEEPS]
    if bad:
        raise ValueError(f"unknown sweep(s) {bad}; choose from {', '.join(SWEEPS)}")
    chosen = {name: items for name, items in sweeps(profile).items() if name in only}
    runs.compute([r for items in chosen.values() for r in items], progress=progress, desc=f"P1 at {profile}")
    return {name: len(items) for name, items in chosen.items()}

