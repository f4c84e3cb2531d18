"""P1's profile sections -> run specs (plain JSON data) -> :class:`domaingap.runs.Run` nodes.

Sections (``lib/domaingap/profiles.d/p1.yaml``): ``p1_data`` (tasks, image format, test set), ``p1_fig1``
(geometry subsamples), ``p1_fig2`` (training runs), ``p1_fig3`` (attacks), ``p1_fig4`` (d_repr).

A spec holds everything that shapes a run's result and nothing else (never the device). The attack and d_repr
specs embed the training spec of their model under ``"train"``; their run kinds turn it into the upstream
``p1_train`` run (:mod:`.runs`).
"""

from __future__ import annotations

from typing import Iterable

from ... import profiles
from . import runs as kinds
from .pools import _split_for, data_spec
from .tasks import Task, tasks

SWEEPS = ("geometry", "train", "attack", "repr")

__all__ = ["SWEEPS", "attack_specs", "configs", "geometry_specs", "repr_specs", "sweeps", "train_specs"]


def configs(profile: str) -> dict[str, dict]:
    """The chapter's profile sections at ``profile``: ``{"data", "fig1", "fig2", "fig3", "fig4"}``."""
    return {name: profiles.get(f"p1_{name}", profile) for name in ("data", "fig1", "fig2", "fig3", "fig4")}


def train_specs(data_cfg: dict, train_cfg: dict, task_list: Iterable[Task] | None = None) -> list[dict]:
    """One spec per (task, model, N, seed) of the ``p1_fig2`` section; N above a task's maximum is skipped.

    Keys used in ``train_cfg``: ``models`` (name -> dict of ``lr``, ``batch_size`` and optional
    :func:`domaingap.models.build_model` options such as ``width``/``stem``), ``sizes``, ``seeds``, ``epochs``,
    ``weight_decay``.
    """
    out = []
    for task in (task_list if task_list is not None else tasks(data_cfg)):
        base = data_spec(task, data_cfg)
        limit = _split_for(base)[1].max_train
        for model, mcfg in train_cfg["models"].items():
            for n in train_cfg["sizes"]:
                if n > limit:
                    continue
                for seed in train_cfg["seeds"]:
                    out.append({**base, "task": task.key, "domain": task.domain, "model": model,
                                "arch": {k: v for k, v in mcfg.items() if k not in ("lr", "batch_size")},
                                "n": int(n), "seed": int(seed), "epochs": int(train_cfg["epochs"]),
                                "batch_size": int(mcfg["batch_size"]),
                                "lr": float(mcfg["lr"]), "weight_decay": float(train_cfg["weight_decay"]),
                                "optimizer": "adam"})
    return out


def attack_specs(train_specs_: list[dict], attack_cfg: dict) -> list[dict]:
    """One attack spec per trained model whose N is in ``attack_cfg["sizes"]`` (every N when null).

    ``attack_cfg["attacks"]`` maps an attack name (``"fgsm"``, ``"pgd"``) to its list of L-inf budgets, in grey
    levels of the [0, 255] inputs: P1's code passes ``atk_eps = 2`` to models fed [0, 255] images ("the eps
    would be atk_eps/255 scaled to [0, 1]"), i.e. 2/255 of the range.
    """
    sizes = attack_cfg.get("sizes")
    attacks_ = {name: [float(e) for e in eps] for name, eps in attack_cfg["attacks"].items()}
    bad = [a for a in attacks_ if a not in ("fgsm", "pgd")]
    if bad:
        raise ValueError(f"unknown attacks {bad} in the p1_fig3 profile; expected 'fgsm' and/or 'pgd'")
    return [{"train": s, "attacks": attacks_, "pgd_steps": int(attack_cfg["pgd_steps"]),
             "pgd_step_factor": float(attack_cfg["pgd_step_factor"]), "batch_size": int(attack_cfg.get("batch_size", 256))}
            for s in train_specs_ if sizes is None or s["n"] in sizes]


def geometry_specs(task_list: Iterable[Task], data_cfg: dict, geom_cfg: dict) -> list[dict]:
    """One spec per (task, subsample size, repetition) of the ``p1_fig1`` section; sizes a task cannot supply
    (class-balanced, from its training pool) are skipped."""
    out = []
    for task in task_list:
        base = data_spec(task, data_cfg)
        limit = _split_for(base)[1].max_train
        for n in geom_cfg["n"]:
            if n > limit:
                continue
            for rep in range(geom_cfg["reps"]):
                out.append({**base, "task": task.key, "domain": task.domain, "n": int(n), "rep": int(rep),
                            "k": int(geom_cfg["k"]), "kf_sample_images": int(geom_cfg["kf_sample_images"])})
    return out


def repr_specs(train_specs_: list[dict], repr_cfg: dict) -> list[dict]:
    """One spec per trained model: intrinsic dimension of its penultimate representation of its training set."""
    return [{"train": s, "k": int(repr_cfg["k"])} for s in train_specs_]


def sweeps(profile: str) -> dict[str, list]:
    """Every run the chapter's notebooks read at ``profile``, by sweep name (:data:`SWEEPS`): ``geometry``
    (Fig. 1, also read by Figs. 2-3), ``train`` (Fig. 2, also Fig. 4's models), ``attack`` (Fig. 3), ``repr``
    (Fig. 4). The attack and d_repr runs have the training runs upstream."""
    cfg = configs(profile)
    task_list = tasks(cfg["data"])
    train = train_specs(cfg["data"], cfg["fig2"], task_list)
    return {"geometry": [kinds.geometry(s) for s in geometry_specs(task_list, cfg["data"], cfg["fig1"])],
            "train": [kinds.train(s) for s in train],
            "attack": [kinds.attack(s) for s in attack_specs(train, cfg["fig3"])],
            "repr": [kinds.repr_dim(s) for s in repr_specs(train, cfg["fig4"])]}
