"""Shared pieces of the intrinsic dimension estimators (internals of :mod:`domaingap.kernels.intrinsic_dim`).

:class:`IntervalEstimate`; the nearest non-zero neighbour distances (duplicates skipped) and the checks of given
distance matrices; the seeded percentile bootstrap over points (:func:`_bootstrap_many`, :func:`_bootstrap`); and
the per-point statistics of the MLE and TwoNN, shared by the single estimators of
:mod:`~domaingap.kernels.intrinsic_dim` and the one-pass :mod:`~domaingap.kernels._dim_onepass`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from ._validation import DuplicatePointsWarning, check_int, check_level

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


# --------------------------------------------------------------------------------------
# bootstrap and per-point statistics


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
