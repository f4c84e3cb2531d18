"""Chapter P1: intrinsic dataset properties, generalization scaling, robustness and representation dimension.

Reproduces Konz & Mazurowski, "The Effect of Intrinsic Dataset Properties on Generalization: Unraveling
Learning Differences Between Natural and Medical Images", ICLR 2024 (arXiv 2401.08865;
github.com/mazurowski-lab/intrinsic-properties), on the datasets of the offline mirror.

The paper's claims tested here (notebooks ``notebooks/p1/*.md``):

- Fig. 1: medical datasets have a higher label sharpness
  ``K_F = max_{j,k} |y_j - y_k| / ||x_j - x_k||_2`` than natural ones; d_data alone does not separate them.
- Fig. 2: the generalization scaling law ``log L <~ -(1/d_data) log N + log K_F + a``: test loss falls with
  the training-set size N, rises with d_data, and is higher/steeper for medical data.
- Robustness: the loss penalty of an FGSM attack grows with K_F (paper: r = 0.70 over datasets).
- d_repr: the same law in the intrinsic dimension of the learned representation; ``d_repr <~ d_data``.

Protocol (one place, used by every notebook and by ``python -m domaingap.p1``):

- Every task is a *binary* task, as in P1. Images are pooled over the dataset's official splits, converted to
  ONE common format: 28 x 28 px, 1 channel (ITU-R 601 luma for RGB sets), P1's per-image scaling
  ``img * 255 / img.max()`` truncated to uint8, then resized (bilinear, antialiased) and rounded to uint8.
  Models see float pixels in [0, 255] without mean/std normalisation, as in P1.
- A fixed class-balanced test set per task (``test_per_class`` images per class, at most a third of the
  minority class) is held out once; training sets are class-balanced subsets of the rest, nested across N for
  a given seed. N is capped per task by the images that exist (BreastMNIST and RetinaMNIST are small).
- Every training, attack, geometry and representation run is a JSON-able spec computed through
  :func:`domaingap.artefacts.sweep`, so runs are cached atomically and resumable; the device (CUDA when
  available) is never part of a spec.

Array conventions: pooled images are uint8 ``(M, 1, S, S)`` NumPy arrays, labels int64 ``(M,)`` in {0, 1};
model inputs are float32 ``(N, 1, S, S)`` tensors in [0, 255].
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import warnings
import zlib
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

from . import artefacts, data, profiles
from .claims import verdict  # noqa: F401  (re-exported for the notebooks)
from .kernels._validation import DuplicatePointsWarning

PAPER = "P1"
PREPROCESS_VERSION = "p1-gray-maxscale-uint8-v1"  # bump when preprocess() changes
# lib modules each kind of run depends on: a change in any of them invalidates the cached runs
# (the key hashes each named file, not what it imports: a kernel's private modules are listed too)
TRAIN_DEPENDS = ("p1", "data", "models", "training")
ATTACK_DEPENDS = TRAIN_DEPENDS + ("kernels.attacks", "kernels._attack_checks", "kernels._inversion")
GEOMETRY_DEPENDS = ("p1", "data", "kernels.distances", "kernels._knn_core", "kernels._validation",
                    "kernels.intrinsic_dim", "kernels.sharpness")
REPR_DEPENDS = TRAIN_DEPENDS + ("kernels.distances", "kernels._knn_core", "kernels._validation",
                                "kernels.intrinsic_dim")

# Values read off P1's published Fig. 1 (224 px, [0, 255]); K_F in units of 1e-4.
PAPER_FIG1 = {
    "BraTS": ("medical", 10.9, 2.01), "DBC": ("medical", 16.8, 3.10), "OAI": ("medical", 8.5, 3.43),
    "CheXpert": ("medical", 15.3, 1.34), "MURA": ("medical", 10.7, 2.82), "RSNA-IH-CT": ("medical", 10.9, 2.09),
    "Prostate-MRI": ("medical", 5.6, 1.80), "MNIST": ("natural", 9.2, 1.58), "CIFAR-10": ("natural", 16.2, 0.62),
    "SVHN": ("natural", 12.5, 1.02), "ImageNet": ("natural", 17.9, 0.60),
}
# FGSM loss penalty per dataset read off P1's teaser figure (eps = 2 grey levels).
PAPER_FGSM_DLOSS = {"CheXpert": 8.5, "Prostate-MRI": 21.5, "BraTS": 14.5, "RSNA-IH-CT": 6.0, "MURA": 22.0,
                    "DBC": 31.5, "OAI": 24.0, "MNIST": 0.0, "SVHN": 2.7}
PAPER_FGSM_R = 0.70


# ----------------------------------------------------------------------------------------------- tasks

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


# ----------------------------------------------------------------------------------------------- images

def preprocess(x, size: int):
    """P1's image normalisation at the chapter's common format.

    Args:
        x: float tensor ``(N, 1, H, W)`` of grey values in [0, 255].
        size: output side S in pixels.

    Returns:
        uint8 tensor ``(N, 1, S, S)``. Each image is scaled by ``255 / img.max()`` and truncated to uint8, as
        P1's ``MedicalDataset.normalize`` (used for natural datasets too); all-black images stay black. Then it
        is resized to S (bilinear, antialiased; P1 resizes after normalising too) and rounded back to uint8, so
        every image is stored like an 8-bit file and distances between images are exact integers.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 1 or not x.is_floating_point():
        raise ValueError(f"x must be a float (N, 1, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not isinstance(size, int) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    scaled = torch.where(peak > 0, x * (255.0 / peak.clamp_min(1e-12)), torch.zeros_like(x))
    scaled = scaled.clamp_(0, 255).floor_()  # numpy astype(uint8) truncates
    if scaled.shape[-1] != size or scaled.shape[-2] != size:
        scaled = F.interpolate(scaled, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return scaled.round_().clamp_(0, 255).to(torch.uint8)


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
def _pool(dataset: str, classes: tuple[int, int], size: int) -> TaskPool:
    xs, ys, splits, idx = [], [], [], []
    for split in data.info(dataset).split_sizes:
        # the release nearest above `size` (MedMNIST+ 224 px at the paper profile), then P1's scaling and resize
        s = data.load(dataset, split, classes=classes, channels=1, pixel_range=(0, 255),
                      release=data.release_for(dataset, size))
        xs.append(preprocess(s.x, size).numpy())
        ys.append(s.y.numpy())
        splits.append(np.full(len(s), split))
        idx.append(s.indices)
        del s
    pool = TaskPool(Task(dataset, classes), np.concatenate(xs), np.concatenate(ys), np.concatenate(splits),
                    np.concatenate(idx))
    for arr in (pool.x, pool.y):
        arr.setflags(write=False)  # shared by every caller through the cache
    return pool


def task_pool(task: Task, size: int = 28) -> TaskPool:
    """The pooled, preprocessed images of ``task`` (cached in memory per process)."""
    return _pool(task.dataset, tuple(task.classes), int(size))


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


# ----------------------------------------------------------------------------------------------- run specs

def data_spec(task: Task, data_cfg: dict) -> dict:
    """The part of every spec that fixes a task's images and its held-out test set."""
    return {"dataset": task.dataset, "classes": list(task.classes), "size": int(data_cfg["size"]),
            "preprocess": PREPROCESS_VERSION, "test_per_class": int(data_cfg["test_per_class"]),
            "test_fraction_max": float(data_cfg["test_fraction_max"]), "split_seed": int(data_cfg["split_seed"])}


def _split_for(spec: dict) -> tuple[TaskPool, TaskSplit]:
    pool = task_pool(Task(spec["dataset"], tuple(spec["classes"])), spec["size"])
    split = _split_cached(spec["dataset"], tuple(spec["classes"]), spec["size"], spec["test_per_class"],
                          spec["test_fraction_max"], spec["split_seed"])
    return pool, split


@lru_cache(maxsize=64)
def _split_cached(dataset, classes, size, test_per_class, test_fraction_max, split_seed) -> TaskSplit:
    pool = task_pool(Task(dataset, classes), size)
    return task_split(pool.y, test_per_class=test_per_class, test_fraction_max=test_fraction_max, seed=split_seed)


def task_limits(task: Task, data_cfg: dict) -> dict:
    """Pool size, class counts, test size and the largest balanced training set of ``task``."""
    pool, split = _split_for(data_spec(task, data_cfg))
    c = pool.class_counts
    return {"task": task.key, "label": task.label, "domain": task.domain, "pool": len(pool), "class0": int(c[0]),
            "class1": int(c[1]), "n_test": int(len(split.test)), "max_train": split.max_train}


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


# ----------------------------------------------------------------------------------------------- training

def default_device():
    """CUDA when available, else CPU (never stored in a spec)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


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


def build(spec: dict):
    """Untrained model of a training spec (``model`` name plus ``arch`` options such as ``width``/``stem``)."""
    from . import models

    arch = dict(spec.get("arch", {}))
    accepted = inspect.signature(models.build_model).parameters
    unknown = [k for k in arch if k not in accepted]
    if unknown:
        raise ValueError(f"models.build_model does not accept {unknown} (spec arch {arch}); "
                         f"it takes {list(accepted)}")
    return models.build_model(spec["model"], in_channels=1, num_classes=2, image_size=spec["size"], **arch)


def train_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p1_train``: train one model from scratch as P1 does (Adam, cross-entropy,
    no augmentation, last epoch kept) and evaluate it on the task's fixed test set.

    Writes ``model.pt`` (CPU state dict) into ``work``; returns test/train loss, accuracy, balanced accuracy,
    AUC, the per-epoch training loss and timings.
    """
    import torch

    from . import training

    device = default_device()
    x_tr, y_tr, x_te, y_te = run_data(spec)
    torch.manual_seed(spec["seed"])  # the initial weights
    model = build(spec)
    hist = training.fit(model, x_tr.to(device), y_tr.to(device), epochs=spec["epochs"],
                        batch_size=spec["batch_size"], lr=spec["lr"], weight_decay=spec["weight_decay"],
                        optimizer=spec["optimizer"], seed=spec["seed"], progress=False, device=device)
    test = training.evaluate(model, x_te.to(device), y_te.to(device))
    train = training.evaluate(model, x_tr.to(device), y_tr.to(device))
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, work / "model.pt")
    return {"test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "test_balanced_accuracy": test["balanced_accuracy"], "test_auc": test["auc"], "n_test": test["n"],
            "train_loss": train["loss"], "train_accuracy": train["accuracy"], "n_train": train["n"],
            "history_train_loss": hist["train_loss"], "seconds": float(sum(hist["time_s"])),
            "n_params": int(sum(p.numel() for p in model.parameters()))}


def train_sweep(specs: list[dict], progress: bool = True) -> list[dict]:
    """Train (or load from the artefacts) every spec; returns the results in order (each with ``_dir``)."""
    return artefacts.sweep("p1_train", specs, train_run, depends=TRAIN_DEPENDS, progress=progress,
                           desc="P1 training runs")


def trained(spec: dict):
    """The trained model of a training spec (trained now if it is not in the artefacts), in eval mode on
    :func:`default_device`, and its result dict."""
    import torch

    result = artefacts.cached("p1_train", spec, train_run, depends=TRAIN_DEPENDS)
    model = build(spec)
    model.load_state_dict(torch.load(Path(result["_dir"]) / "model.pt", map_location="cpu", weights_only=True))
    return model.to(default_device()).eval(), result


# ----------------------------------------------------------------------------------------------- attacks

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


def attack_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p1_attack``: clean and adversarial test loss/accuracy of one trained model
    for every attack and budget of ``spec`` (untargeted L-inf FGSM as P1; PGD from the clean image, no random
    start, step ``pgd_step_factor * eps / steps``). Returns ``{"rows": [...]}``, one row per (attack, eps)."""
    import torch
    import torch.nn.functional as F

    from .kernels import attacks

    model, _ = trained(spec["train"])
    device = default_device()
    _, _, x_te, y_te = run_data(spec["train"])
    bs = spec["batch_size"]
    batches = [(xb.to(device), yb.to(device)) for xb, yb in zip(x_te.split(bs), y_te.split(bs))]
    n = len(y_te)

    def totals(xa: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            logits = model(xa).double()
        return np.array([float(F.cross_entropy(logits, y, reduction="sum")), float((logits.argmax(1) == y).sum())])

    clean = sum(totals(xb, yb) for xb, yb in batches) / n
    rows = []
    for name, budgets in spec["attacks"].items():
        for eps in budgets:
            tot = np.zeros(2)
            for xb, yb in batches:
                if eps == 0:
                    xa = xb  # no budget: the clean images (PGD rejects a zero step)
                elif name == "fgsm":
                    xa = attacks.fgsm(model, xb, yb, eps, input_range=(0, 255))
                elif name == "pgd":
                    steps = spec["pgd_steps"]
                    xa = attacks.pgd(model, xb, yb, eps, steps=steps, step_size=spec["pgd_step_factor"] * eps / steps,
                                     norm="linf", random_start=False, input_range=(0, 255))
                else:
                    raise ValueError(f"unknown attack {name!r}; expected 'fgsm' or 'pgd'")
                tot += totals(xa, yb)
            adv = tot / n
            rows.append({"attack": name, "eps": eps, "clean_loss": clean[0], "clean_accuracy": clean[1],
                         "adv_loss": adv[0], "adv_accuracy": adv[1], "delta_loss": adv[0] - clean[0],
                         "delta_accuracy": clean[1] - adv[1]})
    return {"rows": rows}


def attack_sweep(specs: list[dict], progress: bool = True) -> list[dict]:
    return artefacts.sweep("p1_attack", specs, attack_run, depends=ATTACK_DEPENDS, progress=progress,
                           desc="P1 attacks")


# ----------------------------------------------------------------------------------------------- geometry

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


def geometry_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p1_geometry``: d_data (MLE, k as P1, and TwoNN) and K_F (exact over all pairs,
    and P1's sampled estimator) of one class-balanced subsample of a task's training pool.

    The pair of images that defines the exact K_F is returned as pool indices (``kf_i``, ``kf_j``)."""
    import torch

    from .kernels import intrinsic_dim, sharpness

    pool, split = _split_for(spec)
    idx = subsample(split, pool.y, spec["n"], spec["rep"])
    x = torch.from_numpy(pool.x[idx])  # uint8: the kernels form exact integer differences
    y = torch.from_numpy(pool.y[idx])
    with warnings.catch_warnings():
        # exact duplicate images are skipped by the estimators (as in P1's code); counted below instead
        warnings.simplefilter("ignore", DuplicatePointsWarning)
        mle = float(intrinsic_dim.mle(x, k=spec["k"]))
        twonn = float(intrinsic_dim.twonn(x))
    # a duplicated image with two labels makes K_F infinite: keep the run and report it
    pair = sharpness.label_sharpness(x, y, return_pair=True, on_duplicate="inf")
    m = min(spec["kf_sample_images"], len(idx))
    kf_sampled = sharpness.label_sharpness_sampled(x, y, n_images=m, seed=spec["rep"])
    flat = pool.x[idx].reshape(len(idx), -1)
    duplicates = len(idx) - len(np.unique(flat, axis=0))
    return {"mle": mle, "twonn": twonn, "kf": float(pair.k_f), "kf_sampled": float(kf_sampled),
            "kf_i": int(idx[pair.i]), "kf_j": int(idx[pair.j]), "kf_distance": float(pair.distance),
            "duplicates": int(duplicates)}


def geometry_sweep(specs: list[dict], progress: bool = True) -> list[dict]:
    return artefacts.sweep("p1_geometry", specs, geometry_run, depends=GEOMETRY_DEPENDS, progress=progress,
                           desc="P1 d_data and K_F")


# ----------------------------------------------------------------------------------------------- d_repr

def repr_specs(train_specs_: list[dict], repr_cfg: dict) -> list[dict]:
    """One spec per trained model: intrinsic dimension of its penultimate representation of its training set."""
    return [{"train": s, "k": int(repr_cfg["k"])} for s in train_specs_]


def representation(model, x, batch_size: int = 256):
    """P1's penultimate representation ``(N, F)``: ResNet ``layer4`` output flattened before the average pool,
    VGG second classifier ``Linear`` before its ReLU (:func:`domaingap.models.penultimate`)."""
    import torch

    from . import models

    with torch.no_grad():
        return models.penultimate(model, x, resnet_layer="layer4", batch_size=batch_size)


def repr_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p1_repr``: d_repr by TwoNN (P1's estimator) and MLE (k of the spec) of the
    trained model's representation of its own training set (as P1's ``estimate_reprdim_allmodels.py``), and
    d_data of the same training images (``data_twonn``, ``data_mle``)."""
    import torch

    from .kernels import intrinsic_dim

    model, _ = trained(spec["train"])
    x_tr, _, _, _ = run_data(spec["train"])
    z = representation(model, x_tr.to(default_device())).double()
    k = min(spec["k"], z.shape[0] - 1)
    out = {"features": int(z.shape[1]), "n_points": int(z.shape[0])}
    # d_data of the same training images, so that d_repr <~ d_data compares estimates on the same points
    for prefix, pts in (("", z), ("data_", x_tr.to(torch.uint8))):
        distinct = int(torch.unique(pts.flatten(1), dim=0).shape[0])
        out[f"{prefix}distinct"] = distinct
        for name, fn, need in (("twonn", intrinsic_dim.twonn, 3), ("mle", lambda p: intrinsic_dim.mle(p, k=k), k + 1)):
            key = prefix + name
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DuplicatePointsWarning)
                    # dead representations (all rows equal) have no dimension: NaN rather than a failed sweep
                    out[key] = float(fn(pts)) if distinct >= need else math.nan
            except ValueError as err:  # e.g. every neighbour of a point is a duplicate
                out[key], out[f"{key}_error"] = math.nan, str(err)
    return out


def repr_sweep(specs: list[dict], progress: bool = True) -> list[dict]:
    return artefacts.sweep("p1_repr", specs, repr_run, depends=REPR_DEPENDS, progress=progress,
                           desc="P1 d_repr")


# ----------------------------------------------------------------------------------------------- statistics

def bootstrap_ci(values: Sequence[float], stat: Callable = np.mean, *, level: float = 0.95, n_boot: int = 2000,
                 seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat`` over ``values`` (``scipy.stats.bootstrap``); NaN for < 2 values."""
    from scipy import stats

    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) < 2 or np.all(v == v[0]):
        c = float(stat(v)) if len(v) else math.nan
        return (c, c) if len(v) >= 2 else (math.nan, math.nan)
    res = stats.bootstrap((v,), stat, confidence_level=level, n_resamples=n_boot, method="percentile",
                          random_state=np.random.default_rng(seed), vectorized=False)
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def grouped_bootstrap_ci(values: Sequence[float], groups: Sequence[Any], *, level: float = 0.95,
                         n_boot: int = 2000, seed: int = 0) -> tuple[float, float, float]:
    """Mean and two-stage bootstrap CI of values nested in groups (e.g. subsamples within class pairs).

    Each resample draws groups with replacement, then values with replacement within each drawn group, and
    averages the group means; so the interval reflects both the spread between class pairs and the
    sampling noise within a pair. With one group it reduces to the ordinary bootstrap of the mean.
    Returns ``(mean of group means, low, high)``.
    """
    v = np.asarray(values, dtype=float)
    g = np.asarray(groups)
    if v.shape != g.shape or v.ndim != 1 or len(v) == 0:
        raise ValueError(f"values and groups must be 1-D of equal non-zero length, got {v.shape} and {g.shape}")
    members = [v[g == u] for u in dict.fromkeys(g.tolist())]
    centre = float(np.mean([m.mean() for m in members]))
    rng = np.random.default_rng(seed)
    boot = np.empty(n_boot)
    for b in range(n_boot):
        picks = rng.integers(len(members), size=len(members))
        boot[b] = np.mean([members[p][rng.integers(len(members[p]), size=len(members[p]))].mean() for p in picks])
    alpha = (1 - level) / 2
    return centre, float(np.quantile(boot, alpha)), float(np.quantile(boot, 1 - alpha))


