"""Calibration of the book's verdict rules: their simulated type-I error and power at the n a profile uses.

A verdict rule is a function of the data that says "reproduced" or not. :func:`calibrate` runs it on data drawn
under the null (no effect; for an equivalence rule: a true effect exactly at the margin) and under a stated
alternative, and returns the rejection rates with Monte-Carlo (Wilson) intervals. A rule whose type-I error
exceeds its alpha, or whose power is near alpha, is flagged (:attr:`Calibration.flag`).

:data:`RULES` holds the rules the chapters use, as ``(name, design)`` builders: two-sample domain comparisons
(Mann-Whitney on dataset means), equivalence of two domains (Brunner-Munzel TOST on the AUC), correlation across
datasets (Pearson), one-sample location tests over datasets (t, Wilcoxon). Samples are normal with unit variance;
the alternative is a shift of ``effect`` standard deviations (Cohen's d) or a correlation ``effect``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

import numpy as np

from ._base import check_alpha, check_count
from .classifier import wilson_interval

__all__ = ["Calibration", "RULES", "calibrate", "calibration_table", "for_claim"]


@dataclass(frozen=True)
class Calibration:
    """Simulated rejection rates of one rule: ``type_i`` under the null, ``power`` under the alternative."""

    rule: str
    n: tuple[int, ...]
    alpha: float
    effect: float
    effect_name: str
    n_sim: int
    type_i: float
    type_i_low: float
    type_i_high: float
    power: float
    power_low: float
    power_high: float

    @property
    def flag(self) -> str:
        """"type-I error above alpha" when even the Monte-Carlo interval's low end exceeds alpha; "cannot
        reject at this n" when the power is at most twice alpha; else ""."""
        if self.type_i_low > self.alpha:
            return "type-I error above alpha"
        if self.power <= 2 * self.alpha:
            return "cannot reject at this n"
        return ""


def calibrate(rule: str, decide: Callable[..., bool], draw_null: Callable, draw_alt: Callable, *, n: tuple[int, ...],
              effect: float, effect_name: str, alpha: float = 0.05, n_sim: int = 2000, seed: int = 0) -> Calibration:
    """Rejection rates of ``decide(*draw(rng))`` over ``n_sim`` draws under the null and the alternative."""
    check_alpha(alpha)
    check_count(n_sim, "n_sim", 10)
    rng = np.random.default_rng(seed)
    hits_null = sum(bool(decide(*draw_null(rng))) for _ in range(n_sim))
    hits_alt = sum(bool(decide(*draw_alt(rng))) for _ in range(n_sim))
    t1, pw = wilson_interval(hits_null, n_sim), wilson_interval(hits_alt, n_sim)
    return Calibration(rule=rule, n=tuple(int(v) for v in n), alpha=alpha, effect=float(effect),
                       effect_name=effect_name, n_sim=n_sim, type_i=t1.estimate, type_i_low=t1.low,
                       type_i_high=t1.high, power=pw.estimate, power_low=pw.low, power_high=pw.high)


