"""``measure`` and ``measure_path``: P1's intrinsic properties of a user's dataset, beside the book's datasets."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from .. import runs
from . import core, inputs
from .core import CI_LEVEL, KF_SAMPLE_IMAGES, K_MAIN, K_VALUES, N_BOOTSTRAP, NEAR_DUPLICATE_FRACTION, Geometry
from .preprocess import describe, to_p1_format
from .constants import REFERENCE_N, REFERENCE_SEED, SIZES
from .references import Reference, balanced_max, compute_references, subsample

log = logging.getLogger(__name__)

CHUNK = 4096  # images formatted at a time

__all__ = ["Measurement", "measure", "measure_path", "resolve_device"]


@dataclass(frozen=True)
class Measurement:
    """P1's intrinsic properties of one labelled image set, with the reference datasets at a common n.

    Attributes:
        name, source: what was measured (a folder, file, registered dataset or "arrays").
        classes, class_counts: class names and images per class (after ``task`` / ``max_images``).
        n_images: images measured.
        size, channels, pixel_range: the P1 format the statistics are computed in (S x S px, 1 or 3 channels,
            uint8 in [0, 255]); preprocessing: one sentence saying how (:func:`~.preprocess.describe`).
        input_sizes: ((H, W, count), ...) as read; input_channels: ((C, count), ...); input_dtype;
            input_range: (min, max) pixel value as read.
        notes: conversions and restrictions applied (grey/RGB, alpha, resizing, task, subsampling, pooled splits).
        geometry: :class:`~.core.Geometry` of all ``n_images`` images (d_data MLE k = 20 and k-sensitivity, TwoNN,
            exact and sampled K_F, duplicates).
        common_n, common: the same statistics on a seeded class-balanced subsample of ``common_n`` images, the n
            at which the references are measured (``common is geometry`` when that subsample is every image).
        references: :class:`~.references.Reference` per reference dataset, same format and n;
            reference_notes: the datasets left out and why.
        seed: seeds the subsamples, the bootstrap and P1's sampled K_F; settings: ks, k, ci, n_bootstrap,
            near_duplicate_fraction, kf_sample_images, reference_n.
        registered: the registry name when a registered dataset was measured (its reference is marked).
        device: where the kernels ran (results do not depend on it).
        k_f_images: the two images (uint8 (C, S, S)) whose distance defines K_F, for display.
    """

    name: str
    source: str
    classes: tuple[str, ...]
    class_counts: tuple[int, ...]
    n_images: int
    size: int
    channels: int
    pixel_range: tuple[int, int]
    preprocessing: str
    input_sizes: tuple[tuple[int, int, int], ...]
    input_channels: tuple[tuple[int, int], ...]
    input_dtype: str
    input_range: tuple[float, float]
    notes: tuple[str, ...]
    geometry: Geometry
    common_n: int
    common: Geometry
    references: tuple[Reference, ...]
    reference_notes: tuple[str, ...]
    seed: int
    settings: dict
    registered: str | None = None
    device: str = field(default="cpu", compare=False)
    k_f_images: tuple = field(default=(), compare=False, repr=False)

    # the headline numbers, all images
    @property
    def d_mle(self):
        return self.geometry.mle

    @property
    def d_twonn(self):
        return self.geometry.twonn

    @property
    def k_f(self) -> float:
        return self.geometry.k_f

    @property
    def k_f_sampled(self) -> float:
        return self.geometry.k_f_sampled

    def to_dict(self) -> dict:
        """JSON data of everything but the images (what ``measurement.json`` holds)."""
        return {
            "name": self.name, "source": self.source, "classes": list(self.classes),
            "class_counts": list(self.class_counts), "n_images": self.n_images, "size": self.size,
            "channels": self.channels, "pixel_range": list(self.pixel_range), "preprocessing": self.preprocessing,
            "input_sizes": [list(s) for s in self.input_sizes], "input_channels": [list(c) for c in self.input_channels],
            "input_dtype": self.input_dtype, "input_range": list(self.input_range), "notes": list(self.notes),
            "geometry": self.geometry.to_dict(), "common_n": self.common_n, "common": self.common.to_dict(),
            "references": [{"name": r.name, "title": r.title, "domain": r.domain, "radiology": r.radiology,
                            "size": r.size, "channels": r.channels, "release": r.release, "n": r.n,
                            "n_requested": r.n_requested, "seed": r.seed, "key": r.key,
                            "geometry": r.geometry.to_dict()} for r in self.references],
            "reference_notes": list(self.reference_notes), "seed": self.seed, "settings": dict(self.settings),
            "registered": self.registered,
        }


def resolve_device(device: str | Any = "auto"):
    """``"auto"`` (CUDA when available, else CPU), ``"cpu"``, ``"cuda"`` / ``"cuda:N"`` -> ``torch.device``."""
    import torch

    if isinstance(device, torch.device):
        dev = device
    else:
        text = str(device).strip().lower()
        if text == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            dev = torch.device(text)
        except RuntimeError:
            raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {str(device)!r} was asked for, but torch sees no CUDA device on this machine; "
                         "use device='auto' or 'cpu'")
    if dev.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be auto, cpu, cuda or cuda:N; got {device!r}")
    return dev


def _format(images: inputs.ImageSet, size: int | None, gray: bool, device) -> tuple[Any, int, int, list[str]]:
    """The P1-format uint8 tensor (N, C, S, S) on ``device``, S, C, and notes on what was converted."""
    import torch

    notes: list[str] = []
    shapes = images.shapes
    by_hw = Counter()
    by_c = Counter()
    for (c, h, w), count in shapes.items():
        by_hw[(h, w)] += count
        by_c[c] += count
    if size is None:
        if len(by_hw) > 1:
            found = ", ".join(f"{h}x{w} ({c} images)" for (h, w), c in sorted(by_hw.items()))
            raise ValueError(f"the images have different sizes: {found}. Pass a target size (size=S, or --size S on "
                             f"the command line, e.g. {min(SIZES, key=lambda s: abs(s - max(by_hw)[0]))}) to resize "
                             "every image to S x S px as P1 does, or resize them yourself")
        (h, w), = by_hw
        if h != w:
            raise ValueError(f"the images are {h}x{w} px, not square; P1 resizes every image to a square: pass a target "
                             f"size (size=S, --size S)")
        size = h
    else:
        if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < 2:
            raise ValueError(f"size must be an integer number of pixels >= 2 (e.g. 28, 64 or 224); got {size!r}")
        size = int(size)
        resized = {hw: c for hw, c in by_hw.items() if hw != (size, size)}
        if resized:
            notes.append("resized to {0} x {0} px from ".format(size)
                         + ", ".join(f"{h}x{w} ({c} images)" for (h, w), c in sorted(resized.items())))
    if gray:
        channels = 1
        if by_c.get(3):
            notes.append(f"{by_c[3]} RGB images converted to grey (ITU-R 601 luma), as asked (gray)")
    elif set(by_c) == {1, 3}:
        channels = 3
        notes.append(f"grey and RGB images are mixed: {by_c[1]} grey images were converted to RGB (grey repeated in "
                     f"3 channels) to match {by_c[3]} RGB images; pass gray=True (--gray) to measure all in grey")
    else:
        channels = next(iter(by_c))
        if channels == 3 and all(np.array_equal(arr[:, 0], arr[:, 1]) and np.array_equal(arr[:, 0], arr[:, 2])
                                 for (c, _, _), (_, arr) in images.groups.items() if c == 3):
            notes.append("every RGB image has three identical channels (grey content): measured in RGB as given; "
                         "gray=True (--gray) measures one channel, as the book's P1 chapter does")
    out = torch.empty((len(images), channels, size, size), dtype=torch.uint8, device=device)
    for (c, h, w), (pos, arr) in images.groups.items():
        for s in range(0, len(pos), CHUNK):
            chunk = torch.from_numpy(np.ascontiguousarray(arr[s:s + CHUNK])).to(device=device, dtype=torch.float32)
            out[torch.as_tensor(pos[s:s + CHUNK], device=device)] = to_p1_format(chunk, size, channels)
    return out, size, channels, notes


def _input_range(images: inputs.ImageSet) -> tuple[float, float]:
    lo = min(float(arr.min()) for _, arr in images.groups.values())
    hi = max(float(arr.max()) for _, arr in images.groups.values())
    return lo, hi


def measure_images(images: inputs.ImageSet, *, size: int | None = None, gray: bool = False, device="auto",
                   task=None, n: int = REFERENCE_N, references: Iterable[str] | None | bool = None,
                   seed: int = REFERENCE_SEED, max_images: int | None = None, ks: Sequence[int] = K_VALUES,
                   k: int = K_MAIN, ci: float = CI_LEVEL, n_bootstrap: int = N_BOOTSTRAP,
                   near_duplicate_fraction: float = NEAR_DUPLICATE_FRACTION,
                   kf_sample_images: int = KF_SAMPLE_IMAGES, store: runs.Store | None = None,
                   progress: bool = True) -> Measurement:
    """:func:`measure` on an :class:`~.inputs.ImageSet` (what :func:`measure_path` reads)."""
    from tqdm.std import tqdm  # text bars: tqdm.auto warns in kernels without ipywidgets (TqdmWarning)

    from .. import data

    dev = resolve_device(device)
    images = inputs.restrict_task(images, task)
    notes = list(images.notes)
    if len(np.unique(images.labels)) < 2:
        only = images.classes[int(images.labels[0])] if len(images) else "-"
        raise ValueError(f"{images.name} has a single class ({only!r}, {len(images)} images); label sharpness "
                         "compares classes: give images of at least two classes")
    if max_images is not None:
        if int(max_images) < 2:
            raise ValueError(f"max_images must be >= 2 (or None for all images), got {max_images!r}")
        if int(max_images) < len(images):
            keep = data.sample_indices(images.labels, int(max_images), seed=seed, balanced=False)
            images = images.select(keep)
            notes.append(f"a seeded random subset of {len(images)} images was measured (max_images)")
    if not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < int(k) + 1:
        raise ValueError(f"n (the common subsample size of the comparison) must be an integer >= k + 1 = {int(k) + 1} "
                         f"(the MLE uses k = {k} neighbours), got {n!r}")
    lo, hi = _input_range(images)
    hw = Counter()
    cc = Counter()
    for (c, h, w), count in images.shapes.items():
        hw[(h, w)] += count
        cc[c] += count
    in_sizes = tuple((h, w, c) for (h, w), c in sorted(hw.items()))
    in_channels = tuple(sorted(cc.items()))
    x, size, channels, fmt_notes = _format(images, size, gray, dev)
    notes += fmt_notes
    y = images.labels
    settings = {"ks": [int(v) for v in ks], "k": int(k), "ci": float(ci), "n_bootstrap": int(n_bootstrap),
                "near_duplicate_fraction": float(near_duplicate_fraction), "kf_sample_images": int(kf_sample_images),
                "reference_n": int(n)}
    geo_kw = {"ks": ks, "k": k, "ci": ci, "n_bootstrap": n_bootstrap, "seed": seed,
              "near_duplicate_fraction": near_duplicate_fraction, "kf_sample_images": kf_sample_images}
    with tqdm(total=6, desc=f"{images.name}: all {len(y)} images", disable=not progress, leave=False) as bar:
        full = core.geometry(x, y, progress=bar, **geo_kw)
    idx = subsample(y, n, seed)
    balanced = True
    if len(idx) < int(k) + 1:  # a tiny class: no class-balanced subsample is large enough for the MLE
        balanced = False
        idx = np.arange(len(y)) if len(y) <= n else data.sample_indices(y, int(n), seed=seed, balanced=False)
        notes.append(f"the smallest class allows a class-balanced subsample of only {balanced_max(y)} images (< k + 1): "
                     f"the comparison uses {'all images' if len(idx) == len(y) else 'a seeded random subsample'} "
                     "instead, not class-balanced")
    if len(idx) == len(y):
        common = full
    else:
        import torch

        with tqdm(total=6, desc=f"{images.name}: common n = {len(idx)}", disable=not progress, leave=False) as bar:
            common = core.geometry(x[torch.as_tensor(idx, device=dev)], y[idx], progress=bar, **geo_kw)
    common_n = int(len(idx))
    if common_n < n and balanced:
        notes.append(f"the comparison uses n = {common_n} images (class-balanced; asked for {n}): the most a "
                     f"balanced subsample of these classes allows ({balanced_max(y)})")
    if references is False:
        refs, ref_notes = [], []
    else:
        refs, ref_notes = compute_references(None if references in (None, True) else references, size=size,
                                      channels=channels, n=common_n, seed=seed, settings=settings,
                                      device=None if str(device) == "auto" else str(dev), store=store,
                                      progress=progress)
    i, j = full.k_f_pair
    pair = (x[i].cpu().numpy(), x[j].cpu().numpy())
    counts = np.bincount(y, minlength=len(images.classes))
    for note in notes:
        log.info("%s: %s", images.name, note)
    return Measurement(
        name=images.name, source=images.source, classes=tuple(images.classes),
        class_counts=tuple(int(c) for c in counts), n_images=int(len(y)), size=int(size), channels=int(channels),
        pixel_range=(0, 255), preprocessing=describe(size, channels), input_sizes=in_sizes,
        input_channels=in_channels, input_dtype=images.dtype, input_range=(lo, hi), notes=tuple(notes),
        geometry=full, common_n=common_n, common=common, references=tuple(refs), reference_notes=tuple(ref_notes),
        seed=int(seed), settings=settings, registered=images.registered, device=str(dev), k_f_images=pair)


def measure(images, labels, *, size: int | None = None, gray: bool = False, device="auto",
            classes: Sequence[str] | None = None, task=None, name: str = "dataset", n: int = REFERENCE_N,
            references: Iterable[str] | None | bool = None, seed: int = REFERENCE_SEED,
            max_images: int | None = None, ks: Sequence[int] = K_VALUES, k: int = K_MAIN, ci: float = CI_LEVEL,
            n_bootstrap: int = N_BOOTSTRAP, near_duplicate_fraction: float = NEAR_DUPLICATE_FRACTION,
            kf_sample_images: int = KF_SAMPLE_IMAGES, store: runs.Store | None = None,
            progress: bool = True) -> Measurement:
    """P1's intrinsic dataset properties of labelled images, beside the book's reference datasets.

    Args:
        images: uint8 or float array/tensor ``(N, C, H, W)`` or ``(N, H, W[, C])`` (C = 1, 3 or 4; RGBA loses its
            alpha), or a sequence of per-image arrays (sizes may differ). Raw pixels, not normalised: each image is
            scaled by 255 / its maximum anyway (P1), so [0, 1] and [0, 255] floats give the same result.
        labels: ``(N,)`` or ``(N, 1)`` class ids or names.
        size: side S of the P1 format (bilinear resize to S x S); None keeps the images' size, which must then be
            one square size. Compare datasets at ONE size: distances, hence K_F, scale with it.
        gray: measure in one grey channel (ITU-R 601 luma), as the book's P1 chapter; else grey images stay grey,
            RGB stays RGB, and a mix becomes RGB (noted).
        device: "auto" (CUDA when available), "cpu" or "cuda"; the numbers do not depend on it.
        classes: names of integer labels 0..K-1; task: two classes (names or indices, or "a,b") to keep,
            relabelled 0 and 1 (P1's tasks are binary).
        name: the dataset's name in the report.
        n: the common subsample size of the comparison with the references (class-balanced, seeded; capped by
            what the classes allow); :data:`~.references.REFERENCE_N` by default.
        references: registered dataset names to compare with (default: all; ``False``: none).
        seed: seeds every subsample, the bootstrap and P1's sampled K_F (fixed: running twice gives the same
            numbers).
        max_images: measure a seeded random subset of at most this many images (very large datasets).
        ks, k, ci, n_bootstrap: MLE k-sensitivity set, main k (P1: 20), interval level and bootstrap resamples.
        near_duplicate_fraction: the near-duplicate threshold relative to the median nearest-neighbour distance
            (:data:`~.core.NEAR_DUPLICATE_RULE`).
        kf_sample_images: subset size of P1's sampled K_F (P1: 1000).
        store: run store of the reference runs (default ``$DOMAINGAP_ARTEFACTS``).
        progress: tqdm progress bars.

    Returns:
        :class:`Measurement`. Raises ValueError on bad input (the message names the value and what was expected).
    """
    imgs = inputs.from_arrays(images, labels, classes=classes, name=name)
    return measure_images(imgs, size=size, gray=gray, device=device, task=task, n=n, references=references,
                          seed=seed, max_images=max_images, ks=ks, k=k, ci=ci, n_bootstrap=n_bootstrap,
                          near_duplicate_fraction=near_duplicate_fraction, kf_sample_images=kf_sample_images,
                          store=store, progress=progress)


def measure_path(path: str | Path, *, out: str | Path | None = None, size: int | None = None, gray: bool = False,
                 task=None, device="auto", n: int = REFERENCE_N, split: str = "all",
                 references: Iterable[str] | None | bool = None, seed: int = REFERENCE_SEED,
                 max_images: int | None = None, progress: bool = True, **options) -> Measurement:
    """:func:`measure` on an ImageFolder directory (``path/<class>/<image>``), a ``.npz`` in MedMNIST's layout
    (``train_images`` / ``train_labels``, optionally ``val_*`` / ``test_*``: pooled, or one ``split``), or a
    registered dataset name (:func:`domaingap.data.names`). With ``out``, writes the report there
    (``report.md``, figures, ``measurement.json``; :func:`~.report.write_report`). ``options`` are
    :func:`measure`'s (ks, k, ci, n_bootstrap, near_duplicate_fraction, kf_sample_images, store)."""
    imgs = inputs.read_path(path, size=size, split=split, progress=progress)
    m = measure_images(imgs, size=size, gray=gray, device=device, task=task, n=n, references=references, seed=seed,
                       max_images=max_images, progress=progress, **options)
    if out is not None:
        from .report import write_report

        write_report(m, out)
    return m
