"""The book's statistics: one place for every test, interval and verdict the chapters use.

Thin, documented wrappers over ``scipy.stats`` and ``statsmodels``; each returns a small frozen result
(:class:`StatResult`, or a bundle such as :class:`IndependentComparison`) carrying the estimate, its CI, the
p-value, the test's name, n per side and the caller's unit. Conventions (see :mod:`domaingap.stats._base`):
NaN inputs raise ValueError naming their positions; CIs are two-sided at ``level``; what the data cannot give
is a ValueError quoting the input, or a :class:`NotComputable` with the reason inside a bundle - never a NaN.

Modules (everything is re-exported here):

- :mod:`.resampling`: :func:`bootstrap_ci`, :func:`cluster_bootstrap_ci`.
- :mod:`.two_sample`: :func:`mann_whitney`, :func:`mwu_min_pvalue`, :func:`welch_t`, :func:`hodges_lehmann`,
  :func:`ratio_of_means`, :func:`compare_independent`, :func:`compare_domains`.
- :mod:`.paired`: :func:`mean_ci`, :func:`paired_t`, :func:`wilcoxon_signed_rank`, :func:`sign_flip_test`,
  :func:`compare_paired`, :func:`signed_rank` (the Wilcoxon test with Tukey's Walsh-average interval of its
  pseudo-median), and the zero-difference policy.
- :mod:`.correlation`: :func:`pearson`, :func:`spearman`.
- :mod:`.equivalence`: :func:`tost_two_sample`, :func:`tost_paired`, :func:`tost_correlation`, :func:`tost_auc`,
  :func:`compare_to_published`.
- :mod:`.multiplicity`: :func:`adjust_pvalues`, :func:`holm`, :func:`benjamini_yekutieli`.
- :mod:`.power`: :func:`mde_two_sample`, :func:`mde_paired`, :func:`mde_correlation`, :func:`mde_proportion`
  and their ``power_*`` counterparts.
- :mod:`.regression`: :func:`fit_ols`, :func:`coef_table`, :func:`mixed_lm`.
- :mod:`.classifier`: :func:`majority_rate`, :func:`balanced_accuracy`, :func:`chance_tests`,
  :func:`binomial_test`, :func:`wilson_interval`, :func:`agreement`.
- :mod:`.calibration`: :func:`calibrate`, :func:`calibration_table` (simulated type-I error and power of the
  verdict rules at a profile's n).
- :mod:`.relabel`: :func:`relabel_calibration` with :func:`domain_relabellings` / :func:`swap_relabellings` (a
  rule's rejection rate on the book's own data with its labels shuffled).
- :mod:`.trend`: :func:`page_trend` (Page's L test of a monotone change over ordered conditions, e.g. layers).
- :mod:`.verdicts`: :func:`verdict` (= ``claims.verdict``), :func:`verdict_of`, :func:`equivalence_verdict`.

Replacements for the chapters' former helpers:

- ``p1.bootstrap_ci(v)`` -> ``bootstrap_ci(v).ci`` (BCa, not percentile; NaN input raises instead of being
  dropped; fewer than 2 values raises instead of returning NaN).
- ``p1.grouped_bootstrap_ci(v, g)`` -> ``cluster_bootstrap_ci(v, g)`` (``.estimate``, ``.low``, ``.high``).
- ``p1.correlation(x, y)`` -> ``pearson(x, y)`` and ``spearman(x, y)`` (NaN pairs raise: drop them first;
  Pearson's CI is now Fisher z, not bootstrap; n >= 4).
- ``p1.domain_test(v, d)`` -> ``compare_domains(v, d)``: ``ratio`` -> ``.ratio``, ``auc`` and
  ``mwu_p_two_sided`` -> ``.mwu.estimate`` and ``.mwu.p``; ``mwu_p_greater`` -> ``compare_domains(v, d,
  alternative="greater").mwu.p``; ``welch_*`` -> ``.welch``; labels other than medical/natural raise.
- ``p1.fit_ols``, ``p1.coef_table`` -> ``fit_ols``, ``coef_table`` (the table gains an ``se`` column).
- ``p1.wilson_fraction(k, n)`` -> ``wilson_interval(k, n)`` (n = 0 raises instead of NaN).
- ``p2.majority_rate``, ``p2._balanced_accuracy_vec`` -> ``majority_rate``, ``balanced_accuracy``.
- ``p2.chance_tests(...)["key"]`` -> ``chance_tests(...).key`` (same keys; one-class ``y_true`` raises).
- ``p2.t_interval(v)`` -> ``mean_ci(v)`` (``.estimate``, ``.low``, ``.high``; < 2 values and NaN raise).
- ``p2.paired_test(d)`` and ``p3.paired_summary(d)`` -> ``compare_paired(d)`` (``.t``, ``.wilcoxon.p``,
  ``.wilcoxon.extra["rank_biserial"]``); all-zero differences give p = 1 (p2 gave NaN).
- ``p3.agreement`` + ``p3.agreement_test`` -> ``agreement`` (``.association`` is the Fisher test;
  ``.mcnemar`` is new; kappa is ``None`` instead of NaN when undefined).
- ``p3.spearman_ci(x, y, groups=g)`` -> ``spearman(x, y, groups=g, within_groups=True)``.
- ``p3.holm(p)`` -> ``holm(p).p_adjusted`` (NaN p-values raise).
- ``p3.verdict_from_test``, ``claims.verdict`` -> ``verdict`` or ``verdict_of(result)``.
"""

