"""P1 at the right unit of analysis: one value per DATASET for every between-domain claim (issue 14).

Class pairs of one dataset share its images, acquisition and preprocessing, so they are not independent
replicates of "a medical dataset"; seeds and nested training sets of one task even less so. Every claim that
compares domains (K_F higher, loss higher or steeper, less robust, d_data does not separate) is therefore
decided on dataset means: first the mean over a task's seeds / subsamples, then the mean over the dataset's
tasks (:func:`dataset_means`). Beside it, a task-level mixed model with a random intercept per dataset
(:func:`mixed`, statsmodels ``MixedLM`` via :func:`domaingap.stats.mixed_lm`) uses every task while counting the
datasets as the independent units.

Nothing here enters an artefact key (no run calls it).
"""

from __future__ import annotations

from typing import Callable, Iterable, Sequence

import numpy as np

from ... import data, stats

__all__ = ["between_domains", "choice_agreement", "dataset_means", "describe_comparison", "domain_relabelled",
           "mixed", "mwu_rejects", "task_means", "task_slopes"]

KEYS = ("dataset", "domain", "task")


def task_means(frame, values: Sequence[str], by: Sequence[str] = ()):
    """Mean of ``values`` per task (and per ``by`` columns, e.g. ``model``, ``n``) over its seeds / subsamples."""
    cols = list(KEYS) + [c for c in by if c not in KEYS]
    missing = [c for c in cols + list(values) if c not in frame.columns]
    if missing:
        raise ValueError(f"frame lacks columns {missing}; it has {list(frame.columns)}")
    return frame.groupby(cols, sort=False)[list(values)].mean().reset_index()


def dataset_means(frame, values: Sequence[str], by: Sequence[str] = ()):
    """One row per dataset (and ``by`` level): the mean over its tasks of each task's mean over seeds /
    subsamples, so a dataset with five class pairs weighs as much as one with a single clinical task.

    Adds ``tasks`` (tasks averaged), ``radiology`` and ``title`` (from the data registry)."""
    per_task = task_means(frame, values, by)
    cols = ["dataset", "domain"] + [c for c in by if c not in KEYS]
    out = per_task.groupby(cols, sort=False).agg(
        **{v: (v, "mean") for v in values}, tasks=("task", "nunique")).reset_index()
    out["radiology"] = [data.info(d).radiology for d in out["dataset"]]
    out["title"] = [data.info(d).title.split(" (")[0] for d in out["dataset"]]
    return out


def between_domains(per_dataset, column: str, *, radiology_only: bool = False, seed: int = 0,
                    n_resamples: int = 2000) -> stats.IndependentComparison:
    """Medical vs natural datasets on ``column`` of :func:`dataset_means` (one value per dataset):
    Mann-Whitney U with its AUC (Brunner-Munzel CI), Hodges-Lehmann shift and ratio of means (BCa bootstrap
    CIs), Welch t. ``radiology_only`` keeps the radiological medical sets (closer to P1's seven radiology
    datasets) and every natural one."""
    f = per_dataset
    if radiology_only:
        f = f[(f["domain"] == "natural") | f["radiology"]]
    bad = f[~np.isfinite(f[column].to_numpy(dtype=float))]
    if len(bad):
        raise ValueError(f"{column} is not finite for datasets {bad['dataset'].tolist()}: "
                         f"{bad[column].tolist()}")
    return stats.compare_domains(f[column].to_numpy(dtype=float), f["domain"].to_numpy(), seed=seed,
                                 n_resamples=n_resamples, unit="datasets")


def domain_relabelled(per_dataset, rejects: Callable[[object], bool]) -> stats.RelabelCalibration:
    """A domain comparison's verdict rule on these very datasets with the domain labels permuted over every
    split of the same sizes (:func:`domaingap.stats.relabel_calibration`): ``rejects(frame)`` gets the frame
    with ``domain`` (and ``medical``, when present) relabelled. The share of splits it calls significant must
    not exceed alpha; an exact permutation test (Mann-Whitney) meets that by construction, a model-based rule
    (an OLS t with few datasets) need not."""
    from ... import plan

    def on(labels):
        frame = per_dataset.assign(domain=labels)
        if "medical" in frame.columns:
            frame["medical"] = (labels == "medical").astype(int)
        return rejects(frame)

    return stats.relabel_calibration("domain labels permuted over the datasets", on,
                                     stats.domain_relabellings(per_dataset["domain"].to_numpy()),
                                     alpha=plan.alpha())


