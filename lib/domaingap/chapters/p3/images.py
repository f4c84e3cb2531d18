"""P3's images: dataset splits in the chapter's one format, the target pools, their folds and the probe images.

ONE image format for every dataset: ``image_size`` px, ``channels`` (1: ITU-R 601 luma for RGB sets), pixels in
[0, 1]; float32 ``(N, C, S, S)`` images and int64 ``(N,)`` labels. Fine-tuning follows P3's 5-fold
cross-validation (Juodelyte et al., TMLR 2023): the official train and val splits are pooled and split
into stratified folds, the same folds for every initialisation.

These functions shape every run's result, so they are part of the run kinds' code hash
(:mod:`domaingap.chapters.p3.runs`).
"""

from __future__ import annotations

import numpy as np

from ... import data

__all__ = ["folds", "load_images", "probe_images", "target_pool", "validation_split"]


def load_images(name: str, split: str, *, model_cfg: dict, n: int | None = None, seed: int = 0):
    """A dataset split in the chapter's format: float32 ``(N, C, S, S)`` in [0, 1] and int64 labels ``(N,)``.

    ``n`` draws a seeded random subset first (so only those images are resized).
    """
    total = data.info(name).split_sizes[split]
    n = None if n is None or n >= total else int(n)
    s = data.load(name, split, size=model_cfg["image_size"], channels=model_cfg["channels"], n=n, seed=seed)
    return s.x, s.y


def target_pool(name: str, *, model_cfg: dict, max_pool: int | None = None, seed: int = 0):
    """The target's official train and val splits pooled, optionally capped by a stratified subsample.

    Returns ``(x, y)``: float32 ``(M, C, S, S)`` in [0, 1] and int64 ``(M,)``, train images first. With
    ``max_pool`` smaller than the pool, a seeded stratified subsample of ``max_pool`` images (class proportions
    kept) is returned instead, in pool order.
    """
    import torch

    splits = [s for s in ("train", "val") if s in data.info(name).split_sizes]
    parts = [load_images(name, s, model_cfg=model_cfg) for s in splits]
    x = torch.cat([p[0] for p in parts])
    y = torch.cat([p[1] for p in parts])
    if max_pool is not None and max_pool < len(y):
        from sklearn.model_selection import StratifiedShuffleSplit

        if max_pool < 2 * int(y.max() + 1):
            raise ValueError(f"max_pool={max_pool} is too small for {name}'s {int(y.max()) + 1} classes")
        keep, _ = next(StratifiedShuffleSplit(n_splits=1, train_size=int(max_pool), random_state=seed)
                       .split(np.zeros(len(y)), y.numpy()))
        keep = torch.from_numpy(np.sort(keep))
        x, y = x[keep], y[keep]
    return x, y


def folds(y, n_folds: int, seed: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified ``n_folds``-fold split of labels ``y`` (``(M,)``): a list of ``(train_idx, test_idx)``.

    ``sklearn.model_selection.StratifiedKFold(shuffle=True, random_state=seed)``; every position is held out
    exactly once. Raises ``ValueError`` when a class has fewer than ``n_folds`` members.
    """
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    counts = np.bincount(y)
    if counts[counts > 0].min() < n_folds:
        raise ValueError(f"n_folds={n_folds} needs >= {n_folds} images per class; class counts are "
                         f"{counts.tolist()}")
    skf = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    return [(np.asarray(tr), np.asarray(te)) for tr, te in skf.split(np.zeros(len(y)), y)]


def validation_split(y, train_idx, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Carve a validation split from a fold's training part: ``(fit_idx, val_idx)``, positions in the pool.

    ``fraction`` of ``train_idx`` (at least one image per class when possible), stratified by ``y`` and seeded
    (``StratifiedShuffleSplit``; a plain shuffle split when a class has a single member). Both are sorted and
    disjoint, and together they are ``train_idx``; the held-out fold is never touched.
    """
    from sklearn.model_selection import ShuffleSplit, StratifiedShuffleSplit

    train_idx = np.asarray(train_idx)
    yt = np.asarray(y)[train_idx]
    n_val = max(int(round(fraction * len(train_idx))), len(np.unique(yt)))
    if not 0 < n_val < len(train_idx):
        raise ValueError(f"cannot hold out {n_val} of {len(train_idx)} training images for validation")
    counts = np.bincount(yt)
    splitter = (StratifiedShuffleSplit if counts[counts > 0].min() >= 2 else ShuffleSplit)(
        n_splits=1, test_size=n_val, random_state=int(seed))
    fit, val = next(splitter.split(np.zeros(len(yt)), yt))
    return np.sort(train_idx[fit]), np.sort(train_idx[val])


def probe_images(name: str, *, model_cfg: dict, n: int, seed: int = 0):
    """``n`` images drawn (seeded, without replacement) from ALL official splits of ``name``, for CCA.

    Every model compared on a target sees these same inputs. Returns float32 ``(n', C, S, S)`` with
    ``n' = min(n, dataset size)``.
    """
    import torch

    splits = list(data.info(name).split_sizes)
    sizes = [data.info(name).split_sizes[s] for s in splits]
    total = sum(sizes)
    pick = np.sort(np.random.default_rng(seed).permutation(total)[: min(int(n), total)])
    out = []
    offset = 0
    for s, size in zip(splits, sizes):
        local = pick[(pick >= offset) & (pick < offset + size)] - offset
        offset += size
        if len(local):
            imgs, _ = data.load_arrays(name, s, release=data.release_for(name, model_cfg["image_size"]))
            out.append(torch.from_numpy(imgs[local]).float())
    x = torch.cat(out)
    # same conversion as data.load (luma, antialiased resize, [0, 1]) without decoding a whole split twice
    if model_cfg["channels"] == 1 and x.shape[1] == 3:
        x = data.formats.to_luma(x)
    elif model_cfg["channels"] == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    size = model_cfg["image_size"]
    if x.shape[-1] != size:
        import torch.nn.functional as F

        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x.clamp_(0.0, 255.0) / 255.0).contiguous()
