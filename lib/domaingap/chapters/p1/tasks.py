"""P1's tasks: binary tasks of the mirror's datasets, chosen by ONE rule for both domains (``p1_data`` profile).

Konz & Mazurowski (ICLR 2024, Sec. 3) train binary classifiers only: one clinical task per radiology dataset and
5 random class pairs per natural dataset. Here the rule is the same for every dataset: its clinically meaningful
binary task where it has one (:attr:`domaingap.data.DatasetInfo.clinical_task`: BreastMNIST malignant vs
benign/normal, PneumoniaMNIST, RetinaMNIST no DR vs referable DR, KneeOA KL 0 vs KL >= 2, Brain Tumor MRI no
tumour vs tumour), otherwise ``pairs`` seeded random class pairs (:func:`random_pairs`: MedNIST, PBC and the
natural datasets).

A :class:`Task` is ``(dataset, (group 0, group 1))``; each group is a tuple of class ids relabelled to one label.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ... import data

__all__ = ["Task", "dataset_tasks", "make_task", "parse_task", "random_pairs", "tasks"]

Groups = tuple[tuple[int, ...], tuple[int, ...]]


@dataclass(frozen=True)
class Task:
    """A binary task: images of the classes in ``groups[0]`` (label 0) vs those in ``groups[1]`` (label 1)."""

    dataset: str
    groups: Groups

    @property
    def key(self) -> str:
        """Stable identifier: ``"mnist:3-8"``; grouped classes joined by ``+``: ``"kneeoa:0-2+3+4"``."""
        return f"{self.dataset}:" + "-".join("+".join(str(c) for c in g) for g in self.groups)

    @property
    def domain(self) -> str:
        return data.info(self.dataset).domain

    @property
    def radiology(self) -> bool:
        return data.info(self.dataset).radiology

    @property
    def clinical(self) -> bool:
        """True when this is the dataset's clinical task (else a random class pair)."""
        return data.info(self.dataset).clinical_task == self.groups

    @property
    def title(self) -> str:
        return data.info(self.dataset).title.split(" (")[0]

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``"MNIST 3 vs 8"``, ``"Knee OA KL 0 vs KL 2+KL 3+KL 4"``."""
        names = data.info(self.dataset).classes
        a, b = ("+".join(names[c] for c in g) for g in self.groups)
        return f"{self.title} {a} vs {b}"


def parse_task(key: str) -> Task:
    """Inverse of :attr:`Task.key`: ``"kneeoa:0-2+3+4"`` -> ``Task("kneeoa", ((0,), (2, 3, 4)))``."""
    try:
        name, spec = key.split(":")
        groups = [tuple(int(c) for c in part.split("+")) for part in spec.split("-")]
    except ValueError as err:
        raise ValueError(f"task key must look like 'dataset:a-b' or 'dataset:a-b+c' (e.g. 'mnist:3-8'), "
                         f"got {key!r}") from err
    return make_task(name, groups)


def make_task(dataset: str, classes: Sequence | None = None) -> Task:
    """A validated :class:`Task`. ``classes``: two class ids ``(a, b)``, two groups ``((a,), (b, c))``, or None
    for the dataset's clinical task (:attr:`domaingap.data.DatasetInfo.clinical_task`)."""
    ds = data.info(dataset)
    if classes is None:
        if ds.clinical_task is None:
            raise ValueError(f"dataset {ds.name!r} has no clinical binary task; pass classes=(a, b)")
        classes = ds.clinical_task
    groups = data.class_groups(ds, list(classes))  # validates ids, repeats and the number of groups
    if len(groups) != 2:
        raise ValueError(f"a P1 task is binary: classes must be two class ids or groups of {ds.name}, "
                         f"got {list(classes)!r}")
    return Task(ds.name, (tuple(groups[0]), tuple(groups[1])))


def random_pairs(dataset: str, n_pairs: int, seed: int) -> list[tuple[int, int]]:
    """``n_pairs`` distinct unordered class pairs of ``dataset`` drawn with a seeded RNG (P1: 5 random pairs
    per natural dataset). The stream depends on (seed, dataset name) only, so adding a dataset never
    changes another's pairs, and a larger ``n_pairs`` extends a smaller one."""
    k = data.info(dataset).num_classes
    all_pairs = [(a, b) for a in range(k) for b in range(a + 1, k)]
    if not 1 <= n_pairs <= len(all_pairs):
        raise ValueError(f"n_pairs must be in 1..{len(all_pairs)} for {dataset} ({k} classes), got {n_pairs}")
    rng = np.random.default_rng([seed, zlib.crc32(dataset.encode())])
    order = rng.permutation(len(all_pairs))[:n_pairs]
    return [all_pairs[i] for i in order]


def dataset_tasks(dataset: str, pairs: int, seed: int) -> list[Task]:
    """The rule: the dataset's clinical task if it has one, else ``pairs`` seeded random class pairs."""
    if data.info(dataset).clinical_task is not None:
        return [make_task(dataset)]
    return [make_task(dataset, p) for p in random_pairs(dataset, pairs, seed)]


def tasks(data_cfg: dict) -> list[Task]:
    """The chapter's tasks from the ``p1_data`` profile section: medical datasets first, then natural ones.

    Keys used: ``medical_datasets``, ``natural_datasets`` (names), ``pairs`` (random pairs per dataset without
    a clinical task), ``pair_seed``.
    """
    names = list(data_cfg["medical_datasets"]) + list(data_cfg["natural_datasets"])
    wrong = [(n, data.info(n).domain) for n in data_cfg["medical_datasets"] if data.info(n).domain != "medical"]
    wrong += [(n, data.info(n).domain) for n in data_cfg["natural_datasets"] if data.info(n).domain != "natural"]
    if wrong:
        raise ValueError(f"datasets listed under the wrong domain in the p1_data profile: {wrong}")
    if len(set(names)) != len(names):
        raise ValueError(f"a dataset is listed twice in the p1_data profile: {names}")
    return [t for n in names for t in dataset_tasks(n, int(data_cfg["pairs"]), int(data_cfg["pair_seed"]))]
