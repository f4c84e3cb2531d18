"""Chapter P2's tasks (listed in ``tasks.yaml``), their images, and the L2 budget scaling.

Mouton et al. (2026) use five MedMNIST tasks; the offline mirror has BreastMNIST, PneumoniaMNIST, RetinaMNIST
and MedNIST (its CT classes stand in for the OrganMNIST tasks), plus the natural controls Fashion-MNIST and
CIFAR-10. The list is data: ``tasks.yaml`` beside this module, validated at import (a ``ValueError`` names the
file, the task and the field), so adding a task needs no code.

Array conventions: :func:`load_task` returns float32 ``(N, C, S, S)`` images in [0, 1] and int64 ``(N,)`` labels.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from ... import data

TASKS_FILE = Path(__file__).with_name("tasks.yaml")
REF_DIM = 3 * 32 * 32  # input dimension of Ilyas et al.'s CIFAR-10, where their L2 budgets were set
FIELDS = ("name", "dataset", "classes", "size", "channels", "medmnistc", "corruptions", "title", "note")
OPTIONAL = ("corruptions", "note")

__all__ = ["REF_DIM", "TASKS", "TASKS_FILE", "TASK_TABLE", "Task", "data_split", "get_task", "load_task", "read_tasks",
           "scaled_eps"]


@dataclass(frozen=True)
class Task:
    """One classification task of the chapter.

    ``dataset``/``classes``/``size``/``channels`` are passed to :func:`domaingap.data.load` (``classes=None``:
    all classes of the dataset). ``medmnistc``: the MedMNIST-C registry entry whose corruptions and severity
    parameters apply to this task (None: no MedMNIST-C evaluation); ``corruptions``: the ones of that entry
    used (None: all; the natural controls use the families every medical entry shares).
    """

    name: str
    dataset: str
    classes: tuple[int, ...] | None
    size: int
    channels: int
    medmnistc: str | None
    title: str
    note: str = ""
    corruptions: tuple[str, ...] | None = None

    @property
    def domain(self) -> str:
        return data.info(self.dataset).domain

    @property
    def class_names(self) -> tuple[str, ...]:
        names = data.info(self.dataset).classes
        return names if self.classes is None else tuple(names[c] for c in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


def _task(entry, where: str) -> Task:
    """One validated :class:`Task` from a YAML entry (``where`` names the file and entry in errors)."""
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: each task must be a mapping of {', '.join(FIELDS)}, got {entry!r}")
    name = entry.get("name")
    if not isinstance(name, str) or not name:
        raise ValueError(f"{where}: field 'name' must be a non-empty string, got {name!r}")
    where = f"{where} (task {name!r})"
    unknown = [k for k in entry if k not in FIELDS]
    missing = [k for k in FIELDS if k not in entry and k not in OPTIONAL]
    if unknown or missing:
        raise ValueError(f"{where}: unknown field(s) {unknown}, missing field(s) {missing}; the fields are "
                         f"{', '.join(FIELDS)}")
    try:
        ds = data.info(entry["dataset"])
    except (KeyError, AttributeError, TypeError) as err:
        raise ValueError(f"{where}: field 'dataset' = {entry['dataset']!r} is not a dataset of the registry "
                         f"({err})") from None
    classes = entry["classes"]
    if classes is not None:
        if (not isinstance(classes, list) or not classes or len(set(classes)) != len(classes)
                or any(isinstance(c, bool) or not isinstance(c, int) or not 0 <= c < len(ds.classes)
                       for c in classes)):
            raise ValueError(f"{where}: field 'classes' = {classes!r} must be null or distinct class ids of "
                             f"{ds.name} (0..{len(ds.classes) - 1})")
        classes = tuple(classes)
    for key in ("size", "channels"):
        value = entry[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{where}: field {key!r} = {value!r} must be a positive integer")
    if entry["channels"] not in (1, 3):
        raise ValueError(f"{where}: field 'channels' = {entry['channels']!r} must be 1 or 3")
    if entry["medmnistc"] is not None and not isinstance(entry["medmnistc"], str):
        raise ValueError(f"{where}: field 'medmnistc' = {entry['medmnistc']!r} must be null or a registry name")
    corruptions = entry.get("corruptions")
    if corruptions is not None:
        if (entry["medmnistc"] is None or not isinstance(corruptions, list) or not corruptions
                or not all(isinstance(c, str) and c for c in corruptions) or len(set(corruptions)) != len(corruptions)):
            raise ValueError(f"{where}: field 'corruptions' = {corruptions!r} must be null or a non-empty list of "
                             f"distinct corruption names of the 'medmnistc' entry (which must then be set)")
        corruptions = tuple(corruptions)
    for key in ("title", "note"):
        if not isinstance(entry.get(key, ""), str):
            raise ValueError(f"{where}: field {key!r} = {entry[key]!r} must be a string")
    return Task(name, entry["dataset"], classes, entry["size"], entry["channels"], entry["medmnistc"], entry["title"],
                entry.get("note", ""), corruptions)


def read_tasks(path: Path | str = TASKS_FILE) -> dict[str, Task]:
    """The tasks listed in ``path`` (a YAML list of mappings with the fields of :class:`Task`), by name."""
    import yaml

    path = Path(path)
    with open(path, encoding="utf-8") as fh:
        entries = yaml.safe_load(fh)
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{path}: expected a non-empty list of tasks, got {type(entries).__name__}")
    out: dict[str, Task] = {}
    for i, entry in enumerate(entries):
        task = _task(entry, f"{path}, entry {i}")
        if task.name in out:
            raise ValueError(f"{path}, entry {i}: task {task.name!r} is listed twice")
        out[task.name] = task
    return out


TASKS: dict[str, Task] = read_tasks()
# The same tasks as plain data. get_task reads it by name so that the code hash of every run that looks a task up
# covers the task definitions: a spec names its task, and editing tasks.yaml must not leave stale artefacts.
TASK_TABLE: dict[str, dict] = {name: dataclasses.asdict(t) for name, t in TASKS.items()}


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; unknown names raise a ``ValueError`` listing the known ones."""
    if name not in TASK_TABLE:
        raise ValueError(f"unknown P2 task {name!r}; known tasks: {', '.join(TASK_TABLE)}")
    return TASKS[name]