def mwu_rejects(column: str) -> Callable[[object], bool]:
    """The domain comparison's rule on one frame of :func:`dataset_means` (for :func:`domain_relabelled`): does
    the two-sided Mann-Whitney U of ``column``, medical vs natural datasets, have p < alpha?"""
    from ... import plan

    def rejects(frame) -> bool:
        med, nat = (frame.loc[frame["domain"] == d, column].to_numpy(float) for d in ("medical", "natural"))
        return stats.mann_whitney(med, nat).p < plan.alpha()

    return rejects


def describe_comparison(cmp: stats.IndependentComparison, digits: int = 3) -> str:
    """The dataset-level test in one line: test, n per side, AUC with CI, p (and the smallest p these n can
    reach), and the ratio of means and the Hodges-Lehmann shift with their CIs."""
    f = f"{{:.{digits}g}}".format
    parts = [cmp.mwu.summary(digits)]
    if not cmp.can_reject():
        parts.append(f"smallest attainable p = {f(cmp.mwu_min_p)}")
    for res in (cmp.ratio, cmp.shift):
        if res.computable:
            parts.append(f"{res.estimand} = {f(res.estimate)} [{f(res.low)}, {f(res.high)}]")
        else:
            parts.append(res.summary(digits))
    return "; ".join(parts)


def mixed(formula: str, frame, groups: str = "dataset", nested: str | None = "task"):
    """Task-level model with a random intercept per dataset and, when a dataset has several tasks, one per task
    within it (:func:`domaingap.stats.mixed_lm`, REML): the covariates of P1 (d_data, K_F) vary between tasks,
    so the tasks, not the points, carry the evidence about them. A
    :class:`domaingap.stats.NotComputable` with the reason when the fit is singular or at the boundary, or when
    no dataset has two units (then the intercept is not separable from the residual, and the dataset-level test
    stands alone)."""
    test = f"MixedLM {formula} | {groups}" + (f" / {nested}" if nested else "")
    n = (int(frame[groups].nunique()),)
    if frame.groupby(groups).size().max() < 2:
        return stats.NotComputable(test=test, reason=f"one row per {groups}: no within-{groups} replication",
                                   n=n, unit=groups)
    if nested is not None and (nested not in frame.columns
                               or frame.groupby(groups)[nested].nunique().max() < 2):
        nested = None  # one task per dataset: the task intercept is the dataset's
    try:
        return stats.mixed_lm(formula, frame, groups, nested=nested)
    except ValueError as err:
        return stats.NotComputable(test=test, reason=str(err).split(";")[0], n=n, unit=groups)


def task_slopes(train_frame, x: str = "log_N", y: str = "log_L", by: Sequence[str] = ("model",)):
    """Least-squares slope of ``y`` on ``x`` per task (and ``by`` level) over the task's seed-averaged points
    (e.g. the per-task scaling exponent of test loss with N). Tasks with fewer than two distinct x are
    dropped (named in the error when none remain)."""
    pts = task_means(train_frame, [y], by=list(by) + ["n"])
    pts[x] = train_frame.groupby(list(KEYS) + list(by) + ["n"], sort=False)[x].first().to_numpy()
    rows = []
    for key, g in pts.groupby(list(KEYS) + list(by), sort=False):
        if g[x].nunique() < 2:
            continue
        slope = float(np.polyfit(g[x].to_numpy(float), g[y].to_numpy(float), 1)[0])
        rows.append(dict(zip(list(KEYS) + list(by), key), slope=slope, sizes=int(g[x].nunique())))
    if not rows:
        raise ValueError(f"no task has two distinct {x} values to fit a slope")
    import pandas as pd

    return pd.DataFrame(rows)


def choice_agreement(verdict_of_choice: Callable[[object], str], choices: Iterable, primary: str) -> dict:
    """Robustness of a verdict to the analyst's choices (estimator, k, subsample size n): the verdict under
    every choice, and the fraction equal to the ``primary`` verdict. A choice the data cannot support
    (ValueError, e.g. a size some task does not reach) is listed with its reason, not counted."""
    out, skipped = {}, {}
    for c in choices:
        try:
            out[str(c)] = verdict_of_choice(c)
        except ValueError as err:
            skipped[str(c)] = str(err)
    if not out:
        raise ValueError(f"no estimator choice could be evaluated: {skipped}")
    agree = sum(v == primary for v in out.values())
    return {"verdicts": out, "skipped": skipped, "agree": agree, "n": len(out), "fraction": agree / len(out),
            "text": f"{agree}/{len(out)} estimator choices give '{primary}'"}
