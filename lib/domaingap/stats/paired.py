"""Paired comparisons (e.g. robust minus standard model of one task and seed, one init minus another per fold).

Every function takes ``x`` and ``y`` (paired, differences ``x - y``) or the differences alone (``y=None``).

Zero-difference policy (one rule for every paired test here):

- Zero differences are dropped from the signed-rank test, as Wilcoxon (1945) did and scipy does by default
  (``zero_method="wilcox"``); the effect sizes (pseudo-median, rank-biserial) and counts are reported beside it.
- When *every* difference is zero the result is ``estimate = 0`` and ``p = 1`` for the t (with CI [0, 0]),
  signed-rank and sign-flip tests, not NaN and not an error. Why: such data sit exactly on the null hypothesis; every sign flip
  of them reproduces the observed statistic, so the exact permutation p-value ``P(T >= t_obs | H0)`` is 1. A NaN
  would turn "no difference at all" into "no data" and break multiplicity corrections downstream.
- Constant *non-zero* differences have no variance: the t-test and its TOST raise ValueError (t is undefined),
  the rank and sign-flip tests are computed as usual.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
from scipy import stats

from ._base import (NotComputable, StatResult, as_sample, attempt, check_alternative, check_count, check_level,
                    differences)

ZERO_POLICY = "all differences are 0: estimate 0 and p = 1 (the data sit on H0; see domaingap.stats.paired)"


def mean_ci(values: Sequence[float], *, level: float = 0.95, unit: str = "") -> StatResult:
    """Mean of ``values`` (``(n,)``, n >= 2) with its two-sided t interval ``mean +/- t_{n-1} s / sqrt(n)``
    (``scipy.stats.t``); assumes independent values with a roughly normal mean. Constant values give a
    zero-width interval, with a note."""
    v = as_sample(values, "values", min_n=2)
    check_level(level)
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    m = float(v.mean())
    notes = (f"all {v.size} values equal {v[0]:g}: zero-width interval",) if np.ptp(v) == 0 else ()
    return StatResult(test="t interval", estimand="mean", estimate=m, low=m - half, high=m + half, level=level,
                      ci_method="t CI", n=(v.size,), unit=unit, notes=notes, extra={"sd": float(v.std(ddof=1))})


def paired_t(x: Sequence[float], y: Sequence[float] | None = None, *, alternative: str = "two-sided",
             level: float = 0.95, unit: str = "") -> StatResult:
    """Mean paired difference with the one-sample t-test of the differences against 0 and its t interval
    (``scipy.stats.ttest_1samp``). Assumes independent pairs with a roughly normal mean difference.
    Needs >= 2 pairs; all-zero differences follow the zero-difference policy of this module."""
    d = differences(x, y, min_n=2)
    check_alternative(alternative)
    check_level(level)
    if not np.any(d):
        return StatResult(test="paired t", estimand="mean difference", estimate=0.0, low=0.0, high=0.0, level=level,
                          ci_method="t CI", p=1.0, alternative=alternative, statistic=0.0, n=(d.size,), unit=unit,
                          notes=(ZERO_POLICY,), extra={"df": d.size - 1})
    if np.ptp(d) == 0:
        raise ValueError(f"paired t needs variance in the differences; all {d.size} equal {d[0]:g}")
    res = stats.ttest_1samp(d, 0.0, alternative=alternative)
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(level)  # two-sided, whatever `alternative`
    return StatResult(test="paired t", estimand="mean difference", estimate=float(d.mean()), low=float(ci.low),
                      high=float(ci.high), level=level, ci_method="t CI", p=float(res.pvalue),
                      alternative=alternative, statistic=float(res.statistic), n=(d.size,), unit=unit,
                      extra={"df": int(res.df)})


def pseudo_median(d: np.ndarray) -> float:
    """Hodges-Lehmann one-sample estimate: median of the Walsh averages ``(d_i + d_j) / 2``, ``i <= j``."""
    i, j = np.triu_indices(d.size)
    return float(np.median((d[i] + d[j]) / 2))


def wilcoxon_signed_rank(x: Sequence[float], y: Sequence[float] | None = None, *, alternative: str = "two-sided",
                         unit: str = "") -> StatResult:
    """Wilcoxon signed-rank test of the paired differences against 0 (``scipy.stats.wilcoxon``).

    Assumes independent pairs with differences symmetric about their median under H0. Zero differences are
    dropped (module docstring); on the rest the method is scipy's: exact without ties (n <= 50), an exact
    sign-flip permutation with ties at n <= 13, else the normal approximation.

    Returns:
        :class:`StatResult` with ``estimate`` = pseudo-median of all differences (Hodges-Lehmann), no interval,
        ``statistic`` = W+ (sum of positive ranks), ``extra``: ``rank_biserial`` (matched-pairs rank-biserial
        correlation ``(W+ - W-) / (W+ + W-)`` in [-1, 1]), ``median``, ``n_pos``, ``n_neg``, ``n_zero``, ``method``.
    """
    d = differences(x, y, min_n=1)
    check_alternative(alternative)
    nz = d[d != 0]
    counts = {"median": float(np.median(d)), "n_pos": int((d > 0).sum()), "n_neg": int((d < 0).sum()),
              "n_zero": int((d == 0).sum())}
    if nz.size == 0:
        return StatResult(test="Wilcoxon signed-rank", estimand="pseudo-median", estimate=0.0, p=1.0,
                          alternative=alternative, statistic=0.0, n=(d.size,), unit=unit, notes=(ZERO_POLICY,),
                          extra={"rank_biserial": 0.0, **counts, "method": "none"})
    ties = np.unique(np.abs(nz)).size < nz.size
    if nz.size > 50 or (ties and nz.size > 13):
        method: Any = "asymptotic"
    elif not ties:
        method = "exact"
    else:
        method = stats.PermutationMethod(n_resamples=np.inf)  # 2^n <= 8192 sign flips: enumerated exactly
    res = stats.wilcoxon(nz, alternative=alternative, method=method)
    ranks = stats.rankdata(np.abs(nz))
    w_pos, w_neg = float(ranks[nz > 0].sum()), float(ranks[nz < 0].sum())
    name = method if isinstance(method, str) else "exact permutation"
    notes = (f"{counts['n_zero']} zero difference(s) dropped (Wilcoxon's zero method)",) if counts["n_zero"] else ()
    return StatResult(test=f"Wilcoxon signed-rank ({name})", estimand="pseudo-median", estimate=pseudo_median(d),
                      p=float(res.pvalue), alternative=alternative, statistic=w_pos, n=(d.size,), unit=unit,
                      notes=notes, extra={"rank_biserial": (w_pos - w_neg) / (w_pos + w_neg), **counts,
                                          "method": name})


def _signed_rank_null_cdf(n: int) -> np.ndarray:
    """``P(W+ <= w)`` for ``w = 0..n(n+1)/2`` under H0 (no ties): exact, by counting the subsets of ranks
    ``1..n`` with each sum."""
    counts = np.zeros(n * (n + 1) // 2 + 1)
    counts[0] = 1.0
    for r in range(1, n + 1):
        counts[r:] = counts[r:] + counts[:-r].copy()
    return np.cumsum(counts) / 2.0 ** n


def signed_rank(x: Sequence[float], y: Sequence[float] | None = None, *, level: float = 0.95, alternative: str = "two-sided", unit: str = ""):
    """Wilcoxon signed-rank test of paired differences (:func:`wilcoxon_signed_rank`) with the
    distribution-free interval of its estimate, the pseudo-median (Hodges-Lehmann): Tukey's interval between the
    ``k``-th smallest and largest Walsh averages ``(d_i + d_j) / 2``, ``i <= j``, which inverts the signed-rank
    test (Hollander & Wolfe, *Nonparametric Statistical Methods*, sec. 3.2). ``k - 1`` is the largest count with
    ``P(W+ <= k - 1) <= (1 - level) / 2`` under H0: exact for n <= 50 (assuming no ties), the normal
    approximation with continuity correction above. Zero differences enter the Walsh averages (the test drops
    them), so with ties or zeros the interval's coverage is approximate. With too few pairs for any interval at
    ``level`` (n < 6 at 95%), ``low``/``high`` are None and a note says so. The interval is two-sided at ``level``
    whatever ``alternative``."""
    from dataclasses import replace

    res = wilcoxon_signed_rank(x, y, alternative=alternative, unit=unit)
    d = np.asarray(x, dtype=np.float64) - (0.0 if y is None else np.asarray(y, dtype=np.float64))
    n = d.size
    i, j = np.triu_indices(n)
    walsh = np.sort((d[i] + d[j]) / 2)
    m, tail = walsh.size, (1 - level) / 2
    if n <= 50:
        k = int(np.searchsorted(_signed_rank_null_cdf(n), tail, side="right"))  # P(W+ <= k - 1) <= tail
    else:
        k = int(math.floor(m / 2 - stats.norm.ppf(1 - tail) * math.sqrt(n * (n + 1) * (2 * n + 1) / 24) + 0.5))
    if k < 1:
        return replace(res, level=level, ci_method="Tukey's Walsh-average CI",
                       notes=res.notes + (f"no {level:.0%} interval exists with {n} pairs (the widest has "
                                          f"{1 - 2 / 2 ** n:.0%} coverage)",))
    return replace(res, low=float(walsh[k - 1]), high=float(walsh[m - k]), level=level,
                   ci_method="Tukey's Walsh-average CI (inverts the signed-rank test)")


def sign_flip_test(x: Sequence[float], y: Sequence[float] | None = None, *, statistic: Callable = np.mean,
                   alternative: str = "two-sided", n_resamples: int = 9999, seed: int = 0,
                   unit: str = "") -> StatResult:
    """Sign-flip permutation test of the paired differences against 0 (``scipy.stats.permutation_test``,
    ``permutation_type="samples"`` on one sample: each difference keeps or flips its sign).

    Assumes only that the differences are symmetric about 0 under H0. With ``2^n <= n_resamples`` every flip is
    enumerated and p is exact (``k / 2^n``); otherwise ``n_resamples`` random flips give ``p = (k + 1) / (R + 1)``.
    Two-sided p is twice the smaller tail. All-zero differences give p = 1 by construction.
    """
    d = differences(x, y, min_n=1)
    check_alternative(alternative)
    check_count(n_resamples, "n_resamples")
    res = stats.permutation_test((d,), statistic, permutation_type="samples", n_resamples=n_resamples,
                                 alternative=alternative, rng=np.random.default_rng(seed))
    exact = 2 ** d.size <= n_resamples
    kind = f"exact, {2 ** d.size} flips" if exact else f"{n_resamples} random flips"
    return StatResult(test=f"sign-flip permutation ({kind})", estimand=getattr(statistic, "__name__", "statistic"),
                      estimate=float(statistic(d)), p=float(min(1.0, res.pvalue)), alternative=alternative,
                      statistic=float(res.statistic), n=(d.size,), unit=unit,
                      notes=(ZERO_POLICY,) if not np.any(d) else ())


@dataclass(frozen=True)
class PairedComparison:
    """Everything :func:`compare_paired` computes; ``t`` is :class:`NotComputable` for constant non-zero
    differences."""

    n: int
    unit: str
    mean: float
    median: float
    sd: float
    n_pos: int
    n_neg: int
    n_zero: int
    t: StatResult | NotComputable
    wilcoxon: StatResult
    sign_flip: StatResult

    def row(self) -> dict[str, Any]:
        """One table row: ``n``, ``mean`` with its t interval ``ci_low``/``ci_high`` (NaN where the t interval is
        not computable, constant non-zero differences), ``median``, the signed-rank ``wilcoxon_p``, and the
        counts ``n_pos``/``n_neg``/``n_zero``."""
        t_ok = isinstance(self.t, StatResult)
        return {"n": self.n, "mean": self.mean, "ci_low": self.t.low if t_ok else math.nan,
                "ci_high": self.t.high if t_ok else math.nan, "median": self.median, "wilcoxon_p": self.wilcoxon.p,
                "n_pos": self.n_pos, "n_neg": self.n_neg, "n_zero": self.n_zero}

    def summary(self, digits: int = 3) -> str:
        f = f"{{:.{digits}g}}".format
        return (f"mean difference {f(self.mean)} ({self.n_pos}+ / {self.n_neg}- / {self.n_zero} zero); "
                f"{self.t.summary(digits)}; {self.wilcoxon.test} {self.wilcoxon.alternative} p = "
                f"{f(self.wilcoxon.p)}")


def compare_paired(x: Sequence[float], y: Sequence[float] | None = None, *, alternative: str = "two-sided",
                   level: float = 0.95, n_resamples: int = 9999, seed: int = 0, unit: str = "") -> PairedComparison:
    """Paired differences summarised and tested three ways: paired t (mean, t CI), Wilcoxon signed-rank
    (pseudo-median, rank-biserial) and the sign-flip permutation test of the mean. Needs >= 2 pairs."""
    d = differences(x, y, min_n=2)
    return PairedComparison(
        n=d.size, unit=unit, mean=float(d.mean()), median=float(np.median(d)), sd=float(d.std(ddof=1)),
        n_pos=int((d > 0).sum()), n_neg=int((d < 0).sum()), n_zero=int((d == 0).sum()),
        t=attempt(lambda: paired_t(d, alternative=alternative, level=level, unit=unit), "paired t", (d.size,), unit),
        wilcoxon=wilcoxon_signed_rank(d, alternative=alternative, unit=unit),
        sign_flip=sign_flip_test(d, alternative=alternative, n_resamples=n_resamples, seed=seed, unit=unit))
