"""Trend tests over ordered conditions (e.g. a network's layers from shallow to deep).

- :func:`page_trend`: Page's (1963) L test of a monotone change along the columns of a blocks x conditions matrix,
  two-sided, with the mean per-block Spearman rho as its effect size (BCa bootstrap CI over blocks).
"""

from __future__ import annotations

import numpy as np

from ._base import StatResult
from .resampling import bootstrap_ci

__all__ = ["page_trend"]


def page_trend(matrix, *, level: float = 0.95, n_resamples: int = 2000, seed: int = 0, unit: str = "",
               ci: bool = True) -> StatResult:
    """Page's (1963) trend test of a monotone change along the columns of ``matrix`` (``(m, k)``: m independent
    blocks, e.g. networks, by k ordered conditions, e.g. layers from shallow to deep), two-sided: twice the
    smaller of ``scipy.stats.page_trend_test``'s p-values for an increasing and a decreasing order (capped at 1).

    The estimate is the mean over blocks of Spearman's rho between the column order and each row (+1: every
    row increases; -1: every row decreases); Page's L is a linear function of it when rows have no ties
    (L = m k (k^2 - 1) (rho + 3 (k + 1) / (k - 1)) / 12). Its interval is the BCa bootstrap of that mean over
    blocks (:func:`domaingap.stats.bootstrap_ci`); ``ci=False`` skips it (the simulated calibration needs only p).

    Returns:
        :class:`StatResult` (estimand ``mean Spearman rho with depth``), ``statistic`` = L of the increasing
        order, ``extra``: ``L_decreasing``, ``p_increasing``, ``p_decreasing``, ``per_row`` (rho), ``k``.

    Raises:
        ValueError: not a finite (m >= 2, k >= 3) matrix.
    """
    from scipy import stats as sps

    x = np.asarray(matrix, dtype=float)
    if x.ndim != 2 or x.shape[0] < 2 or x.shape[1] < 3 or not np.isfinite(x).all():
        raise ValueError(f"page_trend needs a finite (m >= 2, k >= 3) matrix, got shape {x.shape}")
    k = x.shape[1]
    up = sps.page_trend_test(x, predicted_ranks=list(range(1, k + 1)))
    down = sps.page_trend_test(x, predicted_ranks=list(range(k, 0, -1)))
    order = np.arange(k, dtype=float)
    rho = np.array([sps.spearmanr(order, row).statistic if np.ptp(row) > 0 else 0.0 for row in x])
    p = float(min(1.0, 2 * min(up.pvalue, down.pvalue)))
    low = high = None
    ci_method, notes = "", ()
    if ci and np.ptp(rho) == 0:
        low = high = float(rho[0])
        ci_method = "degenerate (every row has the same rho)"
    elif ci:
        boot = bootstrap_ci(rho, np.mean, level=level, n_resamples=n_resamples, seed=seed, unit=unit)
        low, high, ci_method, notes = boot.low, boot.high, boot.ci_method, boot.notes
    return StatResult(test=f"Page's trend test ({up.method}, k = {k})", estimand="mean Spearman rho with depth",
                      estimate=float(rho.mean()), low=low, high=high, level=level, ci_method=ci_method, p=p,
                      alternative="two-sided", statistic=float(up.statistic), n=(x.shape[0],), unit=unit,
                      notes=notes, extra={"L_decreasing": float(down.statistic), "p_increasing": float(up.pvalue),
                                          "p_decreasing": float(down.pvalue), "per_row": rho.tolist(), "k": k})
