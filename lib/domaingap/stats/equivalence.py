"""Equivalence tests (TOST) and magnitude checks against a published number.

Two one-sided tests (Schuirmann 1987, J. Pharmacokinet. Biopharm. 15:657): a parameter theta is declared
*equivalent* to the null value within the bounds ``(low, high)`` when both ``H0: theta <= low`` and
``H0: theta >= high`` are rejected at ``alpha``; equivalently when the ``1 - 2 alpha`` confidence interval lies
inside the bounds. The margin must be fixed before looking at the data and stated with the result. Failing to
reject a difference is *not* evidence of equivalence; this is.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from scipy import stats

from ._base import StatResult, as_pair, as_sample, check_alpha, check_margin, differences, format_n


@dataclass(frozen=True)
class EquivalenceResult:
    """A TOST: equivalent when ``p = max(p_lower, p_upper) < alpha``; ``low``/``high`` is the ``1 - 2 alpha`` CI."""

    test: str
    estimand: str
    estimate: float
    low: float
    high: float
    level: float  # 1 - 2 alpha
    margin: tuple[float, float]  # the equivalence bounds, absolute
    p_lower: float  # H0: theta <= margin[0]
    p_upper: float  # H0: theta >= margin[1]
    p: float  # max(p_lower, p_upper)
    alpha: float
    equivalent: bool
    n: tuple[int, ...]
    unit: str = ""
    notes: tuple[str, ...] = ()

    computable = True

    def summary(self, digits: int = 3) -> str:
        f = f"{{:.{digits}g}}".format
        word = "equivalent" if self.equivalent else "not equivalent"
        return (f"{self.estimand} = {f(self.estimate)}, {self.level:.0%} CI [{f(self.low)}, {f(self.high)}] vs "
                f"bounds ({f(self.margin[0])}, {f(self.margin[1])}): {word} ({self.test}, TOST p = {f(self.p)}); "
                f"{format_n(self.n, self.unit)}")


def _result(test: str, estimand: str, estimate: float, ci: tuple[float, float], bounds: tuple[float, float],
            p_lower: float, p_upper: float, alpha: float, n: tuple[int, ...], unit: str,
            notes: tuple[str, ...] = ()) -> EquivalenceResult:
    p = max(p_lower, p_upper)
    return EquivalenceResult(test=test, estimand=estimand, estimate=float(estimate), low=float(ci[0]),
                             high=float(ci[1]), level=1 - 2 * alpha, margin=bounds, p_lower=float(p_lower),
                             p_upper=float(p_upper), p=float(p), alpha=alpha, equivalent=bool(p < alpha), n=n,
                             unit=unit, notes=notes)


def tost_two_sample(a: Sequence[float], b: Sequence[float], margin: float | tuple[float, float], *,
                    alpha: float = 0.05, unit: str = "") -> EquivalenceResult:
    """TOST of the difference in means ``mean(a) - mean(b)`` of two independent samples, Welch t with
    Welch-Satterthwaite df (``statsmodels.stats.weightstats.ttost_ind(usevar="unequal")``).

    ``margin``: ``m`` for bounds ``(-m, m)``, or absolute bounds ``(low, high)``, in the units of the values.
    Assumes independent, roughly normal means. Needs >= 2 values per side and some variance.
    """
    from statsmodels.stats.weightstats import ttost_ind

    x, y = as_sample(a, "a", min_n=2), as_sample(b, "b", min_n=2)
    alpha = check_alpha(alpha)
    bounds = check_margin(margin, 0.0)
    if np.ptp(x) == 0 and np.ptp(y) == 0:
        raise ValueError(f"TOST needs variance in a or b; both are constant (a = {x[0]:g}, b = {y[0]:g})")
    _, (_, p_lower, _), (_, p_upper, _) = ttost_ind(x, y, bounds[0], bounds[1], usevar="unequal")
    ci = stats.ttest_ind(x, y, equal_var=False).confidence_interval(1 - 2 * alpha)
    return _result("Welch TOST", "mean difference (a - b)", x.mean() - y.mean(), (ci.low, ci.high), bounds, p_lower,
                   p_upper, alpha, (x.size, y.size), unit)


def tost_paired(x: Sequence[float], y: Sequence[float] | None = None, *, margin: float | tuple[float, float],
                alpha: float = 0.05, unit: str = "") -> EquivalenceResult:
    """TOST of the mean paired difference ``mean(x - y)`` (``statsmodels.stats.weightstats.ttost_paired``);
    ``y=None``: ``x`` holds the differences. Zero-variance differences raise (t undefined; see
    :mod:`domaingap.stats.paired`). Needs >= 2 pairs."""
    from statsmodels.stats.weightstats import ttost_paired

    d = differences(x, y, min_n=2)
    alpha = check_alpha(alpha)
    bounds = check_margin(margin, 0.0)
    if np.ptp(d) == 0:
        raise ValueError(f"paired TOST needs variance in the differences; all {d.size} equal {d[0]:g}")
    _, (_, p_lower, _), (_, p_upper, _) = ttost_paired(d, np.zeros_like(d), bounds[0], bounds[1])
    ci = stats.ttest_1samp(d, 0.0).confidence_interval(1 - 2 * alpha)
    return _result("paired t TOST", "mean difference", d.mean(), (ci.low, ci.high), bounds, p_lower, p_upper, alpha,
                   (d.size,), unit)


def tost_correlation(x: Sequence[float], y: Sequence[float], margin: float | tuple[float, float], *,
                     method: str = "pearson", alpha: float = 0.05, unit: str = "") -> EquivalenceResult:
    """TOST of a correlation against bounds around 0 on Fisher's z scale (Goertzen & Cribbie 2010, Br. J. Math.
    Stat. Psychol. 63:527): ``z = atanh(r)`` is normal with SE ``1 / sqrt(n - 3)`` for Pearson, and
    ``sqrt(1.06 / (n - 3))`` for Spearman (Fieller, Hartley & Pearson 1957). ``margin`` is in units of r.
    Needs n >= 5 pairs."""
    a, b = as_pair(x, y, min_n=5)
    alpha = check_alpha(alpha)
    bounds = check_margin(margin, 0.0, lower=-1.0, upper=1.0)
    if method not in ("pearson", "spearman"):
        raise ValueError(f"method must be 'pearson' or 'spearman', got {method!r}")
    for name, v in (("x", a), ("y", b)):
        if np.ptp(v) == 0:
            raise ValueError(f"correlation needs variance in {name}; all {v.size} values equal {v[0]:g}")
    r = float(stats.pearsonr(a, b).statistic if method == "pearson" else stats.spearmanr(a, b).statistic)
    se = math.sqrt((1.0 if method == "pearson" else 1.06) / (a.size - 3))
    z = math.atanh(min(max(r, -1.0), 1.0))  # +/- inf at |r| = 1: then p is 0 or 1, never NaN
    p_lower = float(stats.norm.sf((z - math.atanh(bounds[0])) / se))
    p_upper = float(stats.norm.cdf((z - math.atanh(bounds[1])) / se))
    q = stats.norm.ppf(1 - alpha)
    ci = (math.tanh(z - q * se), math.tanh(z + q * se))
    name = "Pearson r" if method == "pearson" else "Spearman rho"
    return _result(f"Fisher z TOST ({name})", "r" if method == "pearson" else "rho", r, ci, bounds, p_lower, p_upper,
                   alpha, (a.size,), unit)


def tost_auc(a: Sequence[float], b: Sequence[float], margin: float | tuple[float, float], *, alpha: float = 0.05,
             unit: str = "") -> EquivalenceResult:
    """TOST of the AUC (probability of superiority ``P(a > b) + P(a = b)/2``, the Mann-Whitney U / (n_a n_b))
    against 0.5: e.g. "d_data does not separate the domains" is ``AUC`` within ``0.5 +/- margin``.

    Uses the Brunner-Munzel (2000) variance with a t distribution and Welch-Satterthwaite df
    (``statsmodels.stats.nonparametric.rank_compare_2indep(...).tost_prob_superior``); valid with ties and
    unequal spreads, approximate at small n (Brunner & Munzel suggest n >= 10 per side). Raises when that
    variance is 0 (complete separation, or all values tied), where the test is undefined.
    """
    from statsmodels.stats.nonparametric import rank_compare_2indep

    x, y = as_sample(a, "a", min_n=2), as_sample(b, "b", min_n=2)
    alpha = check_alpha(alpha)
    bounds = check_margin(margin, 0.5, lower=0.0, upper=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # 0/0 when there is no variance: raised on below
        rc = rank_compare_2indep(x, y, use_t=True)
    if not (np.isfinite(rc.var_prob) and rc.var_prob > 0 and np.isfinite(rc.df)):
        raise ValueError(f"AUC TOST undefined: the Brunner-Munzel variance is 0 (AUC = {rc.prob1:g}: complete "
                         f"separation or all values tied)")
    tost = rc.tost_prob_superior(bounds[0], bounds[1])
    ci = rc.conf_int(alpha=2 * alpha)
    notes = ("small samples: Brunner-Munzel t approximation",) if min(x.size, y.size) < 10 else ()
    return _result("Brunner-Munzel TOST", "AUC", rc.prob1, ci, bounds, tost.results_larger.pvalue,
                   tost.results_smaller.pvalue, alpha, (x.size, y.size), unit, notes)


@dataclass(frozen=True)
class PublishedComparison:
    """Our estimate and CI against a published value taken as a constant (papers rarely give its error)."""

    estimate: float
    low: float
    high: float
    level: float
    published: float
    contains: bool  # our CI contains the published value
    difference: float  # ours - published, with our CI shifted
    difference_low: float
    difference_high: float
    ratio: float | None  # ours / published, with our CI scaled; None when published == 0
    ratio_low: float | None
    ratio_high: float | None
    name: str = ""

    def summary(self, digits: int = 3) -> str:
        f = f"{{:.{digits}g}}".format
        text = (f"{self.name + ': ' if self.name else ''}ours {f(self.estimate)} [{f(self.low)}, {f(self.high)}] vs "
                f"published {f(self.published)} ({'inside' if self.contains else 'outside'} our {self.level:.0%} CI)")
        if self.ratio is not None:
            text += f"; ratio {f(self.ratio)} [{f(self.ratio_low)}, {f(self.ratio_high)}]"
        return text


def compare_to_published(ours: StatResult, published: float, *, name: str = "") -> PublishedComparison:
    """Does our CI contain the paper's value, and how far are we from it as a difference and a ratio?

    ``ours`` must carry a CI (e.g. from :func:`domaingap.stats.bootstrap_ci`). The published number is treated
    as exact, so the CI of ``ours - published`` is our CI shifted and that of ``ours / published`` our CI
    divided by it (bounds swapped when it is negative).
    """
    low, high = ours.ci
    pub = float(published)
    if not math.isfinite(pub):
        raise ValueError(f"published must be a finite number, got {published!r}")
    if pub == 0:
        ratio = r_low = r_high = None
    else:
        ratio = ours.estimate / pub
        r_low, r_high = sorted((low / pub, high / pub))
    return PublishedComparison(estimate=ours.estimate, low=low, high=high, level=float(ours.level), published=pub,
                               contains=bool(low <= pub <= high), difference=ours.estimate - pub,
                               difference_low=low - pub, difference_high=high - pub, ratio=ratio, ratio_low=r_low,
                               ratio_high=r_high, name=name)
