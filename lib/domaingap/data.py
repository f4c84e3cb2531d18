"""Dataset registry and loaders: one way to ask for the images every experiment needs.

Every experiment of the three papers asks for "dataset X, split S, all classes or a binary task (class a vs b),
resized to R px, grayscale or RGB, N samples drawn with seed s, pixels in [0, 1] or [0, 255]". That is
:func:`load`. The raw files are read with the ecosystem's own loaders (``medmnist`` dataset classes for the
MedMNIST npz files, ``torchvision`` ``MNIST`` / ``FashionMNIST`` / ``ImageFolder``) from the folder
:func:`domaingap.paths.data_dir` (``$DOMAINGAP_DATA``), whose layout is the offline mirror's::

    breastmnist/breastmnist.npz           pneumoniamnist/pneumoniamnist.npz   retinamnist/retinamnist.npz
    mnist/{train,t10k}-{images-idx3,labels-idx1}-ubyte.gz                     fashion-mnist/ (same names)
    cifar10-jpeg/CIFAR-10-images.tar.gz   mednist/MedNIST.tar.gz

Every mirror file is checked against its SHA-256 before use; a missing file is an error naming the file, its
checksum and how to get it. With ``DOMAINGAP_DOWNLOAD=1`` (or ``allow_download=True``) a missing dataset is fetched
by its official loader instead (that needs internet; the official loaders verify their own MD5s).

Decoded images are cached as uint8 ``.npz`` arrays under :func:`domaingap.paths.cache_dir`
(``$DOMAINGAP_CACHE``), keyed by the source files' checksums, so a JPEG dataset is decoded once.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from . import paths

DOWNLOAD_ENV = "DOMAINGAP_DOWNLOAD"


@dataclass(frozen=True)
class DatasetInfo:
    """One registry entry. ``files`` maps a path relative to the data dir to its SHA-256."""

    name: str
    title: str
    domain: str  # "medical" or "natural"
    native_size: int  # pixels per side
    channels: int
    classes: tuple[str, ...]
    split_sizes: dict[str, int]
    licence: str
    source: str
    files: dict[str, str] = field(default_factory=dict)
    binary_task: tuple[int, int] | None = None  # the clinical binary task (class ids) where one exists
    note: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)


_MNIST_FILES = ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz",
                "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")

REGISTRY: dict[str, DatasetInfo] = {
    "breastmnist": DatasetInfo(
        name="breastmnist", title="BreastMNIST", domain="medical", native_size=28, channels=1,
        classes=("malignant", "normal/benign"), split_sizes={"train": 546, "val": 78, "test": 156},
        licence="CC BY 4.0", source="MedMNIST v2 (Yang et al. 2023); breast ultrasound (Al-Dhabyani et al. 2020)",
        files={"breastmnist/breastmnist.npz": "3a22d2a4625e7dd8903f0f59030e81a3d0c222bece2e5e10927456cb50efdec1"},
        binary_task=(0, 1)),
    "pneumoniamnist": DatasetInfo(
        name="pneumoniamnist", title="PneumoniaMNIST", domain="medical", native_size=28, channels=1,
        classes=("normal", "pneumonia"), split_sizes={"train": 4708, "val": 524, "test": 624},
        licence="CC BY 4.0", source="MedMNIST v2; pediatric chest X-ray (Kermany et al. 2018)",
        files={"pneumoniamnist/pneumoniamnist.npz": "e1792d3f03751cb101e99f19a63b3c1941436c988665f47853417b05be250cd8"},
        binary_task=(0, 1)),
    "retinamnist": DatasetInfo(
        name="retinamnist", title="RetinaMNIST", domain="medical", native_size=28, channels=3,
        classes=("grade 0", "grade 1", "grade 2", "grade 3", "grade 4"),
        split_sizes={"train": 1080, "val": 120, "test": 400},
        licence="CC BY 4.0", source="MedMNIST v2; fundus images, DeepDRiD (Liu et al. 2022)",
        files={"retinamnist/retinamnist.npz": "254915f5f0a2074665c4676356824cf4ef4a3bcab233894b4bafcaf48962bd69"},
        binary_task=(0, 4), note="5 ordinal diabetic-retinopathy grades; binary task: grade 0 vs grade 4"),
    "mednist": DatasetInfo(
        name="mednist", title="MedNIST", domain="medical", native_size=64, channels=1,
        classes=("AbdomenCT", "BreastMRI", "CXR", "ChestCT", "Hand", "HeadCT"),
        split_sizes={"train": 47163, "val": 5895, "test": 5896},
        licence="CC BY-SA 4.0", source="MONAI MedNIST (B. Erickson, Mayo Clinic); CT, MRI, X-ray",
        files={"mednist/MedNIST.tar.gz": "0a2fa0e39ca57ad2a3cd45d77407327763466e1489b14b390420c16d9affb1e9"},
        binary_task=(0, 3),
        note="no official split: stratified 80/10/10 with seed 0 (domaingap.data.MEDNIST_SPLIT_SEED); "
             "binary task AbdomenCT vs ChestCT (two CT classes, the hardest pair to tell apart by intensity)"),
    "mnist": DatasetInfo(
        name="mnist", title="MNIST", domain="natural", native_size=28, channels=1,
        classes=tuple(str(i) for i in range(10)), split_sizes={"train": 60000, "test": 10000},
        licence="CC BY-SA 3.0", source="LeCun et al. 1998",
        files={f"mnist/{f}": h for f, h in zip(_MNIST_FILES, (
            "0b367032e93c5d0cea0925647cfdb18614af8ee15f83e6f2fc2ad904a6835971",
            "ec02e7948609e5754d47881c09b8afdd8dfa60600b9e5388c8c54a67069ec772",
            "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
            "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c"))}),
    "fashionmnist": DatasetInfo(
        name="fashionmnist", title="Fashion-MNIST", domain="natural", native_size=28, channels=1,
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
                 "Ankle boot"),
        split_sizes={"train": 60000, "test": 10000}, licence="MIT", source="Xiao et al. 2017 (Zalando)",
        files={f"fashion-mnist/{f}": h for f, h in zip(_MNIST_FILES, (
            "b0564c3eedabfbf835052cff8503ea422014ce006caf5b757f851416ee8300c7",
            "0ae29f65d86684f32d1b9c85147786c547b9c6aebcaf235f0400a0cce308b056",
            "cc1d090a38ace84dfa1aa66e3ada7c336ef481a96936906477e6dd344da56eaa",
            "8d3605d196f4be44669e46906da9733c8131fef761fdbfec72c424d5222f1a05"))}),
    "cifar10": DatasetInfo(
        name="cifar10", title="CIFAR-10 (JPEG q~75)", domain="natural", native_size=32, channels=3,
        classes=("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"),
        split_sizes={"train": 50000, "test": 10000},
        licence="citation of Krizhevsky 2009 requested", source="Krizhevsky 2009",
        files={"cifar10-jpeg/CIFAR-10-images.tar.gz":
               "097287809041e0a666355dfce11470ba1b3f2631fe910d8793c716253f10b297"},
        note="the offline mirror is JPEG-recompressed (lossy, quality ~75); with internet torchvision's "
             "lossless CIFAR-10 is used instead"),
    "digits": DatasetInfo(
        name="digits", title="scikit-learn digits (8x8)", domain="natural", native_size=8, channels=1,
        classes=tuple(str(i) for i in range(10)), split_sizes={"train": 1438, "test": 359},
        licence="CC BY 4.0 (UCI)", source="UCI optical recognition of handwritten digits, bundled by scikit-learn",
        note="no official split: stratified 80/20 with seed 0; 0..16 intensities rescaled to 0..255"),
}

MEDNIST_SPLIT_SEED = 0  # fixed: the MedNIST and digits splits must never change between runs
SPLITS = ("train", "val", "test")


# ----------------------------------------------------------------------------------------------- registry

def info(name: str) -> DatasetInfo:
    """Registry entry of ``name``; unknown names raise a ``KeyError`` listing the known ones."""
    key = name.lower().replace("-", "").replace("_", "")
    if key not in REGISTRY:
        raise KeyError(f"unknown dataset {name!r}; known datasets: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[key]


def names(domain: str | None = None) -> list[str]:
    """Registered dataset names, optionally only those of one ``domain`` ("medical" / "natural")."""
    if domain not in (None, "medical", "natural"):
        raise ValueError(f"domain must be 'medical', 'natural' or None, got {domain!r}")
    return [n for n, d in REGISTRY.items() if domain is None or d.domain == domain]


# ----------------------------------------------------------------------------------------------- files

class DataFileError(FileNotFoundError):
    """A dataset file is missing or does not match its checksum."""


def cache_dir() -> Path:
    """Folder for decoded arrays and extracted archives (``$DOMAINGAP_CACHE``, default ``data/cache/_decoded``)."""
    return paths.cache_dir()


def _download_allowed(allow_download: bool | None) -> bool:
    if allow_download is not None:
        return allow_download
    return os.environ.get(DOWNLOAD_ENV, "0").lower() in ("1", "true", "yes")


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def sha256(path: Path) -> str:
    """SHA-256 of a file (memoised on path, size and mtime so a process hashes each file once)."""
    st = path.stat()
    return _sha256_cached(str(path), st.st_size, st.st_mtime_ns)


def verified_file(ds: DatasetInfo, relpath: str) -> Path:
    """Path of a registry file under the data dir after checking it exists and matches its SHA-256."""
    expected = ds.files[relpath]
    path = paths.data_dir() / relpath
    if not path.is_file():
        raise DataFileError(
            f"dataset {ds.name!r} needs the file {path} (sha256 {expected}), which is missing.\n"
            f"  Offline: point ${paths.DATA_ENV} at a folder laid out like the offline mirror "
            f"(e.g. export {paths.DATA_ENV}=../shared/data).\n"
            f"  With internet: set {DOWNLOAD_ENV}=1 and the official loader ({ds.source}) downloads it.")
    actual = sha256(path)
    if actual != expected:
        raise DataFileError(
            f"checksum mismatch for {path}: sha256 is {actual}, expected {expected}. The file is corrupt or "
            f"not the mirrored release of {ds.title}; delete it and restore it from the mirror or the official source.")
    return path


def _have_files(ds: DatasetInfo) -> bool:
    return all((paths.data_dir() / rel).is_file() for rel in ds.files)


def _atomic_savez(path: Path, **arrays: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp.npz")
    os.close(fd)
    try:
        np.savez(tmp, **arrays)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _extract(archive: Path, dest: Path) -> Path:
    """Extract ``archive`` into ``dest`` once (atomically: into a temp dir, then rename)."""
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, suffix=".tmp"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return dest


# ----------------------------------------------------------------------------------------------- readers
# Each reader returns {split: (images uint8 (N, H, W, C), labels int64 (N,))} for ALL official splits.

MEDMNIST_SIZES = (28, 64, 128, 224)  # MedMNIST+ releases; only the 28 px files are in the offline mirror


def _medmnist_plus_file(ds: DatasetInfo, size: int) -> tuple[Path, str, str]:
    """(path, official MD5, URL) of a MedMNIST+ release at ``size`` px."""
    import medmnist

    info_ = medmnist.INFO[ds.name]
    return (paths.data_dir() / ds.name / f"{ds.name}_{size}.npz", info_[f"MD5_{size}"], info_[f"url_{size}"])


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_medmnist(ds: DatasetInfo, allow_download: bool, release: int = 28):
    import medmnist

    cls_name = {"breastmnist": "BreastMNIST", "pneumoniamnist": "PneumoniaMNIST",
                "retinamnist": "RetinaMNIST"}[ds.name]
    cls = getattr(medmnist, cls_name, None)
    if cls is None:  # medmnist swallows its own import errors and leaves the classes undefined
        raise ImportError(f"medmnist.{cls_name} is undefined: the medmnist package failed to import its "
                          "dependencies (torch, torchvision, PIL); reinstall requirements.txt")
    if release != 28:
        path, md5, url = _medmnist_plus_file(ds, release)
        root, download = path.parent, False
        if not path.is_file():
            if not allow_download:
                raise DataFileError(
                    f"dataset {ds.name!r} at {release} px needs the file {path} (official MD5 {md5}), which is "
                    f"missing; the offline mirror holds only the 28 px release.\n  With internet: set "
                    f"{DOWNLOAD_ENV}=1 (medmnist downloads {url}), or download it yourself into {path.parent}; "
                    f"or pass release=28 to load() to up-sample the 28 px images instead.")
            root.mkdir(parents=True, exist_ok=True)
            download = True
        elif _md5(path) != md5:
            raise DataFileError(f"checksum mismatch for {path}: MD5 is {_md5(path)}, expected {md5}; delete it and "
                                f"download it again from {url}")
    elif _have_files(ds):
        root, download = paths.data_dir() / ds.name, False
        for rel in ds.files:
            verified_file(ds, rel)
    elif allow_download:
        root, download = paths.data_dir() / ds.name, True
        root.mkdir(parents=True, exist_ok=True)
    else:
        verified_file(ds, next(iter(ds.files)))  # raises the clear missing-file error
    out = {}
    for split in ds.split_sizes:
        d = cls(split=split, download=download, root=str(root), size=release)
        imgs = d.imgs if d.imgs.ndim == 4 else d.imgs[..., None]
        out[split] = (np.ascontiguousarray(imgs, dtype=np.uint8), d.labels.reshape(-1).astype(np.int64))
    return out


def _read_mnist_like(ds: DatasetInfo, allow_download: bool, release: int):
    from torchvision import datasets

    cls = datasets.MNIST if ds.name == "mnist" else datasets.FashionMNIST
    root = cache_dir() / "torchvision"
    raw = root / cls.__name__ / "raw"
    if _have_files(ds):
        # torchvision reads the uncompressed idx files from <root>/<Class>/raw: decompress the verified mirror files.
        raw.mkdir(parents=True, exist_ok=True)
        for rel in ds.files:
            src = verified_file(ds, rel)
            dst = raw / src.name[:-3]
            if not dst.is_file():
                tmp = dst.with_suffix(".tmp")
                with gzip.open(src, "rb") as fin, open(tmp, "wb") as fout:
                    shutil.copyfileobj(fin, fout)
                os.replace(tmp, dst)
        download = False
    elif allow_download:
        download = True
    else:
        verified_file(ds, next(iter(ds.files)))
    out = {}
    for split, train in (("train", True), ("test", False)):
        d = cls(str(root), train=train, download=download)
        out[split] = (d.data.numpy()[..., None].astype(np.uint8), d.targets.numpy().astype(np.int64))
    return out


def _read_image_folder(folder: Path, classes: Sequence[str]):
    from torchvision import datasets

    folder_ds = datasets.ImageFolder(str(folder))
    if tuple(folder_ds.classes) != tuple(classes):
        raise DataFileError(f"{folder} holds classes {folder_ds.classes}, expected {list(classes)}")
    imgs = np.stack([np.asarray(folder_ds.loader(p)) for p, _ in folder_ds.samples])
    labels = np.asarray(folder_ds.targets, dtype=np.int64)
    return imgs, labels


def _read_cifar10(ds: DatasetInfo, allow_download: bool, release: int):
    if _have_files(ds):
        rel = next(iter(ds.files))
        root = _extract(verified_file(ds, rel), cache_dir() / "extracted" / "cifar10-jpeg")
        # ImageFolder decodes with PIL in RGB, sorted class folders = CIFAR-10's official class order.
        return {split: _read_image_folder(root / split, ds.classes) for split in ("train", "test")}
    if not allow_download:
        verified_file(ds, next(iter(ds.files)))
    from torchvision import datasets

    out = {}
    for split, train in (("train", True), ("test", False)):
        d = datasets.CIFAR10(str(cache_dir() / "torchvision"), train=train, download=True)
        out[split] = (np.asarray(d.data, dtype=np.uint8), np.asarray(d.targets, dtype=np.int64))
    return out


MEDNIST_URL = "https://github.com/Project-MONAI/MONAI-extra-test-data/releases/download/0.8.1/MedNIST.tar.gz"
MEDNIST_MD5 = "0bc7306e7427e00ad1c5526a6677552d"  # MONAI's published checksum of its own archive


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


def _read_mednist(ds: DatasetInfo, allow_download: bool, release: int):
    if _have_files(ds):
        archive = verified_file(ds, next(iter(ds.files)))
    elif allow_download:
        from torchvision.datasets.utils import download_url

        download_url(MEDNIST_URL, str(cache_dir() / "downloads"), "MedNIST.tar.gz", md5=MEDNIST_MD5)
        archive = cache_dir() / "downloads" / "MedNIST.tar.gz"
    else:
        verified_file(ds, next(iter(ds.files)))
    root = _extract(archive, cache_dir() / "extracted" / "mednist")
    imgs, labels = _read_image_folder(root / "MedNIST", ds.classes)
    if imgs.ndim == 3:
        imgs = imgs[..., None]
    elif imgs.shape[-1] == 3:  # a few archives store gray JPEGs as RGB; the channels are identical
        imgs = imgs[..., :1]
    split = _stratified_split(labels, {"train": 0.8, "val": 0.1, "test": 0.1}, MEDNIST_SPLIT_SEED)
    return {s: (imgs[i], labels[i]) for s, i in split.items()}


def _read_digits(ds: DatasetInfo, allow_download: bool, release: int):
    from sklearn.datasets import load_digits

    bunch = load_digits()
    imgs = np.round(bunch.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    labels = bunch.target.astype(np.int64)
    split = _stratified_split(labels, {"train": 0.8, "test": 0.2}, MEDNIST_SPLIT_SEED)
    return {s: (imgs[i], labels[i]) for s, i in split.items()}


_READERS = {"breastmnist": _read_medmnist, "pneumoniamnist": _read_medmnist, "retinamnist": _read_medmnist,
            "mnist": _read_mnist_like, "fashionmnist": _read_mnist_like, "cifar10": _read_cifar10,
            "mednist": _read_mednist, "digits": _read_digits}


def _decoded_key(ds: DatasetInfo, release: int) -> str:
    if release != ds.native_size:
        digest = f"{release}px"
    elif _have_files(ds):
        digest = hashlib.sha256("".join(ds.files[r] for r in sorted(ds.files)).encode()).hexdigest()[:16]
    else:
        digest = "official"
    return f"{ds.name}-{digest}-v1"


def releases(name: str) -> tuple[int, ...]:
    """Image sizes (px) at which ``name`` is published: MedMNIST+ has 28/64/128/224, the others one size."""
    ds = info(name)
    return MEDMNIST_SIZES if _READERS[ds.name] is _read_medmnist else (ds.native_size,)


def release_for(name: str, size: int | None) -> int:
    """The published size :func:`load` reads to produce ``size`` px images of ``name``: the smallest release of at
    least ``size`` (shrinking a larger release loses nothing; enlarging a 28 px image invents no detail), else the
    largest; the native size when ``size`` is None. MedMNIST+ at 112 px -> 128, at 224 px -> 224; MNIST -> 28."""
    published = releases(name)
    if size is None:
        return info(name).native_size
    return min((r for r in published if r >= int(size)), default=max(published))


def load_arrays(name: str, split: str = "train", *, release: int | None = None,
                allow_download: bool | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The whole official split as stored: images uint8 ``(N, C, H, W)`` and labels int64 ``(N,)``.

    ``release``: which published size to read (MedMNIST+: 28, 64, 128 or 224 px; default the native 28).
    Decoded arrays are cached (keyed by the source files' checksums) so JPEG sets are decoded once.
    """
    ds = info(name)
    release = ds.native_size if release is None else int(release)
    if release not in releases(ds.name):
        raise ValueError(f"dataset {ds.name!r} is published at {releases(ds.name)} px, not {release}")
    if split not in ds.split_sizes:
        raise ValueError(f"dataset {ds.name!r} has splits {list(ds.split_sizes)}, not {split!r}")
    cached = cache_dir() / "arrays" / f"{_decoded_key(ds, release)}.npz"
    if cached.is_file():
        try:
            with np.load(cached) as z:
                return z[f"{split}_x"], z[f"{split}_y"]
        except (OSError, KeyError, ValueError):  # a corrupt cache file is rebuilt, never trusted
            cached.unlink()
    splits = _READERS[ds.name](ds, _download_allowed(allow_download), release)
    arrays = {}
    for s, (imgs, labels) in splits.items():
        if len(imgs) != ds.split_sizes[s]:
            raise DataFileError(f"{ds.name} {s} split has {len(imgs)} images, expected {ds.split_sizes[s]}")
        arrays[f"{s}_x"] = np.ascontiguousarray(imgs.transpose(0, 3, 1, 2))  # NHWC -> NCHW
        arrays[f"{s}_y"] = labels
    _atomic_savez(cached, **arrays)
    return arrays[f"{split}_x"], arrays[f"{split}_y"]