def correlation(x: Sequence[float], y: Sequence[float], *, level: float = 0.95, n_boot: int = 2000,
                seed: int = 0) -> dict:
    """Pearson r and Spearman rho of paired values with scipy p-values (two-sided) and paired percentile
    bootstrap CIs (resampling the pairs). NaN pairs are dropped; ``n`` is the number of pairs used."""
    from scipy import stats

    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D of equal length, got shapes {x.shape} and {y.shape}")
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    out: dict[str, float] = {"n": int(len(x))}
    if len(x) < 3 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return {**out, **{k: math.nan for k in ("r", "r_p", "r_low", "r_high", "rho", "rho_p", "rho_low",
                                                   "rho_high")}}
    pr = stats.pearsonr(x, y)
    sr = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    rb, sb = [], []
    for _ in range(n_boot):
        i = rng.integers(len(x), size=len(x))
        if np.ptp(x[i]) == 0 or np.ptp(y[i]) == 0:
            continue  # a degenerate resample has no correlation
        rb.append(np.corrcoef(x[i], y[i])[0, 1])
        sb.append(stats.spearmanr(x[i], y[i]).statistic)
    a = (1 - level) / 2
    return {**out, "r": float(pr.statistic), "r_p": float(pr.pvalue),
            "r_low": float(np.nanquantile(rb, a)), "r_high": float(np.nanquantile(rb, 1 - a)),
            "rho": float(sr.statistic), "rho_p": float(sr.pvalue),
            "rho_low": float(np.nanquantile(sb, a)), "rho_high": float(np.nanquantile(sb, 1 - a))}




