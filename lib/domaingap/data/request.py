"""Requests: whole splits as stored (:func:`load_arrays`, cached) and experiment-ready images (:func:`load`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np

from .formats import to_luma
from .files import DataFileError, _atomic_savez, cache_dir, download_allowed, have_files, locked
from .readers import reader_for
from .registry import MEDMNIST_SIZES, DatasetInfo, info

ClassSpec = Union[int, Sequence[int]]  # one class id, or a group of class ids relabelled to one label


def releases(name: str) -> tuple[int, ...]:
    """Image sizes (px) at which ``name`` is published: MedMNIST+ has 28/64/128/224, the others one size."""
    ds = info(name)
    return MEDMNIST_SIZES if ds.reader == "medmnist" else (ds.native_size,)


def release_for(name: str, size: int | None) -> int:
    """The published size :func:`load` reads to produce ``size`` px images of ``name``: the smallest release of at
    least ``size`` (shrinking a larger release loses nothing; enlarging a 28 px image invents no detail), else the
    largest; the native size when ``size`` is None. MedMNIST+ at 112 px -> 128, at 224 px -> 224; MNIST -> 28."""
    published = releases(name)
    if size is None:
        return info(name).native_size
    return min((r for r in published if r >= int(size)), default=max(published))


def _from_mirror(ds: DatasetInfo, release: int) -> bool:
    return have_files(ds, release)


def _decoded_key(ds: DatasetInfo, release: int) -> str:
    files = ds.files if release == ds.native_size else ds.release_files.get(release, {})
    if _from_mirror(ds, release):
        digest = hashlib.sha256("".join(files[r] for r in sorted(files)).encode()).hexdigest()[:16]
    elif release != ds.native_size:
        digest = f"{release}px"
    else:
        digest = "official"
    return f"{ds.name}-{digest}-v1"


def _cached_split(path, split: str):
    if not path.is_file():
        return None
    try:
        with np.load(path) as z:
            return z[f"{split}_x"], z[f"{split}_y"]
    except (OSError, KeyError, ValueError):  # a corrupt cache file is rebuilt, never trusted
        path.unlink(missing_ok=True)
        return None


def load_arrays(name: str, split: str = "train", *, release: int | None = None,
                allow_download: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The whole official split as stored: images uint8 ``(N, C, H, W)`` and labels int64 ``(N,)``.

    ``release``: which published size to read (MedMNIST+: 28, 64, 128 or 224 px; default the native 28).
    Decoded arrays are cached (keyed by the source files' checksums) so JPEG sets are decoded once; concurrent
    first calls decode once (a file lock) and the cache file is written atomically.
    """
    ds = info(name)
    release = ds.native_size if release is None else int(release)
    if release not in releases(ds.name):
        raise ValueError(f"dataset {ds.name!r} is published at {releases(ds.name)} px, not {release}")
    if split not in ds.split_sizes:
        raise ValueError(f"dataset {ds.name!r} has splits {list(ds.split_sizes)}, not {split!r}")
    cached = cache_dir() / "arrays" / f"{_decoded_key(ds, release)}.npz"
    hit = _cached_split(cached, split)
    if hit is not None:
        return hit
    with locked(cached):
        hit = _cached_split(cached, split)  # another process may have decoded it while we waited
        if hit is not None:
            return hit
        from_mirror = _from_mirror(ds, release)
        splits = reader_for(ds)(ds, download_allowed(allow_download), release)
        expected = ds.split_sizes if from_mirror or not ds.publisher_split_sizes else ds.publisher_split_sizes
        arrays = {}
        for s, (imgs, labels) in splits.items():
            if len(imgs) != expected[s]:
                raise DataFileError(f"{ds.name} {s} split has {len(imgs)} images, expected {expected[s]}")
            if imgs.shape[1:] != (release, release, ds.channels):
                raise DataFileError(f"{ds.name} {s} images have shape (H, W, C) = {imgs.shape[1:]}, expected "
                                    f"{(release, release, ds.channels)}")
            arrays[f"{s}_x"] = np.ascontiguousarray(imgs.transpose(0, 3, 1, 2))  # NHWC -> NCHW
            arrays[f"{s}_y"] = labels
        _atomic_savez(cached, **arrays)
    return arrays[f"{split}_x"], arrays[f"{split}_y"]


