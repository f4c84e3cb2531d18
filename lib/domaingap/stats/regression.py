"""Regression fits: OLS with cluster-robust inference, and a random-intercept mixed model (statsmodels).

Runs of one task (seeds, training-set sizes) are not independent; two ways to respect that:

- :func:`fit_ols`: OLS point estimates with cluster-robust (sandwich) standard errors by group and t inference
  with G - 1 degrees of freedom (Cameron & Miller 2015, J. Hum. Resour. 50:317), robust to any within-group
  correlation; fine with few observations per group, needs a fair number of groups.
- :func:`mixed_lm`: a random intercept per group (``MixedLM.from_formula``), which models the within-group
  correlation as a shared offset; Wald z inference (statsmodels has no small-sample df correction, so p-values
  are optimistic with few groups).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats

from ._base import check_level, distinct_messages


def _check_column(data: Any, column: str) -> None:
    if column not in getattr(data, "columns", ()):
        raise ValueError(f"column {column!r} is not in the data (columns: {list(getattr(data, 'columns', []))})")


def fit_ols(formula: str, data: Any, groups: str | None = "task"):
    """OLS fit of ``formula`` on the DataFrame ``data`` (``statsmodels.formula.api.ols``) with cluster-robust
    standard errors by the ``groups`` column and t-based inference with G - 1 df (``groups=None``: classical
    standard errors). Rows the formula drops for missing values are dropped from the clusters too.
    Returns the statsmodels results (read them with :func:`coef_table`)."""
    import statsmodels.formula.api as smf

    model = smf.ols(formula, data=data)
    if groups is None:
        return model.fit(use_t=True)
    _check_column(data, groups)
    labels = data.loc[model.data.row_labels, groups].to_numpy()
    codes = np.unique(labels, return_inverse=True)[1]
    if codes.max(initial=-1) < 1:
        raise ValueError(f"cluster-robust SEs need >= 2 groups in {groups!r}, got {np.unique(labels).tolist()}")
    return model.fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)


def coef_table(result: Any, level: float = 0.95):
    """Coefficients of a statsmodels result as a DataFrame: ``coef``, ``se``, ``low``, ``high`` (CI at
    ``level``, with the result's own df) and ``p``, one row per term."""
    import pandas as pd

    check_level(level)
    ci = result.conf_int(alpha=1 - level)
    return pd.DataFrame({"coef": result.params, "se": result.bse, "low": ci[0], "high": ci[1], "p": result.pvalues})


@dataclass(frozen=True)
class MixedFit:
    """A random-intercept fit: fixed effects, the variance components and what statsmodels warned about."""

    formula: str
    groups: str
    table: Any  # DataFrame indexed by fixed-effect term: coef, se, low, high, p (Wald z)
    group_var: float  # variance of the random intercept
    residual_var: float
    n_obs: int
    n_groups: int
    converged: bool
    boundary: bool  # group variance at ~0: the random intercept is not identified
    warnings: tuple[str, ...]  # statsmodels' warnings during the fit, captured instead of printed
    method: str  # "REML" or "ML"
    result: Any  # the statsmodels MixedLMResults

    @property
    def icc(self) -> float:
        """Share of the variance between groups, ``group_var / (group_var + residual_var)``."""
        return self.group_var / (self.group_var + self.residual_var)


def mixed_lm(formula: str, data: Any, groups: str, *, nested: str | None = None, level: float = 0.95,
             reml: bool = True, allow_boundary: bool = False) -> MixedFit:
    """Linear mixed model with a random intercept per ``groups`` level (e.g. dataset), and optionally one per
    ``nested`` level within it (e.g. task within dataset, a variance component), fitted by ``statsmodels``
    ``MixedLM.from_formula`` (REML by default).

    A covariate that varies only between nested units (d_data, K_F of a task) needs ``nested``: without it,
    differences between the tasks of a dataset that have nothing to do with the covariate count as evidence
    about it, and its p-value is far too small.

    Args:
        formula: fixed effects, e.g. ``"log_L ~ log_N + medical"``; data: a DataFrame; groups: its column.
        nested: a column whose levels are nested in ``groups`` (``vc_formula={nested: "0 + C(nested)"}``).
        allow_boundary: return a fit whose group variance is estimated at ~0 (flagged ``boundary``) instead
            of raising.

    Raises:
        ValueError: fewer than 3 groups (a variance from 2 group means is meaningless); a singular fit
        (singular design, non-finite estimates, or - unless ``allow_boundary`` - a group variance at the
        boundary 0, where the random intercept is not identified and :func:`fit_ols` is the honest fit).
    """
    import pandas as pd
    import statsmodels.formula.api as smf

    check_level(level)
    _check_column(data, groups)
    names = sorted({str(g) for g in data[groups].dropna().tolist()})
    if len(names) < 3:
        raise ValueError(f"a random intercept needs >= 3 groups in {groups!r}, got {len(names)}: {names}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            vc = None
            if nested is not None:
                _check_column(data, nested)
                vc = {nested: f"0 + C({nested})"}
            result = smf.mixedlm(formula, data, groups=groups, re_formula="1", vc_formula=vc).fit(reml=reml)
        except np.linalg.LinAlgError as err:
            raise ValueError(f"singular fit of {formula!r} (is a term collinear or constant?): {err}") from err
    messages = distinct_messages(caught)
    fe, se = result.fe_params, result.bse_fe
    if not (np.all(np.isfinite(fe)) and np.all(np.isfinite(se))):
        raise ValueError(f"singular fit of {formula!r}: non-finite estimates or standard errors "
                         f"({dict(zip(fe.index, zip(fe, se)))}); warnings: {messages}")
    group_var, residual_var = float(result.cov_re.iloc[0, 0]), float(result.scale)
    boundary = group_var <= 1e-6 * residual_var
    if boundary and not allow_boundary:
        raise ValueError(f"singular (boundary) fit of {formula!r}: the variance of the {groups!r} intercept is "
                         f"{group_var:.3g} (residual variance {residual_var:.3g}), so the random intercept is not "
                         f"identified; use fit_ols with cluster-robust SEs or pass allow_boundary=True. "
                         f"statsmodels warned: {messages}")
    z = stats.norm.ppf(0.5 + level / 2)
    table = pd.DataFrame({"coef": fe, "se": se, "low": fe - z * se, "high": fe + z * se,
                          "p": result.pvalues[fe.index]})
    shown = formula + (f" + (1 | {nested})" if nested else "")
    return MixedFit(formula=shown, groups=groups, table=table, group_var=group_var, residual_var=residual_var,
                    n_obs=int(result.nobs), n_groups=len(result.model.group_labels), converged=bool(result.converged),
                    boundary=boundary, warnings=messages, method="REML" if reml else "ML", result=result)
