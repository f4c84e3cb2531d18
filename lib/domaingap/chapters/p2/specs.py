"""Chapter P2's specs: profile sections -> JSON run specs -> :class:`~domaingap.runs.Run` nodes, per table.

A spec is plain JSON data and says everything a run's result depends on except the code (hashed separately) and
the device (never part of a spec). The ``p2_models`` section is shared by every table, so that Tab. 1, Tab. 2,
Tab. 3 and Fig. 1 read the same trained models.

- :func:`model_spec`, :func:`dataset_spec`, :func:`robust_view_spec`, :func:`robust_eval_spec`,
  :func:`mmc_data_spec`, :func:`mmc_eval_spec`, :func:`saliency_spec`: one spec each;
- :func:`tab1_plan` (:func:`tab1_runs`), :func:`tab2_plan`, :func:`tab3_plan`, :func:`fig1_plan`: the Run nodes
  of one table;
- :func:`sweeps`: every run the chapter's notebooks read, by sweep name.
"""

from __future__ import annotations

from typing import Any, Sequence

from ... import data, profiles
from ...kernels.corruptions import corruption_names
from ...runs import Run
from . import runs
from .tasks import get_task, scaled_eps

SECTIONS = ("models", "tab1", "tab2", "tab3", "fig1")

__all__ = ["SECTIONS", "configs", "dataset_spec", "fig1_plan", "mmc_data_spec", "mmc_eval_spec", "model_spec",
           "robust_eval_spec", "robust_view_spec", "saliency_spec", "source_seed", "sweeps", "tab1_plan",
           "tab1_robust_models", "tab1_runs", "tab2_plan", "tab3_plan", "task_corruptions", "tradeoff_specs"]


# the sweep names of sweeps(); the CLI checks --only against them before building any spec
SWEEPS = ("models", "tab1", "tab2", "tab3", "fig1")

def configs(profile: str) -> dict[str, dict]:
    """The chapter's profile sections at ``profile``: models, tab1, tab2, tab3, fig1."""
    return {name: profiles.get(f"p2_{name}", profile) for name in SECTIONS}


# ----------------------------------------------------------------------------------------------- one spec each

def model_spec(task: str, mcfg: dict, seed: int, *, robust: bool = False, train_on: Any = "clean") -> dict:
    """Training spec of one model of the chapter.

    Args:
        task: a task name of ``tasks.yaml``.
        mcfg: the ``p2_models`` profile section (training settings shared by every notebook, so that a model
            trained for one notebook is found in the artefacts by the others).
        seed: seeds the initial weights, batch order and attack starts (the data subsets are fixed).
        robust: L2 PGD adversarial training (Madry et al. 2018) with ``eps = scaled_eps(adv_eps_ref)``,
            ``adv_steps`` steps of ``2.5 * eps / adv_steps`` (the ``robustness`` library rule).
        train_on: ``"clean"`` (the task's training subset) or a dataset spec from :func:`dataset_spec`
            (D_rand, D_det, D_NR, D_R): a fresh model trained on a constructed dataset.
    """
    t = get_task(task)
    spec = {
        "task": t.name, "n_train": mcfg["n_train"], "data_seed": int(mcfg["data_seed"]), "n_test": mcfg["n_test"],
        "model": mcfg["arch"], "arch": dict(mcfg.get("arch_options") or {}),
        "epochs": int(mcfg["epochs"]), "batch_size": int(mcfg["batch_size"]), "lr": float(mcfg["lr"]),
        "optimizer": mcfg["optimizer"], "schedule": mcfg["schedule"], "weight_decay": float(mcfg["weight_decay"]),
        "class_weights": mcfg["class_weights"], "seed": int(seed), "adversarial": None, "train_on": train_on,
    }
    if robust:
        eps = scaled_eps(mcfg["adv_eps_ref"], t.input_shape)
        steps = int(mcfg["adv_steps"])
        spec["adversarial"] = {"eps": eps, "steps": steps, "step_size": round(2.5 * eps / steps, 6), "norm": "l2"}
    return spec


