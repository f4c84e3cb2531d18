"""Figures of a :class:`~.api.Measurement` report (:mod:`.report` writes them) and the number formats they share.

- :func:`plot_properties`: the dataset on P1's Fig. 1 axes (d_data vs K_F, K_F on a log axis) beside the reference
  datasets at the same n and format, medical and natural in different colours;
- :func:`plot_k_sensitivity`: the MLE d_data against its neighbourhood size k;
- :func:`plot_k_f_pair`: the two images whose distance defines K_F.
"""

from __future__ import annotations

import math

import numpy as np


COLOURS = {"medical": "tab:red", "natural": "tab:blue", "user": "black"}

__all__ = ["COLOURS", "plot_k_f_pair", "plot_k_sensitivity", "plot_properties"]


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=110, layout="constrained")


def _kf(v: float | None, scale: float = 1e4) -> str:
    if v is None:
        return "-"
    if not math.isfinite(v):
        return "inf"
    return f"{v * scale:.2f}"


def _ci(v) -> str:
    return f"{v.estimate:.2f} [{v.low:.2f}, {v.high:.2f}]"


# ----------------------------------------------------------------------------------------------- figures

def _ref_label(m, r) -> str:
    return r.title + (" (this dataset)" if r.name == getattr(m, "registered", None) else "")


def plot_properties(m, ax=None):
    """d_data (MLE, k = 20, bootstrap interval) vs K_F (log axis) of the dataset at the common n (star; a hollow
    star at all images when that differs) and of every reference (circles: red medical, blue natural; hollow when
    the reference could not reach the common n). Returns the Figure."""
    fig = None
    if ax is None:
        fig = _figure(7.2, 5.4)
        ax = fig.add_subplot()
    finite = []
    for r in m.references:
        g = r.geometry
        if not math.isfinite(g.k_f):
            continue
        c = COLOURS.get(r.domain, "grey")
        face = c if r.at_common_n else "white"
        marker = "s" if r.domain == "medical" and not r.radiology else "o"
        ax.errorbar(g.mle.estimate, g.k_f, xerr=[[g.mle.estimate - g.mle.low], [g.mle.high - g.mle.estimate]],
                    fmt=marker, color=c, mfc=face, ms=7, capsize=2, lw=1)
        ax.annotate(_ref_label(m, r) + ("" if r.at_common_n else f" (n={r.n})"), (g.mle.estimate, g.k_f),
                    fontsize=7, xytext=(4, 3), textcoords="offset points", color=c)
        finite.append(g.k_f)
    for geo, filled, label in ((m.common, True, f"{m.name} (n={m.common_n})"),
                               (m.geometry, False, f"{m.name}, all {m.n_images} images")):
        if geo is m.geometry and m.common is m.geometry and not filled:
            continue
        kf = geo.k_f if math.isfinite(geo.k_f) else geo.k_f_without_conflicts
        if kf is None:
            continue
        ax.errorbar(geo.mle.estimate, kf, xerr=[[geo.mle.estimate - geo.mle.low], [geo.mle.high - geo.mle.estimate]],
                    fmt="*", color=COLOURS["user"], mfc=COLOURS["user"] if filled else "white", ms=14, capsize=2,
                    label=label + ("" if math.isfinite(geo.k_f) else " (K_F w/o conflicting duplicates)"))
        finite.append(kf)
    ax.set_yscale("log")
    ax.set_xlabel(r"$d_\mathrm{data}$ (MLE, $k = 20$; bars: 95% bootstrap interval)")
    ax.set_ylabel(r"label sharpness $K_F$ (exact, pixels in [0, 255])")
    ax.set_title(f"{m.name} on P1's Fig. 1 axes: {m.size} px, {m.channels} channel{'s' if m.channels > 1 else ''}, "
                 f"n = {m.common_n}", fontsize=9)
    from matplotlib.lines import Line2D

    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], marker="o", ls="", color=COLOURS["medical"], label="medical reference (radiology)"),
                Line2D([], [], marker="s", ls="", color=COLOURS["medical"], label="medical reference (other)"),
                Line2D([], [], marker="o", ls="", color=COLOURS["natural"], label="natural reference")]
    fig_ = ax.figure
    fig_.legend(handles=handles, fontsize=7, loc="outside lower center", ncol=3)
    ax.grid(True, which="both", alpha=0.3)
    return fig if fig is not None else ax.figure


def plot_k_sensitivity(m, ax=None):
    """MLE d_data against k (with bootstrap intervals) for the dataset (all images and the common n) and, thin,
    for each reference; TwoNN as a dashed line. Returns the Figure."""
    fig = None
    if ax is None:
        fig = _figure(6.4, 4.0)
        ax = fig.add_subplot()
    for r in m.references:
        ks = sorted(r.geometry.mle_by_k)
        ax.plot(ks, [r.geometry.mle_by_k[k].estimate for k in ks], color=COLOURS.get(r.domain, "grey"), lw=0.8,
                alpha=0.45)
    series = [(m.geometry, "-", f"all {m.n_images} images")]
    if m.common is not m.geometry:
        series.append((m.common, "--", f"n = {m.common_n} (as the references)"))
    for geo, ls, label in series:
        ks = sorted(geo.mle_by_k)
        est = np.array([geo.mle_by_k[k].estimate for k in ks])
        lo = np.array([geo.mle_by_k[k].low for k in ks])
        hi = np.array([geo.mle_by_k[k].high for k in ks])
        ax.plot(ks, est, ls, color="black", marker="o", label=f"{m.name}, MLE, {label}")
        ax.fill_between(ks, lo, hi, color="black", alpha=0.12)
        ax.axhline(geo.twonn.estimate, color="tab:green", ls=ls, lw=1, label=f"{m.name}, TwoNN, {label}")
    ax.axvline(20, color="grey", lw=0.8, ls=":")
    ax.set_xscale("log")
    ks_all = sorted(set(m.geometry.mle_by_k) | {k for r in m.references for k in r.geometry.mle_by_k})
    from matplotlib.ticker import NullFormatter

    ax.set_xticks(ks_all, [str(k) for k in ks_all])
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel("k (neighbours of the MLE; P1 uses 20)")
    ax.set_ylabel(r"$d_\mathrm{data}$")
    ax.set_title("sensitivity of the MLE to k (thin lines: references, red medical, blue natural)", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(True, alpha=0.3)
    return fig if fig is not None else ax.figure


def plot_k_f_pair(m):
    """The two images (P1 format) closest to each other among pairs with different labels. Returns the Figure."""
    fig = _figure(4.0, 2.4)
    g = m.geometry
    axes = fig.subplots(1, 2)
    for ax, img, idx, lab in zip(axes, m.k_f_images, g.k_f_pair, g.k_f_labels):
        arr = np.asarray(img)
        if arr.shape[0] == 1:
            ax.imshow(arr[0], cmap="gray", vmin=0, vmax=255)
        else:
            ax.imshow(arr.transpose(1, 2, 0))
        ax.set_xticks([])
        ax.set_yticks([])
        name = m.classes[lab] if 0 <= lab < len(m.classes) else "?"
        ax.set_title(f"image {idx}: {name[:18]}", fontsize=8)
    fig.suptitle(f"the pair defining K_F: distance {g.k_f_distance:.1f} grey levels", fontsize=8)
    return fig


# ----------------------------------------------------------------------------------------------- predictions
