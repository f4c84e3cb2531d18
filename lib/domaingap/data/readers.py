"""Per-format readers, each with the ecosystem's own loader (medmnist, torchvision MNIST / ImageFolder, sklearn).

Each reader takes ``(ds, allow_download, release)`` and returns ``{split: (images uint8 (N, H, W, C), labels int64
(N,))}`` for ALL splits of ``ds``. Readers never check split sizes; :func:`domaingap.data.load_arrays` does.
"""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .. import paths
from .files import (DataFileError, atomic_write, cache_dir, download, extract, have_files, locked, missing_error,
                    verified_file)
from .registry import MEDNIST_SPLIT_SEED, DatasetInfo, FolderLayout, medmnist_info, medmnist_relpath


def _stratified_split(labels: np.ndarray, fractions: dict[str, float], seed: int) -> dict[str, np.ndarray]:
    """Deterministic stratified split of indices: per class, a seeded permutation cut by ``fractions``."""
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {s: [] for s in fractions}
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        cuts = np.cumsum([int(round(f * len(idx))) for f in list(fractions.values())[:-1]])
        for s, chunk in zip(fractions, np.split(idx, cuts)):
            parts[s].append(chunk)
    return {s: np.sort(np.concatenate(p)) for s, p in parts.items()}


# ----------------------------------------------------------------------------------------------- MedMNIST

def _medmnist_plus_file(ds: DatasetInfo, size: int) -> tuple[Path, str, str]:
    """(path, official MD5, URL) of a MedMNIST(+) release at ``size`` px."""
    rel = medmnist_relpath(ds.name, size)
    return paths.data_dir() / rel, ds.md5[rel], ds.urls[rel]


def _read_medmnist(ds: DatasetInfo, allow_download: bool, release: int = 28):
    rel = medmnist_relpath(ds.name, release)
    path, md5sum, url = _medmnist_plus_file(ds, release)
    if not path.is_file():
        if not allow_download:
            hint = ("" if release == 28 else f"\n  Or pass release=28 to load() to up-sample the 28 px images instead"
                    f" (the offline mirror holds {ds.name} at {sorted([28, *ds.release_files])} px).")
            raise missing_error(ds, rel, hint)
        download(url, path, md5sum)
    verified_file(ds, rel)
    import medmnist  # after the checks: importing it takes seconds (torch)

    cls_name = medmnist_info()[ds.name]["python_class"]
    cls = getattr(medmnist, cls_name, None)
    if cls is None:  # medmnist swallows its own import errors and leaves the classes undefined
        raise ImportError(f"medmnist.{cls_name} is undefined: the medmnist package failed to import its "
                          "dependencies (torch, torchvision, PIL); reinstall requirements.txt")
    out = {}
    for split in ds.split_sizes:
        d = cls(split=split, download=False, root=str(path.parent), size=release)
        imgs = d.imgs if d.imgs.ndim == 4 else d.imgs[..., None]
        out[split] = (np.ascontiguousarray(imgs, dtype=np.uint8), d.labels.reshape(-1).astype(np.int64))
    return out


# ----------------------------------------------------------------------------------------------- MNIST-like

def _read_mnist_like(ds: DatasetInfo, allow_download: bool, release: int):
    from torchvision import datasets

    cls = datasets.MNIST if ds.name == "mnist" else datasets.FashionMNIST
    root = cache_dir() / "torchvision"
    raw = root / cls.__name__ / "raw"
    if have_files(ds):
        # torchvision reads the uncompressed idx files from <root>/<Class>/raw: decompress the verified mirror files.
        for rel in ds.files:
            src = verified_file(ds, rel)
            dst = raw / src.name[:-3]
            if not dst.is_file():
                def gunzip(tmp: Path, src: Path = src) -> None:
                    with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                        shutil.copyfileobj(fin, fout)

                with locked(dst):
                    if not dst.is_file():
                        atomic_write(dst, gunzip)
        download_ = False
    elif allow_download:
        download_ = True
    else:
        raise missing_error(ds, next(iter(ds.files)))
    out = {}
    with locked(root / cls.__name__):
        for split, train in (("train", True), ("test", False)):
            d = cls(str(root), train=train, download=download_)
            out[split] = (d.data.numpy()[..., None].astype(np.uint8), d.targets.numpy().astype(np.int64))
    return out


