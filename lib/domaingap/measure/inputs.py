"""Reading a user's labelled images: arrays, an ImageFolder directory, a MedMNIST-layout ``.npz``, or a registered
dataset name, into one :class:`ImageSet` (images grouped by shape, labels, class names, notes).

Every problem is a ``ValueError`` naming the value and what was expected: an empty folder, a single class, mixed
image sizes without a target size (the sizes found and how to fix it), unreadable files (named), multi-label or
mismatched labels, negative or non-finite pixels. Grey/RGB mixes are converted (to luma with ``gray=True``,
else grey images to RGB) and the conversion is recorded in ``notes``.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import data

log = logging.getLogger(__name__)

NPZ_SPLITS = ("train", "val", "test")
MAX_NAMED = 10  # unreadable files named in an error message

__all__ = ["ImageSet", "from_arrays", "read_folder", "read_npz", "read_path", "read_registered", "restrict_task"]


@dataclass
class ImageSet:
    """Labelled images before the P1 format.

    groups: {(C, H, W): (positions (m,), images (m, C, H, W), uint8 or float)}: every image once, by shape;
    labels: int64 (N,) in 0..K-1; classes: K names; dtype: the input dtype(s); notes: what was converted.
    """

    groups: dict[tuple[int, int, int], tuple[np.ndarray, np.ndarray]]
    labels: np.ndarray
    classes: tuple[str, ...]
    name: str
    source: str
    dtype: str
    notes: list[str] = field(default_factory=list)
    registered: str | None = None  # the registry name when read from a registered dataset
    release: int | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def shapes(self) -> dict[tuple[int, int, int], int]:
        return {shape: len(pos) for shape, (pos, _) in self.groups.items()}

    def select(self, keep: np.ndarray) -> "ImageSet":
        """The images at the sorted positions ``keep`` (renumbered 0..len(keep)-1)."""
        keep = np.asarray(keep, dtype=np.int64)
        new_pos = np.full(len(self.labels), -1, dtype=np.int64)
        new_pos[keep] = np.arange(len(keep))
        groups = {}
        for shape, (pos, arr) in self.groups.items():
            mask = new_pos[pos] >= 0
            if mask.any():
                groups[shape] = (new_pos[pos[mask]], arr[mask])
        return ImageSet(groups, self.labels[keep], self.classes, self.name, self.source, self.dtype,
                        list(self.notes), self.registered, self.release)


# ----------------------------------------------------------------------------------------------- labels

def _labels(labels: Any, n: int, classes: Sequence[str] | None) -> tuple[np.ndarray, tuple[str, ...]]:
    try:
        import torch

        if isinstance(labels, torch.Tensor):
            labels = labels.detach().cpu().numpy()
    except ImportError:  # pragma: no cover - torch is a dependency
        pass
    y = np.asarray(labels)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"labels must have shape (N,) or (N, 1), one class per image; got shape {y.shape} "
                         "(multi-label data have no label sharpness in P1's sense: pick one label per image)")
    if len(y) != n:
        raise ValueError(f"got {n} images but {len(y)} labels; expected one label per image")
    if y.dtype.kind == "f":
        if not np.all(np.isfinite(y)) or not np.all(y == np.round(y)):
            raise ValueError("labels must be class ids (integers) or class names; got non-integer floats")
        y = y.astype(np.int64)
    values, codes = np.unique(y, return_inverse=True)
    if classes is not None:
        classes = tuple(str(c) for c in classes)
        if y.dtype.kind not in "iu":
            raise ValueError(f"classes= names integer labels; these labels are {y.dtype} ({values[:5].tolist()})")
        if values.min() < 0 or values.max() >= len(classes):
            raise ValueError(f"labels take values {values.min()}..{values.max()}, but {len(classes)} class names "
                             f"were given ({list(classes)})")
        names = tuple(classes[int(v)] for v in values)
    else:
        names = tuple(str(v) for v in values.tolist())
    return codes.reshape(-1).astype(np.int64), names


def restrict_task(images: ImageSet, task: Sequence[Any] | str | None) -> ImageSet:
    """Keep two classes, given by name (first) or by index into ``images.classes``, relabelled 0 and 1."""
    if task is None:
        return images
    items = [t.strip() for t in task.split(",")] if isinstance(task, str) else list(task)
    chosen = []
    for item in items:
        text = str(item)
        if text in images.classes:
            chosen.append(images.classes.index(text))
        elif text.lstrip("-").isdigit() and 0 <= int(text) < len(images.classes):
            chosen.append(int(text))
        else:
            raise ValueError(f"task class {item!r} is neither a class name ({', '.join(images.classes)}) nor an index "
                             f"0..{len(images.classes) - 1}")
    if len(chosen) != 2 or chosen[0] == chosen[1]:
        raise ValueError(f"task must name two different classes (e.g. 'a,b' or '0,1'); got {task!r}")
    keep = np.flatnonzero(np.isin(images.labels, chosen))
    out = images.select(keep)
    out.labels = np.where(out.labels == chosen[0], 0, 1).astype(np.int64)
    out.classes = (images.classes[chosen[0]], images.classes[chosen[1]])
    out.notes.append(f"restricted to the task {out.classes[0]} (label 0) vs {out.classes[1]} (label 1)")
    return out


# ----------------------------------------------------------------------------------------------- arrays

def _as_nchw(images: Any) -> np.ndarray:
    """(N, C, H, W) or (N, H, W[, C]) -> (N, C, H, W); C in {1, 3} (RGBA's alpha and a 2nd grey channel dropped
    by the caller)."""
    try:
        import torch

        if isinstance(images, torch.Tensor):
            images = images.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    x = np.asarray(images)
    if x.dtype == object or x.dtype.kind not in "biuf":
        raise ValueError(f"images must be a numeric array (uint8 or float), got dtype {x.dtype}")
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[1] in (1, 3, 4) and x.shape[-1] not in (1, 3, 4):
            return x
        if x.shape[-1] in (1, 3, 4) and x.shape[1] not in (1, 3, 4):
            return x.transpose(0, 3, 1, 2)
        if x.shape[1] in (1, 3, 4):
            return x  # ambiguous tiny images: channels first, as torch
    raise ValueError(f"images must have shape (N, C, H, W) or (N, H, W[, C]) with C = 1 (grey), 3 (RGB) or 4 (RGBA); "
                     f"got shape {x.shape}")


def _check_pixels(x: np.ndarray, what: str) -> None:
    if x.dtype.kind == "f":
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what} contain NaN or infinite pixels")
    if x.size and x.min() < 0:
        raise ValueError(f"{what} have negative pixels (minimum {x.min():g}); expected raw pixel values (uint8, or "
                         "floats in [0, 1] or [0, 255]), not mean/std-normalised ones")


def from_arrays(images: Any, labels: Any, *, classes: Sequence[str] | None = None, name: str = "dataset",
                source: str = "arrays") -> ImageSet:
    """An :class:`ImageSet` from one array ``(N, C, H, W)`` / ``(N, H, W[, C])`` or a sequence of per-image
    arrays ``(H, W)``, ``(H, W, C)`` or ``(C, H, W)`` (sizes and channels may differ)."""
    notes: list[str] = []
    if isinstance(images, (list, tuple)):
        per = [_per_image(im, i) for i, im in enumerate(images)]
        n = len(per)
        dtype = ",".join(sorted({str(np.asarray(im).dtype) for im in images})) or "none"
        buckets: dict[tuple, list[int]] = {}
        for i, im in enumerate(per):
            buckets.setdefault(im.shape, []).append(i)
        groups = {shape: (np.asarray(idx, dtype=np.int64), np.stack([per[i] for i in idx]).astype(np.float32))
                  for shape, idx in buckets.items()}
    else:
        x = _as_nchw(images)
        n = x.shape[0]
        dtype = str(x.dtype)
        if x.shape[1] == 4:
            x = x[:, :3]
            notes.append("RGBA images: the alpha channel was dropped")
        if x.dtype.kind == "b":
            x = x.astype(np.uint8)
        # kept in its dtype (uint8 stays uint8): converted to float in chunks by the P1 formatting
        groups = {tuple(x.shape[1:]): (np.arange(n, dtype=np.int64), x)}
    if n == 0:
        raise ValueError("no images were given (expected at least a few dozen labelled images)")
    for _, arr in groups.values():
        _check_pixels(arr, "the images")
    y, names = _labels(labels, n, classes)
    return ImageSet(groups, y, names, name, source, dtype, notes)


def _per_image(im: Any, i: int) -> np.ndarray:
    a = np.asarray(im)
    if a.ndim == 2:
        return a[None]
    if a.ndim == 3:
        if a.shape[0] in (1, 3) and a.shape[-1] not in (1, 3, 4):
            return a
        if a.shape[-1] in (1, 3, 4):
            return a.transpose(2, 0, 1)[:3]
    raise ValueError(f"image {i} has shape {a.shape}; expected (H, W), (H, W, C) or (C, H, W) with C = 1 or 3")


# ----------------------------------------------------------------------------------------------- files

def _open_image(path: str):
    """PIL -> float32 (C, H, W) with C in {1, 3}, and a note on a conversion ('' when none)."""
    from PIL import Image

    with Image.open(path) as img:
        img.load()
        mode = img.mode
        note = ""
        if mode in ("L", "I", "I;16", "I;16B", "I;16L", "F"):
            arr = np.asarray(img, dtype=np.float32)[None]
        elif mode == "1":
            arr = np.asarray(img.convert("L"), dtype=np.float32)[None]
        elif mode == "LA":
            arr = np.asarray(img.convert("L"), dtype=np.float32)[None]
            note = "alpha dropped"
        elif mode == "RGB":
            arr = np.asarray(img, dtype=np.float32).transpose(2, 0, 1)
        else:  # P, RGBA, CMYK, YCbCr, ...
            note = "alpha dropped" if mode in ("RGBA", "PA") or "transparency" in img.info else f"{mode} -> RGB"
            arr = np.asarray(img.convert("RGB"), dtype=np.float32).transpose(2, 0, 1)
    return np.ascontiguousarray(arr), mode, note


def read_folder(root: str | Path, *, progress: bool = True) -> ImageSet:
    """An ImageFolder directory ``root/<class>/<image>`` (read with ``torchvision.datasets.ImageFolder``; class
    names are the folder names, in ImageFolder's sorted order)."""
    from torchvision import datasets
    from tqdm.std import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets (TqdmWarning)

    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root} is not a folder")
    if not any(root.iterdir()):
        raise ValueError(f"folder {root} is empty; expected the ImageFolder layout {root}/<class>/<image>.png")
    try:
        folder = datasets.ImageFolder(str(root), loader=_open_image)
    except FileNotFoundError as err:
        raise ValueError(f"folder {root} is not an ImageFolder with images: {err}. Expected one sub-folder per class "
                         f"holding image files ({', '.join(_extensions())})") from None
    if len(folder.classes) < 2:
        raise ValueError(f"folder {root} has a single class ({folder.classes[0]!r}, {len(folder.samples)} images); "
                         "label sharpness compares classes: give at least two class folders")
    per, labels, bad, modes, notes = [], [], [], Counter(), Counter()
    for i in tqdm(range(len(folder.samples)), desc=f"reading {root.name}", disable=not progress, leave=False):
        path, label = folder.samples[i]
        try:
            (arr, mode, note), _ = folder[i]
        except Exception as err:  # noqa: BLE001 - every unreadable file is named below
            bad.append(f"{Path(path).relative_to(root)} ({type(err).__name__}: {err})")
            continue
        per.append(arr)
        labels.append(label)
        modes[mode] += 1
        if note:
            notes[note] += 1
    if bad:
        listed = "; ".join(bad[:MAX_NAMED]) + (f"; and {len(bad) - MAX_NAMED} more" if len(bad) > MAX_NAMED else "")
        raise ValueError(f"{len(bad)} of {len(folder.samples)} image files in {root} cannot be read: {listed}. "
                         "Remove or re-save them")
    out = from_arrays(per, np.asarray(labels), classes=folder.classes, name=root.name, source=str(root))
    out.dtype = "PIL modes " + ", ".join(f"{m} x{c}" for m, c in sorted(modes.items()))
    out.notes += [f"{c} images: {what}" for what, c in sorted(notes.items())]
    return out


