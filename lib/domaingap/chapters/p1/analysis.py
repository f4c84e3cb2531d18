"""P1's analyses: statistics and tables on computed results. Nothing here enters an artefact key, so editing
these functions (or a notebook) recomputes no run.

Statistics (used by the notebooks ``notebooks/p1/*.md``; a shared :mod:`domaingap.stats` replaces them later):

- :func:`bootstrap_ci`, :func:`grouped_bootstrap_ci`: percentile bootstrap CIs (two-stage for subsamples nested
  in class pairs);
- :func:`correlation`: Pearson r / Spearman rho with p-values and paired bootstrap CIs (P1's robustness claim,
  r = 0.70 between K_F and the FGSM loss penalty);
- :func:`domain_test`: medical vs natural comparison of a per-task statistic (Mann-Whitney AUC, Welch t, ratio);
- :func:`fit_ols`, :func:`coef_table`: the scaling-law regressions ``log L ~ log N + d_data + log K_F`` with
  task-clustered standard errors (P1 Eq. 3 / Fig. 2);
- :func:`wilson_fraction`: a fraction with its Wilson interval (``d_repr < d_data``, P1 Sec. 5).

Tables: :func:`results_frame` (one row per run).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import numpy as np

__all__ = ["bootstrap_ci", "coef_table", "correlation", "domain_test", "fit_ols", "grouped_bootstrap_ci",
           "results_frame", "wilson_fraction"]


def bootstrap_ci(values: Sequence[float], stat: Callable = np.mean, *, level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat`` over ``values`` (``scipy.stats.bootstrap``); NaN for < 2 values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2 or np.all(v == v[0]):
        c = float(stat(v)) if len(v) else math.nan
        return (c, c) if len(v) >= 2 else (math.nan, math.nan)
    res = stats.bootstrap((v,), stat, confidence_level=level, n_resamples=n_boot, method="percentile",
                          random_state=np.random.default_rng(seed), vectorized=False)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def grouped_bootstrap_ci(values: Sequence[float], groups: Sequence[Any], *, level: float = 0.95,
                         n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and two-stage bootstrap CI of values nested in groups (e.g. subsamples within class pairs).

    Each resample draws groups with replacement, then values with replacement within each drawn group, and
    averages the group means; so the interval reflects both the spread between class pairs and the
    sampling noise within a pair. With one group it reduces to the ordinary bootstrap of the mean.
    Returns ``(mean of group means, low, high)``.
    """
    v = np.asarray(values, dtype=float)
    g = np.asarray(groups)
    if v.shape != g.shape or v.ndim != 1 or len(v) == 0:
        raise ValueError(f"values and groups must be 1-D of equal non-zero length, got {v.shape} and {g.shape}")
    members = [v[g == u] for u in dict.fromkeys(g.tolist())]
    centre = float(np.mean([m.mean() for m in members]))
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(len(members), size=len(members))
        boot[b] = np.mean([members[p][rng.integers(len(members[p]), size=len(members[p]))].mean() for p in picks])
    alpha = (1 - level) / 2
    return centre, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def correlation(x: Sequence[float], y: Sequence[float], *, level: float = 0.95, n_boot: int = 2000,
                seed: int = 0) -> dict:
    """Pearson r and Spearman rho of paired values with scipy p-values (two-sided) and paired percentile
    bootstrap CIs (resampling the pairs). NaN pairs are dropped; ``n`` is the number of pairs used."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out: dict[str, float] = {"n": int(len(x))}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {**out, **{k: math.nan for k in ("r", "r_p", "r_low", "r_high", "rho", "rho_p", "rho_low",
                                                   "rho_high")}}
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    rb, sb = [], []
    for _ in range(n_boot):
        i = rng.integers(len(x), size=len(x))
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            continue  # a degenerate resample has no correlation
        rb.append(np.corrcoef(x[i], y[i])[0, 1])
        sb.append(stats.spearmanr(x[i], y[i]).statistic)
    a = (1 - level) / 2
    return {**out, "r": float(pr.statistic), "r_p": float(pr.pvalue),
            "r_low": float(np.nanquantile(rb, a)), "r_high": float(np.nanquantile(rb, 1 - a)),
            "rho": float(sr.statistic), "rho_p": float(sr.pvalue),
            "rho_low": float(np.nanquantile(sb, a)), "rho_high": float(np.nanquantile(sb, 1 - a))}


def domain_test(values: Sequence[float], domains: Sequence[str], *, n_boot: int = 4000, seed: int = 0) -> dict:
    """Medical vs natural comparison of a per-task statistic.

    Returns the domain means, their ratio (medical / natural) with a bootstrap CI (tasks resampled within
    each domain), the one-sided Mann-Whitney U p-value for "medical > natural" and its AUC
    (U / (n_med n_nat): the probability that a random medical task exceeds a random natural one), and the
    Welch t-test on the values (two-sided).
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    d = np.asarray(domains)
    med, nat = v[d == "medical"], v[d == "natural"]
    if len(med) < 2 or len(nat) < 2:
        raise ValueError(f"need >= 2 tasks per domain, got {len(med)} medical and {len(nat)} natural")
    u = stats.mannwhitneyu(med, nat, alternative="greater")
    u2 = stats.mannwhitneyu(med, nat, alternative="two-sided")
    t = stats.ttest_ind(med, nat, equal_var=False)
    rng = np.random.default_rng(seed)
    ratios = [rng.choice(med, len(med)).mean() / rng.choice(nat, len(nat)).mean() for _ in range(n_boot)]
    return {"n_medical": int(len(med)), "n_natural": int(len(nat)), "mean_medical": float(med.mean()),
            "mean_natural": float(nat.mean()), "ratio": float(med.mean() / nat.mean()),
            "ratio_low": float(np.quantile(ratios, 0.025)), "ratio_high": float(np.quantile(ratios, 0.975)),
            "auc": float(u.statistic / (len(med) * len(nat))), "mwu_p_greater": float(u.pvalue),
            "mwu_p_two_sided": float(u2.pvalue), "welch_t": float(t.statistic), "welch_p": float(t.pvalue),
            "min_medical": float(med.min()), "max_medical": float(med.max()),
            "min_natural": float(nat.min()), "max_natural": float(nat.max())}


