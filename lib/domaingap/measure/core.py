"""The statistics of one labelled image set in the P1 format: :func:`geometry` -> :class:`Geometry`.

Everything P1 (Konz & Mazurowski, ICLR 2024) measures on raw pixels, from ONE exact kNN pass:

- d_data by the Levina-Bickel / MacKay-Ghahramani MLE at k = 20 (P1's estimator) and at every k of a
  sensitivity set (5, 10, 20, 50), and by TwoNN (Pope et al.'s variant), each with a percentile-bootstrap
  interval (:mod:`domaingap.kernels.intrinsic_dim`: the k nearest *non-zero* distances of every image are
  computed once, for the largest k, and feed :func:`~domaingap.kernels.intrinsic_dim.mle_from_knn` at every k and
  :func:`~domaingap.kernels.intrinsic_dim.twonn_from_knn`);
- K_F EXACTLY, over all pairs of images with different labels (numerator 1[y_j != y_k], so multiclass labels are
  allowed; :func:`~domaingap.kernels.sharpness.label_sharpness`), and P1's sampled estimator for comparison
  (:func:`~domaingap.kernels.sharpness.label_sharpness_sampled`, biased low);
- exact duplicates (identical uint8 images), duplicates whose copies carry different labels (they make K_F
  infinite: reported, and K_F is also given without them), and near duplicates (see
  :data:`NEAR_DUPLICATE_FRACTION`).

This module is the code of the reference runs (:mod:`.references`): editing it changes their keys.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import numpy as np

from ..kernels import distances, intrinsic_dim, sharpness  # noqa: F401  (distances: loaded for the code closure)
from ..kernels._validation import DuplicatePointsWarning
from ..kernels.intrinsic_dim import IntervalEstimate

from .constants import (CI_LEVEL, K_MAIN, K_VALUES, KF_SAMPLE_IMAGES, N_BOOTSTRAP, NEAR_DUPLICATE_FRACTION,
                        NEAR_DUPLICATE_RULE)

MAX_LISTED = 50  # pairs / groups listed individually in a Geometry (all are counted)

__all__ = ["CI_LEVEL", "Geometry", "KF_SAMPLE_IMAGES", "K_MAIN", "K_VALUES", "NEAR_DUPLICATE_FRACTION",
           "NEAR_DUPLICATE_RULE", "N_BOOTSTRAP", "geometry", "interval_from_list", "interval_to_list"]


def interval_to_list(v: IntervalEstimate) -> list:
    return [float(v.estimate), float(v.low), float(v.high), float(v.level), int(v.n_bootstrap)]


def interval_from_list(v: Sequence) -> IntervalEstimate:
    return IntervalEstimate(float(v[0]), float(v[1]), float(v[2]), float(v[3]), int(v[4]))


@dataclass(frozen=True)
class Geometry:
    """P1's intrinsic properties of one image set (indices refer to the images it was computed on).

    Attributes:
        n: images; class_counts: images per label 0..K-1.
        mle: d_data, MLE at k = :data:`K_MAIN` with its bootstrap interval; mle_by_k: {k: estimate} for every k of
            the sensitivity set that the data allow (k <= distinct images - 1); twonn: d_data by TwoNN.
        k_f: exact K_F = 1 / min over pairs with different labels of ||x_i - x_j|| (pixels in [0, 255]); ``inf``
            when an image occurs with two labels. k_f_pair: (i, j) attaining it; k_f_distance: their distance;
            k_f_labels: their labels.
        k_f_without_conflicts: exact K_F after removing every copy of an image that occurs with two labels (None
            when there is no such image, or too few images or classes remain).
        k_f_sampled: P1's sampled estimator (a seeded subset of min(N, 1000) images, ~N^2/500 random pairs).
        k_f_sampled_images: the subset size it used.
        exact_duplicates: images identical to an earlier one; duplicate_groups: sets of identical images;
            conflicting_groups: groups (image indices) whose copies carry different labels, at most
            :data:`MAX_LISTED` listed, conflicting_count their number.
        nn_median: median over images of the distance to the nearest non-identical image;
            near_duplicate_threshold: :data:`NEAR_DUPLICATE_FRACTION` x nn_median; near_duplicate_pairs: (i, j)
            pairs closer than that (at most :data:`MAX_LISTED` listed), near_duplicate_count all such pairs,
            near_duplicate_conflicts those with different labels.
        seed, ci_level, n_bootstrap: the settings of the sampled K_F and the bootstrap.
    """

    n: int
    class_counts: tuple[int, ...]
    mle: IntervalEstimate
    mle_by_k: dict[int, IntervalEstimate]
    twonn: IntervalEstimate
    k_f: float
    k_f_pair: tuple[int, int]
    k_f_distance: float
    k_f_without_conflicts: float | None
    k_f_sampled: float
    k_f_sampled_images: int
    exact_duplicates: int
    duplicate_groups: int
    conflicting_groups: tuple[tuple[int, ...], ...]
    conflicting_count: int
    nn_median: float
    near_duplicate_fraction: float
    near_duplicate_threshold: float
    near_duplicate_pairs: tuple[tuple[int, int], ...]
    near_duplicate_count: int
    near_duplicate_conflicts: int
    seed: int
    ci_level: float
    n_bootstrap: int
    skipped_k: tuple[int, ...] = field(default=())
    k_f_labels: tuple[int, int] = field(default=(-1, -1))

    @property
    def slope(self) -> float:
        """P1's scaling-law slope of log L on log N: -1 / d_data (MLE, k = 20)."""
        return -1.0 / float(self.mle.estimate)

    def to_dict(self) -> dict:
        """JSON data (a run result); :meth:`from_dict` inverts it exactly."""
        out = asdict(self)
        out["mle"] = interval_to_list(self.mle)
        out["twonn"] = interval_to_list(self.twonn)
        out["mle_by_k"] = {str(k): interval_to_list(v) for k, v in self.mle_by_k.items()}
        for key in ("class_counts", "k_f_pair", "skipped_k", "k_f_labels"):
            out[key] = list(out[key])
        out["conflicting_groups"] = [list(g) for g in self.conflicting_groups]
        out["near_duplicate_pairs"] = [list(p) for p in self.near_duplicate_pairs]
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Geometry":
        d = dict(d)
        d["mle"] = interval_from_list(d["mle"])
        d["twonn"] = interval_from_list(d["twonn"])
        d["mle_by_k"] = {int(k): interval_from_list(v) for k, v in sorted(d["mle_by_k"].items(), key=lambda kv: int(kv[0]))}
        d["class_counts"] = tuple(int(c) for c in d["class_counts"])
        d["k_f_pair"] = tuple(int(i) for i in d["k_f_pair"])
        d["skipped_k"] = tuple(int(k) for k in d.get("skipped_k", ()))
        d["k_f_labels"] = tuple(int(v) for v in d.get("k_f_labels", (-1, -1)))
        d["conflicting_groups"] = tuple(tuple(int(i) for i in g) for g in d["conflicting_groups"])
        d["near_duplicate_pairs"] = tuple(tuple(int(i) for i in p) for p in d["near_duplicate_pairs"])
        return cls(**d)


