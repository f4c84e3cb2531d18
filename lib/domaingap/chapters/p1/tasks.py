"""P1's tasks: binary tasks of the mirror's datasets, listed in the ``p1_data`` profile section (YAML).

Konz & Mazurowski (ICLR 2024, Sec. 3) train binary classifiers only: one clinical task per radiology dataset and
5 random class pairs per natural dataset. Here a :class:`Task` is ``(dataset, (class a, class b))``; the medical
tasks are listed explicitly in ``lib/domaingap/profiles.d/p1.yaml`` and the natural pairs drawn with a seeded RNG
(:func:`random_pairs`).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ... import data

__all__ = ["Task", "make_task", "parse_task", "random_pairs", "tasks"]


@dataclass(frozen=True)
class Task:
    """A binary task: images of ``classes[0]`` (label 0) vs ``classes[1]`` (label 1) of ``dataset``."""

    dataset: str
    classes: tuple[int, int]

    @property
    def key(self) -> str:
        """Stable identifier, e.g. ``"mnist:3-8"``."""
        return f"{self.dataset}:{self.classes[0]}-{self.classes[1]}"

    @property
    def domain(self) -> str:
        return data.info(self.dataset).domain

    @property
    def title(self) -> str:
        return data.info(self.dataset).title.split(" (")[0]

    @property
    def label(self) -> str:
        """Human-readable name, e.g. ``"MNIST 3 vs 8"``."""
        names = data.info(self.dataset).classes
        return f"{self.title} {names[self.classes[0]]} vs {names[self.classes[1]]}"


def parse_task(key: str) -> Task:
    """Inverse of :attr:`Task.key`: ``"mnist:3-8"`` -> ``Task("mnist", (3, 8))``."""
    try:
        name, pair = key.split(":")
        a, b = (int(v) for v in pair.split("-"))
    except ValueError as err:
        raise ValueError(f"task key must look like 'dataset:a-b' (e.g. 'mnist:3-8'), got {key!r}") from err
    return make_task(name, (a, b))


def make_task(dataset: str, classes: Sequence[int] | None = None) -> Task:
    """A validated :class:`Task`; ``classes=None`` takes the dataset's clinical binary task
    (:attr:`domaingap.data.DatasetInfo.binary_task`)."""
    ds = data.info(dataset)
    if classes is None:
        if ds.binary_task is None:
            raise ValueError(f"dataset {ds.name!r} has no default binary task; pass classes=(a, b)")
        classes = ds.binary_task
    classes = tuple(int(c) for c in classes)
    if len(classes) != 2 or classes[0] == classes[1] or not all(0 <= c < ds.num_classes for c in classes):
        raise ValueError(f"classes must be two distinct class ids in 0..{ds.num_classes - 1} of {ds.name}, "
                         f"got {classes}")
    return Task(ds.name, classes)


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


def tasks(data_cfg: dict) -> list[Task]:
    """The chapter's tasks from the ``p1_data`` profile section: medical tasks first, then natural pairs.

    Keys used: ``medical`` (list of ``[dataset, [a, b]]`` or ``[dataset, null]`` for the clinical task),
    ``natural_datasets``, ``natural_pairs`` (random pairs per natural dataset), ``pair_seed``.
    """
    out = [make_task(name, classes) for name, classes in data_cfg["medical"]]
    for name in data_cfg["natural_datasets"]:
        out += [make_task(name, p) for p in random_pairs(name, data_cfg["natural_pairs"], data_cfg["pair_seed"])]
    keys = [t.key for t in out]
    if len(set(keys)) != len(keys):
        raise ValueError(f"duplicate tasks in the p1_data profile: {keys}")
    return out
