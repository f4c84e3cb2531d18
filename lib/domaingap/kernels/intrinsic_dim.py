"""Intrinsic dimension estimators used by P1 (d_data and d_repr).

Konz & Mazurowski (ICLR 2024, arXiv 2401.08865) estimate the intrinsic dimension of raw
pixels (d_data) with the Levina-Bickel maximum-likelihood estimator in the
MacKay-Ghahramani form, k = 20, and of learned representations (d_repr) with TwoNN, both
through the code of Pope et al. (ICLR 2021, github.com/ppope/dimensions). This module
implements the two estimators exactly as that code defines them, on top of the exact
kNN of :mod:`domaingap.kernels.distances`:

* :func:`mle` -- for each point, with T_1 <= ... <= T_k the distances to its k nearest
  neighbours (itself excluded),

      inv_i = 1/(k-2) * sum_{j=1}^{k-1} log(T_k / T_j),      d = 1 / mean_i(inv_i).

  Averaging the *inverse* local estimates is MacKay & Ghahramani's (2005) correction of
  Levina & Bickel (2005); 1/(k-2) makes each inv_i an unbiased estimate of 1/d.
* :func:`twonn` -- Facco et al. (2017): mu_i = r2/r1 (second over first neighbour
  distance) is Pareto(d), so -log(1 - F(mu)) = d log(mu). Sort mu, take the empirical
  F_i = i/n, and fit a line through the origin. ``variant="pope"`` (P1's code) drops only
  the single largest mu; ``variant="facco"`` drops the largest ``discard_fraction`` of
  them (Facco et al.'s heuristic, as in scikit-dimension).

* :func:`estimate_all` -- P1's estimator multiverse: the MLE at several k (e.g. 5, 10, 20,
  50, or every k in 5..50) and TwoNN from ONE exact kNN pass at the largest k. Each value
  (and bootstrap interval) equals the separate :func:`mle` / :func:`twonn` call's;
  :func:`estimate_all_from_knn` does the same from given neighbour distances.

Duplicates: like Pope et al.'s ``KNNComputerNoCheck``, zero distances (exact duplicate
images) are skipped, i.e. T_1..T_k (and r1, r2) are the nearest *non-zero* distances; the
number skipped is reported in a :class:`~domaingap.kernels._validation.DuplicatePointsWarning`.

Uncertainty (``ci=0.95``): a percentile bootstrap over points, seeded (the same seed draws
the same resamples for every estimator, which :func:`estimate_all` shares). For the MLE the
per-point inverse estimates inv_i are resampled with replacement (cheap and standard: d
is a smooth function of their mean); for TwoNN the ratios mu_i are resampled and the
regression refitted. Both condition on the kNN graph of the full sample (neighbours are
not recomputed), so the interval reflects the spread of the local statistics, not the
sampling of the data set itself.

Shapes: x is (N, D) or (N, C, H, W) (tensor or NumPy array, flattened per row);
``distances`` arguments are (N, K) ascending neighbour distances, e.g. from
:func:`domaingap.kernels.distances.knn`.

Code: the one-pass estimators live in :mod:`~domaingap.kernels._dim_onepass` and the pieces they share with
:func:`mle` and :func:`twonn` (:class:`IntervalEstimate`, duplicate skipping, the bootstrap) in
:mod:`~domaingap.kernels._dim_common`; both are re-exported here, so import from this module.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# Re-exported: the one-pass estimators and the shared pieces (tests and other kernels import them from here).
from ._dim_common import (  # noqa: F401
    _VARIANTS,
    IntervalEstimate,
    _as_distance_matrix,
    _bootstrap,
    _bootstrap_many,
    _check_variant,
    _finish,
    _first_positive,
    _mle_inverse,
    _mle_stat,
    _n_keep,
    _nonzero_knn,
    _twonn_slope,
    _warn_duplicates,
)
from ._dim_onepass import (  # noqa: F401
    DimensionEstimates,
    _check_ks,
    _estimate_from_nonzero,
    estimate_all,
    estimate_all_from_knn,
)
from ._validation import DuplicatePointsWarning, as_points, check_int, check_level  # noqa: F401

__all__ = [
    "DimensionEstimates",
    "IntervalEstimate",
    "estimate_all",
    "estimate_all_from_knn",
    "mle",
    "mle_from_knn",
    "twonn",
    "twonn_from_knn",
    "nonzero_knn_distances",
]


def nonzero_knn_distances(x: Any, k: int, *, chunk_size: int | None = None, warn: bool = True) -> np.ndarray:
    """Distances to the k nearest neighbours at non-zero distance, shape (N, k), float64.

    Exact duplicates of a point (distance 0) are skipped, as in Pope et al.'s code; the
    point itself is always excluded. Rows with duplicates are re-queried with more
    neighbours, so the result is exact for every row. Raises ValueError when a point has
    fewer than k distinct other points.
    """
    xt = as_points(x, "x", min_points=3)
    n = xt.shape[0]
    k = check_int("k", k, low=1, high=n - 1, hint=f" (N={n} points, the point itself is excluded)")
    d, skipped = _nonzero_knn(xt, k, chunk_size)
    if warn:
        _warn_duplicates(skipped)
    return d


# --------------------------------------------------------------------------------------
# estimators


def mle_from_knn(distances: Any, k: int = 20, *, ci: float | None = None, n_bootstrap: int = 1000, seed: int = 0):
    """Levina-Bickel / MacKay-Ghahramani MLE of intrinsic dimension from neighbour distances.

    Parameters
    ----------
    distances : (N, K) array or tensor, each row ascending (e.g. ``distances.knn(x, k)[0]``)
        Distances from each point to its nearest neighbours, the point itself excluded.
        Zero entries (duplicates) are skipped, so K must exceed k where a row has zeros.
    k : int, >= 3
        Neighbours per point (P1 uses k = 20).
    ci, n_bootstrap, seed
        ``ci=0.95`` returns an :class:`IntervalEstimate` from a bootstrap over the
        per-point inverse estimates (see module docstring).

    Returns
    -------
    float ``d = 1 / mean_i inv_i`` with ``inv_i = 1/(k-2) sum_{j<k} log(T_k / T_j)``
    (Konz & Mazurowski 2024, Sec. 3.1; Pope et al. 2021), or an IntervalEstimate.
    """
    k = check_int("k", k, low=3, hint=" (the estimator divides by k - 2)")
    d = _as_distance_matrix(distances, k, f"k={k}")
    if d.shape[0] < 2:
        raise ValueError(f"distances needs at least 2 rows (points); got {d.shape[0]}")
    t, zeros = _first_positive(d, k)
    _warn_duplicates(zeros)
    inv = _mle_inverse(t)
    return _finish(float(_mle_stat(inv)), inv, _mle_stat, ci, n_bootstrap, seed)


def mle(
    x: Any,
    k: int = 20,
    *,
    ci: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    chunk_size: int | None = None,
):
    """MLE intrinsic dimension of a point set (P1's d_data estimator, k = 20).

    Parameters
    ----------
    x : (N, D) or (N, C, H, W) tensor or array; N > k. Raw pixels in P1 ([0, 255]).
    k : int, 3 <= k <= N - 1.
    ci, n_bootstrap, seed : see :func:`mle_from_knn`.
    chunk_size : block size of the exact kNN (:func:`domaingap.kernels.distances.knn`).

    Returns
    -------
    float, or :class:`IntervalEstimate` when ``ci`` is given. Computed on the device of
    ``x`` (the kNN); the O(N k) estimator itself runs in float64 NumPy.
    """
    k = check_int("k", k, low=3, hint=" (the estimator divides by k - 2)")
    t = nonzero_knn_distances(x, k, chunk_size=chunk_size)
    inv = _mle_inverse(t)
    return _finish(float(_mle_stat(inv)), inv, _mle_stat, ci, n_bootstrap, seed)


def twonn_from_knn(
    distances: Any,
    *,
    variant: str = "pope",
    discard_fraction: float = 0.1,
    ci: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
):
    """TwoNN intrinsic dimension from neighbour distances (N, K >= 2), rows ascending.

    r1, r2 are each row's first two non-zero distances; mu = r2 / r1. ``variant="pope"``
    (Pope et al. 2021, used by P1 for d_repr) drops only the largest mu;
    ``variant="facco"`` drops the largest ``discard_fraction`` of them (ignored for
    "pope"). In both, F_i = i / n with n the number of points before discarding, and the
    slope of -log(1 - F_i) on log mu_(i) through the origin is the estimate.
    """
    f = _check_variant(variant, discard_fraction)
    d = _as_distance_matrix(distances, 2, "TwoNN")
    n = d.shape[0]
    if n < 3:
        raise ValueError(f"TwoNN needs at least 3 points; got N={n}")
    t, zeros = _first_positive(d, 2)
    _warn_duplicates(zeros)
    return _twonn_core(t[:, 1] / t[:, 0], variant, f, ci, n_bootstrap, seed)


def _twonn_core(mu: np.ndarray, variant: str, f: float, ci, n_bootstrap, seed):
    n_keep = _n_keep(mu.shape[0], variant, f)
    mu_sorted = np.sort(mu)
    est = float(_twonn_slope(mu_sorted, n_keep))
    if not np.isfinite(est):
        raise ValueError(
            "TwoNN is undefined: every kept point has r2 == r1 (log mu = 0), e.g. a regular lattice"
        )

    def stat(samples: np.ndarray) -> np.ndarray:
        return _twonn_slope(np.sort(samples, axis=-1), n_keep)

    return _finish(est, mu, stat, ci, n_bootstrap, seed)


def twonn(
    x: Any,
    *,
    variant: str = "pope",
    discard_fraction: float = 0.1,
    ci: float | None = None,
    n_bootstrap: int = 1000,
    seed: int = 0,
    chunk_size: int | None = None,
):
    """TwoNN intrinsic dimension of a point set (P1's d_repr estimator is ``variant="pope"``).

    Parameters
    ----------
    x : (N, D) or (N, C, H, W) tensor or array, N >= 3.
    variant : "pope" (drop only the largest ratio) or "facco" (drop ``discard_fraction``).
    discard_fraction : float in [0, 1), used by "facco" only (default 0.1 as Facco et al.).
    ci, n_bootstrap, seed : ``ci=0.95`` gives an :class:`IntervalEstimate` from a bootstrap
        over the ratios mu_i (see module docstring).
    chunk_size : block size of the exact kNN.

    Returns
    -------
    float, or IntervalEstimate.
    """
    f = _check_variant(variant, discard_fraction)
    t = nonzero_knn_distances(x, 2, chunk_size=chunk_size)
    return _twonn_core(t[:, 1] / t[:, 0], variant, f, ci, n_bootstrap, seed)