from __future__ import annotations

from ._base import NotComputable, StatResult, ci_text
from .calibration import Calibration, calibrate, calibration_table
from .classifier import (Agreement, ChanceTests, agreement, balanced_accuracy, binomial_test, chance_tests,
                         majority_rate, wilson_interval)
from .correlation import pearson, spearman
from .equivalence import (EquivalenceResult, PublishedComparison, compare_to_published, tost_auc, tost_correlation,
                          tost_paired, tost_two_sample)
from .multiplicity import AdjustedPValues, adjust_pvalues, benjamini_yekutieli, holm
from .paired import (PairedComparison, compare_paired, mean_ci, paired_t, sign_flip_test, signed_rank,
                     wilcoxon_signed_rank)
from .power import (PowerResult, mde_correlation, mde_paired, mde_proportion, mde_two_sample, power_correlation,
                    power_paired, power_proportion, power_two_sample)
from .regression import MixedFit, coef_table, fit_ols, mixed_lm
from .relabel import RelabelCalibration, domain_relabellings, relabel_calibration, swap_relabellings
from .resampling import bootstrap_ci, cluster_bootstrap_ci
from .two_sample import (IndependentComparison, compare_domains, compare_independent, hodges_lehmann, mann_whitney,
                         mwu_min_pvalue, ratio_of_means, welch_t)
from .trend import page_trend
from .verdicts import equivalence_verdict, verdict, verdict_of

__all__ = [
    "AdjustedPValues", "Agreement", "Calibration", "ChanceTests", "EquivalenceResult", "IndependentComparison",
    "MixedFit", "NotComputable", "PairedComparison", "PowerResult", "PublishedComparison", "RelabelCalibration",
    "StatResult",
    "adjust_pvalues", "agreement", "balanced_accuracy", "benjamini_yekutieli", "binomial_test", "bootstrap_ci",
    "calibrate", "calibration_table", "chance_tests", "ci_text", "cluster_bootstrap_ci", "coef_table",
    "compare_domains", "compare_independent", "domain_relabellings", "relabel_calibration",
    "swap_relabellings",
    "compare_paired", "compare_to_published", "equivalence_verdict", "fit_ols", "hodges_lehmann", "holm",
    "majority_rate", "mann_whitney", "mean_ci", "mde_correlation", "mde_paired", "mde_proportion", "mde_two_sample",
    "mixed_lm", "mwu_min_pvalue", "page_trend", "paired_t", "pearson", "power_correlation", "power_paired",
    "power_proportion",
    "power_two_sample", "ratio_of_means", "sign_flip_test", "signed_rank", "spearman", "tost_auc",
    "tost_correlation",
    "tost_paired", "tost_two_sample", "verdict", "verdict_of", "welch_t", "wilcoxon_signed_rank",
    "wilson_interval",
]
