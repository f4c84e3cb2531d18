"""MLE at several k and TwoNN from one kNN pass (re-exported by :mod:`domaingap.kernels.intrinsic_dim`).

:func:`estimate_all` and :func:`estimate_all_from_knn` return a :class:`DimensionEstimates`; each value (and
bootstrap interval) equals the separate :func:`~domaingap.kernels.intrinsic_dim.mle` /
:func:`~domaingap.kernels.intrinsic_dim.twonn` call's (see that module's docstring).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._dim_common import (
    IntervalEstimate,
    _as_distance_matrix,
    _bootstrap_many,
    _check_variant,
    _first_positive,
    _mle_inverse,
    _mle_stat,
    _n_keep,
    _nonzero_knn,
    _twonn_slope,
    _warn_duplicates,
)
from ._validation import as_points, check_int, check_level


@dataclass(frozen=True)
class DimensionEstimates:
    """MLE at every k and TwoNN of one point set, from one kNN pass (:func:`estimate_all`).

    ``mle[k]`` equals ``mle(x, k, ci=..., n_bootstrap=..., seed=...)`` and ``twonn`` equals
    ``twonn(x, variant=..., ...)`` (None when not asked for); floats, or
    :class:`IntervalEstimate` when a ``ci`` was given. ``k_max`` is the number of non-zero
    neighbour distances computed per point, ``duplicates_skipped`` the number of zero
    distances (exact duplicates) skipped over all points.
    """

    mle: dict[int, Any]
    twonn: Any
    k_max: int
    duplicates_skipped: int


def _check_ks(ks: Any, twonn: bool, n: int | None) -> list[int]:
    try:
        ks_list = [ks] if isinstance(ks, (int, np.integer)) else list(ks)
    except TypeError:
        raise ValueError(f"ks must be an integer or an iterable of integers, got {ks!r}") from None
    hint = "" if n is None else f" (N={n} points, the point itself is excluded)"
    high = None if n is None else n - 1
    hint = hint or " (the estimator divides by k - 2)"
    out = sorted({check_int("k", k, low=3, high=high, hint=hint) for k in ks_list})
    if not out and not twonn:
        raise ValueError("nothing to estimate: ks is empty and twonn=False")
    return out


def _estimate_from_nonzero(t, ks, twonn, variant, f, ci, n_bootstrap, seed, zeros) -> DimensionEstimates:
    """Estimates from (N, K) ascending non-zero distances t (K >= max(ks), and >= 2 for TwoNN)."""
    jobs, keys = [], []
    mle_est = {}
    for k in ks:
        inv = _mle_inverse(t[:, :k])
        mle_est[k] = float(_mle_stat(inv))
        jobs.append((_mle_stat, inv))
        keys.append(k)
    tw_est = None
    if twonn:
        mu = t[:, 1] / t[:, 0]
        n_keep = _n_keep(mu.shape[0], variant, f)
        tw_est = float(_twonn_slope(np.sort(mu), n_keep))
        if not np.isfinite(tw_est):
            raise ValueError(
                "TwoNN is undefined: every kept point has r2 == r1 (log mu = 0), e.g. a regular lattice"
            )

        def stat(samples: np.ndarray) -> np.ndarray:
            return _twonn_slope(np.sort(samples, axis=-1), n_keep)

        jobs.append((stat, mu))
        keys.append("twonn")
    level = check_level(ci)
    if level is not None:
        n_bootstrap = check_int("n_bootstrap", n_bootstrap, low=1)
        intervals = _bootstrap_many(jobs, level, n_bootstrap, check_int("seed", seed, low=0))
        wrap = dict(zip(keys, intervals))
        mle_est = {k: IntervalEstimate(v, *wrap[k], level, n_bootstrap) for k, v in mle_est.items()}
        if twonn:
            tw_est = IntervalEstimate(tw_est, *wrap["twonn"], level, n_bootstrap)
    return DimensionEstimates(mle_est, tw_est, int(t.shape[1]), int(np.sum(zeros)))


def estimate_all(
    x: Any,
    ks: Any = (5, 10, 20, 50),
    *,
    twonn: bool = True,
    variant: str = "pope",
    discard_fraction: float = 0.1,
    ci: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    chunk_size: int | None = None,
) -> DimensionEstimates:
    """MLE at every k in ``ks`` and TwoNN from ONE exact kNN pass at k_max = max(ks).

    Same semantics as separate :func:`mle` / :func:`twonn` calls with the same ``ci``,
    ``n_bootstrap`` and ``seed`` (each interval equals the separate call's: the resamples are
    drawn once and shared), including duplicate handling (zero distances skipped, one
    :class:`~domaingap.kernels._validation.DuplicatePointsWarning`). The one difference: every
    point needs k_max distinct other points (a separate call at a smaller k needs only k).

    Parameters
    ----------
    x : (N, D) or (N, C, H, W) tensor or array.
    ks : integer or iterable of integers, each 3 <= k <= N - 1 (duplicates ignored); may be
        empty when only TwoNN is wanted. P1's estimator multiverse: e.g. ``range(5, 51)``.
    twonn, variant, discard_fraction : TwoNN as in :func:`twonn` (``twonn=False`` skips it).
    ci, n_bootstrap, seed : percentile-bootstrap intervals as in :func:`mle` / :func:`twonn`.
    chunk_size : block size of the exact kNN.

    Returns
    -------
    :class:`DimensionEstimates` (``.mle`` a dict k -> estimate, ``.twonn``).
    """
    f = _check_variant(variant, discard_fraction)
    xt = as_points(x, "x", min_points=3)
    ks_ = _check_ks(ks, twonn, xt.shape[0])
    k_max = max(ks_ + ([2] if twonn else []))
    t, zeros = _nonzero_knn(xt, k_max, chunk_size)
    _warn_duplicates(zeros)
    return _estimate_from_nonzero(t, ks_, twonn, variant, f, ci, n_bootstrap, seed, zeros)


def estimate_all_from_knn(
    distances: Any,
    ks: Any = (5, 10, 20, 50),
    *,
    twonn: bool = True,
    variant: str = "pope",
    discard_fraction: float = 0.1,
    ci: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
) -> DimensionEstimates:
    """:func:`estimate_all` from given neighbour distances (N, K), rows ascending, self excluded.

    Zero entries (duplicates) are skipped as in :func:`mle_from_knn`, so K must exceed max(ks)
    where a row has zeros. Each estimate equals :func:`mle_from_knn` / :func:`twonn_from_knn` on
    the same distances with the same bootstrap arguments.
    """
    f = _check_variant(variant, discard_fraction)
    ks_ = _check_ks(ks, twonn, None)
    k_max = max(ks_ + ([2] if twonn else []))
    d = _as_distance_matrix(distances, k_max, f"k={k_max}")
    if d.shape[0] < (3 if twonn else 2):
        raise ValueError(f"distances needs at least {3 if twonn else 2} rows (points); got {d.shape[0]}")
    t, zeros = _first_positive(d, k_max)
    _warn_duplicates(zeros)
    return _estimate_from_nonzero(t, ks_, twonn, variant, f, ci, n_bootstrap, seed, zeros)
