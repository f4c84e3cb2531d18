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

__all__ = ["SWEEPS", "attack_specs", "configs", "geometry_specs", "repr_specs", "sizes_for", "sweeps",
           "train_specs"]


def configs(profile: str) -> dict[str, dict]:
    """The chapter's profile sections at ``profile``: ``{"data", "fig1", "fig2", "fig3", "fig4"}``."""
    return {name: profiles.get(f"p1_{name}", profile) for name in ("data", "fig1", "fig2", "fig3", "fig4")}


def sizes_for(sizes: Iterable[int], limit: int) -> list[int]:
    """The training-set sizes of a task whose class-balanced maximum is ``limit``: every profile size it can
    reach; when some size is out of reach, also ``limit`` itself (so a small task is trained as large as its
    data allow instead of being dropped, as P1's paper sizes 500..1750 would drop BreastMNIST); and when that
    still leaves one size, ``limit / 2`` too (a slope needs two sizes). Sizes are even (class-balanced)."""
    sizes = sorted({int(n) for n in sizes})
    limit = int(limit) - int(limit) % 2
    out = [n for n in sizes if n <= limit]
    if len(out) < len(sizes) and limit not in out:
        out.append(limit)
    if len(out) < 2 and limit >= 8:
        out.insert(0, (limit // 2) - (limit // 2) % 2)
    return sorted(set(out))


def train_specs(data_cfg: dict, train_cfg: dict, task_list: Iterable[Task] | None = None) -> list[dict]:
    """One spec per (task, model, N, seed) of the ``p1_fig2`` section; N per task from :func:`sizes_for`.

    Keys used in ``train_cfg``: ``models`` (name -> dict of ``lr``, ``batch_size`` and optional
    :func:`domaingap.models.build_model` options such as ``width``/``stem``), ``sizes``, ``seeds``, ``epochs``,
    ``weight_decay``.
    """
    out = []
    for task in (task_list if task_list is not None else tasks(data_cfg)):
        base = data_spec(task, data_cfg)
        limit = _split_for(base)[1].max_train
        for model, mcfg in train_cfg["models"].items():
            for n in sizes_for(train_cfg["sizes"], limit):
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
    """Per task: its whole training pool once (``n = "full"``: d_data as P1 measures it, and full-split K_F),
    and ``reps[i]`` class-balanced subsamples of each size ``n[i]`` it can supply (the K_F(n) curve; the largest
    size every task reaches is the common n of the domain comparison). Keys of the ``p1_fig1`` section: ``n``,
    ``reps`` (one count per size), ``ks`` (MLE neighbours), ``kf_sample_images`` (P1's sampled K_F)."""
    if len(geom_cfg["n"]) != len(geom_cfg["reps"]):
        raise ValueError(f"p1_fig1: n and reps must have one entry per size, got n={geom_cfg['n']} and "
                         f"reps={geom_cfg['reps']}")
    out = []
    for task in task_list:
        base = {**data_spec(task, data_cfg), "task": task.key, "domain": task.domain,
                "ks": [int(k) for k in geom_cfg["ks"]], "kf_sample_images": int(geom_cfg["kf_sample_images"])}
        limit = _split_for(base)[1].max_train
        out.append({**base, "n": "full", "rep": 0})
        for n, reps in zip(geom_cfg["n"], geom_cfg["reps"]):
            if n <= limit:
                out += [{**base, "n": int(n), "rep": int(rep)} for rep in range(int(reps))]
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
