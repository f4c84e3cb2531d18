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
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import DuplicatePointsWarning, as_points, check_int, check_level

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

_VARIANTS = ("pope", "facco")


@dataclass(frozen=True)
class IntervalEstimate:
    """A point estimate with a percentile-bootstrap confidence interval."""

    estimate: float
    low: float
    high: float
    level: float
    n_bootstrap: int

    def __float__(self) -> float:
        return float(self.estimate)


# --------------------------------------------------------------------------------------
# neighbour distances with duplicates skipped


def _as_distance_matrix(distances: Any, min_cols: int, what: str) -> np.ndarray:
    import torch

    if isinstance(distances, torch.Tensor):
        distances = distances.detach().cpu().numpy()
    d = np.asarray(distances, dtype=np.float64)
    if d.ndim != 2:
        raise ValueError(f"distances must have shape (N, K) (one row of neighbour distances per point); got shape {d.shape}")
    if d.shape[1] < min_cols:
        raise ValueError(f"distances has K={d.shape[1]} columns but {what} needs at least {min_cols}")
    if not np.all(np.isfinite(d)):
        raise ValueError("distances contains NaN or Inf")
    if np.any(d < 0):
        raise ValueError(f"distances must be non-negative; found minimum {d.min()}")
    if d.shape[1] > 1 and np.any(np.diff(d, axis=1) < 0):
        row = int(np.nonzero(np.any(np.diff(d, axis=1) < 0, axis=1))[0][0])
        raise ValueError(f"distances must be sorted ascending along each row (row {row} is not)")
    return d