# ----------------------------------------------------------------------------------------------- requests

@dataclass
class ImageSet:
    """Images ready for a model or a kernel.

    x: float32 tensor ``(N, C, H, W)`` in ``pixel_range``; y: int64 tensor ``(N,)`` (task labels 0..K-1);
    indices: positions in the official split (so a subset can be traced back to the files).
    """

    x: "torch.Tensor"  # noqa: F821
    y: "torch.Tensor"  # noqa: F821
    indices: np.ndarray
    name: str
    split: str
    classes: tuple[str, ...]
    pixel_range: tuple[float, float]

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


def load(name: str, split: str = "train", *, classes: Sequence[int] | None = None, size: int | None = None,
         channels: int | None = None, n: int | None = None, seed: int = 0, balanced: bool = False,
         pixel_range: tuple[float, float] = (0.0, 1.0), release: int | None = None,
         allow_download: bool | None = None) -> ImageSet:
    """Dataset ``name``, official ``split``, as a float32 :class:`ImageSet`.

    Args:
        classes: class ids to keep, relabelled 0..len-1 in the given order (``(a, b)`` = binary task a vs b);
            None keeps all classes.
        size: output side in pixels (bilinear, antialiased; None keeps the native size).
        channels: 1 (ITU-R 601 luma, as PIL's "L") or 3 (gray repeated); None keeps the native channels.
        n, seed, balanced: a seeded subset of ``n`` images (class-balanced if ``balanced``); None keeps all.
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
    release = release_for(ds.name, size) if release is None else release
    imgs, labels = load_arrays(ds.name, split, release=release, allow_download=allow_download)
    class_names = ds.classes
    positions = np.arange(len(labels))
    if classes is not None:
        classes = [int(c) for c in classes]
        bad = [c for c in classes if not 0 <= c < ds.num_classes]
        if bad or len(set(classes)) != len(classes) or len(classes) < 2:
            raise ValueError(f"classes must be >= 2 distinct ids in 0..{ds.num_classes - 1} of {ds.name}, "
                             f"got {classes}")
        keep = np.isin(labels, classes)
        positions = positions[keep]
        remap = {c: i for i, c in enumerate(classes)}
        labels = np.array([remap[int(v)] for v in labels[keep]], dtype=np.int64)
        class_names = tuple(ds.classes[c] for c in classes)
    picked = sample_indices(labels, n, seed=seed, balanced=balanced)
    positions, labels = positions[picked], labels[picked]
    x = torch.from_numpy(imgs[positions]).float()
    if channels == 1 and x.shape[1] == 3:
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif channels == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    if size is not None and size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    x = x.clamp_(0.0, 255.0)
    if float(pixel_range[1]) == 1.0:
        x = x / 255.0
    return ImageSet(x=x.contiguous(), y=torch.from_numpy(labels), indices=positions, name=ds.name, split=split,
                    classes=class_names, pixel_range=(float(pixel_range[0]), float(pixel_range[1])))
