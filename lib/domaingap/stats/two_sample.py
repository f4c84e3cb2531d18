"""Two independent samples (e.g. a per-dataset statistic of medical vs natural datasets).

- :func:`mann_whitney`: Mann-Whitney U with its AUC ``U / (n_a n_b) = P(a > b) + P(a = b) / 2``; exact p when
  scipy gives it, an exact permutation p with ties at small n; :func:`mwu_min_pvalue` says whether a design can
  reject at all (4 vs 3 two-sided: 2/35 = 0.057 > 0.05).
- :func:`welch_t`: difference in means, Welch's t (unequal variances).
- :func:`hodges_lehmann`, :func:`ratio_of_means`: shift and ratio with bootstrap CIs.
- :func:`compare_independent` / :func:`compare_domains`: all of these at once.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

from ._base import (NotComputable, StatResult, as_labels, as_sample, attempt, check_alternative, check_count,
                    check_level, format_n)
from .resampling import scipy_interval

MWU_METHODS = ("auto", "exact", "asymptotic", "permutation")
_MWU_NAMES = {"exact": "Mann-Whitney U (exact)",
              "asymptotic": "Mann-Whitney U (normal approximation, tie- and continuity-corrected)",
              "permutation": "Mann-Whitney U (exact permutation, ties)"}


def _two(a: Any, b: Any, min_n: int) -> tuple[np.ndarray, np.ndarray]:
    return as_sample(a, "a", min_n=min_n), as_sample(b, "b", min_n=min_n)


def mwu_method(n1: int, n2: int, ties: bool, max_permutations: int = 100_000) -> str:
    """The method :func:`mann_whitney` uses with ``method="auto"``: scipy's rule without ties (exact unless both
    samples exceed 8), an exact permutation test with ties when the splits number at most ``max_permutations``,
    else the normal approximation."""
    if not ties:
        return "asymptotic" if n1 > 8 and n2 > 8 else "exact"
    return "permutation" if math.comb(n1 + n2, n1) <= max_permutations else "asymptotic"


def mwu_min_pvalue(n1: int, n2: int, alternative: str = "two-sided", method: str = "exact") -> float:
    """Smallest p-value a Mann-Whitney U test can give at sample sizes ``(n1, n2)``.

    ``"exact"`` (and ``"permutation"``): the most extreme of the ``C(n1 + n2, n1)`` equally likely rank splits,
    ``1 / C`` one-sided and ``2 / C`` two-sided (4 vs 3: 2/35 = 0.057); ties only make it larger. ``"asymptotic"``:
    scipy's normal approximation at complete separation. ``"auto"``: the method :func:`mann_whitney` picks
    without ties. A design whose minimum p is >= alpha cannot reject, whatever the data.
    """
    n1, n2 = check_count(n1, "n1"), check_count(n2, "n2")
    check_alternative(alternative)
    if method == "auto":
        method = mwu_method(n1, n2, ties=False)
    if method in ("exact", "permutation"):
        return min(1.0, (2 if alternative == "two-sided" else 1) / math.comb(n1 + n2, n1))
    if method != "asymptotic":
        raise ValueError(f"method must be one of {MWU_METHODS}, got {method!r}")
    low, high = np.arange(n1, dtype=float), np.arange(n2, dtype=float) + n1
    x, y = (low, high) if alternative == "less" else (high, low)  # the split most extreme in the tested direction
    return float(stats.mannwhitneyu(x, y, alternative=alternative, method="asymptotic").pvalue)


def _auc_interval(x: np.ndarray, y: np.ndarray, level: float) -> tuple[float | None, float | None, str, tuple]:
    """Brunner-Munzel (2000) t interval of P(a > b) + P(a = b)/2 (statsmodels ``rank_compare_2indep``)."""
    from statsmodels.stats.nonparametric import rank_compare_2indep

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when the placements have no variance: handled below
        rc = rank_compare_2indep(x, y, use_t=True)
        if not (np.isfinite(rc.var_prob) and rc.var_prob > 0 and np.isfinite(rc.df)):
            return None, None, "", ("no AUC interval: the Brunner-Munzel variance is 0 (complete separation or all "
                                    "values tied)",)
        low, high = (float(v) for v in rc.conf_int(alpha=1 - level))
    notes = ()
    if low < 0 or high > 1:  # the t interval ignores the [0, 1] range at small n
        notes = (f"AUC interval clipped to [0, 1] from [{low:.3g}, {high:.3g}]",)
        low, high = max(low, 0.0), min(high, 1.0)
    return low, high, "Brunner-Munzel t CI", notes


def mann_whitney(a: Sequence[float], b: Sequence[float], *, alternative: str = "two-sided", level: float = 0.95,
                 method: str = "auto", unit: str = "") -> StatResult:
    """Mann-Whitney U test of ``a`` vs ``b`` (``scipy.stats.mannwhitneyu``) with the AUC as its estimate.

    Assumes independent observations; under H0 the two samples come from one distribution. ``alternative``
    ``"greater"``: ``a`` tends to exceed ``b``. ``method="auto"``: see :func:`mwu_method`; ``"exact"`` assumes
    no ties. Two-sided permutation p-values are twice the smaller tail (scipy's convention).

    Returns:
        :class:`StatResult`: ``estimate`` = AUC = ``U_a / (n_a n_b)`` (probability that a random ``a`` exceeds a
        random ``b``, ties counting half), its Brunner-Munzel t interval (clipped to [0, 1]; none under complete
        separation, noted), ``statistic`` = U of ``a``, ``extra = {"U": ..., "min_p": ..., "method": ...}``
        where ``min_p`` is :func:`mwu_min_pvalue` for the method used.
    """
    x, y = _two(a, b, 1)
    check_alternative(alternative)
    check_level(level)
    pooled = np.concatenate([x, y])
    ties = np.unique(pooled).size < pooled.size
    if method == "auto":
        method = mwu_method(x.size, y.size, ties)
    elif method not in MWU_METHODS:
        raise ValueError(f"method must be one of {MWU_METHODS}, got {method!r}")
    notes: tuple[str, ...] = ("ties: the exact null distribution assumes none",) if ties and method == "exact" else ()
    scipy_method = stats.PermutationMethod(n_resamples=np.inf) if method == "permutation" else method
    res = stats.mannwhitneyu(x, y, alternative=alternative, method=scipy_method)
    u = float(res.statistic)
    low, high, ci_method, ci_notes = _auc_interval(x, y, level)
    min_p = mwu_min_pvalue(x.size, y.size, alternative, method)
    return StatResult(test=_MWU_NAMES[method], estimand="AUC", estimate=u / (x.size * y.size), low=low, high=high,
                      level=level if low is not None else None, ci_method=ci_method, p=float(res.pvalue),
                      alternative=alternative, statistic=u, n=(x.size, y.size), unit=unit, notes=notes + ci_notes,
                      extra={"U": u, "min_p": min_p, "method": method})


def welch_t(a: Sequence[float], b: Sequence[float], *, alternative: str = "two-sided", level: float = 0.95,
            unit: str = "") -> StatResult:
    """Difference in means ``mean(a) - mean(b)`` with Welch's t-test and its t interval
    (``scipy.stats.ttest_ind(equal_var=False)``, Welch-Satterthwaite df in ``extra["df"]``).

    Assumes independent, roughly normal means; variances may differ. Needs >= 2 values per side and some
    variance in at least one of them.
    """
    x, y = _two(a, b, 2)
    check_alternative(alternative)
    check_level(level)
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        raise ValueError(f"Welch's t needs variance in a or b; both are constant (a = {x[0]:g}, b = {y[0]:g})")
    res = stats.ttest_ind(x, y, equal_var=False, alternative=alternative)
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(level)  # two-sided, whatever `alternative`
    return StatResult(test="Welch t", estimand="mean difference (a - b)", estimate=float(x.mean() - y.mean()),
                      low=float(ci.low), high=float(ci.high), level=level, ci_method="Welch t CI",
                      p=float(res.pvalue), alternative=alternative, statistic=float(res.statistic),
                      n=(x.size, y.size), unit=unit, extra={"df": float(res.df)})


def _pairwise_median(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    x, y = np.moveaxis(x, axis, -1), np.moveaxis(y, axis, -1)
    d = x[..., :, None] - y[..., None, :]
    return np.median(d.reshape(*d.shape[:-2], -1), axis=-1)


def _ratio(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) / np.mean(y, axis=axis)


def hodges_lehmann(a: Sequence[float], b: Sequence[float], *, level: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0, method: str = "BCa", unit: str = "") -> StatResult:
    """Hodges-Lehmann shift: the median of all ``n_a n_b`` differences ``a_i - b_j`` (Hodges & Lehmann 1963),
    the location shift matching the Mann-Whitney test, with a bootstrap CI (each sample resampled on its own,
    BCa with percentile fallback). Needs >= 2 values per side."""
    x, y = _two(a, b, 2)
    batch = max(1, int(4e6 // (x.size * y.size)))  # bounds the (batch, n_a, n_b) difference array
    low, high, ci_method, notes = scipy_interval((x, y), _pairwise_median, paired=False, level=level,
                                                 n_resamples=n_resamples, seed=seed, method=method, batch=batch)
    return StatResult(test="Hodges-Lehmann", estimand="shift (median a - b)", estimate=float(_pairwise_median(x, y)),
                      low=low, high=high, level=level, ci_method=ci_method, n=(x.size, y.size), unit=unit,
                      notes=notes)


def ratio_of_means(a: Sequence[float], b: Sequence[float], *, level: float = 0.95, n_resamples: int = 2000,
                   seed: int = 0, method: str = "BCa", unit: str = "") -> StatResult:
    """``mean(a) / mean(b)`` with a bootstrap CI (each sample resampled on its own; BCa, percentile fallback).

    For positive quantities only: every value of ``b`` must be > 0, since a resampled denominator at or below
    zero makes the ratio meaningless. Needs >= 2 values per side.
    """
    x, y = _two(a, b, 2)
    bad = np.flatnonzero(y <= 0)
    if bad.size:
        raise ValueError(f"ratio of means needs b > 0; b has {y[bad][:8].tolist()} at positions {bad[:8].tolist()}")
    low, high, ci_method, notes = scipy_interval((x, y), _ratio, paired=False, level=level, n_resamples=n_resamples,
                                                 seed=seed, method=method)
    return StatResult(test="ratio of means", estimand="mean(a) / mean(b)", estimate=float(x.mean() / y.mean()),
                      low=low, high=high, level=level, ci_method=ci_method, n=(x.size, y.size), unit=unit,
                      notes=notes)


@dataclass(frozen=True)
class IndependentComparison:
    """Everything :func:`compare_independent` computes; sub-results the data cannot give are
    :class:`NotComputable` with the reason."""

    labels: tuple[str, str]
    n: tuple[int, int]
    unit: str
    means: tuple[float, float]
    medians: tuple[float, float]
    ranges: tuple[tuple[float, float], tuple[float, float]]
    mwu: StatResult  # estimate: AUC
    mwu_min_p: float
    welch: StatResult | NotComputable  # estimate: mean difference
    shift: StatResult | NotComputable  # Hodges-Lehmann
    ratio: StatResult | NotComputable  # mean(a) / mean(b)

    def can_reject(self, alpha: float = 0.05) -> bool:
        """False when the Mann-Whitney test cannot reach p < alpha at these sample sizes, whatever the data."""
        return self.mwu_min_p < alpha

    def summary(self, digits: int = 3) -> str:
        f = f"{{:.{digits}g}}".format
        a, b = self.labels
        head = (f"{a} mean {f(self.means[0])} vs {b} mean {f(self.means[1])}; {self.mwu.summary(digits)}")
        if not self.can_reject():
            head += f" (cannot reach p < 0.05 at {format_n(self.n)}: min p = {f(self.mwu_min_p)})"
        return head


def compare_independent(a: Sequence[float], b: Sequence[float], *, labels: tuple[str, str] = ("a", "b"),
                        alternative: str = "two-sided", level: float = 0.95, n_resamples: int = 2000, seed: int = 0,
                        unit: str = "") -> IndependentComparison:
    """Two independent samples compared every way the book reports: Mann-Whitney U with AUC and its minimum
    attainable p, Welch t (difference in means), Hodges-Lehmann shift and ratio of means (bootstrap CIs).

    ``alternative`` applies to both tests (``"greater"``: ``a`` larger). Needs >= 2 values per side.
    """
    x, y = _two(a, b, 2)
    n = (x.size, y.size)
    mwu = mann_whitney(x, y, alternative=alternative, level=level, unit=unit)
    boot = dict(level=level, n_resamples=n_resamples, seed=seed, unit=unit)
    return IndependentComparison(
        labels=(str(labels[0]), str(labels[1])), n=n, unit=unit, means=(float(x.mean()), float(y.mean())),
        medians=(float(np.median(x)), float(np.median(y))),
        ranges=((float(x.min()), float(x.max())), (float(y.min()), float(y.max()))), mwu=mwu,
        mwu_min_p=mwu.extra["min_p"],
        welch=attempt(lambda: welch_t(x, y, alternative=alternative, level=level, unit=unit), "Welch t", n, unit),
        shift=attempt(lambda: hodges_lehmann(x, y, **boot), "Hodges-Lehmann", n, unit),
        ratio=attempt(lambda: ratio_of_means(x, y, **boot), "ratio of means", n, unit))


def split_by_label(values: Sequence[float], labels: Sequence[Any], first: Any, second: Any
                   ) -> tuple[np.ndarray, np.ndarray]:
    """``values`` split into the ``first`` and ``second`` label; any other label is an error."""
    v = as_sample(values, "values")
    lab = as_labels(labels, "labels", v.size)
    other = sorted({str(x) for x in lab.tolist()} - {str(first), str(second)})
    if other:
        raise ValueError(f"labels other than {first!r} and {second!r}: {other}; filter them out first")
    return v[lab == first], v[lab == second]


def compare_domains(values: Sequence[float], domains: Sequence[str], *, first: str = "medical",
                    second: str = "natural", **kwargs: Any) -> IndependentComparison:
    """:func:`compare_independent` of the ``first`` vs ``second`` domain of a per-unit statistic (one value per
    dataset or task; ``domains`` labels each value). Keyword arguments go to :func:`compare_independent`."""
    a, b = split_by_label(values, domains, first, second)
    return compare_independent(a, b, labels=(first, second), **kwargs)
