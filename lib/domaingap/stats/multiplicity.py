"""Multiple-testing corrections (``statsmodels.stats.multitest.multipletests``), results in input order.

- Holm (1979, Scand. J. Stat. 6:65): step-down Bonferroni, controls the family-wise error rate under any
  dependence between the tests.
- Benjamini & Yekutieli (2001, Ann. Stat. 29:1165): controls the false discovery rate under any dependence
  (Benjamini-Hochberg scaled by ``sum_{i<=m} 1/i``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ._base import check_alpha

METHODS = {"holm": "holm", "by": "fdr_by", "fdr_by": "fdr_by"}


@dataclass(frozen=True)
class AdjustedPValues:
    """Adjusted p-values and reject flags, in the order the p-values were given."""

    method: str  # "holm" or "fdr_by"
    alpha: float
    p: tuple[float, ...]
    p_adjusted: tuple[float, ...]
    reject: tuple[bool, ...]

    def __len__(self) -> int:
        return len(self.p)


def adjust_pvalues(pvalues: Sequence[float], method: str = "holm", *, alpha: float = 0.05) -> AdjustedPValues:
    """Adjust ``pvalues`` (1-D, each in [0, 1]) for multiplicity with ``method`` ``"holm"`` or ``"by"``
    (alias ``"fdr_by"``); ``reject`` is ``p_adjusted <= alpha`` as statsmodels decides it.

    A NaN p-value raises ValueError naming its position: decide first what an untestable hypothesis counts as
    (dropping it or setting p = 1 changes the family the correction is over).
    """
    from statsmodels.stats.multitest import multipletests

    if method not in METHODS:
        raise ValueError(f"method must be one of {sorted(METHODS)}, got {method!r}")
    alpha = check_alpha(alpha)
    try:
        p = np.asarray(pvalues, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"p-values must be numbers, got {pvalues!r:.200}") from err
    if p.ndim != 1 or p.size == 0:
        raise ValueError(f"p-values must be a non-empty 1-D sequence, got shape {p.shape}")
    nan = np.flatnonzero(np.isnan(p))
    if nan.size:
        raise ValueError(f"p-values are NaN at positions {nan.tolist()}: decide what those tests count as first")
    bad = np.flatnonzero((p < 0) | (p > 1))
    if bad.size:
        raise ValueError(f"p-values must be in [0, 1]; got {p[bad].tolist()} at positions {bad.tolist()}")
    reject, adjusted, _, _ = multipletests(p, alpha=alpha, method=METHODS[method])
    return AdjustedPValues(method=METHODS[method], alpha=alpha, p=tuple(p.tolist()),
                           p_adjusted=tuple(float(v) for v in adjusted), reject=tuple(bool(r) for r in reject))


def holm(pvalues: Sequence[float], *, alpha: float = 0.05) -> AdjustedPValues:
    """Holm (1979) step-down adjusted p-values (family-wise error rate); see :func:`adjust_pvalues`."""
    return adjust_pvalues(pvalues, "holm", alpha=alpha)


def benjamini_yekutieli(pvalues: Sequence[float], *, alpha: float = 0.05) -> AdjustedPValues:
    """Benjamini-Yekutieli (2001) adjusted p-values (false discovery rate, any dependence); see
    :func:`adjust_pvalues`."""
    return adjust_pvalues(pvalues, "by", alpha=alpha)