def domain_test(values: Sequence[float], domains: Sequence[str], *, n_boot: int = 4000, seed: int = 0) -> dict:
    """Medical vs natural comparison of a per-task statistic.

    Returns the domain means, their ratio (medical / natural) with a bootstrap CI (tasks resampled within
    each domain), the one-sided Mann-Whitney U p-value for "medical > natural" and its AUC
    (U / (n_med n_nat): the probability that a random medical task exceeds a random natural one), and the
    Welch t-test on the values (two-sided).
    """
    from scipy import stats

    v = np.asarray(values, dtype=float)
    d = np.asarray(domains)
    med, nat = v[d == "medical"], v[d == "natural"]
    if len(med) < 2 or len(nat) < 2:
        raise ValueError(f"need >= 2 tasks per domain, got {len(med)} medical and {len(nat)} natural")
    u = stats.mannwhitneyu(med, nat, alternative="greater")
    u2 = stats.mannwhitneyu(med, nat, alternative="two-sided")
    t = stats.ttest_ind(med, nat, equal_var=False)
    rng = np.random.default_rng(seed)
    ratios = [rng.choice(med, len(med)).mean() / rng.choice(nat, len(nat)).mean() for _ in range(n_boot)]
    return {"n_medical": int(len(med)), "n_natural": int(len(nat)), "mean_medical": float(med.mean()),
            "mean_natural": float(nat.mean()), "ratio": float(med.mean() / nat.mean()),
            "ratio_low": float(np.quantile(ratios, 0.025)), "ratio_high": float(np.quantile(ratios, 0.975)),
            "auc": float(u.statistic / (len(med) * len(nat))), "mwu_p_greater": float(u.pvalue),
            "mwu_p_two_sided": float(u2.pvalue), "welch_t": float(t.statistic), "welch_p": float(t.pvalue),
            "min_medical": float(med.min()), "max_medical": float(med.max()),
            "min_natural": float(nat.min()), "max_natural": float(nat.max())}