def _first_positive(d: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """First k strictly positive entries of each ascending row, and the zeros skipped per row."""
    pos = d > 0
    rank = np.cumsum(pos, axis=1)
    short = rank[:, -1] < k
    if np.any(short):
        row = int(np.nonzero(short)[0][0])
        raise ValueError(
            f"point {row} has only {int(rank[row, -1])} non-zero neighbour distances among the "
            f"{d.shape[1]} given, but k={k} are needed (exact duplicates are skipped); "
            "pass more neighbour columns"
        )
    keep = pos & (rank <= k)
    return d[keep].reshape(d.shape[0], k), (~pos).sum(axis=1)


def _warn_duplicates(zeros: np.ndarray) -> None:
    n_rows = int(np.count_nonzero(zeros))
    if n_rows:
        warnings.warn(
            f"{int(zeros.sum())} zero neighbour distances (exact duplicates) were skipped "
            f"for {n_rows} points, as in Pope et al.'s KNNComputerNoCheck",
            DuplicatePointsWarning,
            stacklevel=3,
        )


def _nonzero_knn(xt, k: int, chunk_size) -> tuple[np.ndarray, np.ndarray]:
    """(N, k) nearest non-zero distances of the points xt (N, D), and the zeros skipped per point."""
    import torch

    from . import distances as _dist

    n = xt.shape[0]
    chunk = _dist._check_chunk(chunk_size, xt.device)
    ref = _dist._Points(xt)
    sq, _ = _dist._knn_sq(ref, k, query=None, chunk=chunk)
    d = sq.sqrt().cpu().numpy()
    zeros = (d == 0).sum(axis=1)
    rows = np.nonzero(zeros)[0]
    skipped = np.zeros(n, dtype=np.int64)
    if rows.size:
        # Query mode sees the point itself as one more zero; ask for enough columns to
        # get past all duplicates, doubling until every affected row has k positive ones.
        extra = int(zeros.max())
        rows_t = torch.as_tensor(rows, device=xt.device)
        while True:
            kq = min(n, k + extra + 1)
            sq2, _ = _dist._knn_sq(ref, kq, query=ref.subset(rows_t), chunk=chunk)
            d2 = sq2.sqrt().cpu().numpy()
            if kq == n or np.all((d2 > 0).sum(axis=1) >= k):
                break
            extra *= 2
        pos_rows, z = _first_positive(d2, k)
        d[rows] = pos_rows
        skipped[rows] = z - 1  # minus the point itself
    return d, skipped


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


def _bootstrap_many(jobs, level: float, n_bootstrap: int, seed: int) -> list[tuple[float, float]]:
    """Percentile intervals of several statistics over the SAME resamples of points.

    ``jobs`` is a list of (stat, values) with values of equal length n (one entry per point).
    Each resample is drawn once and every statistic is applied to it, so each interval equals
    the one a separate :func:`_bootstrap` call with this seed gives.
    """
    rng = np.random.default_rng(seed)
    n = jobs[0][1].shape[0]
    outs = [np.empty(n_bootstrap) for _ in jobs]
    batch = max(1, min(n_bootstrap, 4_000_000 // max(n, 1)))
    for b0 in range(0, n_bootstrap, batch):
        b1 = min(b0 + batch, n_bootstrap)
        idx = rng.integers(0, n, size=(b1 - b0, n))
        for (stat, values), out in zip(jobs, outs):
            out[b0:b1] = stat(values[idx])
    alpha = (1.0 - level) / 2.0
    result = []
    for out in outs:
        low, high = np.quantile(out, [alpha, 1.0 - alpha])
        result.append((float(low), float(high)))
    return result


def _bootstrap(stat, values: np.ndarray, level: float, n_bootstrap: int, seed: int) -> tuple[float, float]:
    """Percentile interval of ``stat`` over resamples (with replacement) of ``values``."""
    return _bootstrap_many([(stat, values)], level, n_bootstrap, seed)[0]


def _mle_inverse(t: np.ndarray) -> np.ndarray:
    """Per-point inverse MLE estimates inv_i from (N, k) ascending non-zero distances."""
    k = t.shape[1]
    logs = np.log(t)
    return (logs[:, -1:] - logs[:, :-1]).sum(axis=1) / (k - 2)


def _finish(est: float, values: np.ndarray, stat, ci, n_bootstrap, seed):
    level = check_level(ci)
    if level is None:
        return est
    n_bootstrap = check_int("n_bootstrap", n_bootstrap, low=1)
    low, high = _bootstrap(stat, values, level, n_bootstrap, check_int("seed", seed, low=0))
    return IntervalEstimate(est, low, high, level, n_bootstrap)


def _mle_stat(inv: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return 1.0 / inv.mean(axis=-1)


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


def _twonn_slope(mu_sorted: np.ndarray, n_keep: int) -> np.ndarray:
    """Least-squares slope through the origin of -log(1 - i/n) on log mu_(i), i <= n_keep.

    mu_sorted (..., n) ascending along the last axis; returns shape (...).
    """
    n = mu_sorted.shape[-1]
    xs = np.log(mu_sorted[..., :n_keep])
    ys = -np.log1p(-np.arange(1, n_keep + 1) / n)
    with np.errstate(divide="ignore", invalid="ignore"):
        return (xs * ys).sum(axis=-1) / (xs * xs).sum(axis=-1)


def _n_keep(n: int, variant: str, discard_fraction: float) -> int:
    if variant == "pope":
        n_keep = n - 1
    else:
        n_keep = int(n * (1.0 - discard_fraction))
    if n_keep < 2:
        raise ValueError(
            f"TwoNN keeps {n_keep} of N={n} ratios (variant={variant!r}, "
            f"discard_fraction={discard_fraction}); at least 2 are needed"
        )
    return n_keep


def _check_variant(variant: Any, discard_fraction: Any) -> float:
    if variant not in _VARIANTS:
        raise ValueError(f"variant must be one of {_VARIANTS}, got {variant!r}")
    try:
        f = float(discard_fraction)
    except (TypeError, ValueError):
        raise ValueError(f"discard_fraction must be a number in [0, 1), got {discard_fraction!r}") from None
    if not 0.0 <= f < 1.0:
        raise ValueError(f"discard_fraction must be in [0, 1), got {discard_fraction!r}")
    return f


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


# --------------------------------------------------------------------------------------
# MLE at several k and TwoNN from one kNN pass


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
