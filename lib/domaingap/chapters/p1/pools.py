"""P1's images and splits: every task's pooled images in ONE common format, its fixed test set and its nested
class-balanced training sets.

- :func:`task_pool`: all images of a task over the dataset's official splits, uint8 ``(M, 1, S, S)``, in P1's
  format (:func:`domaingap.data.formats.p1_format`: per-image scaling ``img * 255 / img.max()`` truncated to
  uint8, then a bilinear antialiased resize to ``S`` px) after ITU-R 601 luma for RGB sets.
- :func:`task_split`: a class-balanced test set held out once per task; :func:`train_indices`: training sets
  nested across N for one seed.
- :func:`data_spec`: the part of every run spec that fixes a task's images and test set;
  :func:`run_data`: the tensors of a training spec.

These helpers are called by the run functions (:mod:`.runs`), so their source is part of the runs' keys.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Sequence

import numpy as np

from ... import data
from ...data.formats import P1_FORMAT_VERSION, p1_format
from .tasks import Task

PREPROCESS_VERSION = "p1-gray-" + P1_FORMAT_VERSION  # luma, then p1_format; bump when _pool() changes

__all__ = ["PREPROCESS_VERSION", "TaskPool", "TaskSplit", "data_spec", "geometry_indices", "run_data",
           "subsample", "task_limits", "task_pool", "task_split", "test_per_class_for", "train_indices"]


@dataclass(frozen=True)
class TaskPool:
    """All images of a task, pooled over the official splits, in the chapter's format.

    x: uint8 ``(M, 1, S, S)``; y: int64 ``(M,)`` in {0, 1}; split: official split of each image (str ``(M,)``);
    index: position in that split.
    """

    task: Task
    x: np.ndarray
    y: np.ndarray
    split: np.ndarray
    index: np.ndarray

    def __len__(self) -> int:
        return len(self.y)

    @property
    def class_counts(self) -> np.ndarray:
        return np.bincount(self.y, minlength=2)


@lru_cache(maxsize=8)
def _pool(dataset: str, groups: tuple[tuple[int, ...], ...], size: int) -> TaskPool:
    xs, ys, splits, idx = [], [], [], []
    for split in data.info(dataset).split_sizes:
        # the release nearest above `size` (MedMNIST+ 224 px at the paper profile), then P1's scaling and resize
        s = data.load(dataset, split, classes=groups, channels=1, pixel_range=(0, 255),
                      release=data.release_for(dataset, size))
        xs.append(p1_format(s.x, size).numpy())
        ys.append(s.y.numpy())
        splits.append(np.full(len(s), split))
        idx.append(s.indices)
        del s
    pool = TaskPool(Task(dataset, groups), np.concatenate(xs), np.concatenate(ys), np.concatenate(splits),
                    np.concatenate(idx))
    for arr in (pool.x, pool.y):
        arr.setflags(write=False)  # shared by every caller through the cache
    return pool


def task_pool(task: Task, size: int = 28) -> TaskPool:
    """The pooled, preprocessed images of ``task`` (cached in memory per process)."""
    return _pool(task.dataset, task.groups, int(size))


@dataclass(frozen=True)
class TaskSplit:
    """Fixed held-out test set of a task and the pool its training sets are drawn from (indices into the pool)."""

    test: np.ndarray
    train_pool: np.ndarray
    test_per_class: int
    max_train: int  # largest class-balanced training set the pool allows (twice its smaller class)


def test_per_class_for(counts: Sequence[int], test_per_class: int, test_fraction_max: float) -> int:
    """Test images per class: ``test_per_class``, but at most ``test_fraction_max`` of the smaller class."""
    minority = int(min(counts))
    cap = int(math.floor(test_fraction_max * minority))
    if cap < 1:
        raise ValueError(f"a class has only {minority} images: cannot hold out a test set")
    return int(min(test_per_class, cap))


def task_split(y: np.ndarray, *, test_per_class: int, test_fraction_max: float, seed: int) -> TaskSplit:
    """Hold out a class-balanced test set once per task; the rest is the training pool.

    Args:
        y: int64 labels ``(M,)`` in {0, 1} of the task pool.
        test_per_class: wanted test images per class.
        test_fraction_max: at most this fraction of the smaller class goes to the test set.
        seed: split seed (fixed per chapter, independent of the run seeds).
    """
    y = np.asarray(y)
    counts = np.bincount(y, minlength=2)
    if len(counts) != 2 or counts.min() < 2:
        raise ValueError(f"y must hold binary labels with >= 2 images per class, got class counts {counts.tolist()}")
    per = test_per_class_for(counts, test_per_class, test_fraction_max)
    test = data.sample_indices(y, 2 * per, seed=seed, balanced=True)
    rest = np.setdiff1d(np.arange(len(y)), test)
    max_train = 2 * int(np.bincount(y[rest], minlength=2).min())
    return TaskSplit(test=test, train_pool=rest, test_per_class=per, max_train=max_train)


def train_indices(split: TaskSplit, y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Class-balanced training set of ``n`` images (pool indices, sorted) drawn from ``split.train_pool``.

    For a fixed seed the sets are nested across n (each class takes a prefix of one seeded permutation), so a
    larger training set only adds images.
    """
    if n > split.max_train or n < 2 or n % 2:
        raise ValueError(f"n={n} must be even and in 2..{split.max_train} (the task's class-balanced maximum)")
    pos = data.sample_indices(np.asarray(y)[split.train_pool], n, seed=seed, balanced=True)
    return split.train_pool[pos]


