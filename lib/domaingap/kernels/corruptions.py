"""MedMNIST-C corruptions (Di Salvo et al. 2024, arXiv 2406.17536; the ``medmnistc`` package), applied at the
resolution their parameters were tuned for.

- :func:`medmnistc_registry`: the package's registry (corruptions per dataset, RGB datasets, categories).
- :func:`corruption_names`, :func:`corruption_category`: the corruptions of one registry entry, and a
  corruption's category (digital, noise, blur, color, task-specific).
- :func:`corrupt`: one corruption at one severity on uint8 ``(N, C, H, W)`` images, through a 224 px round trip.
- :func:`to_uint8`: float images in [0, 1] -> uint8.

``medmnistc`` (which needs ImageMagick's MagickWand), PIL and torch are imported when a function is first called.
"""

from __future__ import annotations

import numpy as np

__all__ = ["corrupt", "corruption_category", "corruption_names", "medmnistc_registry", "to_uint8"]


def medmnistc_registry():
    """``(CORRUPTIONS_DS, DATASET_RGB, CORRUPTIONS_DS_FOLDS)`` of the installed ``medmnistc`` package.

    Raises ImportError with the fix when ImageMagick's MagickWand (needed by ``wand`` for motion blur) is missing.
    """
    try:
        from medmnistc.corruptions.registry import CORRUPTIONS_DS, CORRUPTIONS_DS_FOLDS, DATASET_RGB
    except ImportError as err:
        raise ImportError(f"medmnistc could not be imported ({err}); it needs ImageMagick's MagickWand library "
                          "(apt-get install libmagickwand-6.q16-6, see scripts/setup_system.sh) and wand") from err
    return CORRUPTIONS_DS, DATASET_RGB, CORRUPTIONS_DS_FOLDS


def corruption_names(registry: str) -> list[str]:
    """Corruptions of one MedMNIST-C registry entry, in the package's order."""
    ds, _, _ = medmnistc_registry()
    if registry not in ds:
        raise ValueError(f"unknown MedMNIST-C registry entry {registry!r}; known: {', '.join(ds)}")
    return list(ds[registry])


def corruption_category(corruption: str) -> str:
    """MedMNIST-C category of a corruption: digital, noise, blur, color or task-specific."""
    _, _, folds = medmnistc_registry()
    for cat, names in folds.items():
        if corruption in names:
            return cat
    raise ValueError(f"corruption {corruption!r} is in no MedMNIST-C category")


def corrupt(images: np.ndarray, registry: str, corruption: str, severity: int, *, seed: int = 0,
            work_size: int = 224, out_size: int | None = None, return_rms_work: bool = False):
    """Apply one MedMNIST-C corruption at one severity the way its parameters were tuned: at 224 px.

    Each image is upsampled (PIL bicubic) to ``work_size`` px, converted to RGB as ``medmnistc``'s dataset
    builder does, corrupted with ``CORRUPTIONS_DS[registry][corruption].apply(img, severity)``, converted back
    to gray if the task is gray, and downsampled to the original size by area averaging (PIL box filter: each
    output pixel is the mean of the 8 x 8 pixels it covers, like a coarser detector). Of the PIL filter pairs
    this round trip has one of the smallest errors on real 28 px images (RMS ~0.01 of the range). ``corruption="none"`` gives the same round trip without corruption: the clean reference
    every drop is measured from.

    Args:
        images: uint8 ``(N, C, H, W)``, C = 1 (gray) or 3 (RGB).
        registry: MedMNIST-C registry entry, e.g. ``"breastmnist"``.
        corruption: a name from :func:`corruption_names` or ``"none"``.
        severity: 0..4 (the paper's severities 1..5).
        seed: seeds ``np.random`` (the package's noise, motion-blur angle) and the impulse-noise generator;
            the global NumPy state is restored afterwards.
        out_size: side of the returned images (default: that of ``images``). Images already at ``work_size``
            (e.g. MedMNIST+'s 224 px release, as MedMNIST-C itself is built) are corrupted as they are, with no
            upsampling, then shrunk to ``out_size``.
        return_rms_work: also return the per-image RMS change at ``work_size`` px (0..1 scale), to compare with
            the change that survives the downsampling.

    Returns:
        uint8 ``(N, C, H, W)`` (and float64 ``(N,)`` when ``return_rms_work``).
    """
    from PIL import Image

    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be uint8 (N, C, H, W) with C in (1, 3), got {images.dtype} {images.shape}")
    if not (isinstance(severity, (int, np.integer)) and 0 <= severity <= 4):
        raise ValueError(f"severity must be an int in 0..4 (the paper's 1..5), got {severity!r}")
    ds, _, _ = medmnistc_registry()
    if registry not in ds:
        raise ValueError(f"unknown MedMNIST-C registry entry {registry!r}; known: {', '.join(ds)}")
    if corruption != "none" and corruption not in ds[registry]:
        raise ValueError(f"{registry!r} has no corruption {corruption!r}; it has {', '.join(ds[registry])}")
    corr = None if corruption == "none" else ds[registry][corruption]
    n, c, h, w = images.shape
    if h != w:
        raise ValueError(f"images must be square, got {h} x {w} px")
    h = w = int(out_size) if out_size is not None else h
    out = np.empty((n, c, h, w), dtype=np.uint8)
    rms = np.zeros(n)
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # torchvision's per-image gaussian blur is ~7x slower when threads contend
    state = np.random.get_state()
    np.random.seed(seed)
    if corr is not None:
        corr.rng = np.random.default_rng(seed)  # read only by ImpulseNoise (skimage random_noise)
    try:
        for i in range(n):
            pil = Image.fromarray(images[i, 0] if c == 1 else images[i].transpose(1, 2, 0)).convert("RGB")
            big = pil if pil.size == (work_size, work_size) else pil.resize((work_size, work_size), Image.BICUBIC)
            res = np.asarray(big) if corr is None else np.asarray(corr.apply(big, int(severity)), dtype=np.uint8)
            res_img = Image.fromarray(res)
            res_img = res_img.convert("L" if c == 1 else "RGB")
            if return_rms_work:
                ref = np.asarray(big.convert("L" if c == 1 else "RGB"), dtype=np.float64)
                rms[i] = np.sqrt(np.mean((np.asarray(res_img, dtype=np.float64) - ref) ** 2)) / 255.0
            small = np.asarray(res_img.resize((w, h), Image.BOX))
            out[i] = small[None] if c == 1 else small.transpose(2, 0, 1)
    finally:
        np.random.set_state(state)
        torch.set_num_threads(threads)
    return (out, rms) if return_rms_work else out


def to_uint8(x) -> np.ndarray:
    """float ``(N, C, H, W)`` tensor/array in [0, 1] -> uint8 (rounded)."""
    arr = x.numpy() if hasattr(x, "numpy") else np.asarray(x)
    return np.clip(np.rint(arr * 255.0), 0, 255).astype(np.uint8)
