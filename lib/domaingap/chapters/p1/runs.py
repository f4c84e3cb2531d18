"""P1's run kinds: the only code of the chapter that enters artefact keys (:mod:`domaingap.runs`).

==============  ==========================================================  ===================
kind            one run                                                     upstream
==============  ==========================================================  ===================
``p1_geometry`` d_data (MLE at k = 5..50, TwoNN) and K_F (exact, P1's        none
                sampled) of a task's whole training pool or of one
                class-balanced subsample of it (Fig. 1)
``p1_train``    one model trained from scratch as P1 (Adam, cross-entropy,    none
                no augmentation, last epoch), evaluated on the task's
                fixed test set (Fig. 2); writes ``model.pt``
``p1_attack``   clean and FGSM / PGD test loss of one trained model           ``model``: p1_train
                (robustness vs K_F)
``p1_repr``     d_repr (TwoNN, MLE) of one trained model's penultimate        ``model``: p1_train
                representation of its training set, and d_data of the
                same images (Sec. 5)
==============  ==========================================================  ===================

Every run function has the signature ``fn(spec, inputs, work) -> dict`` and never calls the store: the trained
model of an attack or d_repr run arrives as ``inputs["model"]`` (a verified :class:`domaingap.runs.Entry`). The
device (CUDA when available, :func:`domaingap.devices.default_device`) is never part of a spec; the intra-op
thread count is set by the executor (``$DOMAINGAP_RUN_THREADS``) and is part of the key.

The kernels are imported here at module level, also those the kernels import lazily (``distances``), so that
every module a run's code reaches is loaded before its key's code closure is taken (:mod:`domaingap.runs.code`
follows attribute calls into loaded modules only).
"""

from __future__ import annotations

import math
import warnings
from pathlib import Path

import numpy as np

from ... import devices, models, runs, training
from ...kernels import attacks, distances, intrinsic_dim, sharpness  # noqa: F401  (distances: see above)
from ...kernels._validation import DuplicatePointsWarning
from .pools import _split_for, geometry_indices, run_data

__all__ = ["attack", "build", "geometry", "load_model", "repr_dim", "representation", "train"]


@runs.kind("p1_geometry", libraries=("numpy", "torch"))
def geometry(spec: dict, inputs: dict, work: Path) -> dict:
    """d_data (MLE at every k of ``spec["ks"]`` and TwoNN, from one exact kNN pass) and K_F (exact over all
    cross-class pairs, and P1's sampled estimator) of a task's training pool: all of it (``n = "full"``) or a
    class-balanced subsample of ``spec["n"]`` images (seed ``spec["rep"]``).

    The pair of images that defines the exact K_F is returned as pool indices (``kf_i``, ``kf_j``)."""
    import torch

    pool, split = _split_for(spec)
    idx = geometry_indices(split, pool.y, spec["n"], spec["rep"])
    x = torch.from_numpy(pool.x[idx])  # uint8: the kernels form exact integer differences
    y = torch.from_numpy(pool.y[idx])
    with warnings.catch_warnings():
        # exact duplicate images are skipped by the estimators (as in P1's code); counted below instead
        warnings.simplefilter("ignore", DuplicatePointsWarning)
        dims = intrinsic_dim.estimate_all(x, ks=spec["ks"], twonn=True)
    # a duplicated image with two labels makes K_F infinite: keep the run and report it
    pair = sharpness.label_sharpness(x, y, return_pair=True, on_duplicate="inf")
    m = min(spec["kf_sample_images"], len(idx))
    kf_sampled = sharpness.label_sharpness_sampled(x, y, n_images=m, seed=spec["rep"])
    flat = pool.x[idx].reshape(len(idx), -1)
    duplicates = len(idx) - len(np.unique(flat, axis=0))
    return {**{f"mle_k{k}": float(dims.mle[k]) for k in spec["ks"]}, "twonn": float(dims.twonn),
            "kf": float(pair.k_f), "kf_sampled": float(kf_sampled), "kf_i": int(idx[pair.i]),
            "kf_j": int(idx[pair.j]), "kf_distance": float(pair.distance), "n_points": int(len(idx)),
            "class_counts": np.bincount(pool.y[idx], minlength=2).tolist(), "duplicates": int(duplicates)}


def build(spec: dict):
    """Untrained model of a training spec (``model`` name plus ``arch`` options such as ``width``/``stem``), its
    initial weights drawn from torch's global RNG (the caller seeds it)."""
    return models.build_configured(spec["model"], spec.get("arch", {}), in_channels=1, num_classes=2,
                                   image_size=spec["size"])