def dataset_spec(variant: str, source: dict, cfg: dict) -> dict:
    """Spec of a constructed training set (Ilyas et al. 2019, Sec. 3).

    Args:
        variant: ``"rand"`` (targeted L2 PGD towards a uniformly random label ``t``, relabelled ``t``),
            ``"det"`` (the same with ``t = (y + 1) mod K``), ``"nr"`` / ``"r"`` (representation inversion
            through the penultimate layer of a standard / adversarially trained ``source``; label kept).
        source: the model spec (:func:`model_spec`) of the source model: standard for rand, det and nr,
            robust for r.
        cfg: the ``p2_tab1`` profile section. rand/det: ``pgd_eps_ref`` (Ilyas et al.'s CIFAR budget, scaled by
            :func:`scaled_eps`), ``pgd_eps_multipliers`` (the budgets tried, as multiples of it),
            ``pgd_target_success`` and ``pgd_calibration_n`` (see the ``p2_dataset`` run), ``pgd_steps``,
            ``pgd_step_ratio`` (step = ratio * eps). nr/r: ``inversion_steps``, ``inversion_step_ref``,
            ``inversion_n``.
    """
    if variant not in ("rand", "det", "nr", "r"):
        raise ValueError(f"variant must be 'rand', 'det', 'nr' or 'r', got {variant!r}")
    if (variant == "r") != (source.get("adversarial") is not None):
        raise ValueError(f"D_{variant} needs a {'robust' if variant == 'r' else 'standard'} source model, got "
                         f"adversarial={source.get('adversarial')}")
    if source.get("train_on") != "clean":
        raise ValueError("the source model must be trained on the clean training set")
    t = get_task(source["task"])
    spec = {"variant": variant, "source": source}
    if variant in ("rand", "det"):
        base = scaled_eps(cfg["pgd_eps_ref"], t.input_shape)
        mults = sorted(float(m) for m in cfg["pgd_eps_multipliers"])
        if not mults or mults[0] <= 0:
            raise ValueError(f"pgd_eps_multipliers must be positive numbers, got {cfg['pgd_eps_multipliers']!r}")
        spec.update(eps_grid=[round(base * m, 6) for m in mults], target_success=float(cfg["pgd_target_success"]),
                    calibration_n=int(cfg["pgd_calibration_n"]), steps=int(cfg["pgd_steps"]),
                    step_ratio=float(cfg["pgd_step_ratio"]))
    else:
        spec.update(steps=int(cfg["inversion_steps"]),
                    step_size=scaled_eps(cfg["inversion_step_ref"], t.input_shape), n=cfg["inversion_n"])
    return spec


def robust_view_spec(dspec: dict, robust: dict) -> dict:
    """Spec of the check of a D_rand / D_det set ``dspec`` through ``robust``, an adversarially trained model
    spec of the same task (the ``p2_robust_view`` run)."""
    if dspec["variant"] not in ("rand", "det"):
        raise ValueError(f"robust_view needs a D_rand or D_det spec, got variant {dspec['variant']!r}")
    if robust.get("adversarial") is None or robust["task"] != dspec["source"]["task"]:
        raise ValueError(f"robust_view needs a robust model spec of the dataset's task "
                         f"({dspec['source']['task']!r}), got task {robust['task']!r} with "
                         f"adversarial={robust.get('adversarial')}")
    return {"dataset": dspec, "robust": robust}


def robust_eval_spec(model: dict, cfg: dict, *, apgd: bool = False, sweep: bool = False) -> dict:
    """Spec of a robustness evaluation of ``model`` on its fixed test subset (``p2_tab2`` section keys:
    ``eps_ref``, ``n_attack``, ``pgd_steps``, ``pgd_restarts``; with ``apgd``: ``apgd_n``, ``apgd_steps``,
    ``apgd_restarts``; with ``sweep``: ``sweep_multipliers``, ``sweep_steps``, ``sweep_n``)."""
    t = get_task(model["task"])
    spec = {"model": model, "eps": scaled_eps(cfg["eps_ref"], t.input_shape), "n_attack": cfg["n_attack"],
            "pgd_steps": int(cfg["pgd_steps"]), "pgd_restarts": int(cfg["pgd_restarts"]), "apgd": None,
            "sweep": None}
    if apgd:
        spec["apgd"] = {"n": cfg["apgd_n"], "steps": int(cfg["apgd_steps"]), "restarts": int(cfg["apgd_restarts"])}
    if sweep:
        spec["sweep"] = {"multipliers": [float(m) for m in cfg["sweep_multipliers"]], "steps": int(cfg["sweep_steps"]),
                         "n": cfg["sweep_n"]}
    return spec


def mmc_data_spec(task: str, corruption: str, cfg: dict) -> dict:
    """Spec of one task's test subset corrupted by one corruption at every severity (``p2_tab3`` keys:
    ``n_test``, ``corruption_seed``, ``work_size``, ``source_release``)."""
    t = get_task(task)
    if t.medmnistc is None:
        raise ValueError(f"task {task!r} has no MedMNIST-C registry entry")
    spec = {"task": t.name, "registry": t.medmnistc, "corruption": corruption, "n_test": cfg["n_test"],
            "seed": int(cfg["corruption_seed"]), "work_size": int(cfg["work_size"]),
            "resample": "PIL bicubic up, corrupt, PIL box (area) down"}
    # paper: corrupt MedMNIST+'s own work_size px test images, as MedMNIST-C is built, instead of up-sampled ones
    if cfg.get("source_release") and int(cfg["work_size"]) in data.releases(t.dataset):
        spec["source_release"] = int(cfg["work_size"])
        spec["resample"] = f"the {spec['source_release']} px release, corrupt, PIL box (area) down"
    return spec