def _extensions() -> tuple[str, ...]:
    from torchvision.datasets.folder import IMG_EXTENSIONS

    return IMG_EXTENSIONS


def read_npz(path: str | Path, *, split: str = "all", classes: Sequence[str] | None = None) -> ImageSet:
    """A ``.npz`` in MedMNIST's layout: ``train_images`` / ``train_labels`` and optionally ``val_*``, ``test_*``.
    ``split="all"`` pools every split present; else one of them. Class names come from ``classes``, else from the
    medmnist package's table when the file is named like a MedMNIST file (``breastmnist.npz``,
    ``breastmnist_64.npz``), else they are the label values."""
    path = Path(path)
    with np.load(path) as z:
        keys = sorted(z.files)
        present = [s for s in NPZ_SPLITS if f"{s}_images" in keys and f"{s}_labels" in keys]
        if not present:
            raise ValueError(f"{path} has keys {keys}; expected MedMNIST's layout: train_images and train_labels "
                             "(optionally val_* and test_*)")
        if split == "all":
            chosen = present
        elif split in present:
            chosen = [split]
        else:
            raise ValueError(f"split {split!r} is not in {path}; it has {present + ['all']}")
        xs = [_as_nchw(z[f"{s}_images"]) for s in chosen]
        ys = [np.asarray(z[f"{s}_labels"]) for s in chosen]
    shapes = {x.shape[1:] for x in xs}
    if len(shapes) > 1:
        raise ValueError(f"the splits of {path} hold images of different shapes {sorted(shapes)}")
    for s, y in zip(chosen, ys):
        if y.ndim == 2 and y.shape[1] > 1:
            raise ValueError(f"{path}: {s}_labels has shape {y.shape} (multi-label); expected one label per image")
    if classes is None:
        flag = path.stem.split("_")[0].lower()
        try:
            info = data.medmnist_info().get(flag)
        except ImportError:
            info = None
        if info is not None and "label" in info:
            classes = [info["label"][str(i)] for i in range(len(info["label"]))]
    y = np.concatenate([y.reshape(len(y), -1) for y in ys])
    out = from_arrays(np.concatenate(xs), y, classes=classes, name=path.stem, source=str(path))
    if split == "all" and len(chosen) > 1:
        out.notes.append(f"splits {', '.join(chosen)} pooled")
    return out