def load_task(task: str | Task, split: str, *, n: int | None = None, seed: int = 0):
    """Images of ``task`` from the official ``split``: an :class:`domaingap.data.ImageSet` with ``x`` float32
    ``(N, C, S, S)`` in [0, 1] and ``y`` int64 ``(N,)``; ``n`` caps N with a seeded random subset (None, or
    ``n`` >= the split size, keeps all).

    Memoised (a sweep asks for the same sets many times): treat the returned tensors as read-only.
    """
    t = task if isinstance(task, Task) else get_task(task)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    return _load_task(t.name, split, n, int(seed))


def data_split(dataset: str, split: str) -> str:
    """The dataset's split that serves as ``split``: a release without a ``test`` split (Imagenette: train / val)
    is tested on its held-out ``val`` split."""
    sizes = data.info(dataset).split_sizes
    if split == "test" and "test" not in sizes and "val" in sizes:
        return "val"
    return split


@lru_cache(maxsize=8)
def _load_task(name: str, split: str, n: int | None, seed: int):
    t = get_task(name)
    split = data_split(t.dataset, split)
    _, labels = data.load_arrays(t.dataset, split)
    total = len(labels) if t.classes is None else int(np.isin(labels, t.classes).sum())
    # only the requested subset is converted to float and resized (MedNIST and CIFAR-10 have ~50k images)
    return data.load(t.dataset, split, classes=t.classes, size=t.size, channels=t.channels,
                     n=None if n is None or n >= total else n, seed=seed)


def scaled_eps(eps_ref: float, input_shape: Sequence[int], ref_dim: int = REF_DIM) -> float:
    """L2 budget for inputs of ``input_shape`` equivalent to ``eps_ref`` at ``ref_dim`` dimensions.

    ``eps = eps_ref * sqrt(prod(input_shape) / ref_dim)`` keeps the per-pixel RMS perturbation of Ilyas et
    al.'s CIFAR-10 budget (``ref_dim = 3*32*32``); e.g. 0.5 -> 0.2526 for a 28 x 28 x 1 image. Rounded to 6
    decimals so that specs stay readable.
    """
    if not (isinstance(eps_ref, (int, float)) and math.isfinite(eps_ref) and eps_ref >= 0):
        raise ValueError(f"eps_ref must be a finite number >= 0, got {eps_ref!r}")
    dims = [int(d) for d in input_shape]
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"input_shape must be positive dimensions such as (C, H, W), got {tuple(input_shape)}")
    if ref_dim < 1:
        raise ValueError(f"ref_dim must be >= 1, got {ref_dim}")
    return round(float(eps_ref) * math.sqrt(math.prod(dims) / ref_dim), 6)