@runs.kind("p1_train", libraries=("numpy", "torch", "torchvision", "scikit-learn"))
def train(spec: dict, inputs: dict, work: Path) -> dict:
    """Train one model from scratch as P1 does (Adam, cross-entropy, no augmentation, last epoch kept) on
    ``spec["n"]`` class-balanced images (seed ``spec["seed"]``) and evaluate it on the task's fixed test set.

    Writes ``model.pt`` (CPU state dict) into ``work``; returns test/train loss, accuracy, balanced accuracy,
    AUC, the per-epoch training loss and timings.
    """
    import torch

    device = devices.default_device()
    x_tr, y_tr, x_te, y_te = run_data(spec)
    torch.manual_seed(spec["seed"])  # the initial weights
    model, x_tr = models.channels_last(build(spec), x_tr)  # faster steps (models.channels_last); saved contiguous
    hist = training.fit(model, x_tr.to(device), y_tr.to(device), epochs=spec["epochs"],
                        batch_size=spec["batch_size"], lr=spec["lr"], weight_decay=spec["weight_decay"],
                        optimizer=spec["optimizer"], seed=spec["seed"], progress=False, device=device)
    test = training.evaluate(model, x_te.to(device), y_te.to(device))
    train_ = training.evaluate(model, x_tr.to(device), y_tr.to(device))
    torch.save({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, work / "model.pt")
    return {"test_loss": test["loss"], "test_accuracy": test["accuracy"],
            "test_balanced_accuracy": test["balanced_accuracy"], "test_auc": test["auc"], "n_test": test["n"],
            "train_loss": train_["loss"], "train_accuracy": train_["accuracy"], "n_train": train_["n"],
            "history_train_loss": hist["train_loss"], "seconds": float(sum(hist["time_s"])),
            "n_params": int(sum(p.numel() for p in model.parameters()))}


def load_model(train_spec: dict, entry: runs.Entry):
    """The trained model of ``entry`` (a ``p1_train`` entry of ``train_spec``) on
    :func:`domaingap.devices.default_device`, in the mode it was saved in (callers switch to eval mode with
    :func:`domaingap.devices.eval_mode`)."""
    import torch

    model = build(train_spec)
    model.load_state_dict(torch.load(entry.file("model.pt"), map_location="cpu", weights_only=True))
    return model.to(devices.default_device())


@runs.kind("p1_attack", libraries=("numpy", "torch", "torchvision"),
           upstream=lambda spec: {"model": train(spec["train"])})
def attack(spec: dict, inputs: dict, work: Path) -> dict:
    """Clean and adversarial test loss/accuracy of the trained model ``inputs["model"]`` for every attack and
    budget of ``spec`` (untargeted L-inf FGSM as P1; PGD from the clean image, no random start, step
    ``pgd_step_factor * eps / steps``; budgets in grey levels of the [0, 255] inputs). Returns
    ``{"rows": [...]}``, one row per (attack, eps)."""
    import torch
    import torch.nn.functional as F

    model = load_model(spec["train"], inputs["model"])
    device = devices.default_device()
    _, _, x_te, y_te = run_data(spec["train"])
    bs = spec["batch_size"]
    batches = [(xb.to(device), yb.to(device)) for xb, yb in zip(x_te.split(bs), y_te.split(bs))]
    n = len(y_te)

    def totals(xa: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        with torch.no_grad():
            logits = model(xa).double()
        return np.array([float(F.cross_entropy(logits, y, reduction="sum")), float((logits.argmax(1) == y).sum())])

    rows = []
    with devices.eval_mode(model):
        clean = sum(totals(xb, yb) for xb, yb in batches) / n
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
                        xa = attacks.pgd(model, xb, yb, eps, steps=steps,
                                         step_size=spec["pgd_step_factor"] * eps / steps, norm="linf",
                                         random_start=False, input_range=(0, 255))
                    else:
                        raise ValueError(f"unknown attack {name!r}; expected 'fgsm' or 'pgd'")
                    tot += totals(xa, yb)
                adv = tot / n
                rows.append({"attack": name, "eps": eps, "clean_loss": clean[0], "clean_accuracy": clean[1],
                             "adv_loss": adv[0], "adv_accuracy": adv[1], "delta_loss": adv[0] - clean[0],
                             "delta_accuracy": clean[1] - adv[1]})
    return {"rows": rows}


def representation(model, x, batch_size: int = 256):
    """P1's penultimate representation ``(N, F)``: ResNet ``layer4`` output flattened before the average pool,
    VGG second classifier ``Linear`` before its ReLU (:func:`domaingap.models.penultimate`)."""
    import torch

    with torch.no_grad():
        return models.penultimate(model, x, resnet_layer="layer4", batch_size=batch_size)


@runs.kind("p1_repr", libraries=("numpy", "torch", "torchvision"),
           upstream=lambda spec: {"model": train(spec["train"])})
def repr_dim(spec: dict, inputs: dict, work: Path) -> dict:
    """d_repr by TwoNN (P1's estimator) and MLE (k of the spec) of the trained model's (``inputs["model"]``)
    representation of its own training set (as P1's ``estimate_reprdim_allmodels.py``), and d_data of the same
    training images (``data_twonn``, ``data_mle``)."""
    import torch

    model = load_model(spec["train"], inputs["model"])
    x_tr, _, _, _ = run_data(spec["train"])
    with devices.eval_mode(model):
        z = representation(model, x_tr.to(devices.default_device())).double()
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