def fit_ols(formula: str, frame, groups: str | None = "task"):
    """OLS fit (``statsmodels.formula.api.ols``) with cluster-robust standard errors by ``groups`` (runs of
    one task are not independent) and t-based inference with G - 1 degrees of freedom. Returns the results."""
    import statsmodels.formula.api as smf

    model = smf.ols(formula, data=frame)
    if groups is None:
        return model.fit(use_t=True)
    codes = np.unique(frame.loc[model.data.row_labels, groups].to_numpy(), return_inverse=True)[1]
    return model.fit(cov_type="cluster", cov_kwds={"groups": codes}, use_t=True)


def coef_table(result, level: float = 0.95):
    """Coefficients, CIs and p-values of a statsmodels result as a DataFrame."""
    import pandas as pd

    ci = result.conf_int(alpha=1 - level)
    return pd.DataFrame({"coef": result.params, "low": ci[0], "high": ci[1], "p": result.pvalues})


def wilson_fraction(k: int, n: int, level: float = 0.95) -> tuple[float, float, float]:
    """Fraction k/n with its Wilson score interval (``statsmodels`` ``proportion_confint``)."""
    from statsmodels.stats.proportion import proportion_confint

    if n <= 0:
        return math.nan, math.nan, math.nan
    lo, hi = proportion_confint(k, n, alpha=1 - level, method="wilson")
    return k / n, float(lo), float(hi)


