"""Power and minimum detectable effect (MDE) of the book's designs (``statsmodels.stats.power``).

Rank tests are sized through their asymptotic relative efficiency (ARE) against the t-test under normal
shifts, ``3 / pi ~ 0.955`` for both Mann-Whitney U and the Wilcoxon signed-rank test (Hodges & Lehmann 1956):
a rank test on n units has about the power of a t-test on ``n * 3 / pi``. That is a large-sample statement;
at small n the exact rank tests are coarser (:func:`domaingap.stats.mwu_min_pvalue`), so a design whose
smallest attainable p is not below alpha is reported as unable to detect any effect (``achievable=False``).
Rejection means p < alpha, as in :func:`domaingap.stats.verdict`.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable

import numpy as np
from scipy import optimize, stats

from ._base import check_alpha, check_alternative, check_count, check_level, format_n
from .two_sample import mwu_min_pvalue

ARE_RANK = 3 / math.pi
_SM_ALTERNATIVE = {"two-sided": "two-sided", "greater": "larger", "less": "smaller"}


@dataclass(frozen=True)
class PowerResult:
    """The effect a design detects with ``power`` (MDE), or the power of a given effect."""

    design: str  # e.g. "two independent samples"
    test: str  # e.g. "Mann-Whitney U (t-test at n * 3/pi)"
    effect: float | None  # None when no effect is detectable at all (achievable=False)
    effect_name: str  # "Cohen's d", "Cohen's d_z", "r", "proportion"
    power: float
    alpha: float
    alternative: str
    n: tuple[int, ...]
    achievable: bool = True
    notes: tuple[str, ...] = ()

    def summary(self, digits: int = 3) -> str:
        f = f"{{:.{digits}g}}".format
        if self.effect is None:
            return (f"{self.test}: no effect detectable at alpha = {self.alpha:g}, {format_n(self.n)} "
                    f"({'; '.join(self.notes)})")
        return (f"{self.test}: {self.effect_name} = {f(self.effect)} at power {f(self.power)}, alpha = {self.alpha:g} "
                f"({self.alternative}), {format_n(self.n)}")


def _solve(fn: Callable[[], float], what: str) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # statsmodels warns on convergence; the result is checked instead
        value = float(fn())
    if not np.isfinite(value):
        raise ValueError(f"statsmodels could not solve for the {what} (got {value})")
    return value


def _checks(alpha: float, power: float, alternative: str) -> tuple[float, float, str]:
    return check_alpha(alpha), check_level(power, "power"), check_alternative(alternative)


def _rank_test(test: str, names: tuple[str, str]) -> bool:
    if test not in names:
        raise ValueError(f"test must be one of {names}, got {test!r}")
    return test == names[1]


def _two_sample(effect: float | None, n1: int, n2: int, alpha: float, power: float | None, alternative: str,
                test: str) -> PowerResult:
    from statsmodels.stats.power import TTestIndPower

    n1, n2 = check_count(n1, "n1", 2), check_count(n2, "n2", 2)
    rank = _rank_test(test, ("t", "mwu"))
    name = "Mann-Whitney U (t-test at n * 3/pi)" if rank else "two-sample t"
    scale = ARE_RANK if rank else 1.0
    if rank and (min_p := mwu_min_pvalue(n1, n2, alternative, "auto")) >= alpha:
        return PowerResult("two independent samples", name, effect, "Cohen's d",
                           power if power is not None else 0.0, alpha, alternative, (n1, n2), False,
                           (f"Mann-Whitney U cannot reach p < {alpha:g} at {n1} vs {n2}: min p = {min_p:.3g}",))
    kw = dict(nobs1=n1 * scale, ratio=n2 / n1, alpha=alpha, alternative=_SM_ALTERNATIVE[alternative])
    if effect is None:
        effect = _solve(lambda: TTestIndPower().solve_power(effect_size=None, power=power, **kw), "effect")
    else:
        power = _solve(lambda: TTestIndPower().power(effect_size=effect, **kw), "power")
    return PowerResult("two independent samples", name, float(effect), "Cohen's d", float(power), alpha, alternative,
                       (n1, n2))


def mde_two_sample(n1: int, n2: int, *, alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided",
                   test: str = "t") -> PowerResult:
    """Smallest standardised mean difference (Cohen's d, pooled SD) detected with ``power`` by a two-sample
    t-test (``statsmodels`` ``TTestIndPower``) or, ``test="mwu"``, a Mann-Whitney U test (ARE 3/pi, module
    docstring) at sample sizes ``(n1, n2)``."""
    alpha, power, alternative = _checks(alpha, power, alternative)
    return _two_sample(None, n1, n2, alpha, power, alternative, test)


def power_two_sample(effect: float, n1: int, n2: int, *, alpha: float = 0.05, alternative: str = "two-sided",
                     test: str = "t") -> PowerResult:
    """Power of the design of :func:`mde_two_sample` against Cohen's d = ``effect``."""
    alpha, _, alternative = _checks(alpha, 0.5, alternative)
    return _two_sample(float(effect), n1, n2, alpha, None, alternative, test)


def _paired(effect: float | None, n: int, alpha: float, power: float | None, alternative: str,
            test: str) -> PowerResult:
    from statsmodels.stats.power import TTestPower

    n = check_count(n, "n", 2)
    rank = _rank_test(test, ("t", "wilcoxon"))
    name = "Wilcoxon signed-rank (t-test at n * 3/pi)" if rank else "paired t"
    min_p = min(1.0, (2 if alternative == "two-sided" else 1) / 2 ** n)  # exact signed-rank, all signs alike
    if rank and min_p >= alpha:
        return PowerResult("paired", name, effect, "Cohen's d_z", power if power is not None else 0.0, alpha,
                           alternative, (n,), False,
                           (f"the signed-rank test cannot reach p < {alpha:g} with {n} pairs: min p = {min_p:.3g}",))
    kw = dict(nobs=n * (ARE_RANK if rank else 1.0), alpha=alpha, alternative=_SM_ALTERNATIVE[alternative])
    if effect is None:
        effect = _solve(lambda: TTestPower().solve_power(effect_size=None, power=power, **kw), "effect")
    else:
        power = _solve(lambda: TTestPower().power(effect_size=effect, **kw), "power")
    return PowerResult("paired", name, float(effect), "Cohen's d_z", float(power), alpha, alternative, (n,))


def mde_paired(n: int, *, alpha: float = 0.05, power: float = 0.8, alternative: str = "two-sided",
               test: str = "t") -> PowerResult:
    """Smallest mean paired difference in SDs of the differences (Cohen's d_z) detected with ``power`` by a
    paired t-test (``TTestPower``) or, ``test="wilcoxon"``, the signed-rank test (ARE 3/pi) with ``n`` pairs."""
    alpha, power, alternative = _checks(alpha, power, alternative)
    return _paired(None, n, alpha, power, alternative, test)


def power_paired(effect: float, n: int, *, alpha: float = 0.05, alternative: str = "two-sided",
                 test: str = "t") -> PowerResult:
    """Power of the design of :func:`mde_paired` against d_z = ``effect``."""
    alpha, _, alternative = _checks(alpha, 0.5, alternative)
    return _paired(float(effect), n, alpha, None, alternative, test)


def _correlation(r: float | None, n: int, alpha: float, power: float | None, alternative: str) -> PowerResult:
    from statsmodels.stats.power import NormalIndPower

    n = check_count(n, "n", 4)
    # atanh(r_hat) ~ N(atanh(r), 1 / (n - 3)): a one-sample normal test (ratio=0) on n - 3 "observations"
    kw = dict(nobs1=n - 3, ratio=0, alpha=alpha, alternative=_SM_ALTERNATIVE[alternative])
    if r is None:
        r = math.tanh(_solve(lambda: NormalIndPower().solve_power(effect_size=None, power=power, **kw), "effect"))
    else:
        if not -1 < r < 1:
            raise ValueError(f"r must be in (-1, 1), got {r!r}")
        power = _solve(lambda: NormalIndPower().power(effect_size=math.atanh(r), **kw), "power")
    return PowerResult("correlation", "Fisher z", float(r), "r", float(power), alpha, alternative, (n,))


def mde_correlation(n: int, *, alpha: float = 0.05, power: float = 0.8,
                    alternative: str = "two-sided") -> PowerResult:
    """Smallest correlation detected with ``power`` at ``n`` pairs by the Fisher z test
    (``tanh((z_{1-alpha/2} + z_power) / sqrt(n - 3))`` two-sided, via ``NormalIndPower``)."""
    alpha, power, alternative = _checks(alpha, power, alternative)
    return _correlation(None, n, alpha, power, alternative)


def power_correlation(r: float, n: int, *, alpha: float = 0.05, alternative: str = "two-sided") -> PowerResult:
    """Power of the Fisher z test of a correlation ``r`` at ``n`` pairs."""
    alpha, _, alternative = _checks(alpha, 0.5, alternative)
    return _correlation(float(r), n, alpha, None, alternative)


def rejection_region(n: int, p0: float, *, alpha: float = 0.05, alternative: str = "greater") -> np.ndarray:
    """Counts k in 0..n at which the exact binomial test of ``p = p0`` (``scipy.stats.binomtest``) gives
    p < alpha."""
    n = check_count(n, "n")
    check_alpha(alpha)
    check_alternative(alternative)
    if not 0 < p0 < 1:
        raise ValueError(f"p0 must be in (0, 1), got {p0!r}")
    ks = np.arange(n + 1)
    if alternative == "greater":
        pv = stats.binom.sf(ks - 1, n, p0)  # P(X >= k), binomtest's one-sided p
    elif alternative == "less":
        pv = stats.binom.cdf(ks, n, p0)
    else:
        pv = np.array([stats.binomtest(int(k), n, p0).pvalue for k in ks])
    return ks[pv < alpha]


def _binom_power(p: float, n: int, region: np.ndarray) -> float:
    return float(stats.binom.pmf(region, n, p).sum())


def mde_proportion(n: int, p0: float, *, alpha: float = 0.05, power: float = 0.8,
                   alternative: str = "greater") -> PowerResult:
    """Proportion (e.g. accuracy vs a majority rate ``p0``) detected with ``power`` by the exact binomial test
    at ``n`` trials, from the test's exact rejection region (:func:`rejection_region`). Two-sided: the MDE
    above ``p0``. ``achievable=False`` when no proportion reaches ``power`` (n too small)."""
    alpha, power, alternative = _checks(alpha, power, alternative)
    region = rejection_region(n, p0, alpha=alpha, alternative=alternative)
    lo, hi = (1e-12, p0) if alternative == "less" else (p0, 1 - 1e-12)
    far = lo if alternative == "less" else hi  # the most favourable true proportion
    if _binom_power(far, n, region) < power:
        return PowerResult("one-sample proportion", "exact binomial", None, "proportion", power, alpha, alternative,
                           (n,), False, (f"no proportion reaches power {power:g} with {n} trials (p0 = {p0:g})",))
    p = optimize.brentq(lambda q: _binom_power(q, n, region) - power, lo, hi, xtol=1e-10)
    return PowerResult("one-sample proportion", "exact binomial", float(p), "proportion", power, alpha, alternative,
                       (n,), notes=(f"difference from p0 = {p - p0:+.3g}",))


def power_proportion(p: float, n: int, p0: float, *, alpha: float = 0.05,
                     alternative: str = "greater") -> PowerResult:
    """Exact power of the binomial test of ``p0`` at ``n`` trials when the true proportion is ``p``."""
    alpha, _, alternative = _checks(alpha, 0.5, alternative)
    if not 0 <= p <= 1:
        raise ValueError(f"p must be in [0, 1], got {p!r}")
    region = rejection_region(n, p0, alpha=alpha, alternative=alternative)
    return PowerResult("one-sample proportion", "exact binomial", float(p), "proportion", _binom_power(p, n, region),
                       alpha, alternative, (n,))
