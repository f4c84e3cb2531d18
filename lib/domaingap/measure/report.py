"""The report of a :class:`~.api.Measurement`: figures, P1's predictions and a Markdown page.

- the figures (:mod:`.figures`): :func:`plot_properties`, :func:`plot_k_sensitivity`, :func:`plot_k_f_pair`;
- :func:`predictions`: what P1's claims predict from the numbers (scaling-law slope, K_F offset, robustness);
- :func:`summary_table`: the numbers as a pandas DataFrame; :func:`write_report`: ``report.md``, the PNGs and
  ``measurement.json`` in one folder.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from .constants import NEAR_DUPLICATE_RULE, REFERENCE_N
from .core import Geometry
from .figures import COLOURS, _ci, _kf, _ref_label, plot_k_f_pair, plot_k_sensitivity, plot_properties

log = logging.getLogger(__name__)

FIGURES = {"properties": "fig_properties.png", "k": "fig_k_sensitivity.png", "pair": "fig_kf_pair.png"}

__all__ = ["COLOURS", "FIGURES", "plot_k_f_pair", "plot_k_sensitivity", "plot_properties", "predictions",
           "summary_table", "write_report", "markdown"]


def _mean(values) -> float | None:
    vals = [v for v in values if v is not None and math.isfinite(v)]
    return float(np.mean(vals)) if vals else None


def predictions(m) -> dict:
    """What P1's claims predict from the numbers at the common n, relative to the references.

    Keys: ``slope`` (-1/d_data of the dataset), ``slope_medical`` / ``slope_natural`` (mean over the references
    of each domain), ``steepness_vs_medical`` / ``steepness_vs_natural`` (ratio of the slopes: > 1 = a steeper
    fall of the loss bound with log N), ``log_kf_offset_medical`` / ``_natural`` (log K_F minus the mean log K_F of
    each domain: the intercept term of the law), ``kf_rank`` (fraction of references with a lower K_F),
    ``kf_closer_to`` ("medical" or "natural" in log K_F), ``robustness`` (one sentence), ``text`` (a paragraph).
    """
    g = m.common
    d = float(g.mle.estimate)
    kf = g.k_f if math.isfinite(g.k_f) else g.k_f_without_conflicts
    out: dict[str, Any] = {"d_data": d, "slope": -1.0 / d, "k_f": kf}
    by = {dom: [r for r in m.references if r.domain == dom] for dom in ("medical", "natural")}
    for dom, refs in by.items():
        out[f"n_{dom}"] = len(refs)
        out[f"slope_{dom}"] = _mean([-1.0 / r.geometry.mle.estimate for r in refs])
        out[f"steepness_vs_{dom}"] = (out["slope"] / out[f"slope_{dom}"]) if out[f"slope_{dom}"] else None
        mean_log = _mean([math.log(r.geometry.k_f) for r in refs if math.isfinite(r.geometry.k_f)])
        out[f"log_kf_{dom}"] = mean_log
        out[f"log_kf_offset_{dom}"] = (math.log(kf) - mean_log) if (kf and mean_log is not None) else None
    ref_kf = [r.geometry.k_f for r in m.references if math.isfinite(r.geometry.k_f)]
    out["kf_rank"] = (sum(v < kf for v in ref_kf) / len(ref_kf)) if (ref_kf and kf) else None
    offs = {dom: out[f"log_kf_offset_{dom}"] for dom in by if out[f"log_kf_offset_{dom}"] is not None}
    out["kf_closer_to"] = min(offs, key=lambda dom: abs(offs[dom])) if offs else None
    out["robustness"] = _robustness_sentence(out, kf, ref_kf)
    out["text"] = _prediction_text(m, out)
    return out


def _robustness_sentence(p: dict, kf, ref_kf) -> str:
    if kf is None or not ref_kf:
        return "No reference K_F is available to compare adversarial vulnerability with."
    rank = p["kf_rank"]
    if rank >= 0.75:
        level = "higher than most references"
    elif rank <= 0.25:
        level = "lower than most references"
    else:
        level = "in the middle of the references"
    closer = p["kf_closer_to"]
    return (f"K_F is {level} (above {rank:.0%} of the {len(ref_kf)} references; closer in log K_F to the "
            f"{closer} datasets' mean). P1's robustness bound log R >~ -log K_F + log b then predicts adversarial "
            f"vulnerability (e.g. the loss penalty of an FGSM attack) "
            + ("above most references'." if rank >= 0.75 else "below most references'." if rank <= 0.25
               else "comparable to the references'."))


def _fmt(v, spec=".3f"):
    return "-" if v is None else format(v, spec)


def _prediction_text(m, p: dict) -> str:
    parts = [
        f"P1's generalisation law, log L <~ -(1/d_data) log N + log K_F + a, bounds the test loss L of a model "
        f"trained on N images. With d_data = {p['d_data']:.2f} (MLE, k = 20, n = {m.common_n}) its slope in log N is "
        f"-1/d_data = {p['slope']:.3f}",
    ]
    rel = []
    for dom in ("medical", "natural"):
        if p[f"slope_{dom}"] is not None:
            rel.append(f"{p[f'steepness_vs_{dom}']:.2f} times the mean slope of the {p[f'n_{dom}']} {dom} references "
                       f"({p[f'slope_{dom}']:.3f})")
    parts[0] += (": " + " and ".join(rel) if rel else "") + "."
    parts.append("A ratio above 1 means the bound falls faster as the training set grows (a lower d_data); below 1, "
                 "more slowly.")
    offs = [f"{p[f'log_kf_offset_{dom}']:+.2f} against the {dom} mean" for dom in ("medical", "natural")
            if p[f"log_kf_offset_{dom}"] is not None]
    if offs:
        parts.append(f"K_F enters as the intercept log K_F: {', '.join(offs)} (natural-log units), i.e. at equal N "
                     "and d_data the bound is higher by that much in log L when the offset is positive.")
    parts.append(p["robustness"])
    return " ".join(parts)


# ----------------------------------------------------------------------------------------------- tables

def _row(label: str, domain: str, n: int, g: Geometry) -> dict:
    return {"dataset": label, "domain": domain, "n": n, "d_MLE (k=20)": g.mle.estimate, "d_MLE low": g.mle.low,
            "d_MLE high": g.mle.high, "d_TwoNN": g.twonn.estimate, "d_TwoNN low": g.twonn.low,
            "d_TwoNN high": g.twonn.high, "K_F exact (1e-4)": g.k_f * 1e4,
            "K_F sampled (1e-4)": g.k_f_sampled * 1e4, "exact duplicates": g.exact_duplicates,
            "near duplicates": g.near_duplicate_count, "conflicting duplicates": g.conflicting_count}


def summary_table(m):
    """The dataset (all images, and the common n) and every reference as one pandas DataFrame."""
    import pandas as pd

    rows = [_row(f"{m.name} (all)", "this dataset", m.n_images, m.geometry)]
    if m.common is not m.geometry:
        rows.append(_row(f"{m.name} (n={m.common_n})", "this dataset", m.common_n, m.common))
    rows += [_row(_ref_label(m, r), r.domain, r.n, r.geometry) for r in m.references]
    return pd.DataFrame(rows).set_index("dataset")


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def markdown(m, figures: dict[str, str] | None = None) -> str:
    """The report as Markdown (figures referenced by file name when given)."""
    figures = figures or {}
    g, c = m.geometry, m.common
    p = predictions(m)
    lines = [f"# Intrinsic dataset properties of {m.name}", ""]
    lines += [f"Measured with `domaingap measure` as Konz & Mazurowski (ICLR 2024, \"P1\") define them, in the "
              f"book's P1 image format, beside {len(m.references)} of the book's datasets at the same format and "
              f"the same number of images n = {m.common_n}.", ""]
    lines += ["## Summary", ""]
    rows = [["d_data, MLE k = 20 [95% CI]", _ci(g.mle), _ci(c.mle)],
            ["d_data, TwoNN [95% CI]", _ci(g.twonn), _ci(c.twonn)],
            ["K_F exact, all cross-class pairs (x 1e-4)", _kf(g.k_f), _kf(c.k_f)],
            ["K_F, P1's sampled estimator (x 1e-4)", _kf(g.k_f_sampled), _kf(c.k_f_sampled)],
            ["closest cross-class pair: distance", f"{g.k_f_distance:.1f}", f"{c.k_f_distance:.1f}"],
            ["exact duplicates / with conflicting labels", f"{g.exact_duplicates} / {g.conflicting_count}",
             f"{c.exact_duplicates} / {c.conflicting_count}"],
            ["near-duplicate pairs (of them cross-class)", f"{g.near_duplicate_count} ({g.near_duplicate_conflicts})",
             f"{c.near_duplicate_count} ({c.near_duplicate_conflicts})"]]
    lines += [_md_table(["property", f"all {m.n_images} images", f"n = {m.common_n} (class-balanced, as the "
                                                                  "references)"], rows), ""]
    if not math.isfinite(g.k_f):
        lines += [f"**K_F is infinite**: {g.conflicting_count} image(s) occur with two different labels (listed under "
                  f"Duplicates). Without every copy of them K_F = {_kf(g.k_f_without_conflicts)} x 1e-4.", ""]
    lines += ["K_F is a maximum over pairs, so it grows with the number of images, and the MLE of d_data depends "
              "on n too: compare datasets at the same n (the second column and the figure), not at their full "
              "sizes.", ""]

    lines += ["## Data and preprocessing", ""]
    lines += [f"- source: {m.source}",
              f"- classes ({len(m.classes)}): " + ", ".join(f"{n} = {k}" for n, k in zip(m.classes, m.class_counts)),
              "- input: " + ", ".join(f"{h}x{w} px ({k} images)" for h, w, k in m.input_sizes)
              + "; channels " + ", ".join(f"{ch} ({k} images)" for ch, k in m.input_channels)
              + f"; {m.input_dtype}; pixel values {m.input_range[0]:g} to {m.input_range[1]:g}",
              f"- measured at: {m.size} x {m.size} px, {m.channels} channel{'s' if m.channels > 1 else ''}, uint8 "
              f"pixels in [{m.pixel_range[0]}, {m.pixel_range[1]}]",
              f"- {m.preprocessing}"]
    lines += [f"- {note}" for note in m.notes]
    lines += [f"- kernels ran on {m.device}"]
    lines += [""]

    lines += ["## On P1's Fig. 1 axes", ""]
    if "properties" in figures:
        lines += [f"![d_data vs K_F]({figures['properties']})", ""]
    lines += [f"The star is this dataset at n = {m.common_n} (hollow: all images); the other points are the "
              "references at the same n, size and channels (red medical: circles radiology, squares other imaging; "
              "blue natural; hollow: the reference's classes allow fewer class-balanced images, its n is given).",
              ""]
    header = ["dataset", "domain", "n", "d_MLE [95% CI]", "d_TwoNN [95% CI]", "K_F exact (1e-4)",
              "K_F sampled (1e-4)", "duplicates"]
    rows = [[f"**{m.name}**", "this dataset", m.common_n, _ci(c.mle), _ci(c.twonn), _kf(c.k_f), _kf(c.k_f_sampled),
             c.exact_duplicates]]
    for r in m.references:
        rg = r.geometry
        rows.append([_ref_label(m, r), r.domain + (" (radiology)" if r.radiology else ""), r.n, _ci(rg.mle), _ci(rg.twonn),
                     _kf(rg.k_f), _kf(rg.k_f_sampled), rg.exact_duplicates])
    lines += [_md_table(header, rows), ""]
    if m.reference_notes:
        lines += ["Left out: " + "; ".join(m.reference_notes) + ".", ""]
    lines += ["Reference datasets are the book's registered datasets, read from its data directory and processed "
              f"exactly like this dataset; each is a seeded class-balanced subsample of its official splits pooled "
              f"(default n = {REFERENCE_N}, capped by this dataset's class-balanced size), computed once and cached "
              "in the book's run store. All classes of each reference are used (K_F's numerator is "
              "1[y_j != y_k]); P1 itself measured binary tasks at 224 x 224 px, so P1's published numbers are not "
              "comparable with these.", ""]

    lines += ["## Sensitivity of d_data to k", ""]
    if "k" in figures:
        lines += [f"![MLE vs k]({figures['k']})", ""]
    ks = sorted(g.mle_by_k)
    rows = [[f"all {m.n_images}"] + [_ci(g.mle_by_k[k]) for k in ks] + [_ci(g.twonn)]]
    if c is not g:
        rows.append([f"n = {m.common_n}"] + [_ci(c.mle_by_k[k]) if k in c.mle_by_k else "-" for k in ks]
                    + [_ci(c.twonn)])
    lines += [_md_table(["images"] + [f"MLE k = {k}" for k in ks] + ["TwoNN"], rows), ""]
    if g.skipped_k:
        lines += [f"k = {', '.join(map(str, g.skipped_k))} skipped: the data hold too few distinct images.", ""]

    lines += ["## Duplicates", ""]
    rule = NEAR_DUPLICATE_RULE.format(fraction=g.near_duplicate_fraction)
    lines += [f"- exact duplicates (identical after preprocessing): {g.exact_duplicates} image(s) repeat another one, "
              f"in {g.duplicate_groups} group(s) of identical images. The d_data estimators skip zero distances (as "
              "P1's code).",
              f"- identical images with different labels: {g.conflicting_count} groups"
              + (": " + "; ".join("images " + ", ".join(map(str, grp)) for grp in g.conflicting_groups[:10])
                 if g.conflicting_groups else "") + ". They make K_F infinite.",
              f"- near duplicates: {rule} ({g.near_duplicate_fraction:g} x {g.nn_median:.1f} = "
              f"{g.near_duplicate_threshold:.1f} grey levels): {g.near_duplicate_count} pairs, "
              f"{g.near_duplicate_conflicts} of them with different labels"
              + (" (first pairs: " + ", ".join(f"({i}, {j})" for i, j in g.near_duplicate_pairs[:10]) + ")"
                 if g.near_duplicate_pairs else "") + ".",
              *(["- near duplicates make the nearest-neighbour ratios r2/r1 large, which lowers the TwoNN estimate "
                 "and the MLE at small k: compare the k-sensitivity above"] if g.near_duplicate_count else []),
              "- image indices count the measured images in reading order (ImageFolder: sorted class folders, "
              "then sorted file names; npz / registered datasets: the splits in order)."]
    if "pair" in figures:
        lines += ["", f"![the pair defining K_F]({figures['pair']})"]
    lines += [""]

    lines += ["## What P1's claims predict", ""]
    lines += [p["text"], ""]
    lines += ["These are predictions from P1's claims, not measurements of any model: the law is an upper bound "
              "with unknown constants, stated for binary tasks, and the book tests it rather than assuming it "
              "(chapter P1: the scaling law in `p1/fig2_scaling_law`, K_F vs FGSM robustness in "
              "`p1/fig3_robustness_vs_sharpness`, the verdicts on `p1/p1_claims`).", ""]

    lines += ["## Settings", ""]
    s = m.settings
    lines += [f"- MLE k = {s['k']} (sensitivity k = {', '.join(map(str, s['ks']))}), TwoNN (Pope et al.'s variant: "
              f"drops the largest ratio); {s['ci']:.0%} percentile-bootstrap intervals over images, "
              f"{s['n_bootstrap']} resamples (conditional on the kNN graph)",
              f"- K_F exact over all pairs with different labels; P1's sampled estimator on min(N, "
              f"{s['kf_sample_images']}) images, batches of 500",
              f"- seed {m.seed} (subsamples, bootstrap, sampled K_F); common n = {m.common_n} (asked: "
              f"{s['reference_n']})",
              "- every distance is exact (float64 refinement of integer pixels), so CPU and CUDA give the same numbers"]
    return "\n".join(lines) + "\n"


def _jsonable(v):
    """Strict JSON: an infinite K_F is written as the string "inf"."""
    if isinstance(v, float) and not math.isfinite(v):
        return "inf" if v > 0 else "-inf" if v < 0 else "nan"
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def write_report(m, out: str | Path) -> Path:
    """Write ``report.md``, the figures (:data:`FIGURES`) and ``measurement.json`` to folder ``out`` (created);
    returns the path of ``report.md``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figs = {"properties": plot_properties(m), "k": plot_k_sensitivity(m)}
    if m.k_f_images:
        figs["pair"] = plot_k_f_pair(m)
    names = {}
    for key, fig in figs.items():
        fig.savefig(out / FIGURES[key], dpi=110)
        names[key] = FIGURES[key]
    text = json.dumps(_jsonable(m.to_dict()), indent=1, sort_keys=True, allow_nan=False)
    (out / "measurement.json").write_text(text + "\n", encoding="utf-8")
    path = out / "report.md"
    path.write_text(markdown(m, names), encoding="utf-8")
    log.info("report written to %s", path)
    return path
