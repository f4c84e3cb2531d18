"""Bootstrap confidence intervals: one sample (``scipy.stats.bootstrap``) and two-stage for nested values.

BCa (bias-corrected and accelerated; Efron & Tibshirani 1993, *An Introduction to the Bootstrap*, ch. 14) is
the default. It cannot be computed for degenerate bootstrap distributions (e.g. all values equal, or resamples
whose statistic is undefined); then the percentile interval of the same resamples is returned and the result's
``ci_method`` and ``notes`` say so.
"""

from __future__ import annotations

import warnings
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

from ._base import StatResult, as_labels, as_sample, check_count, check_level, distinct_messages

BOOTSTRAP_METHODS = ("BCa", "percentile", "basic")


def scipy_interval(data: Sequence[np.ndarray], statistic: Callable, *, paired: bool, level: float,
                   n_resamples: int, seed: int, method: str = "BCa", batch: int | None = None
                   ) -> tuple[float, float, str, tuple[str, ...]]:
    """``scipy.stats.bootstrap`` of ``statistic`` over ``data`` (a tuple of samples) with the BCa -> percentile
    fallback. Returns ``(low, high, ci_method, notes)``; warnings from scipy are captured into ``notes``.

    ``statistic`` may take ``axis`` (vectorised, much faster) or not; scipy detects which. Samples are
    resampled independently, or jointly by index when ``paired``. ``batch`` bounds the resamples evaluated at
    once (memory of a vectorised statistic).
    """
    if method not in BOOTSTRAP_METHODS:
        raise ValueError(f"method must be one of {BOOTSTRAP_METHODS}, got {method!r}")
    check_level(level)
    check_count(n_resamples, "n_resamples", 2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = stats.bootstrap(tuple(data), statistic, paired=paired, confidence_level=level,
                              n_resamples=n_resamples, method=method, batch=batch,
                              rng=np.random.default_rng(seed))
    low, high = float(res.confidence_interval.low), float(res.confidence_interval.high)
    label = f"{method} bootstrap ({n_resamples} resamples)"
    if np.isfinite(low) and np.isfinite(high):
        return low, high, label, ()
    # BCa's acceleration and bias terms are 0/0 on degenerate distributions: fall back to the percentile interval
    # of the very same resamples (so the seed still fixes the answer)
    dist = np.asarray(res.bootstrap_distribution, dtype=float).reshape(-1)
    finite = dist[np.isfinite(dist)]
    if finite.size == 0:
        raise ValueError(f"every bootstrap resample gave a non-finite statistic ({distinct_messages(caught)})")
    tail = (1 - level) / 2
    low, high = (float(v) for v in np.quantile(finite, [tail, 1 - tail]))
    notes = (f"{method} interval not computable ({'; '.join(distinct_messages(caught)) or 'non-finite bounds'}): "
             f"percentile interval of the same resamples",)
    if finite.size < dist.size:
        notes += (f"{dist.size - finite.size} of {dist.size} resamples gave a non-finite statistic and were left "
                  f"out",)
    return low, high, f"percentile bootstrap ({n_resamples} resamples; {method} fallback)", notes


def _name(statistic: Callable) -> str:
    return getattr(statistic, "__name__", "statistic")


def bootstrap_ci(values: Sequence[float], statistic: Callable = np.mean, *, level: float = 0.95,
                 n_resamples: int = 2000, seed: int = 0, method: str = "BCa", unit: str = "") -> StatResult:
    """Bootstrap CI of ``statistic`` over one sample (``scipy.stats.bootstrap``, values resampled i.i.d.).

    Args:
        values: ``(n,)`` finite numbers, n >= 2 (the units are assumed exchangeable and independent).
        statistic: e.g. ``np.mean``, ``np.median``; one taking ``axis`` runs vectorised.
        level: two-sided confidence level.
        n_resamples, seed: resamples and the seed of ``numpy.random.default_rng``.
        method: ``"BCa"`` (default; percentile fallback stated in the result), ``"percentile"`` or ``"basic"``.

    Returns:
        :class:`StatResult` with ``estimate = statistic(values)``, ``low``/``high`` and ``p=None``.
    """
    v = as_sample(values, "values", min_n=2)
    low, high, ci_method, notes = scipy_interval((v,), statistic, paired=False, level=level,
                                                 n_resamples=n_resamples, seed=seed, method=method)
    return StatResult(test="bootstrap", estimand=_name(statistic), estimate=float(statistic(v)), low=low, high=high,
                      level=level, ci_method=ci_method, n=(v.size,), unit=unit, notes=notes)


def group_members(values: np.ndarray, groups: np.ndarray) -> tuple[list[Any], list[np.ndarray]]:
    """Values split by group label, groups in order of first appearance."""
    names = list(dict.fromkeys(groups.tolist()))
    index = {g: i for i, g in enumerate(names)}
    codes = np.array([index[g] for g in groups.tolist()])
    return names, [values[codes == i] for i in range(len(names))]


def cluster_bootstrap_ci(values: Sequence[float], groups: Sequence[Any], *, level: float = 0.95,
                         n_resamples: int = 2000, seed: int = 0, resample_members: bool = True,
                         unit: str = "") -> StatResult:
    """Mean of group means with a two-stage (cluster) percentile bootstrap CI, for values nested in groups
    (e.g. subsamples within tasks, tasks within datasets).

    Each resample draws the groups with replacement and then, when ``resample_members``, the members of each
    drawn group with replacement (a drawn group that appears twice gets two independent member resamples);
    the statistic is the mean of the drawn groups' means. The interval thus carries both the spread between
    groups and the sampling noise within a group (Davison & Hinkley 1997, *Bootstrap Methods and their
    Application*, sec. 3.8). Groups weigh equally whatever their size. With one group the interval reflects
    within-group noise only (a note says so). Percentile interval: BCa has no standard two-stage form.

    Args:
        values: ``(n,)`` finite numbers; groups: ``(n,)`` labels (any hashable, e.g. task names).

    Returns:
        :class:`StatResult` with ``n = (n_values,)`` and ``extra = {"n_groups": ..., "groups": [...]}``.
    """
    v = as_sample(values, "values", min_n=1)
    g = as_labels(groups, "groups", v.size)
    check_level(level)
    check_count(n_resamples, "n_resamples", 2)
    names, members = group_members(v, g)
    n_groups = len(names)
    rng = np.random.default_rng(seed)
    picks = rng.integers(n_groups, size=(n_resamples, n_groups))
    if resample_members:
        means = np.empty(picks.shape)
        for i, m in enumerate(members):
            where = picks == i
            k = int(where.sum())
            if k:  # k independent member resamples of group i, one per time it was drawn
                means[where] = m[rng.integers(m.size, size=(k, m.size))].mean(axis=1)
    else:
        means = np.array([m.mean() for m in members])[picks]
    boot = means.mean(axis=1)
    tail = (1 - level) / 2
    low, high = (float(b) for b in np.quantile(boot, [tail, 1 - tail]))
    notes = () if n_groups > 1 else ("one group only: the interval reflects within-group sampling, not the spread "
                                     "between groups",)
    stages = "groups then members" if resample_members else "groups"
    return StatResult(test="two-stage bootstrap", estimand="mean of group means",
                      estimate=float(np.mean([m.mean() for m in members])), low=low, high=high, level=level,
                      ci_method=f"percentile cluster bootstrap ({stages}; {n_resamples} resamples)",
                      n=(v.size,), unit=unit, notes=notes, extra={"n_groups": n_groups, "groups": names})
