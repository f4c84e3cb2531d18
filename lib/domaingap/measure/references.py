"""Reference datasets: the same statistics for the book's registered datasets, computed from the data directory
and cached in the run store (:mod:`domaingap.runs`), never typed in.

One ``measure_reference`` run = one registered dataset at one image format (size, channels), one class-balanced
subsample of ``n`` images drawn with ``seed`` from the images of every official split (pooled in the registry's
split order), in P1's preprocessing (:func:`~domaingap.measure.preprocess.to_p1_format`), measured by
:func:`~domaingap.measure.core.geometry`. The spec holds everything that shapes the numbers; the device does not
(the kernels are exact, so CPU and CUDA give the same result).

K_F is a maximum over pairs and grows with n, so a user's dataset is compared with the references at ONE common n
(:data:`REFERENCE_N`, or what the user's data allow); a reference whose classes cannot supply a class-balanced n
is measured at the largest balanced n it has, and says so (``Reference.n < Reference.n_requested``).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from .. import data, devices, runs
from . import core
from .constants import REFERENCE_N, REFERENCE_SEED
from .preprocess import PREPROCESS_VERSION, to_p1_format

log = logging.getLogger(__name__)

KIND = "measure_reference"

__all__ = ["KIND", "REFERENCE_N", "REFERENCE_SEED", "Reference", "balanced_max", "default_references",
           "compute_references", "pooled_arrays", "reference_runs", "reference", "subsample"]


@dataclass(frozen=True)
class Reference:
    """One reference dataset's statistics: ``name`` (registry), ``title``, ``domain`` (medical/natural),
    ``radiology``, the format (``size``, ``channels``, ``release`` read), ``n`` images measured (``n_requested``
    asked for), ``seed``, ``geometry`` (:class:`~domaingap.measure.core.Geometry`) and the run ``key``."""

    name: str
    title: str
    domain: str
    radiology: bool
    size: int
    channels: int
    release: int
    n: int
    n_requested: int
    seed: int
    geometry: core.Geometry
    key: str

    @property
    def at_common_n(self) -> bool:
        return self.n == self.n_requested


def default_references() -> tuple[str, ...]:
    """Every registered dataset (:func:`domaingap.data.names`)."""
    return tuple(data.names())


def pooled_arrays(name: str, release: int, splits: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Images uint8 ``(N, C, H, W)`` and labels ``(N,)`` of ``splits`` (default all, in the registry's order)."""
    ds = data.info(name)
    xs, ys = [], []
    for split in (splits or ds.split_sizes):
        x, y = data.load_arrays(ds.name, split, release=release)
        xs.append(x)
        ys.append(np.asarray(y).reshape(-1))
    return np.concatenate(xs), np.concatenate(ys).astype(np.int64)


def balanced_max(labels: np.ndarray) -> int:
    """The largest n that :func:`domaingap.data.sample_indices` can draw class-balanced from ``labels``."""
    counts = np.bincount(np.asarray(labels))
    counts = counts[counts > 0]
    return int(len(counts) * counts.min())


def subsample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted positions of a seeded class-balanced subsample of ``min(n, balanced_max)`` images (all when that is
    every image)."""
    n_eff = min(int(n), balanced_max(labels))
    if n_eff >= len(labels):
        return np.arange(len(labels))
    return data.sample_indices(labels, n_eff, seed=seed, balanced=True)


@runs.kind(KIND, libraries=("numpy", "torch"))
def reference(spec: dict, inputs: dict, work: Path) -> dict:
    """The statistics of one registered dataset (see the module docstring); returns the Geometry's JSON data and
    the subsample's size and class counts."""
    import torch

    x_all, y_all = pooled_arrays(spec["dataset"], spec["release"])
    idx = subsample(y_all, spec["n"], spec["seed"])
    device = devices.default_device()
    x = to_p1_format(torch.from_numpy(x_all[idx]).float().to(device), spec["size"], spec["channels"])
    del x_all
    geo = core.geometry(x, y_all[idx], ks=spec["ks"], k=spec["k"], ci=spec["ci"], n_bootstrap=spec["n_bootstrap"],
                        seed=spec["seed"], near_duplicate_fraction=spec["near_duplicate_fraction"],
                        kf_sample_images=spec["kf_sample_images"])
    return {"geometry": geo.to_dict(), "n": int(len(idx))}


