"""Classifier-level tests: better than chance, proportions with Wilson intervals, agreement of two classifiers."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

from ._base import NotComputable, StatResult, check_alternative, check_count, check_level, format_n


def _labels(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D array of labels, got shape {arr.shape}")
    return arr


def majority_rate(y: Sequence[Any]) -> float:
    """Accuracy of always predicting the most frequent label of ``y`` (``(N,)`` labels of any type)."""
    _, counts = np.unique(_labels(y, "y"), return_counts=True)
    return float(counts.max() / counts.sum())


def _balanced_accuracy(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> np.ndarray:
    # y_pred (..., N): mean recall over the classes present in y_true, vectorised over the leading axes
    return np.mean([np.mean(y_pred[..., y_true == c] == c, axis=-1) for c in classes], axis=0)


def balanced_accuracy(y_true: Sequence[Any], y_pred: Sequence[Any]) -> float:
    """Mean per-class recall over the classes present in ``y_true`` (as ``sklearn.metrics.balanced_accuracy_score``)."""
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have equal length, got {t.size} and {p.size}")
    return float(_balanced_accuracy(t, p, np.unique(t)))


def wilson_interval(k: int, n: int, level: float = 0.95, *, unit: str = "") -> StatResult:
    """Proportion ``k / n`` with its Wilson score interval (Wilson 1927; ``statsmodels`` ``proportion_confint``),
    which keeps its coverage near 0 and 1 where the Wald interval fails."""
    from statsmodels.stats.proportion import proportion_confint

    n = check_count(n, "n")
    k = check_count(k, "k", 0)
    if k > n:
        raise ValueError(f"k must be <= n, got k = {k}, n = {n}")
    check_level(level)
    low, high = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return StatResult(test="proportion", estimand="proportion", estimate=k / n, low=float(low), high=float(high),
                      level=level, ci_method="Wilson CI", n=(n,), unit=unit, extra={"k": k})


def binomial_test(k: int, n: int, p0: float = 0.5, *, alternative: str = "two-sided", level: float = 0.95,
                  unit: str = "") -> StatResult:
    """Exact binomial test of ``k`` successes in ``n`` independent trials against ``p0``
    (``scipy.stats.binomtest``; two-sided p by the likelihood ordering), estimate ``k / n`` with its Wilson CI."""
    w = wilson_interval(k, n, level, unit=unit)
    check_alternative(alternative)
    if not 0 < p0 < 1:
        raise ValueError(f"p0 must be in (0, 1), got {p0!r}")
    res = stats.binomtest(int(k), int(n), p0, alternative=alternative)
    return StatResult(test="exact binomial", estimand="proportion", estimate=w.estimate, low=w.low, high=w.high,
                      level=level, ci_method=w.ci_method, p=float(res.pvalue), alternative=alternative,
                      statistic=float(k), n=(int(n),), unit=unit, extra={"k": int(k), "p0": float(p0)})


@dataclass(frozen=True)
class ChanceTests:
    """Is a classifier better than chance on its test set? (:func:`chance_tests`)."""

    n: int
    n_classes: int
    correct: int
    accuracy: float
    accuracy_low: float  # Wilson CI
    accuracy_high: float
    majority_rate: float
    p_accuracy: float  # exact binomial, accuracy > majority rate
    balanced_accuracy: float
    chance_balanced: float  # 1 / n_classes
    p_balanced: float  # label permutation, balanced accuracy > chance
    n_resamples: int
    exact: bool  # True when every permutation was enumerated

    def summary(self, digits: int = 3) -> str:
        f = f"{{:.{digits}g}}".format
        return (f"accuracy {f(self.accuracy)} vs majority {f(self.majority_rate)} (binomial p = {f(self.p_accuracy)}); "
                f"balanced accuracy {f(self.balanced_accuracy)} vs chance {f(self.chance_balanced)} (permutation p = "
                f"{f(self.p_balanced)}); n = {self.n}")


def chance_tests(y_true: Sequence[Any], y_pred: Sequence[Any], *, n_resamples: int = 9999, seed: int = 0,
                 level: float = 0.95) -> ChanceTests:
    """Two tests of "better than chance" on a fixed test set of ``(N,)`` true and predicted labels.

    - Accuracy vs the majority rate ``p0`` (the best accuracy without looking at the input): exact one-sided
      binomial test ``binomtest(correct, N, p0, alternative="greater")``; assumes independent test samples.
    - Balanced accuracy vs ``1 / K`` (its value for any prediction independent of the input, K classes in
      ``y_true``): one-sided permutation test of the pairing of labels and predictions
      (``scipy.stats.permutation_test``, ``permutation_type="pairings"``). Seeded; ``p = (k + 1) / (R + 1)`` with
      R random permutations, exact (``k / N!``) when ``N! <= n_resamples``.

    Raises when ``y_true`` holds a single class (balanced accuracy is then 1 or 0 for any classifier).
    """
    t, p = _labels(y_true, "y_true"), _labels(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(f"y_true and y_pred must have equal length, got {t.size} and {p.size}")
    check_count(n_resamples, "n_resamples")
    classes = np.unique(t)
    if classes.size < 2:
        raise ValueError(f"y_true holds one class only ({classes.tolist()}): no chance level to test against")
    n, correct = int(t.size), int((t == p).sum())
    p0 = majority_rate(t)
    acc = wilson_interval(correct, n, level)
    binom = stats.binomtest(correct, n, p0, alternative="greater")
    perm = stats.permutation_test((p,), lambda q, axis=-1: _balanced_accuracy(t, q, classes),
                                  permutation_type="pairings", n_resamples=n_resamples, vectorized=True,
                                  alternative="greater", rng=np.random.default_rng(seed))
    return ChanceTests(n=n, n_classes=int(classes.size), correct=correct, accuracy=correct / n,
                       accuracy_low=float(acc.low), accuracy_high=float(acc.high), majority_rate=p0,
                       p_accuracy=float(binom.pvalue), balanced_accuracy=float(_balanced_accuracy(t, p, classes)),
                       chance_balanced=1.0 / classes.size, p_balanced=float(perm.pvalue), n_resamples=n_resamples,
                       exact=n < 20 and math.factorial(n) <= n_resamples)


@dataclass(frozen=True)
class Agreement:
    """How alike two classifiers' errors are on the same test samples (:func:`agreement`)."""

    n: int
    acc_a: float
    acc_b: float
    observed: float  # both right or both wrong
    independent: float  # expected if errors were independent: a1 a2 + (1 - a1)(1 - a2)
    paper_a: float  # P3's baseline acc^2 + (1 - acc)^2 with A's accuracy
    paper_b: float
    kappa: float | None  # Cohen's kappa of the correctness labels; None when both are constant
    table: tuple[tuple[int, int], tuple[int, int]]  # [[both right, A only right], [B only right, both wrong]]
    mcnemar: StatResult  # exact McNemar: do the accuracies differ? estimate acc_a - acc_b
    association: StatResult | NotComputable  # Fisher exact, one-sided: errors positively associated
    notes: tuple[str, ...] = ()

    def summary(self, digits: int = 3) -> str:
        f = f"{{:.{digits}g}}".format
        kappa = "n/a" if self.kappa is None else f(self.kappa)
        return (f"agreement {f(self.observed)} vs independent {f(self.independent)} (kappa {kappa}); McNemar p = "
                f"{f(self.mcnemar.p)}; {format_n((self.n,), self.mcnemar.unit)}")