def task_corruptions(task: str) -> list[str]:
    """The corruptions a task is evaluated under: its ``corruptions`` list, else every corruption of its MedMNIST-C
    registry entry (in the package's order)."""
    t = get_task(task)
    if t.medmnistc is None:
        raise ValueError(f"task {task!r} has no MedMNIST-C registry entry")
    names = corruption_names(t.medmnistc)
    if t.corruptions is None:
        return names
    unknown = [c for c in t.corruptions if c not in names]
    if unknown:
        raise ValueError(f"task {task!r}: corruptions {unknown} are not in MedMNIST-C entry {t.medmnistc!r} ({names})")
    return list(t.corruptions)


def mmc_eval_spec(model: dict, cfg: dict) -> dict:
    """Spec of a MedMNIST-C evaluation of ``model``: every corruption of :func:`task_corruptions`."""
    t = get_task(model["task"])
    return {"model": model, "data": [mmc_data_spec(t.name, c, cfg) for c in ["none"] + task_corruptions(t.name)]}


def saliency_spec(std: dict, rob: dict, cfg: dict, source: dict | None = None) -> dict:
    """Spec of the Fig. 1 analogue: a standard and a robust model of the same task (``p2_fig1`` keys:
    ``n_images``, ``eps_ref``, ``pgd_steps``), and ``source``, a third (standard) model of the same task whose PGD
    perturbations are transferred to both, so that both maps are compared under the SAME perturbations."""
    if std["task"] != rob["task"] or std["adversarial"] is not None or rob["adversarial"] is None:
        raise ValueError("saliency_spec needs a standard and a robust model spec of the same task")
    if source is not None and (source["task"] != std["task"] or source in (std, rob)):
        raise ValueError("the saliency transfer source must be a third model of the same task")
    t = get_task(std["task"])
    return {"standard": std, "robust": rob, "source": source, "n_images": cfg["n_images"],
            "eps": scaled_eps(cfg["eps_ref"], t.input_shape), "pgd_steps": int(cfg["pgd_steps"])}


