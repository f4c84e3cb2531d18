"""Chapter P2's analysis: the results the notebooks read, assembled from computed entries, and the statistics of
its claims. Nothing here is part of an artefact key: editing it retrains nothing.

- One function per table (:func:`tab1_rows`, :func:`tab2_rows`, :func:`tab3_results`, :func:`fig1_result`):
  computes the table's runs through :func:`domaingap.runs.compute` (a lookup when the sweeps ran first; what is
  missing is computed, upstream first) and assembles its rows (:func:`tab1_table`, ...: entries in, rows out).
- Single results for notebooks and tests: :func:`trained`, :func:`train_data`, :func:`mmc_data`,
  :func:`robust_view`.
- The claim results of the chapter's records (:func:`mcnemar_test`, :func:`balanced_accuracy_test`) and the
  swap control of its unit (:func:`swap_by_task`); every test itself is :mod:`domaingap.stats`'s (descriptive
  tables use :func:`domaingap.stats.mean_ci` and :func:`domaingap.stats.compare_paired`).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from ... import devices
from ... import runs as runlib
from . import inputs, runs, specs
from .tasks import get_task

__all__ = ["balanced_accuracy_test", "fig1_result", "fig1_results", "inversion_pairs", "mcnemar_test", "mmc_data",
           "robust_view", "saliency_pairs", "swap_by_task", "task_means",
           "tab1_rows", "tab1_table", "tab2_rows", "tab2_table", "tab3_results", "tab3_table", "test_data",
           "train_data", "trained"]


def _computed(items: Sequence[runlib.Run], progress: bool, desc: str) -> dict[str, runlib.Entry]:
    """``{key: entry}`` of ``items`` (computed where missing)."""
    entries = runlib.compute(list(items), progress=progress, desc=desc)
    return {r.key: e for r, e in zip(items, entries)}


def _model_label(spec: dict) -> str:
    return "robust" if spec["adversarial"] else "standard"


# ----------------------------------------------------------------------------------------------- single results

def trained(spec: dict, device=None):
    """The trained model of a model spec (trained now if it is not in the artefacts), in eval mode on
    ``device`` (default :func:`domaingap.devices.default_device`), and its result dict."""
    entry = runlib.compute([runs.train_run(spec)], progress=False)[0]
    return inputs.load_model(spec, entry, device or devices.default_device()), entry.result


def train_data(spec: dict):
    """Training tensors of a model spec (its constructed dataset computed now if missing): ``x (N, C, S, S)``
    float32 in [0, 1], ``y (N,)`` int64 (CPU)."""
    if spec["train_on"] == "clean":
        return inputs.train_data(spec)
    return inputs.train_data(spec, runlib.compute([runs.dataset_run(spec["train_on"])], progress=False)[0])


test_data = inputs.test_data


def mmc_data(spec: dict) -> np.ndarray:
    """The corrupted stacks of a ``p2_mmc_data`` spec (computed now if missing): uint8 ``(S, N, C, H, W)``."""
    return np.load(runlib.compute([runs.mmc_data_run(spec)], progress=False)[0].file("x.npy"))


def robust_view(dspec: dict, robust: dict) -> dict:
    """How the robust model spec ``robust`` sees the D_rand / D_det set ``dspec`` (the ``p2_robust_view`` run;
    both models and the set are computed now if missing)."""
    return runlib.compute([runs.robust_view_run(specs.robust_view_spec(dspec, robust))], progress=False)[0].result


# ----------------------------------------------------------------------------------------------- tables

def tab1_table(plan: list[dict], done: dict[str, runlib.Entry]) -> list[dict]:
    """One row per fresh model of Tab. 1 (``plan``: :func:`.specs.tab1_plan`; ``done``: entries by key)."""
    rows = []
    for item in plan:
        ds, res = done[item["dataset"].key].result, done[item["fresh"].key].result
        row = {"task": item["task"], "seed": item["seed"], "variant": item["variant"], "dataset": ds,
               "test": res["test"], "test_pred": res["test_pred"], "test_y": res["test_y"],
               "source_test": done[item["source"].key].result["test"], "eps": ds.get("eps"),
               "n_train": res["n_train"]}
        if item["view"] is not None:
            row["robust_view"] = done[item["view"].key].result
        if item["eval"] is not None:
            r = done[item["eval"].key].result
            row["pgd_accuracy"], row["pgd_clean_accuracy"] = r["pgd_accuracy"], r["clean_accuracy"]
            row["pgd_correct"] = r["pgd_correct"]
        rows.append(row)
    return rows


def tab1_rows(profile: str, progress: bool = True) -> list[dict]:
    """Tab. 1 at ``profile``: source models, constructed datasets and the fresh models trained on them (each
    D_rand / D_det set checked by the robust model, each D_NR / D_R model attacked). One row per fresh model."""
    plan = specs.tab1_plan(profile)
    return tab1_table(plan, _computed(specs.tab1_runs(profile, plan), progress, "P2 Tab. 1"))


def tab2_table(plan: list[dict], done: dict[str, runlib.Entry]) -> list[dict]:
    """One row per model of Tab. 2 (``plan``: :func:`.specs.tab2_plan`)."""
    rows = []
    for item in plan:
        s, r, e = item["model"].spec, done[item["model"].key].result, done[item["eval"].key].result
        rows.append({"task": s["task"], "seed": s["seed"], "model": _model_label(s),
                     "eps_train": (s["adversarial"] or {}).get("eps"), "test": r["test"], "eval": e,
                     "train_seconds": r["seconds"]})
    return rows


def tab2_rows(profile: str, progress: bool = True) -> list[dict]:
    """Tab. 2 at ``profile``: standard and robust models of every task x seed and their robustness evaluation
    (with the APGD and eps-sweep checks on ``check_seeds``). One row per model."""
    plan = specs.tab2_plan(profile)
    return tab2_table(plan, _computed([r for i in plan for r in (i["model"], i["eval"])], progress, "P2 Tab. 2"))


def tab3_table(plan: dict, done: dict[str, runlib.Entry]) -> dict:
    """Tab. 3's ``{"rows": one per model x corruption x severity, "strength": RMS pixel change per task x
    corruption x severity, "data_specs": the corrupted-set specs}`` (``plan``: :func:`.specs.tab3_plan`)."""
    strength = []
    for d in plan["data"]:
        spec, r = d.spec, done[d.key].result
        strength += [{"task": spec["task"], "registry": spec["registry"], "corruption": spec["corruption"],
                      "severity": sev + 1 if spec["corruption"] != "none" else 0, "rms_change": r["rms_change"][i],
                      "rms_vs_original": r["rms_vs_original"][i], "rms_change_work": r["rms_change_work"][i]}
                     for i, sev in enumerate(r["severities"])]
    rows = []
    for ev in plan["evals"]:
        s, e = ev.spec["model"], done[ev.key].result
        domain = get_task(s["task"]).domain
        rows += [{"task": s["task"], "domain": domain, "seed": s["seed"], "model": _model_label(s), "n": e["n"], **r}
                 for r in e["rows"]]
    return {"rows": rows, "strength": strength, "data_specs": [d.spec for d in plan["data"]]}


def tab3_results(profile: str, progress: bool = True) -> dict:
    """Tab. 3 at ``profile``: MedMNIST-C corrupted test sets of every task with a registry entry and the
    evaluation of its standard and robust models (see :func:`tab3_table`)."""
    plan = specs.tab3_plan(profile)
    return tab3_table(plan, _computed(plan["data"] + plan["evals"], progress, "P2 Tab. 3"))


def fig1_results(profile: str, progress: bool = True) -> list[dict]:
    """Every saliency run of the Fig. 1 analogue at ``profile`` (one per task x seed of ``p2_fig1``): dicts of
    ``task``, ``seed``, ``source_seed``, ``result`` (the run's result dict) and ``entry``."""
    plan = specs.fig1_plan(profile)
    entries = runlib.compute(plan, progress=progress, desc="P2 Fig. 1")
    return [{"task": r.spec["standard"]["task"], "seed": r.spec["standard"]["seed"],
             "source_seed": (r.spec.get("source") or {}).get("seed"), "result": e.result, "entry": e}
            for r, e in zip(plan, entries)]


def fig1_result(profile: str, progress: bool = True):
    """The example of the Fig. 1 analogue at ``profile`` (``p2_fig1.task``, ``p2_fig1.seed``): ``(result, maps)``,
    the saliency run's result dict (``eps``, ``n``, per model ``rho``, ``rho_transfer``, ``rho_random``,
    ``edge_alignment``, accuracies) and its ``maps.npz`` (images, adversarial images, saliency maps,
    predictions)."""
    cfg = specs.configs(profile)["fig1"]
    for item in fig1_results(profile, progress):
        if item["task"] == cfg["task"] and item["seed"] == cfg["seed"]:
            return item["result"], np.load(item["entry"].file("maps.npz"))
    raise ValueError(f"p2_fig1 at {profile!r}: the example (task {cfg['task']!r}, seed {cfg['seed']}) is not among "
                     f"its tasks x seeds")


def _mean(values) -> float:
    v = np.array([np.nan if x is None else x for x in values], dtype=float)
    return float(np.nanmean(v)) if np.isfinite(v).any() else math.nan


def saliency_pairs(items: list[dict]) -> list[dict]:
    """One row per standard / robust model pair of :func:`fig1_results` (the unit of the saliency tests): the
    mean over images of the clean-vs-perturbed rank correlation per model and perturbation (``own``, ``transfer``,
    ``random``), the mean edge alignment of the clean maps, and the robust - standard differences."""
    rows = []
    for it in items:
        r = it["result"]
        row = {"task": it["task"], "seed": it["seed"], "source_seed": it["source_seed"]}
        for m in ("standard", "robust"):
            row[f"{m}_own"] = _mean(r[m]["rho"])
            row[f"{m}_transfer"] = _mean(r[m].get("rho_transfer", [None]))
            row[f"{m}_random"] = _mean(r[m].get("rho_random", [None]))
            row[f"{m}_edge"] = _mean(r[m].get("edge_alignment", [None]))
            row[f"{m}_clean_acc"] = r[m]["clean_accuracy"]
            row[f"{m}_transfer_acc"] = r[m].get("transfer_accuracy", math.nan)
        for k in ("own", "transfer", "random", "edge"):
            row[f"diff_{k}"] = row[f"robust_{k}"] - row[f"standard_{k}"]
        rows.append(row)
    return rows


def inversion_pairs(rows: list[dict]) -> list[dict]:
    """D_R vs D_NR per task x seed from Tab. 1's rows (:func:`tab1_table`): PGD accuracy of the model trained on
    D_R, on D_NR, and the difference (same attacked images)."""
    by = {(r["task"], r["seed"], r["variant"]): r for r in rows if r["variant"] in ("nr", "r")}
    out = []
    for (task, seed, v), r in sorted(by.items()):
        if v != "r" or (task, seed, "nr") not in by:
            continue
        nr = by[(task, seed, "nr")]
        out.append({"task": task, "seed": seed, "pgd_acc_D_R": r["pgd_accuracy"], "pgd_acc_D_NR": nr["pgd_accuracy"],
                    "diff": r["pgd_accuracy"] - nr["pgd_accuracy"],
                    "clean_bacc_D_R": r["test"]["balanced_accuracy"],
                    "clean_bacc_D_NR": nr["test"]["balanced_accuracy"]})
    return out


def task_means(pairs: list[dict], columns: Sequence[str]) -> list[dict]:
    """Per-task means over seeds of ``columns`` of ``pairs`` (rows with ``task`` and ``seed``): the task is the
    unit of a claim across tasks; ``seeds`` counts the seeds averaged."""
    tasks = list(dict.fromkeys(p["task"] for p in pairs))
    out = []
    for t in tasks:
        sub = [p for p in pairs if p["task"] == t]
        out.append({"task": t, "seeds": len(sub),
                    **{c: float(np.nanmean([p[c] for p in sub])) for c in columns}})
    return out


# ----------------------------------------------------------------------------------------------- claim results
# The StatResults the claims records of this chapter rest on (issue 18): domaingap.stats tests, with the interval
# that stats does not attach to them (the signed-rank test, McNemar and the balanced-accuracy permutation test
# come without one there).

def mcnemar_test(correct_a, correct_b, *, level: float = 0.95, unit: str = ""):
    """Exact McNemar test of equal accuracies of classifiers A and B on the same samples
    (:func:`domaingap.stats.agreement`'s ``mcnemar``: estimate ``acc_a - acc_b``), with the t interval of the mean
    paired difference of the correctness indicators (:func:`domaingap.stats.paired_t`; a Wald-type interval for
    a difference of paired proportions). ``low``/``high`` are None when the differences have no variance."""
    from dataclasses import replace

    from ... import stats

    a, b = np.asarray(correct_a, dtype=bool), np.asarray(correct_b, dtype=bool)
    res = stats.agreement(a, b, unit=unit).mcnemar
    try:
        ci = stats.paired_t(a.astype(float), b.astype(float), level=level)
    except ValueError as err:  # every sample differs the same way: t undefined
        return replace(res, notes=res.notes + (f"no interval: {err}",))
    return replace(res, low=ci.low, high=ci.high, level=level, ci_method="paired t CI of the correctness difference")


def balanced_accuracy_test(y_true, y_pred, *, n_resamples: int = 9999, seed: int = 0, level: float = 0.95,
                           unit: str = "test images"):
    """Balanced accuracy above chance (``1 / K``, K classes in ``y_true``) of one classifier on a fixed test set:
    the one-sided label-permutation test of :func:`domaingap.stats.chance_tests` (``p_balanced``), with a BCa
    bootstrap interval over the test images (:func:`domaingap.stats.bootstrap_ci` of the per-image terms
    ``correct_i * N / (K n_{y_i})``, whose mean is the balanced accuracy). Estimate: balanced accuracy - 1/K."""
    from dataclasses import replace

    from ... import stats

    t, p = np.asarray(y_true).reshape(-1), np.asarray(y_pred).reshape(-1)
    ct = stats.chance_tests(t, p, n_resamples=n_resamples, seed=seed, level=level)
    classes, counts = np.unique(t, return_counts=True)
    weight = t.size / (classes.size * counts[np.searchsorted(classes, t)])
    terms = (t == p) * weight - ct.chance_balanced
    boot = stats.bootstrap_ci(terms, level=level, seed=seed, unit=unit)
    return replace(boot, test=f"label-permutation test ({ct.n_resamples} permutations)",
                   estimand="balanced accuracy - chance", estimate=ct.balanced_accuracy - ct.chance_balanced,
                   p=ct.p_balanced, alternative="greater", n=(ct.n,),
                   extra={"balanced_accuracy": ct.balanced_accuracy, "chance": ct.chance_balanced,
                          "accuracy": ct.accuracy, "majority_rate": ct.majority_rate, "p_accuracy": ct.p_accuracy,
                          "n_classes": ct.n_classes})


def swap_by_task(diff, *, alpha: float = 0.05):
    """The signed-rank rule over task-seed model pairs, on these very differences (robust - standard; a Series
    indexed by ``task`` and ``seed``) with robust and standard swapped for ALL seeds of a task together, over
    every one of the ``2 ** tasks`` swap patterns (:func:`domaingap.stats.relabel_calibration`). Seeds of one
    task share its data, so if the pairs were not independent units the rule would reject on more than alpha of
    the patterns; then the chapter decides at the task level and shows the pair-level test as description."""
    from ... import stats

    tasks = list(diff.index.get_level_values("task"))
    names = list(dict.fromkeys(tasks))
    block = np.array([names.index(t) for t in tasks])
    values = np.asarray(diff, dtype=float)

    def rejects(signs):
        d = values * signs[block]
        return bool(np.any(d != 0)) and stats.signed_rank(d).p < alpha

    return stats.relabel_calibration("robust and standard swapped per task (all its seeds together)", rejects,
                                     stats.swap_relabellings(len(names)), alpha=alpha)