def fit_ols(formula: str, frame, groups: str | None = "task"):
    """OLS fit (``statsmodels.formula.api.ols``) with cluster-robust standard errors by ``groups`` (runs of
    one task are not independent) and t-based inference with G - 1 degrees of freedom. Returns the results."""
    import statsmodels.formula.api as smf

    model = smf.ols(formula, data=frame)
    if groups is None:
        return model.fit(use_t=True)
    codes = np.unique(frame.loc[model.data.row_labels, groups].to_numpy(), return_inverse=True)[1]
    return model.fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)


def coef_table(result, level: float = 0.95):
    """Coefficients, CIs and p-values of a statsmodels result as a DataFrame."""
    import pandas as pd

    ci = result.conf_int(alpha=1 - level)
    return pd.DataFrame({"coef": result.params, "low": ci[0], "high": ci[1], "p": result.pvalues})


def wilson_fraction(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """Fraction k/n with its Wilson score interval (``statsmodels`` ``proportion_confint``)."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return math.nan, math.nan, math.nan
    lo, hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return k / n, float(lo), float(hi)


# ----------------------------------------------------------------------------------------------- tables

def results_frame(specs: list[dict], results: list[dict]):
    """One row per run: the spec's identifying fields and the result's scalars."""
    import pandas as pd

    rows = []
    for s, r in zip(specs, results):
        base = s.get("train", s)
        row = {k: base[k] for k in ("task", "domain", "dataset", "model", "n", "seed") if k in base}
        if "rep" in s:
            row["rep"] = s["rep"]
        row.update({k: v for k, v in r.items() if not k.startswith("_") and np.isscalar(v)})
        rows.append(row)
    return pd.DataFrame(rows)