def read_registered(name: str, *, size: int | None = None, split: str = "all") -> ImageSet:
    """A registered dataset (:func:`domaingap.data.names`) from the data directory: every official split pooled
    in the registry's order (or one ``split``), at the release the book reads for ``size``."""
    from .references import pooled_arrays

    ds = data.info(name)
    release = data.release_for(ds.name, size)
    if split != "all" and split not in ds.split_sizes:
        raise ValueError(f"dataset {ds.name!r} has splits {list(ds.split_sizes)} (or 'all'), not {split!r}")
    x, y = pooled_arrays(ds.name, release, None if split == "all" else [split])
    out = from_arrays(x, y, classes=ds.classes, name=ds.name, source=f"registered dataset {ds.name!r} ({ds.title})")
    out.registered, out.release = ds.name, release
    out.dtype = f"{x.dtype} ({release} px release)"
    out.notes.append(f"splits {', '.join(ds.split_sizes) if split == 'all' else split} of {ds.name} "
                     f"{'pooled' if split == 'all' else 'only'}")
    return out


def read_path(path: str | Path, *, size: int | None = None, split: str = "all", progress: bool = True) -> ImageSet:
    """An ImageFolder directory, a MedMNIST-layout ``.npz`` file, or a registered dataset name."""
    p = Path(path)
    if p.is_dir():
        if split != "all":
            raise ValueError(f"split={split!r} applies to .npz files and registered datasets, not to the folder {p}")
        return read_folder(p, progress=progress)
    if p.is_file():
        if p.suffix.lower() == ".npz":
            return read_npz(p, split=split)
        raise ValueError(f"{p} is a {p.suffix or 'suffix-less'} file; expected an ImageFolder directory, a .npz file "
                         "in MedMNIST's layout, or a registered dataset name")
    if str(path) in data.names():
        return read_registered(str(path), size=size, split=split)
    raise ValueError(f"{str(path)!r} is neither an existing folder, a .npz file, nor a registered dataset name "
                     f"({', '.join(data.names())})")