@dataclass
class ImageSet:
    """Images ready for a model or a kernel.

    x: float32 tensor ``(N, C, H, W)`` in ``pixel_range``; y: int64 tensor ``(N,)`` (task labels 0..K-1);
    indices: positions in the official split (so a subset can be traced back to the files);
    groups: the dataset's class ids behind each task label (``groups[k]`` = the ids relabelled ``k``).
    """

    x: "torch.Tensor"  # noqa: F821
    y: "torch.Tensor"  # noqa: F821
    indices: np.ndarray
    name: str
    split: str
    classes: tuple[str, ...]
    pixel_range: tuple[float, float]
    groups: tuple[tuple[int, ...], ...] = ()

    def __len__(self) -> int:
        return len(self.y)

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def sample_indices(labels: np.ndarray, n: int | None, *, seed: int, balanced: bool) -> np.ndarray:
    """Deterministic subset of positions: ``n`` of them (all when None), class-balanced if asked, sorted.

    Balanced sampling takes ``n // K`` per class (the remainder to the first classes) and fails if a class
    is too small, rather than silently returning an unbalanced set.
    """
    total = len(labels)
    if n is None:
        return np.arange(total)
    if n <= 0 or n > total:
        raise ValueError(f"asked for n={n} samples, but the selection holds {total}")
    rng = np.random.default_rng(seed)
    if not balanced:
        return np.sort(rng.permutation(total)[:n])
    classes = np.unique(labels)
    per = np.full(len(classes), n // len(classes))
    per[: n % len(classes)] += 1
    picks = []
    for c, m in zip(classes, per):
        idx = np.flatnonzero(labels == c)
        if m > len(idx):
            raise ValueError(f"balanced sampling of n={n} needs {m} images of class {c}, only {len(idx)} exist")
        picks.append(idx[rng.permutation(len(idx))[:m]])
    return np.sort(np.concatenate(picks))


def _is_id(value) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def class_groups(ds: DatasetInfo, classes: Sequence[ClassSpec]) -> tuple[tuple[int, ...], ...]:
    """``classes`` of :func:`load` as groups of class ids: an int ``c`` is the group ``(c,)``; a sequence of ints
    is one group. Groups must be non-empty and disjoint, ids in ``0..K-1``, and there must be >= 2 groups."""
    expected = (f"classes must be >= 2 distinct class ids, or disjoint groups of ids, in 0..{ds.num_classes - 1} "
                f"of {ds.name}")
    if isinstance(classes, (str, bytes)) or _is_id(classes):
        raise ValueError(f"{expected}, given as a sequence such as (0, 1) or ((0,), (2, 3, 4)); got {classes!r}")
    groups = []
    for c in classes:
        if _is_id(c):
            groups.append((int(c),))
        elif isinstance(c, (list, tuple, range, np.ndarray)) and len(c) and all(_is_id(v) for v in c):
            groups.append(tuple(int(v) for v in c))
        else:
            raise ValueError(f"{expected}; element {c!r} of {classes!r} is neither a class id nor a non-empty "
                             f"sequence of class ids")
    flat = [v for g in groups for v in g]
    bad = sorted({v for v in flat if not 0 <= v < ds.num_classes})
    repeated = sorted({v for v in flat if flat.count(v) > 1})
    if bad or repeated or len(groups) < 2:
        why = (f"ids {bad} are out of range" if bad else f"ids {repeated} are repeated" if repeated
               else f"only {len(groups)} group")
        raise ValueError(f"{expected}, got {list(classes)!r} ({why})")
    return tuple(groups)


def load(name: str, split: str = "train", *, classes: Sequence[ClassSpec] | None = None, size: int | None = None,
         channels: int | None = None, n: int | None = None, seed: int = 0, balanced: bool = False,
         pixel_range: tuple[float, float] = (0.0, 1.0), release: int | None = None,
         allow_download: bool | None = None) -> ImageSet:
    """Dataset ``name``, official ``split``, as a float32 :class:`ImageSet`.

    Args:
        classes: the task's classes, relabelled 0..len-1 in the given order; each element is a class id or a
            GROUP of class ids that all get that element's label: ``(a, b)`` = binary task a vs b,
            ``((0,), (2, 3, 4))`` = class 0 vs classes 2-4 (the others are left out), e.g.
            ``classes=info(name).clinical_task``. None keeps all classes.
        size: output side in pixels (bilinear, antialiased; None keeps the native size).
        channels: 1 (ITU-R 601 luma, as PIL's "L") or 3 (gray repeated); None keeps the native channels.
        n, seed, balanced: a seeded subset of ``n`` images (class-balanced over the task labels if
            ``balanced``); None keeps all.
        pixel_range: (0, 1) or (0, 255) -- P1 feeds its models [0, 255].
        release: the published size to read before resizing (MedMNIST+ 28/64/128/224; see :func:`releases`);
            None = :func:`release_for` ``(name, size)``, so the ``paper`` profiles (224 px) read the 224 px
            MedMNIST+ files rather than upsampling 28 px images, and say which file is missing when offline.
    """
    import torch
    import torch.nn.functional as F

    ds = info(name)
    if pixel_range not in ((0.0, 1.0), (0.0, 255.0), (0, 1), (0, 255)):
        raise ValueError(f"pixel_range must be (0, 1) or (0, 255), got {pixel_range!r}")
    if channels not in (None, 1, 3):
        raise ValueError(f"channels must be 1, 3 or None, got {channels!r}")
    if size is not None and (not isinstance(size, int) or size < 2):
        raise ValueError(f"size must be an int >= 2 pixels, got {size!r}")
    groups = None if classes is None else class_groups(ds, classes)
    release = release_for(ds.name, size) if release is None else release
    imgs, labels = load_arrays(ds.name, split, release=release, allow_download=allow_download)
    class_names = ds.classes
    positions = np.arange(len(labels))
    if groups is not None:
        lookup = np.full(ds.num_classes, -1, dtype=np.int64)
        for label, group in enumerate(groups):
            lookup[list(group)] = label
        task = lookup[labels]
        positions, labels = positions[task >= 0], task[task >= 0]
        class_names = tuple("+".join(ds.classes[c] for c in g) for g in groups)
    picked = sample_indices(labels, n, seed=seed, balanced=balanced)
    positions, labels = positions[picked], labels[picked]
    x = torch.from_numpy(imgs[positions]).float()
    if channels == 1 and x.shape[1] == 3:
        x = to_luma(x)
    elif channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.clamp_(0.0, 255.0)
    if float(pixel_range[1]) == 1.0:
        x = x / 255.0
    return ImageSet(x=x.contiguous(), y=torch.from_numpy(labels), indices=positions, name=ds.name, split=split,
                    classes=class_names, pixel_range=(float(pixel_range[0]), float(pixel_range[1])),
                    groups=groups if groups is not None else tuple((c,) for c in range(ds.num_classes)))