def _mwu_rule(n1: int, n2: int, d: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    from .two_sample import mann_whitney

    def decide(a, b):
        return mann_whitney(a, b).p < alpha

    return calibrate("Mann-Whitney U, two-sided (domain comparison on dataset means)", decide,
                     lambda r: (r.normal(0, 1, n1), r.normal(0, 1, n2)),
                     lambda r: (r.normal(d, 1, n1), r.normal(0, 1, n2)),
                     n=(n1, n2), effect=d, effect_name="Cohen's d", alpha=alpha, n_sim=n_sim, seed=seed)


def _auc_to_d(auc: float) -> float:
    """Normal shift whose AUC is ``auc``: AUC = Phi(d / sqrt(2))."""
    from scipy.stats import norm

    return float(math.sqrt(2) * norm.ppf(auc))


def _tost_auc_rule(n1: int, n2: int, margin: tuple[float, float], alpha: float, n_sim: int, seed: int
                   ) -> Calibration:
    from .equivalence import tost_auc

    def decide(a, b):
        try:
            return tost_auc(a, b, margin, alpha=alpha).equivalent
        except ValueError:  # complete separation: not equivalent
            return False

    edge = _auc_to_d(margin[1])  # the null of a TOST: the true effect sits on the margin
    return calibrate(f"Brunner-Munzel TOST on the AUC, margin {margin} (a null claim)", decide,
                     lambda r: (r.normal(edge, 1, n1), r.normal(0, 1, n2)),
                     lambda r: (r.normal(0, 1, n1), r.normal(0, 1, n2)),
                     n=(n1, n2), effect=0.5, effect_name="AUC (true, under the alternative)", alpha=alpha,
                     n_sim=n_sim, seed=seed)


def _pearson_rule(n: int, rho: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    from .correlation import pearson

    def draw(r_, rng):
        x = rng.normal(0, 1, n)
        return x, r_ * x + math.sqrt(1 - r_ ** 2) * rng.normal(0, 1, n)

    return calibrate("Pearson r, two-sided (correlation across datasets)", lambda x, y: pearson(x, y).p < alpha,
                     lambda r: draw(0.0, r), lambda r: draw(rho, r), n=(n,), effect=rho, effect_name="r",
                     alpha=alpha, n_sim=n_sim, seed=seed)


def _one_sample_rule(test: str, n: int, d: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    from .paired import paired_t, wilcoxon_signed_rank

    fn = paired_t if test == "t" else wilcoxon_signed_rank
    name = "one-sample t" if test == "t" else "Wilcoxon signed rank"
    return calibrate(f"{name}, two-sided (a within-dataset effect over datasets)", lambda x: fn(x).p < alpha,
                     lambda r: (r.normal(0, 1, n),), lambda r: (r.normal(d, 1, n),), n=(n,), effect=d,
                     effect_name="Cohen's d_z", alpha=alpha, n_sim=n_sim, seed=seed)


def _tost_spearman_rule(n: int, margin: tuple[float, float], alpha: float, n_sim: int, seed: int) -> Calibration:
    """Fisher-z TOST of a Spearman correlation (a null claim: "no association beyond the margin"): rejection
    under a true rho on the margin's upper edge (type-I error) and under rho = 0 (power). Gaussian copula draws
    with Pearson correlation ``2 sin(pi rho_s / 6)``, which gives Spearman's rho_s."""
    from .equivalence import tost_correlation

    def draw(rho_s, rng):
        r = 2 * math.sin(math.pi * rho_s / 6)
        x = rng.normal(0, 1, n)
        return x, r * x + math.sqrt(1 - r ** 2) * rng.normal(0, 1, n)

    def decide(x, y):
        return tost_correlation(x, y, margin, method="spearman", alpha=alpha).equivalent

    return calibrate(f"Fisher z TOST on Spearman rho, margin {tuple(margin)} (a null claim)", decide,
                     lambda r: draw(margin[1], r), lambda r: draw(0.0, r), n=(n,), effect=0.0,
                     effect_name="rho (true, under the alternative)", alpha=alpha, n_sim=n_sim, seed=seed)


def _ols_rule(n: int, df: int, partial_r: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    """The t-test of one OLS coefficient with ``df`` residual degrees of freedom on ``n`` units (so ``n - df - 1``
    predictors besides the intercept, drawn independent normal), under no effect and under a partial
    correlation ``partial_r`` of the outcome with the tested predictor."""
    import statsmodels.api as sm

    k = n - df - 1
    if k < 1:
        raise ValueError(f"an OLS t-test with df = {df} on n = {n} units has no predictor to test")

    def draw(r_, rng):
        x = rng.normal(0, 1, (n, k))
        return x, r_ * x[:, 0] + math.sqrt(1 - r_ ** 2) * rng.normal(0, 1, n)

    def decide(x, y):
        return sm.OLS(y, sm.add_constant(x)).fit().pvalues[1] < alpha

    return calibrate(f"OLS t of one coefficient, two-sided ({k} predictors, df = {df})", decide,
                     lambda r: draw(0.0, r), lambda r: draw(partial_r, r), n=(n,), effect=partial_r,
                     effect_name="partial r", alpha=alpha, n_sim=n_sim, seed=seed)


def _sign_flip_rule(n: int, d: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    from .paired import sign_flip_test

    return calibrate("sign-flip permutation of the mean, two-sided (a within-dataset effect over datasets)",
                     lambda x: sign_flip_test(x).p < alpha, lambda r: (r.normal(0, 1, n),),
                     lambda r: (r.normal(d, 1, n),), n=(n,), effect=d, effect_name="Cohen's d_z", alpha=alpha,
                     n_sim=n_sim, seed=seed)


RULES: dict[str, Callable[..., Calibration]] = {
    "mwu": _mwu_rule, "tost_auc": _tost_auc_rule, "pearson": _pearson_rule,
    "one_sample_t": lambda n, d, alpha, n_sim, seed: _one_sample_rule("t", n, d, alpha, n_sim, seed),
    "wilcoxon": lambda n, d, alpha, n_sim, seed: _one_sample_rule("w", n, d, alpha, n_sim, seed),
    "sign_flip": _sign_flip_rule, "tost_spearman": _tost_spearman_rule, "ols": _ols_rule,
}

# the alternatives every rule is calibrated against (as in the methods appendix's table): large effects
ALTERNATIVE_D, ALTERNATIVE_RHO = 1.5, 0.7


@lru_cache(maxsize=None)
def for_claim(test: str, n: tuple[int, ...], margin: tuple[float, float] | None = None, *, alpha: float = 0.05,
              n_sim: int = 1000, seed: int = 0) -> Calibration | str:
    """The calibration of the rule a claim's verdict rests on, at the claim's own ``n``: ``test`` is the
    record's test name (:attr:`StatResult.test`), matched by its leading words to a rule of :data:`RULES`
    (Mann-Whitney, Brunner-Munzel TOST, Fisher-z TOST of Spearman's rho, Pearson, paired/one-sample t, Wilcoxon
    signed-rank, sign-flip, the t of one OLS coefficient at its df), against the alternatives of the methods
    appendix (:data:`ALTERNATIVE_D`, :data:`ALTERNATIVE_RHO`; rho = 0 for an equivalence claim). Returns the
    reason instead when the test has no simulated rule here (then its minimum detectable effect is what the
    record says of its power)."""
    low = test.lower()
    no_rule = f"not calibrated: no simulated rule for {test.split(';')[0]!r} at n = {' vs '.join(map(str, n)) or '?'}"
    calibrated_tost = ("brunner-munzel tost", "fisher z tost (spearman")
    if "tost" in low and not low.startswith(calibrated_tost):  # e.g. a paired t TOST: its power needs the unknown sd
        return no_rule
    try:
        if low.startswith("fisher z tost (spearman") and len(n) == 1 and margin is not None:
            return _tost_spearman_rule(n[0], tuple(margin), alpha, n_sim, seed)
        ols = re.match(r"ols t \(df = (\d+)\)", low)
        if ols and len(n) == 1:
            return _ols_rule(n[0], int(ols.group(1)), ALTERNATIVE_RHO, alpha, n_sim, seed)
        if low.startswith("mann-whitney") and len(n) == 2:
            return _mwu_rule(n[0], n[1], ALTERNATIVE_D, alpha, n_sim, seed)
        if low.startswith("brunner-munzel tost") and len(n) == 2 and margin is not None:
            return _tost_auc_rule(n[0], n[1], tuple(margin), alpha, n_sim, seed)
        if len(n) == 1 and low.startswith("pearson"):
            return _pearson_rule(n[0], ALTERNATIVE_RHO, alpha, n_sim, seed)
        if len(n) == 1 and (low.startswith("paired t") or low.startswith("one-sample t")):
            return _one_sample_rule("t", n[0], ALTERNATIVE_D, alpha, n_sim, seed)
        if len(n) == 1 and low.startswith("wilcoxon signed-rank"):
            return _one_sample_rule("w", n[0], ALTERNATIVE_D, alpha, n_sim, seed)
        if len(n) == 1 and low.startswith("sign-flip permutation"):
            return _sign_flip_rule(n[0], ALTERNATIVE_D, alpha, n_sim, seed)
    except ValueError as err:  # e.g. too few units for the test at all
        return f"not calibrated: {err}"
    return no_rule


def calibration_table(n_medical: int, n_natural: int, *, margin: tuple[float, float], alpha: float = 0.05,
                      n_sim: int = 2000, seed: int = 0, d: float = ALTERNATIVE_D, rho: float = ALTERNATIVE_RHO):
    """The calibration of every rule of :data:`RULES` at ``n_medical`` vs ``n_natural`` datasets (and their
    total for the one-sample and correlation rules), as a DataFrame with a ``flag`` column."""
    import pandas as pd

    n = n_medical + n_natural
    rows = [RULES["mwu"](n_medical, n_natural, d, alpha, n_sim, seed),
            RULES["tost_auc"](n_medical, n_natural, margin, alpha, n_sim, seed),
            RULES["pearson"](n, rho, alpha, n_sim, seed),
            RULES["one_sample_t"](n, d, alpha, n_sim, seed),
            RULES["wilcoxon"](n, d, alpha, n_sim, seed)]
    return pd.DataFrame([{
        "rule": c.rule, "n": " vs ".join(map(str, c.n)), "alpha": c.alpha, "type-I error": c.type_i,
        "type-I 95% MC CI": (round(c.type_i_low, 3), round(c.type_i_high, 3)),
        "alternative": f"{c.effect_name} = {c.effect:g}", "power": c.power,
        "power 95% MC CI": (round(c.power_low, 3), round(c.power_high, 3)), "simulations": c.n_sim, "flag": c.flag}
        for c in rows])