# ----------------------------------------------------------------------------------------------- ImageFolder

def _loader(mode: str | None) -> Callable[[str], np.ndarray]:
    from PIL import Image

    def load(path: str) -> np.ndarray:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode or "RGB"))

    return load


def _read_image_folder(folder: Path, classes: Sequence[str], mode: str | None = None):
    """Images and labels of one ImageFolder tree, after checking that its class folders are ``classes`` in
    ImageFolder's (sorted) order. ``mode``: PIL mode to decode to ("L" or "RGB"; None = ImageFolder's RGB)."""
    from torchvision import datasets

    if not folder.is_dir():
        raise DataFileError(f"{folder} is missing: the extracted archive does not have the expected layout")
    folder_ds = datasets.ImageFolder(str(folder), loader=_loader(mode))
    if tuple(folder_ds.classes) != tuple(classes):
        raise DataFileError(f"{folder} holds the class folders {folder_ds.classes} (in ImageFolder's sorted "
                            f"order), expected {list(classes)}")
    imgs = np.stack([folder_ds.loader(p) for p, _ in folder_ds.samples])
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    return imgs, np.asarray(folder_ds.targets, dtype=np.int64)


def _read_layout(root: Path, layout: FolderLayout):
    top = root / layout.top if layout.top else root
    if layout.splits is not None:
        return {s: _read_image_folder(top / folder, layout.folders, layout.mode) for s, folder in layout.splits.items()}
    imgs, labels = _read_image_folder(top, layout.folders, layout.mode)
    split = _stratified_split(labels, layout.fractions, layout.seed)
    return {s: (imgs[i], labels[i]) for s, i in split.items()}


def mirror_archive(ds: DatasetInfo, allow_download: bool) -> tuple[Path, str | None, str]:
    """(archive in the mirror's layout, its SHA-256 if registered, a name for its extraction folder): the verified
    mirror file, or else (downloads allowed) the publisher's release converted to the mirror's layout."""
    rel = next(iter(ds.files))
    folder = Path(rel).parent.name
    if have_files(ds):
        return verified_file(ds, rel), ds.files[rel], folder
    if not allow_download:
        raise missing_error(ds, rel)
    from .publishers import fetch

    return fetch(ds), None, f"{folder}-publisher"


def _read_imagefolder(ds: DatasetInfo, allow_download: bool, release: int):
    archive, digest, folder = mirror_archive(ds, allow_download)
    return _read_layout(extract(archive, cache_dir() / "extracted" / folder, digest), ds.layout)


def _read_cifar10(ds: DatasetInfo, allow_download: bool, release: int):
    if have_files(ds) or not allow_download:  # the mirror's JPEG copy (or the missing-file error)
        return _read_imagefolder(ds, allow_download, release)
    from torchvision import datasets

    out = {}
    with locked(cache_dir() / "torchvision" / "cifar10"):
        for split, train in (("train", True), ("test", False)):
            d = datasets.CIFAR10(str(cache_dir() / "torchvision"), train=train, download=True)
            out[split] = (np.asarray(d.data, dtype=np.uint8), np.asarray(d.targets, dtype=np.int64))
    return out


def _read_digits(ds: DatasetInfo, allow_download: bool, release: int):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    imgs = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    split = _stratified_split(labels, {"train": 0.8, "test": 0.2}, MEDNIST_SPLIT_SEED)
    return {s: (imgs[i], labels[i]) for s, i in split.items()}


READERS: dict[str, Callable] = {"medmnist": _read_medmnist, "mnist": _read_mnist_like, "cifar10": _read_cifar10,
                                "imagefolder": _read_imagefolder, "digits": _read_digits}


def reader_for(ds: DatasetInfo) -> Callable:
    """The reader of ``ds``: ``READERS[ds.reader]`` (default: the dataset's name)."""
    key = ds.reader or ds.name
    if key not in READERS:
        raise KeyError(f"dataset {ds.name!r} names the reader {key!r}; known readers: {sorted(READERS)}")
    return READERS[key]
