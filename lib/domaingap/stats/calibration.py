"""Calibration of the book's verdict rules: their simulated type-I error and power at the n a profile uses.

A verdict rule is a function of the data that says "reproduced" or not. :func:`calibrate` runs it on data drawn
under the null (no effect; for an equivalence rule: a true effect exactly at the margin) and under a stated
alternative, and returns the rejection rates with Monte-Carlo (Wilson) intervals. A rule whose type-I error
exceeds its alpha, or whose power is near alpha, is flagged (:attr:`Calibration.flag`).

:data:`RULES` holds the rules the chapters use, as ``(name, design)`` builders: two-sample domain comparisons
(Mann-Whitney on dataset means), equivalence of two domains (Brunner-Munzel TOST on the AUC), correlation across
datasets (Pearson), one-sample location tests over datasets (t, Wilcoxon, sign-flip), the t of one OLS
coefficient, the Wald z of a MixedLM fixed effect with few groups, Page's trend test over layers, equivalence of
a Spearman correlation or of a paired mean (TOST), and the rules on items: McNemar and the label-permutation test
of balanced accuracy vs chance. Samples are normal with unit variance (items: Bernoulli); the alternative is a
shift of ``effect`` standard deviations (Cohen's d), a correlation ``effect``, or an accuracy gain.
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


def _mixed_rule(n_groups: int, n_points: int, rho: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    """The Wald z of one fixed effect of a random-intercept model (:func:`~.regression.mixed_lm`, REML) with
    ``n_groups`` groups (datasets) and ``n_points`` rows: half of the covariate's variance and half of the
    noise's lie between groups (ICC 0.5 each), so with few groups the z's normal reference is too liberal -
    the point of calibrating it. Alternative: the covariate correlates ``rho`` with the outcome."""
    import warnings

    import statsmodels.api as sm

    if n_groups < 3:
        raise ValueError(f"a random intercept needs >= 3 groups, got {n_groups}")
    m = max(2, round(n_points / n_groups))
    groups = np.repeat(np.arange(n_groups), m)

    def draw(r_, rng):
        x = (rng.normal(0, 1, n_groups)[groups] + rng.normal(0, 1, groups.size)) / math.sqrt(2)
        noise = (rng.normal(0, 1, n_groups)[groups] + rng.normal(0, 1, groups.size)) / math.sqrt(2)
        return x, r_ * x + math.sqrt(1 - r_ ** 2) * noise

    def decide(x, y):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # boundary / convergence warnings: the rule is what the fit says
            try:
                fit = sm.MixedLM(y, sm.add_constant(x), groups).fit(reml=True)
            except (np.linalg.LinAlgError, ValueError):
                return False
        p = float(fit.pvalues[1])
        return math.isfinite(p) and p < alpha

    return calibrate(f"MixedLM Wald z of one fixed effect ({n_groups} groups, {groups.size} rows, ICC 0.5)",
                     decide, lambda r: draw(0.0, r), lambda r: draw(rho, r), n=(n_groups,), effect=rho,
                     effect_name="r", alpha=alpha, n_sim=n_sim, seed=seed)


def _page_rule(n_blocks: int, k: int, d: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    """Page's two-sided trend test (:func:`~.trend.page_trend`) on ``n_blocks`` x ``k`` normal data; the
    alternative falls linearly by ``d`` standard deviations from the first to the last condition."""
    from .trend import page_trend

    slope = -d * np.linspace(0.0, 1.0, k)
    return calibrate(f"Page's trend test, two-sided ({k} ordered conditions)",
                     lambda x: page_trend(x, ci=False).p < alpha, lambda r: (r.normal(0, 1, (n_blocks, k)),),
                     lambda r: (r.normal(0, 1, (n_blocks, k)) + slope,), n=(n_blocks,), effect=d,
                     effect_name="fall over the conditions (sd)", alpha=alpha, n_sim=n_sim, seed=seed)


def _mcnemar_rule(n: int, diff: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    """Exact McNemar test of two classifiers' accuracies on ``n`` shared items, with 20% of the items discordant;
    the alternative: accuracy difference ``diff``. Items are drawn independent (what the test assumes)."""
    from .classifier import agreement

    discordant = 0.2

    def draw(delta, rng):
        u = rng.random(n)
        a_only = u < discordant / 2 + delta / 2
        b_only = (u >= discordant / 2 + delta / 2) & (u < discordant)
        both = u >= discordant + (1 - discordant) / 2  # half of the concordant items right for both
        return both | a_only, both | b_only

    return calibrate("McNemar exact, two-sided (paired correctness on shared items)",
                     lambda a, b: agreement(a, b).mcnemar.p < alpha, lambda r: draw(0.0, r),
                     lambda r: draw(diff, r), n=(n,), effect=diff, effect_name="accuracy difference",
                     alpha=alpha, n_sim=n_sim, seed=seed)


def _chance_rule(n: int, n_classes: int, gain: float, alpha: float, n_sim: int, seed: int) -> Calibration:
    """One-sided label-permutation test of balanced accuracy vs 1/K (:func:`~.classifier.chance_tests`, 999
    resamples in the simulation) on ``n`` items of ``n_classes`` balanced classes; the alternative: a classifier
    right with probability ``1/K + gain`` (else a uniformly random wrong class)."""
    from .classifier import chance_tests

    def draw(g, rng):
        y = rng.integers(0, n_classes, n)
        wrong = (y + rng.integers(1, n_classes, n)) % n_classes
        right = rng.random(n) < 1.0 / n_classes + g
        return y, np.where(right, y, wrong), int(rng.integers(2 ** 31))

    def decide(y, pred, s):
        if np.unique(y).size < 2:
            return False
        return chance_tests(y, pred, n_resamples=999, seed=s).p_balanced < alpha

    return calibrate(f"label-permutation test of balanced accuracy vs chance, one-sided (K = {n_classes})", decide,
                     lambda r: draw(0.0, r), lambda r: draw(gain, r), n=(n,), effect=gain,
                     effect_name="balanced accuracy - chance", alpha=alpha, n_sim=n_sim, seed=seed)


def _tost_paired_rule(n: int, margin: tuple[float, float], scale: float, alpha: float, n_sim: int, seed: int
                      ) -> Calibration:
    """Paired t TOST (:func:`~.equivalence.tost_paired`) of ``n`` differences with standard deviation ``scale``
    (the record's own, a plug-in): type-I error with the true mean on the nearer margin edge, power at a true
    mean of 0 (the margin's centre when 0 is outside it)."""
    from .equivalence import tost_paired

    lo, hi = margin
    edge = lo if abs(lo) < abs(hi) else hi
    centre = 0.0 if lo < 0.0 < hi else (lo + hi) / 2  # no effect: the alternative an equivalence claim asserts

    def decide(d):
        try:
            return tost_paired(d, margin=margin, alpha=alpha).equivalent
        except ValueError:
            return False

    return calibrate(f"paired t TOST, margin {tuple(margin)} (a null claim; sd {scale:.3g} plugged in)", decide,
                     lambda r: (r.normal(edge, scale, n),), lambda r: (r.normal(centre, scale, n),), n=(n,),
                     effect=centre, effect_name="true mean difference (under the alternative)", alpha=alpha,
                     n_sim=n_sim, seed=seed)


RULES: dict[str, Callable[..., Calibration]] = {
    "mwu": _mwu_rule, "tost_auc": _tost_auc_rule, "pearson": _pearson_rule,
    "one_sample_t": lambda n, d, alpha, n_sim, seed: _one_sample_rule("t", n, d, alpha, n_sim, seed),
    "wilcoxon": lambda n, d, alpha, n_sim, seed: _one_sample_rule("w", n, d, alpha, n_sim, seed),
    "sign_flip": _sign_flip_rule, "tost_spearman": _tost_spearman_rule, "ols": _ols_rule,
    "mixed": _mixed_rule, "page": _page_rule, "mcnemar": _mcnemar_rule, "chance": _chance_rule,
    "tost_paired": _tost_paired_rule,
}

# the alternatives every rule is calibrated against (as in the methods appendix's table): large effects
ALTERNATIVE_D, ALTERNATIVE_RHO = 1.5, 0.7
# ... and for the rules on items (images): an accuracy difference of 0.1, a balanced accuracy 0.05 above chance
ALTERNATIVE_ACC, ALTERNATIVE_GAIN = 0.1, 0.05
# the slow rules simulate fewer draws (a MixedLM fit ~30 ms, a permutation test 999 resamples): Monte-Carlo 95%
# half-width of a type-I error near 0.05 is then about +/- 0.02
SLOW_SIMS = 400


@lru_cache(maxsize=None)
def for_claim(test: str, n: tuple[int, ...], margin: tuple[float, float] | None = None, *, alpha: float = 0.05,
              n_sim: int = 1000, seed: int = 0, scale: float | None = None) -> Calibration | str:
    """The calibration of the rule a claim's verdict rests on, at the claim's own ``n``: ``test`` is the
    record's test name (:attr:`StatResult.test`), matched by its leading words to a rule of :data:`RULES`:
    Mann-Whitney, Brunner-Munzel TOST, Fisher-z TOST of Spearman's rho, paired t TOST (needs ``scale``, the
    record's sd of the differences), Pearson, paired/one-sample t, Wilcoxon signed-rank, sign-flip, the t of one
    OLS coefficient at its df, the Wald z of a MixedLM fixed effect (rows from "(72 task points)"), Page's trend
    test (k from "k = 5", else 5), McNemar, and the label-permutation test vs chance (K from "K = 3", else 2).
    Alternatives: :data:`ALTERNATIVE_D`, :data:`ALTERNATIVE_RHO`, :data:`ALTERNATIVE_ACC`,
    :data:`ALTERNATIVE_GAIN`; for an equivalence claim, no effect (rho = 0, AUC 0.5, the margin's centre). The
    slow rules (MixedLM, permutation) run :data:`SLOW_SIMS` draws. Returns the reason instead when the test has
    no simulated rule here (then its minimum detectable effect is what the record says of its power)."""
    low = test.lower()
    no_rule = f"not calibrated: no simulated rule for {test.split(';')[0]!r} at n = {' vs '.join(map(str, n)) or '?'}"
    calibrated_tost = ("brunner-munzel tost", "fisher z tost (spearman", "paired t tost")
    if "tost" in low and (not low.startswith(calibrated_tost) or margin is None):  # never its plain test's rule
        return no_rule
    slow = min(n_sim, SLOW_SIMS)
    one = len(n) == 1
    try:
        if low.startswith("fisher z tost (spearman") and one and margin is not None:
            return _tost_spearman_rule(n[0], tuple(margin), alpha, n_sim, seed)
        if low.startswith("paired t tost") and one and margin is not None:
            if scale is None or not scale > 0:
                return f"not calibrated: a paired t TOST's rates depend on the sd of the differences ({scale!r})"
            return _tost_paired_rule(n[0], tuple(margin), float(scale), alpha, n_sim, seed)
        ols = re.match(r"ols t \(df = (\d+)\)", low)
        if ols and one:
            return _ols_rule(n[0], int(ols.group(1)), ALTERNATIVE_RHO, alpha, n_sim, seed)
        if low.startswith("mixedlm") and one:
            rows = re.search(r"\((\d+) ", low)
            return _mixed_rule(n[0], int(rows.group(1)) if rows else 10 * n[0], ALTERNATIVE_RHO, alpha, slow, seed)
        if low.startswith("page's trend test") and one:
            k = re.search(r"k = (\d+)", low)
            return _page_rule(n[0], int(k.group(1)) if k else 5, ALTERNATIVE_D, alpha, slow, seed)
        if low.startswith("mcnemar") and one:
            return _mcnemar_rule(n[0], ALTERNATIVE_ACC, alpha, n_sim, seed)
        if low.startswith("label-permutation test") and one:
            k = re.search(r"k = (\d+)", low)
            return _chance_rule(n[0], int(k.group(1)) if k else 2, ALTERNATIVE_GAIN, alpha, slow, seed)
        if low.startswith("mann-whitney") and len(n) == 2:
            return _mwu_rule(n[0], n[1], ALTERNATIVE_D, alpha, n_sim, seed)
        if low.startswith("brunner-munzel tost") and len(n) == 2 and margin is not None:
            return _tost_auc_rule(n[0], n[1], tuple(margin), alpha, n_sim, seed)
        if one and low.startswith("pearson"):
            return _pearson_rule(n[0], ALTERNATIVE_RHO, alpha, n_sim, seed)
        if one and (low.startswith("paired t") or low.startswith("one-sample t")):
            return _one_sample_rule("t", n[0], ALTERNATIVE_D, alpha, n_sim, seed)
        if one and low.startswith("wilcoxon signed-rank"):
            return _one_sample_rule("w", n[0], ALTERNATIVE_D, alpha, n_sim, seed)
        if one and low.startswith("sign-flip permutation"):
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