def subsample(split: TaskSplit, y: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Class-balanced subsample of ``n`` training-pool images for the geometry statistics (pool indices)."""
    return train_indices(split, y, n, seed)


def geometry_indices(split: TaskSplit, y: np.ndarray, n: int | str, seed: int) -> np.ndarray:
    """Pool indices of a geometry run: ``n = "full"`` is the task's whole training pool (every image but the
    held-out test set, with its own class balance: P1 measures d_data on the training set); an int ``n`` is a
    class-balanced subsample (:func:`subsample`)."""
    if n == "full":
        return split.train_pool
    return subsample(split, y, int(n), seed)


def data_spec(task: Task, data_cfg: dict) -> dict:
    """The part of every spec that fixes a task's images and its held-out test set."""
    return {"dataset": task.dataset, "classes": [list(g) for g in task.groups], "size": int(data_cfg["size"]),
            "preprocess": PREPROCESS_VERSION, "test_per_class": int(data_cfg["test_per_class"]),
            "test_fraction_max": float(data_cfg["test_fraction_max"]), "split_seed": int(data_cfg["split_seed"])}


def _split_for(spec: dict) -> tuple[TaskPool, TaskSplit]:
    groups = tuple(tuple(int(c) for c in g) for g in spec["classes"])
    pool = task_pool(Task(spec["dataset"], groups), spec["size"])
    split = _split_cached(spec["dataset"], groups, spec["size"], spec["test_per_class"],
                          spec["test_fraction_max"], spec["split_seed"])
    return pool, split


@lru_cache(maxsize=64)
def _split_cached(dataset, groups, size, test_per_class, test_fraction_max, split_seed) -> TaskSplit:
    pool = task_pool(Task(dataset, groups), size)
    return task_split(pool.y, test_per_class=test_per_class, test_fraction_max=test_fraction_max, seed=split_seed)


def task_limits(task: Task, data_cfg: dict) -> dict:
    """Pool size, class counts, test size and the largest balanced training set of ``task``."""
    pool, split = _split_for(data_spec(task, data_cfg))
    c = pool.class_counts
    return {"task": task.key, "label": task.label, "dataset": task.dataset, "domain": task.domain,
            "radiology": task.radiology, "clinical": task.clinical, "pool": len(pool), "class0": int(c[0]),
            "class1": int(c[1]), "n_test": int(len(split.test)), "train_pool": int(len(split.train_pool)),
            "max_train": split.max_train}


def run_data(spec: dict):
    """Training and test tensors of a run: ``x_train (N, 1, S, S)``, ``y_train (N,)``, ``x_test``, ``y_test``
    (float32 in [0, 255] and int64, on the CPU)."""
    import torch

    pool, split = _split_for(spec)
    tr = train_indices(split, pool.y, spec["n"], spec["seed"])
    te = split.test

    def tensors(idx):
        return torch.from_numpy(pool.x[idx]).float(), torch.from_numpy(pool.y[idx]).long()

    return (*tensors(tr), *tensors(te))