def _duplicates(flat: np.ndarray, y: np.ndarray) -> tuple[int, int, list[np.ndarray], int]:
    """(images repeating an earlier one, groups of identical images, the groups with two labels, largest group)."""
    _, inverse, counts = np.unique(flat, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.reshape(-1)
    dup_groups = np.flatnonzero(counts > 1)
    conflicting = []
    if dup_groups.size:
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
        for g in dup_groups:
            members = np.sort(order[starts[g]:starts[g] + counts[g]])
            if np.unique(y[members]).size > 1:
                conflicting.append(members)
    return int(len(flat) - len(counts)), int(dup_groups.size), conflicting, int(counts.max())


def _near_duplicates(x, y: np.ndarray, r1: np.ndarray, threshold: float, max_copies: int):
    """Unordered pairs (i, j) whose distance is in (0, threshold): each flagged image and its nearest distinct
    neighbour (one kNN query of the flagged images only)."""
    import torch

    rows = np.flatnonzero(r1 < threshold)
    if rows.size == 0:
        return []
    kq = min(x.shape[0], max_copies + 1)
    d, idx = distances.knn(x, kq, query=x[torch.as_tensor(rows, device=x.device)])
    d, idx = np.asarray(d.cpu()), np.asarray(idx.cpu())
    pairs = set()
    for r, drow, irow in zip(rows, d, idx):
        pos = np.flatnonzero(drow > 0)
        if pos.size:
            j = int(irow[pos[0]])
            pairs.add((min(int(r), j), max(int(r), j)))
    return sorted(pairs)


def geometry(x, y, *, ks: Sequence[int] = K_VALUES, k: int = K_MAIN, ci: float = CI_LEVEL,
             n_bootstrap: int = N_BOOTSTRAP, seed: int = 0, near_duplicate_fraction: float = NEAR_DUPLICATE_FRACTION,
             kf_sample_images: int = KF_SAMPLE_IMAGES, progress=None) -> Geometry:
    """P1's intrinsic properties of ``x`` with labels ``y``.

    Args:
        x: uint8 tensor ``(N, C, S, S)`` in the P1 format (:func:`~domaingap.measure.preprocess.to_p1_format`), on
            the device the kernels should run on.
        y: int labels ``(N,)`` in 0..K-1 (NumPy or tensor), K >= 2.
        ks: the MLE k-sensitivity set (each k with 3 <= k <= distinct images - 1 is computed; the others are listed
            in ``skipped_k``); k: the main MLE k (P1: 20), which the data must allow.
        ci, n_bootstrap, seed: bootstrap level and resamples (seeded), and the seed of P1's sampled K_F.
        near_duplicate_fraction: see :data:`NEAR_DUPLICATE_RULE`.
        kf_sample_images: subset size of P1's sampled K_F (capped at N).
        progress: optional tqdm bar advanced once per step (6 steps).

    Raises:
        ValueError: fewer than two classes, or fewer than ``k + 1`` distinct images.
    """
    import torch

    def step(what: str) -> None:
        if progress is not None:
            progress.set_postfix_str(what, refresh=False)
            progress.update()

    y = np.asarray(y.cpu() if isinstance(y, torch.Tensor) else y).astype(np.int64).reshape(-1)
    n = int(x.shape[0])
    if len(y) != n:
        raise ValueError(f"y has {len(y)} labels for {n} images")
    counts = np.bincount(y)
    if int((counts > 0).sum()) < 2:
        raise ValueError(f"the images have a single class (label {int(y[0]) if n else '-'}); K_F needs two")
    flat = x.reshape(n, -1).cpu().numpy()
    n_dup, n_groups, conflicting, max_copies = _duplicates(flat, y)
    distinct = n - n_dup
    if distinct < k + 1:
        raise ValueError(f"the MLE at k={k} needs at least {k + 1} distinct images; these {n} images hold {distinct} "
                         f"distinct ones ({n_dup} exact duplicates)")
    ks_used = sorted({int(v) for v in ks if 3 <= int(v) <= distinct - 1} | {int(k)})
    skipped = tuple(sorted({int(v) for v in ks} - set(ks_used)))
    step("duplicates")

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DuplicatePointsWarning)  # duplicates are counted above instead
        knn = intrinsic_dim.nonzero_knn_distances(x, max(ks_used), warn=False)
        step("kNN")
        boot = {"ci": ci, "n_bootstrap": n_bootstrap, "seed": seed}
        by_k = {kk: intrinsic_dim.mle_from_knn(knn, kk, **boot) for kk in ks_used}
        twonn = intrinsic_dim.twonn_from_knn(knn, **boot)
    step("d_data")

    pair = sharpness.label_sharpness(x, y, return_pair=True, on_duplicate="inf")
    k_f_clean = None
    if conflicting:
        drop = np.concatenate(conflicting)
        keep = np.setdiff1d(np.arange(n), drop)
        if keep.size >= 2 and np.unique(y[keep]).size >= 2:
            k_f_clean = float(sharpness.label_sharpness(x[torch.as_tensor(keep, device=x.device)], y[keep]))
    step("K_F exact")
    m = min(int(kf_sample_images), n)
    k_f_sampled = float(sharpness.label_sharpness_sampled(x, y, n_images=m, seed=seed))
    step("K_F sampled")

    r1 = knn[:, 0]
    nn_median = float(np.median(r1))
    threshold = float(near_duplicate_fraction) * nn_median
    near = _near_duplicates(x, y, r1, threshold, max_copies)
    near_conflicts = sum(1 for i, j in near if y[i] != y[j])
    step("near duplicates")

    return Geometry(
        n=n, class_counts=tuple(int(c) for c in counts), mle=by_k[int(k)], mle_by_k=by_k, twonn=twonn,
        k_f=float(pair.k_f), k_f_pair=(int(pair.i), int(pair.j)), k_f_distance=float(pair.distance),
        k_f_without_conflicts=k_f_clean, k_f_sampled=k_f_sampled, k_f_sampled_images=m,
        exact_duplicates=n_dup, duplicate_groups=n_groups,
        conflicting_groups=tuple(tuple(int(i) for i in g) for g in conflicting[:MAX_LISTED]),
        conflicting_count=len(conflicting), nn_median=nn_median,
        near_duplicate_fraction=float(near_duplicate_fraction), near_duplicate_threshold=threshold,
        near_duplicate_pairs=tuple(near[:MAX_LISTED]), near_duplicate_count=len(near),
        near_duplicate_conflicts=int(near_conflicts), seed=int(seed), ci_level=float(ci),
        n_bootstrap=int(n_bootstrap), skipped_k=skipped, k_f_labels=(int(y[pair.i]), int(y[pair.j])))


def finite_or_none(v: Any) -> float | None:
    """``v`` as a float, or None when it is not finite (for tables)."""
    return float(v) if v is not None and math.isfinite(float(v)) else None
