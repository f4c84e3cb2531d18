"""P3's analysis: the paper's published numbers, result tables and frames, and the chapter's statistics.

Nothing here is part of an artefact key: editing a table or a test recomputes no run. The inputs are the verified
entries of :mod:`.specs` (:class:`domaingap.runs.Entry`: ``entry.result`` the run's result dict, ``entry.path``
its folder).

Published numbers (``published.yaml``; Juodelyte et al., TMLR 2023, from the repository's result files):
:data:`PAPER_AUC` (target -> init -> (mean, sd) AUC %), :data:`PAPER_TARGET` (our target -> P3's),
:data:`PAPER_PRED_SIM` (target -> (observed, baseline)), :data:`PAPER_CCA_CHEST` (pair -> 5 layers),
:func:`paper_value` (a claim's paper value).

The agreement helpers (:func:`agreement`, :func:`agreement_test`) give the prediction-similarity notebook its
per-pair table rows (their tests are in tests/test_p3.py); for every test the notebooks use
``domaingap.stats`` (e.g. :func:`domaingap.stats.signed_rank`, the Wilcoxon test with Tukey's interval for its
pseudo-median, and :func:`domaingap.stats.page_trend`, Page's trend test over the layers, which lived here).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from ... import data
from .. import published as _published
from .tasks import LAYER_LABELS, MEASURES, inits

__all__ = ["PAPER_AUC", "PAPER_CCA_CHEST", "PAPER_PRED_SIM", "PAPER_TARGET", "agreement", "agreement_test",
           "auc_table", "finetune_frame", "load_predictions", "paper_value", "similarity_frame"]

_PUBLISHED = _published("p3")
PAPER_AUC: dict[str, dict[str, tuple[float, float]]] = {
    t: {i: tuple(v) for i, v in row.items()} for t, row in _PUBLISHED["auc"]["values"].items()}
PAPER_TARGET: dict[str, str] = dict(_PUBLISHED["targets"]["values"])
PAPER_PRED_SIM: dict[str, tuple[float, float]] = {
    t: tuple(v) for t, v in _PUBLISHED["prediction_similarity"]["values"].items()}
PAPER_CCA_CHEST: dict[str, tuple[float, ...]] = {
    p: tuple(v) for p, v in _PUBLISHED["cca_chest"]["values"].items()}


def paper_value(claim_id: str) -> str:
    """The paper's value of claim ``claim_id`` as the chapter records it (``published.yaml``, ``claims``)."""
    values = _PUBLISHED["claims"]["values"]
    if claim_id not in values:
        raise ValueError(f"no published value for P3 claim {claim_id!r}; known claims: {sorted(values)}")
    return values[claim_id]


# ------------------------------------------------------------------------------------------ tables

def finetune_frame(entries: Sequence):
    """Fine-tuning entries as a DataFrame: one row per run (target, init, fold, auc, accuracy, ...)."""
    import pandas as pd

    rows = []
    for e in entries:
        r = e.result
        rows.append({"target": r["target"], "init": r["init_name"], "replica": r.get("replica", 0),
                     "fold": r["fold"], "auc": r["auc"],
                     "accuracy": r["accuracy"], "balanced_accuracy": r["balanced_accuracy"], "loss": r["loss"],
                     "best_epoch": r.get("best_epoch"), "epochs_run": r.get("epochs_run"),
                     "n_train": r["n_train"], "n_val": r.get("n_val"), "n_test": r["n_test"],
                     "seconds": r["seconds"], "_dir": str(e.path)})
    return pd.DataFrame(rows)


def auc_table(df, cfg: dict, *, percent: bool = True):
    """P3's table layout: targets x initialisations, ``"mean ± sd"`` AUC over folds (sd with ddof=1)."""
    import pandas as pd

    scale = 100.0 if percent else 1.0
    if "replica" in df:
        df = df[df["replica"] == 0]  # the seed-to-seed replicas are the agreement baseline, not table cells
    order = [i for t in cfg["targets"] for i in inits(cfg, t)]
    cols = list(dict.fromkeys(order))
    out = {}
    for target, g in df.groupby("target", sort=False):
        row = {}
        for init in cols:
            v = g.loc[g["init"] == init, "auc"].to_numpy() * scale
            row[init] = f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else \
                (f"{v.mean():.1f}" if len(v) else "—")
        out[data.info(target).title] = row
    return pd.DataFrame.from_dict(out, orient="index")[cols]


def load_predictions(entry) -> dict[str, np.ndarray]:
    """``index``, ``y`` and ``prob`` ``(n_test, K)`` of a fine-tuning entry (its verified ``predictions.npz``)."""
    with np.load(entry.file("predictions.npz")) as z:
        return {k: z[k] for k in z.files}


def similarity_frame(entries: Sequence):
    """Similarity entries as a long DataFrame: target, fold, pair, a, b, layer, block, measure, value."""
    import pandas as pd

    rows = []
    for e in entries:
        r = e.result
        for row in r["rows"]:
            for m in MEASURES:
                rows.append({"target": r["target"], "fold": r["fold"], "pair": row["pair"], "a": row["a"],
                             "b": row["b"], "layer": row["layer"], "block": LAYER_LABELS[row["layer"]],
                             "measure": m, "value": row[m]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ statistics

def agreement(correct_a, correct_b) -> dict[str, float]:
    """Prediction similarity of two classifiers on the same test samples (P3's section on predictions).

    Args:
        correct_a, correct_b: boolean ``(n,)``: whether model A / B classified each sample correctly.

    Returns:
        ``observed``: fraction of samples both get right or both get wrong; ``independent``: its expectation if
        the two models erred independently with their own accuracies, ``a1 a2 + (1 - a1)(1 - a2)``;
        ``paper_a`` / ``paper_b``: P3's baseline ``acc^2 + (1 - acc)^2`` with model A's / B's accuracy (equal to
        the independence baseline only when ``a1 = a2``); ``kappa``: Cohen's kappa of the correctness labels,
        ``(observed - independent) / (1 - independent)``; ``acc_a``, ``acc_b``, ``n``.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty 1-D arrays of one length, got shapes "
                         f"{a.shape} and {b.shape}")
    a1, a2 = a.mean(), b.mean()
    observed = float(np.mean(a == b))
    independent = float(a1 * a2 + (1 - a1) * (1 - a2))
    kappa = (observed - independent) / (1 - independent) if independent < 1 else float("nan")
    return {"observed": observed, "independent": independent, "paper_a": float(a1 ** 2 + (1 - a1) ** 2),
            "paper_b": float(a2 ** 2 + (1 - a2) ** 2), "kappa": float(kappa), "acc_a": float(a1),
            "acc_b": float(a2), "n": int(len(a))}


def agreement_test(correct_a, correct_b) -> dict[str, float]:
    """One-sided Fisher exact test that correctness of A and B is positively associated (agreement above the
    independence baseline), on the 2x2 table right/wrong x right/wrong. Returns odds ratio and p-value."""
    from scipy import stats

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    res = stats.fisher_exact(table, alternative="greater")
    return {"odds_ratio": float(res.statistic), "p": float(res.pvalue), "table": table}