def agreement(correct_a: Sequence[bool], correct_b: Sequence[bool], *, unit: str = "") -> Agreement:
    """Prediction agreement of classifiers A and B (P3's prediction-similarity analysis).

    Args:
        correct_a, correct_b: ``(n,)`` booleans: whether A / B classified each test sample correctly.

    Returns:
        :class:`Agreement`: observed agreement, the independence baseline ``a1 a2 + (1 - a1)(1 - a2)``, P3's
        ``acc^2 + (1 - acc)^2`` (equal to it only when ``a1 = a2``), Cohen's kappa
        ``(observed - independent) / (1 - independent)``, the exact McNemar test of equal accuracies on the
        discordant samples (``statsmodels`` ``mcnemar(exact=True)``; p = 1 without discordant samples) and the
        one-sided Fisher exact test that correctness is positively associated (odds ratio as estimate).
    """
    from statsmodels.stats.contingency_tables import mcnemar

    a, b = np.asarray(correct_a), np.asarray(correct_b)
    if a.ndim != 1 or a.shape != b.shape or a.size == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty 1-D arrays of one length, got shapes "
                         f"{a.shape} and {b.shape}")
    for name, v in (("correct_a", a), ("correct_b", b)):
        if not np.isin(v, [0, 1]).all():
            raise ValueError(f"{name} must hold booleans (or 0/1), got values {np.unique(v)[:8].tolist()}")
    a, b = a.astype(bool), b.astype(bool)
    a1, a2 = float(a.mean()), float(b.mean())
    observed = float(np.mean(a == b))
    independent = a1 * a2 + (1 - a1) * (1 - a2)
    table = ((int(np.sum(a & b)), int(np.sum(a & ~b))), (int(np.sum(~a & b)), int(np.sum(~a & ~b))))
    n = int(a.size)
    notes: tuple[str, ...] = ()
    kappa = None
    if independent < 1:
        kappa = (observed - independent) / (1 - independent)
    else:
        notes = ("kappa undefined: both classifiers are constant (always right or always wrong)",)
    mc = mcnemar(np.array(table), exact=True)
    discordant = table[0][1] + table[1][0]
    mc_p = 1.0 if discordant == 0 else float(mc.pvalue)  # no discordant pair: nothing against equal accuracies
    mc_res = StatResult(test="McNemar (exact)", estimand="accuracy difference (A - B)", estimate=a1 - a2, p=mc_p,
                        alternative="two-sided", statistic=float(mc.statistic), n=(n,), unit=unit,
                        extra={"discordant": discordant})
    margins = (table[0][0] + table[0][1], table[1][0] + table[1][1], table[0][0] + table[1][0],
               table[0][1] + table[1][1])
    if min(margins) == 0:
        association: StatResult | NotComputable = NotComputable(
            "Fisher exact", f"a classifier is always right or always wrong (table {table})", (n,), unit)
    else:
        fisher = stats.fisher_exact(table, alternative="greater")
        association = StatResult(test="Fisher exact", estimand="odds ratio", estimate=float(fisher.statistic),
                                 p=float(fisher.pvalue), alternative="greater", n=(n,), unit=unit)
    return Agreement(n=n, acc_a=a1, acc_b=a2, observed=observed, independent=float(independent),
                     paper_a=a1 ** 2 + (1 - a1) ** 2, paper_b=a2 ** 2 + (1 - a2) ** 2, kappa=kappa, table=table,
                     mcnemar=mc_res, association=association, notes=notes)
