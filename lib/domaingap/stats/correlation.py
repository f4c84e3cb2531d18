"""Correlation of paired values: Pearson r with its Fisher-z interval, Spearman rho with a bootstrap interval."""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
from scipy import stats

from ._base import StatResult, as_labels, as_pair, check_alternative, check_count, check_level
from .resampling import group_members, scipy_interval

RESAMPLE = ("pairs", "groups")


def _check_varies(x: np.ndarray, y: np.ndarray) -> None:
    for name, v in (("x", x), ("y", y)):
        if np.ptp(v) == 0:
            raise ValueError(f"correlation needs variance in {name}; all {v.size} values equal {v[0]:g}")


def pearson(x: Sequence[float], y: Sequence[float], *, alternative: str = "two-sided", level: float = 0.95,
            unit: str = "") -> StatResult:
    """Pearson r with scipy's p-value (exact under bivariate normality, ``scipy.stats.pearsonr``) and the Fisher
    z interval ``tanh(atanh(r) +/- z_{(1+level)/2} / sqrt(n - 3))`` (Fisher 1921). Needs n >= 4 pairs (the
    interval's ``n - 3``); NaN pairs must be dropped by the caller."""
    a, b = as_pair(x, y, min_n=4)
    check_alternative(alternative)
    check_level(level)
    _check_varies(a, b)
    res = stats.pearsonr(a, b, alternative=alternative)
    ci = stats.pearsonr(a, b).confidence_interval(level)  # Fisher z, two-sided whatever `alternative`
    return StatResult(test="Pearson r", estimand="r", estimate=float(res.statistic), low=float(ci.low),
                      high=float(ci.high), level=level, ci_method="Fisher z CI", p=float(res.pvalue),
                      alternative=alternative, statistic=float(res.statistic), n=(a.size,), unit=unit)


def _rank_corr(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """Spearman rho along ``axis`` (Pearson r of mid-ranks); NaN where x or y is constant."""
    rx = stats.rankdata(x, axis=axis)
    ry = stats.rankdata(y, axis=axis)
    rx = rx - rx.mean(axis=axis, keepdims=True)
    ry = ry - ry.mean(axis=axis, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rx * ry).sum(axis=axis) / np.sqrt((rx ** 2).sum(axis=axis) * (ry ** 2).sum(axis=axis))


def center_within(values: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """``values`` minus the mean of their group (a copy)."""
    out = values.astype(float, copy=True)
    for g in dict.fromkeys(groups.tolist()):
        m = groups == g
        out[m] -= out[m].mean()
    return out


def spearman(x: Sequence[float], y: Sequence[float], *, groups: Sequence[Any] | None = None,
             within_groups: bool = False, resample: str = "pairs", alternative: str = "two-sided",
             level: float = 0.95, n_resamples: int = 2000, seed: int = 0, p_method: str = "t",
             unit: str = "") -> StatResult:
    """Spearman rho with a bootstrap CI.

    Args:
        x, y: ``(n,)`` paired values, n >= 4.
        groups: ``(n,)`` labels (e.g. the target dataset of each run); needed by the two options below.
        within_groups: centre ``x`` and ``y`` within each group first, so rho is the within-group association
            (a group that is high on both cannot create a correlation across groups).
        resample: ``"pairs"`` (pairs resampled i.i.d., ``scipy.stats.bootstrap``, BCa with percentile fallback)
            or ``"groups"`` (cluster bootstrap: whole groups resampled with replacement, percentile interval),
            for pairs that are not independent within a group. Needs >= 3 groups.
        p_method: ``"t"`` (scipy's t approximation, fine for n >~ 10) or ``"permutation"`` (pairings permuted,
            ``scipy.stats.permutation_test``; exact when n! <= n_resamples; without groups only).

    Resamples in which x or y is constant have no rho; they are left out and counted in the notes.
    """
    a, b = as_pair(x, y, min_n=4)
    check_alternative(alternative)
    check_level(level)
    check_count(n_resamples, "n_resamples", 2)
    if resample not in RESAMPLE:
        raise ValueError(f"resample must be one of {RESAMPLE}, got {resample!r}")
    if p_method not in ("t", "permutation"):
        raise ValueError(f"p_method must be 't' or 'permutation', got {p_method!r}")
    g = as_labels(groups, "groups", a.size) if groups is not None else None
    if g is None and (within_groups or resample == "groups"):
        raise ValueError("within_groups=True and resample='groups' need groups")
    if g is not None and not (within_groups or resample == "groups"):
        raise ValueError("groups given but unused: pass within_groups=True and/or resample='groups'")
    if g is not None and p_method == "permutation":
        raise ValueError("p_method='permutation' permutes across all pairs: not valid with groups")
    if within_groups:
        a, b = center_within(a, g), center_within(b, g)
    _check_varies(a, b)
    rho = float(stats.spearmanr(a, b).statistic)
    notes: tuple[str, ...] = ("x and y centred within groups",) if within_groups else ()
    if p_method == "t":
        p = float(stats.spearmanr(a, b, alternative=alternative).pvalue)
        test = "Spearman rho (t approximation)"
    else:
        # permute y against a fixed x: n! distinct pairings (permuting both samples would count each twice over)
        perm = stats.permutation_test((b,), lambda q, axis=-1: _rank_corr(a, q, axis=axis),
                                      permutation_type="pairings", n_resamples=n_resamples, vectorized=True,
                                      alternative=alternative, rng=np.random.default_rng(seed))
        p = float(perm.pvalue)
        test = "Spearman rho (permutation)"
    if resample == "pairs":
        low, high, ci_method, ci_notes = scipy_interval((a, b), _rank_corr, paired=True, level=level,
                                                        n_resamples=n_resamples, seed=seed)
        n_groups = None
    else:
        names, members = group_members(np.arange(a.size), g)
        n_groups = len(names)
        if n_groups < 3:
            raise ValueError(f"resample='groups' needs >= 3 groups, got {n_groups}: {names}")
        rng = np.random.default_rng(seed)
        boot = np.empty(n_resamples)
        for i in range(n_resamples):
            idx = np.concatenate([members[k] for k in rng.integers(n_groups, size=n_groups)])
            boot[i] = _rank_corr(a[idx], b[idx])
        finite = boot[np.isfinite(boot)]
        if finite.size == 0:
            raise ValueError("every cluster resample had constant x or y")
        tail = (1 - level) / 2
        low, high = (float(v) for v in np.quantile(finite, [tail, 1 - tail]))
        ci_method = f"percentile cluster bootstrap (groups; {n_resamples} resamples)"
        ci_notes = ((f"{boot.size - finite.size} of {boot.size} resamples with constant x or y left out",)
                    if finite.size < boot.size else ())
    return StatResult(test=test, estimand="rho", estimate=rho, low=low, high=high, level=level, ci_method=ci_method,
                      p=p, alternative=alternative, statistic=rho, n=(a.size,), unit=unit, notes=notes + ci_notes,
                      extra={} if n_groups is None else {"n_groups": n_groups})
