"""Verdicts on a paper's claims from the tests of this package (the words of :data:`domaingap.claims.VERDICTS`).

:func:`verdict` *is* :func:`domaingap.claims.verdict` (re-exported, so the two can never drift apart).
"""

from __future__ import annotations

from ..claims import verdict
from ._base import NotComputable, StatResult
from .equivalence import EquivalenceResult

__all__ = ["equivalence_verdict", "verdict", "verdict_of"]


# the estimate's value under "no effect", by estimand; anything else is a difference or correlation (0)
NULL_VALUES = {"AUC": 0.5, "mean(a) / mean(b)": 1.0, "odds ratio": 1.0}


def verdict_of(result: StatResult | NotComputable, *, expected_sign: int = 1, null: float | None = None,
               alpha: float | None = None) -> str:
    """:func:`verdict` on a test result: the sign of ``result.estimate - null`` and ``result.p``.

    ``null`` is the estimate's value under no effect; by default :data:`NULL_VALUES` of the estimand (0.5 for
    an AUC, 1 for ratios), else 0; ``alpha`` defaults to the analysis plan's. A :class:`NotComputable` part is
    "inconclusive" (as ``verdict`` treats NaN); a result without a test (``p is None``, e.g. a bootstrap interval)
    raises ValueError.
    """
    if isinstance(result, NotComputable):
        return "inconclusive"
    if result.p is None:
        raise ValueError(f"{result.test} result for {result.estimand} has no p-value to decide a verdict")
    centre = NULL_VALUES.get(result.estimand, 0.0) if null is None else null
    return verdict(result.estimate - centre, result.p, expected_sign=expected_sign, alpha=alpha)


def equivalence_verdict(result: EquivalenceResult) -> str:
    """Verdict on a claim of *no relevant difference* (e.g. "d_data does not separate the domains") from a TOST.

    "reproduced" when the TOST declares equivalence; "not reproduced" when the ``1 - 2 alpha`` CI lies
    entirely outside the equivalence bounds (a difference beyond the margin, at level alpha on that side);
    "inconclusive" otherwise (the data cannot tell a relevant difference from none).
    """
    if result.equivalent:
        return "reproduced"
    low, high = result.margin
    if result.low > high or result.high < low:
        return "not reproduced"
    return "inconclusive"
