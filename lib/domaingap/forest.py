"""The claims at a glance: book-wide multiplicity (:func:`adjusted`) and a forest plot (:func:`forest_plot`).

Both read :func:`domaingap.claims.table` rows. Only records that carry the structured second axis (a test
``result`` passed to :func:`domaingap.claims.record`) enter them; the others are listed as such, never guessed.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["VERDICT_COLOURS", "adjusted", "forest_plot"]

VERDICT_COLOURS = {"reproduced": "tab:green", "not reproduced": "tab:red", "inconclusive": "tab:orange",
                   "not testable here": "0.6"}


def adjusted(table, *, family: str = "paper", alpha: float = 0.05):
    """``table`` with Holm-adjusted p-values within each ``family`` (default: per paper) and the verdict those
    give: a directional claim stays "reproduced"/"not reproduced" only when its adjusted p < alpha, else
    "inconclusive"; a null claim stays "reproduced" (equivalent) only when its adjusted TOST p < alpha, and keeps
    "not reproduced" (the CI lies beyond the margin) or "inconclusive" otherwise. Claims without a p-value (no
    structured record, or untestable) keep their verdict, marked in ``adjusted_note``.

    Adds columns ``p_holm``, ``verdict_holm``, ``family_size`` and ``adjusted_note``.
    """
    from . import stats

    out = table.copy()
    out["p_holm"], out["verdict_holm"], out["family_size"], out["adjusted_note"] = None, out["verdict"], 0, ""
    if not len(out):
        return out
    if family not in out.columns:
        raise ValueError(f"family must be a column of the claims table, got {family!r}")
    for _, idx in out.groupby(family).groups.items():
        sub = out.loc[idx]
        has_p = [i for i in idx if _finite(sub.at[i, "p"])]
        out.loc[idx, "family_size"] = len(has_p)
        for i in set(idx) - set(has_p):
            out.at[i, "adjusted_note"] = "no p-value recorded: not adjusted"
        if not has_p:
            continue
        adj = stats.holm([float(out.at[i, "p"]) for i in has_p], alpha=alpha)
        for i, p in zip(has_p, adj.p_adjusted):
            out.at[i, "p_holm"] = float(p)
            v = out.at[i, "verdict"]
            if p >= alpha and v == "reproduced":
                out.at[i, "verdict_holm"] = "inconclusive"
            elif p >= alpha and v == "not reproduced" and out.at[i, "kind"] != "null":
                out.at[i, "verdict_holm"] = "inconclusive"
    return out


def _finite(v) -> bool:
    try:
        return v is not None and math.isfinite(float(v))
    except (TypeError, ValueError):
        return False


def forest_plot(table, *, title: str = ""):
    """One row per claim with a structured record: our effect and its CI (dot and bar), the paper's number
    (a diamond) where it gives one, the equivalence margin as a band for null claims, and the verdict as colour.
    Claims are grouped by estimand, one panel each, since AUCs, correlations and ratios share no axis.
    Returns the matplotlib Figure, or None when no claim has a structured record."""
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    rows = table[[_finite(e) for e in table["estimate"]]] if len(table) else table
    if not len(rows):
        return None
    groups = list(dict.fromkeys(rows["estimand"]))
    heights = [max(1, (rows["estimand"] == g).sum()) for g in groups]
    fig, axes = plt.subplots(len(groups), 1, figsize=(8.5, 0.42 * sum(heights) + 0.9 * len(groups) + 0.6),
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    for ax, g in zip(axes[:, 0], groups):
        sub = rows[rows["estimand"] == g]
        ys = np.arange(len(sub))[::-1]
        for y, (_, r) in zip(ys, sub.iterrows()):
            colour = VERDICT_COLOURS.get(r["verdict"], "k")
            if r["kind"] == "null" and r["margin"] is not None:
                lo_m, hi_m = r["margin"]
                ax.fill_betweenx([y - 0.35, y + 0.35], lo_m, hi_m, color="0.85", zorder=0)
            if _finite(r["low"]) and _finite(r["high"]):
                ax.plot([r["low"], r["high"]], [y, y], color=colour, lw=2, solid_capstyle="butt")
            ax.plot([r["estimate"]], [y], "o", color=colour, ms=6)
            if _finite(r["published"]) and not r.get("published_on"):  # only on the estimate's own axis
                ax.plot([r["published"]], [y], "D", mfc="white", mec="k", ms=6)
        ax.set_yticks(ys, [f"{r['paper']} {r['claim_id']}" for _, r in sub.iterrows()], fontsize=8)
        ax.set_ylim(-0.7, len(sub) - 0.3)
        ax.set_title(g, fontsize=9, loc="left")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", alpha=0.3)
    handles = [Line2D([], [], color=c, marker="o", lw=2, label=v) for v, c in VERDICT_COLOURS.items()]
    handles += [Line2D([], [], marker="D", ls="", mfc="white", mec="k", label="paper's number"),
                plt.Rectangle((0, 0), 1, 1, color="0.85", label="equivalence margin (null claims)")]
    fig.legend(handles=handles, loc="lower center", ncol=3, fontsize=8, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