def _spec(name: str, size: int, channels: int, n: int, seed: int, settings: dict) -> dict:
    release = data.release_for(name, size)
    return {"dataset": name, "size": int(size), "channels": int(channels), "release": int(release), "n": int(n),
            "seed": int(seed), "preprocess": PREPROCESS_VERSION, "ks": [int(k) for k in settings["ks"]],
            "k": int(settings["k"]), "ci": float(settings["ci"]), "n_bootstrap": int(settings["n_bootstrap"]),
            "near_duplicate_fraction": float(settings["near_duplicate_fraction"]),
            "kf_sample_images": int(settings["kf_sample_images"])}


def reference_runs(names: Iterable[str], *, size: int, channels: int, n: int, seed: int = REFERENCE_SEED,
                   settings: dict) -> tuple[list[runs.Run], list[str]]:
    """The runs of the datasets in ``names`` whose files are present at the release ``size`` needs, and a note
    for each one left out (files missing: the mirror holds no such release)."""
    out, notes = [], []
    for name in names:
        ds = data.info(name)
        release = data.release_for(ds.name, size)
        if not data.have_files(ds, release):
            notes.append(f"{ds.name}: left out, its {release} px release is not in {data.paths.data_dir()}")
            continue
        out.append(reference(_spec(ds.name, size, channels, n, seed, settings)))
    return out, notes


@contextlib.contextmanager
def _device_env(device: str | None):
    """Let the run functions (which use :func:`domaingap.devices.default_device`) see the caller's device."""
    if device in (None, "auto"):
        yield
        return
    before = os.environ.get(devices.DEVICE_ENV)
    os.environ[devices.DEVICE_ENV] = str(device)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(devices.DEVICE_ENV, None)
        else:
            os.environ[devices.DEVICE_ENV] = before


def compute_references(names: Iterable[str] | None = None, *, size: int, channels: int, n: int = REFERENCE_N,
               seed: int = REFERENCE_SEED, settings: dict, device: str | None = None, store: runs.Store | None = None,
               progress: bool = True) -> tuple[list[Reference], list[str]]:
    """Reference statistics of ``names`` (default every registered dataset) at one format and common ``n``,
    computed where missing and cached in the run store (``$DOMAINGAP_ARTEFACTS``, or ``store``).

    Returns the references and notes on the datasets left out (files missing, or a run that failed: its error)."""
    names = default_references() if names is None else tuple(names)
    wanted, notes = reference_runs(names, size=size, channels=channels, n=n, seed=seed, settings=settings)
    store = store or runs.Store()
    if wanted:
        with _device_env(device):
            try:
                runs.compute(wanted, store=store, progress=progress, desc=f"reference datasets at {size} px")
            except runs.RunsFailed as err:
                for run, e in err.failures.items():
                    notes.append(f"{run.spec['dataset']}: left out, its run failed: {type(e).__name__}: {e}")
                    log.warning("reference %s failed: %s", run.spec["dataset"], e)
    out = []
    for run in wanted:
        entry = store.lookup(run.kind.name, run.key)
        if entry is None:
            continue
        ds = data.info(run.spec["dataset"])
        out.append(Reference(name=ds.name, title=ds.title.split(" (")[0], domain=ds.domain, radiology=ds.radiology,
                             size=run.spec["size"], channels=run.spec["channels"], release=run.spec["release"],
                             n=int(entry.result["n"]), n_requested=run.spec["n"], seed=run.spec["seed"],
                             geometry=core.Geometry.from_dict(entry.result["geometry"]), key=run.key))
    return out, notes
