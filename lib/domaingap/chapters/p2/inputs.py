"""What P2's run functions read and share: the tensors of a model spec, trained models from their entries, the
targets and start images of the constructed datasets (Ilyas et al. 2019, Sec. 3), seeded test subsets.

Everything here is called by the run kinds of :mod:`.runs`, so it is part of their code hash: an edit here
retrains what it shapes. Nothing here reads the artefact store: upstream entries are passed in.

Array conventions: model inputs are float32 ``(N, C, H, W)`` tensors in [0, 1] (CPU); labels int64 ``(N,)``.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager

import numpy as np

from ... import models
from .tasks import get_task, load_task

__all__ = ["attack_batch", "balanced_class_weights", "build", "derangement", "head", "load_model",
           "quiet_metrics", "targets", "test_data", "train_data"]


@contextmanager
def quiet_metrics():
    """Silence scikit-learn's warning that a small test subset lacks a predicted class (balanced accuracy is
    still the mean recall over the classes present, as documented)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        yield


def attack_batch(device) -> int:
    # Attack batches do not change results (per-example attacks), only memory use and speed.
    return 2048 if getattr(device, "type", str(device)) == "cuda" else 256


def build(spec: dict):
    """Untrained model of a model spec (``model`` name plus ``arch`` options such as ``width``/``stem``), drawn
    from the global torch RNG (the caller seeds it)."""
    t = get_task(spec["task"])
    return models.build_configured(spec["model"], spec.get("arch") or {}, in_channels=t.channels,
                                   num_classes=t.num_classes, image_size=t.size)


def load_model(spec: dict, entry, device):
    """The trained model of model spec ``spec`` from its ``p2_model`` entry, in eval mode on ``device`` (it is
    only ever used for inference and attacks)."""
    import torch

    model = build(spec)
    model.load_state_dict(torch.load(entry.file("model.pt"), map_location="cpu", weights_only=True))
    return model.to(device).eval()


def balanced_class_weights(y, num_classes: int) -> list[float]:
    """Cross-entropy class weights ``N / (K * n_c)`` (scikit-learn's "balanced"); a class absent from ``y`` gets
    weight 1 (it contributes no loss terms anyway). ``y``: int labels ``(N,)``."""
    counts = np.bincount(np.asarray(y).reshape(-1), minlength=num_classes).astype(np.float64)
    if len(counts) > num_classes:
        raise ValueError(f"labels reach {len(counts) - 1}, but num_classes is {num_classes}")
    n = counts.sum()
    return [float(n / (num_classes * c)) if c > 0 else 1.0 for c in counts]


def train_data(spec: dict, dataset=None):
    """Training tensors of a model spec: ``x (N, C, S, S)`` float32 in [0, 1], ``y (N,)`` int64 (CPU).

    ``train_on == "clean"``: the task's seeded training subset. Otherwise ``dataset`` is the ``p2_dataset``
    entry of ``spec["train_on"]`` (its ``x.pt`` and ``y.pt``)."""
    import torch

    if spec["train_on"] == "clean":
        s = load_task(spec["task"], "train", n=spec["n_train"], seed=spec["data_seed"])
        return s.x, s.y
    if dataset is None:
        raise ValueError(f"model spec trains on a constructed dataset (variant {spec['train_on'].get('variant')!r}): "
                         f"pass its p2_dataset entry")
    return (torch.load(dataset.file("x.pt"), map_location="cpu", weights_only=True),
            torch.load(dataset.file("y.pt"), map_location="cpu", weights_only=True))


def test_data(spec: dict):
    """The task's fixed test subset of a model spec: ``x (N, C, S, S)``, ``y (N,)`` (CPU)."""
    s = load_task(spec["task"], "test", n=spec["n_test"], seed=0)
    return s.x, s.y


def derangement(n: int, rng: np.random.Generator) -> np.ndarray:
    """A random permutation without fixed points (every image starts from ANOTHER image); n >= 2."""
    perm = rng.permutation(n)
    fixed = np.flatnonzero(perm == np.arange(n))
    if len(fixed) == 1:  # swap the lone fixed point with any other position
        i, j = fixed[0], (fixed[0] + 1) % n
        perm[i], perm[j] = perm[j], perm[i]
    elif len(fixed) > 1:  # rotate the fixed points among themselves
        perm[fixed] = np.roll(perm[fixed], 1)
    return perm


def targets(y, num_classes: int, variant: str, seed: int) -> np.ndarray:
    """Target labels of D_rand (uniform over all K classes, so ~1/K keep their label) or D_det
    (``(y + 1) mod K``: every label changes). ``y``: int labels ``(N,)``; returns int64 ``(N,)``."""
    y = np.asarray(y).reshape(-1)
    if variant == "det":
        return ((y + 1) % num_classes).astype(np.int64)
    if variant == "rand":
        return np.random.default_rng(seed).integers(0, num_classes, size=len(y)).astype(np.int64)
    raise ValueError(f"variant must be 'rand' or 'det', got {variant!r}")


def head(x, y, n, seed: int = 0):
    """The first ``n`` images of a seeded random order of ``(x, y)`` (all of them, reordered, when ``n`` is None
    or too large). Test subsets are sorted by position, which for MedNIST means by class: a plain ``x[:n]``
    would attack one class only. The same seed gives nested subsets, so a smaller ``n`` is a prefix."""
    import torch

    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    if n is not None:
        order = order[:n]
    return x[order], y[order]