def tradeoff_specs(mcfg: dict, tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
    """Standard and robust model specs of every task x seed (the models of Tab. 2, Tab. 3 and Fig. 1)."""
    return [model_spec(t, mcfg, s, robust=r) for t in (tasks or mcfg["tasks"]) for s in (seeds or mcfg["seeds"])
            for r in (False, True)]


# ----------------------------------------------------------------------------------------------- per table

def tab1_plan(profile: str) -> list[dict]:
    """Tab. 1's runs, one item per fresh model: ``{"task", "seed", "variant", "source", "dataset", "fresh",
    "view", "eval"}`` where the last five are Run nodes (the source model, the constructed dataset, the fresh
    model trained on it, the robust model's view of a D_rand / D_det set, the PGD evaluation of a D_NR / D_R
    model; None where not applicable)."""
    cfg = configs(profile)
    mcfg, tcfg = cfg["models"], cfg["tab1"]
    plan = []
    for task in mcfg["tasks"]:
        for seed in tcfg["seeds"]:  # D_rand / D_det
            for variant in tcfg["variants"]:
                plan.append((task, seed, variant, model_spec(task, mcfg, seed)))
        if task in (tcfg["inversion_tasks"] or []):  # D_NR / D_R: their own seeds
            for seed in tcfg["inversion_seeds"]:
                plan.append((task, seed, "nr", model_spec(task, mcfg, seed)))
                plan.append((task, seed, "r", model_spec(task, mcfg, seed, robust=True)))
    items = []
    for task, seed, variant, src in plan:
        dspec = dataset_spec(variant, src, tcfg)
        fresh = model_spec(task, mcfg, seed, train_on=dspec)
        view = ev = None
        if variant in ("rand", "det"):
            view = runs.robust_view_run(robust_view_spec(dspec, model_spec(task, mcfg, seed, robust=True)))
        else:  # D_NR / D_R models are also attacked (Ilyas et al.: D_R gives robustness, D_NR none)
            ev = runs.robust_eval_run(robust_eval_spec(fresh, cfg["tab2"]))
        items.append({"task": task, "seed": seed, "variant": variant, "source": runs.train_run(src),
                      "dataset": runs.dataset_run(dspec), "fresh": runs.train_run(fresh), "view": view, "eval": ev})
    return items


def tab1_robust_models(profile: str) -> list[Run]:
    """The robust models of Tab. 1's seeds: they check the constructed D_rand / D_det sets and are the D_R sources."""
    cfg = configs(profile)
    mcfg, tcfg = cfg["models"], cfg["tab1"]
    out = {}
    for task in mcfg["tasks"]:
        seeds = list(tcfg["seeds"]) + (list(tcfg["inversion_seeds"]) if task in (tcfg["inversion_tasks"] or []) else [])
        for seed in dict.fromkeys(seeds):
            r = runs.train_run(model_spec(task, mcfg, seed, robust=True))
            out.setdefault(r.key, r)
    return list(out.values())


def tab1_runs(profile: str, plan: list[dict] | None = None) -> list[Run]:
    """Every Run of Tab. 1: the robust models of its seeds and every run of :func:`tab1_plan` (``plan``)."""
    plan = tab1_plan(profile) if plan is None else plan
    parts = ("source", "dataset", "fresh", "view", "eval")
    return tab1_robust_models(profile) + [item[k] for item in plan for k in parts if item[k] is not None]


def tab2_plan(profile: str) -> list[dict]:
    """Tab. 2's runs: ``{"model": Run, "eval": Run}`` per standard / robust model of every task x seed, the
    evaluation with the APGD and eps-sweep checks on ``check_seeds``."""
    cfg = configs(profile)
    mcfg, tcfg = cfg["models"], cfg["tab2"]
    # APGD on every robust model (its strength at its training budget), on standard models of check_seeds
    return [{"model": runs.train_run(s),
             "eval": runs.robust_eval_run(robust_eval_spec(
                 s, tcfg, apgd=s["seed"] in tcfg["check_seeds"] or s["adversarial"] is not None,
                 sweep=s["seed"] in tcfg["check_seeds"]))}
            for s in tradeoff_specs(mcfg)]


def tab3_plan(profile: str) -> dict:
    """Tab. 3's runs: ``{"data": [p2_mmc_data Run, ...] (each corrupted set once), "evals": [p2_mmc_eval Run per
    standard / robust model of every task with a MedMNIST-C entry]}``."""
    cfg = configs(profile)
    mcfg, tcfg = cfg["models"], cfg["tab3"]
    tasks = [t for t in mcfg["tasks"] if get_task(t).medmnistc is not None]  # medical tasks and natural controls
    evals = [runs.mmc_eval_run(mmc_eval_spec(s, tcfg)) for s in tradeoff_specs(mcfg, tasks)]
    data_runs = {}
    for ev in evals:
        for d in ev.spec["data"]:
            r = runs.mmc_data_run(d)
            data_runs.setdefault(r.key, r)
    return {"data": list(data_runs.values()), "evals": evals}


def source_seed(seed: int, seeds: Sequence[int]) -> int:
    """The seed of the standard model whose perturbations are transferred to the pair of ``seed``: the next seed
    of ``seeds`` (cyclically), so that no extra model is trained; ``seed + 1`` when ``seeds`` has one seed."""
    seeds = [int(s) for s in seeds]
    if len(seeds) < 2 or seed not in seeds:
        return int(seed) + 1
    return seeds[(seeds.index(seed) + 1) % len(seeds)]


def fig1_plan(profile: str) -> list[Run]:
    """The Fig. 1 analogue: one saliency run per task x seed of ``fig1.tasks`` x ``fig1.seeds`` (the standard and
    robust model of that seed, perturbations transferred from the standard model of :func:`source_seed`)."""
    cfg = configs(profile)
    mcfg, fcfg = cfg["models"], cfg["fig1"]
    out = []
    for task in fcfg["tasks"]:
        for seed in fcfg["seeds"]:
            std = model_spec(task, mcfg, seed)
            rob = model_spec(task, mcfg, seed, robust=True)
            src = model_spec(task, mcfg, source_seed(seed, fcfg["seeds"]))
            out.append(runs.saliency_run(saliency_spec(std, rob, fcfg, src)))
    return out


def sweeps(profile: str) -> dict[str, list[Run]]:
    """Every run the chapter's notebooks read at ``profile``, by sweep: ``models`` (the standard / robust models
    of every task x seed, shared by the tables), ``tab2``, ``tab3``, ``fig1``, ``tab1``.

    Each run is listed in the FIRST sweep that needs it only (a model shared by Tab. 2, Tab. 3, Fig. 1 and Tab. 1
    is in ``models``), so that the recorded compute summed over the sweeps is the chapter's compute, each run
    counted once. Computing one sweep alone still computes what it needs upstream first."""
    mcfg = configs(profile)["models"]
    tab3 = tab3_plan(profile)
    made = {
        "models": [runs.train_run(s) for s in tradeoff_specs(mcfg)],
        "tab2": [r for item in tab2_plan(profile) for r in (item["model"], item["eval"])],
        "tab3": tab3["data"] + tab3["evals"],
        "fig1": fig1_plan(profile),
        "tab1": tab1_runs(profile),
    }
    seen: set[str] = set()
    out = {}
    for name, items in made.items():
        out[name] = []
        for r in items:
            if r.key not in seen:
                seen.add(r.key)
                out[name].append(r)
    return out