# ----------------------------------------------------------------------------------------------- tables

def results_frame(specs: list[dict], results: list[dict]):
    """One row per run: the spec's identifying fields and the result's scalars."""
    import pandas as pd

    rows = []
    for s, r in zip(specs, results):
        base = s.get("train", s)
        row = {k: base[k] for k in ("task", "domain", "dataset", "model", "n", "seed") if k in base}
        if "rep" in s:
            row["rep"] = s["rep"]
        row.update({k: v for k, v in r.items() if not k.startswith("_") and np.isscalar(v)})
        rows.append(row)
    return pd.DataFrame(rows)


# ----------------------------------------------------------------------------------------------- CLI

def configs(profile: str) -> dict[str, dict]:
    """The chapter's profile sections at ``profile``."""
    return {name: profiles.get(f"p1_{name}", profile) for name in ("data", "fig1", "fig2", "fig3", "fig4")}


def run_all(profile: str, only: Sequence[str] = ("geometry", "train", "attack", "repr"), progress: bool = True) -> dict:
    """Every sweep of the chapter at ``profile`` (what the notebooks compute), without the notebooks."""
    cfg = configs(profile)
    task_list = tasks(cfg["data"])
    done = {}
    if "geometry" in only:
        done["geometry"] = len(geometry_sweep(geometry_specs(task_list, cfg["data"], cfg["fig1"]), progress))
    specs = train_specs(cfg["data"], cfg["fig2"], task_list)
    if "train" in only:
        done["train"] = len(train_sweep(specs, progress))
    if "attack" in only:
        done["attack"] = len(attack_sweep(attack_specs(specs, cfg["fig3"]), progress))
    if "repr" in only:
        done["repr"] = len(repr_sweep(repr_specs(specs, cfg["fig4"]), progress))
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m domaingap.p1",
                                     description="Run every P1 sweep (geometry, training, attacks, d_repr) at a "
                                                 "profile; results go to the artefacts folder, where the notebooks "
                                                 "find them. CUDA is used when available.")
    parser.add_argument("--profile", default="default", choices=profiles.PROFILES)
    parser.add_argument("--only", default="geometry,train,attack,repr",
                        help="comma-separated subset of geometry,train,attack,repr")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in ("geometry", "train", "attack", "repr")]
    if bad:
        parser.error(f"unknown sweep(s) {bad}; choose from geometry, train, attack, repr")
    print(run_all(args.profile, only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
