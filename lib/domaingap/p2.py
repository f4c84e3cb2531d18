"""Chapter P2: useful nonrobust features, adversarial training and MedMNIST-C distribution shift.

Reproduces, at small scale, Mouton et al., "Useful nonrobust features are ubiquitous in biomedical images"
(arXiv 2604.22579, 2026), whose method follows Ilyas et al., "Adversarial Examples Are Not Bugs, They Are
Features" (NeurIPS 2019, arXiv 1905.02175), and whose shift benchmark is MedMNIST-C (Di Salvo et al. 2024,
arXiv 2406.17536; the ``medmnistc`` package).

The paper's claims tested here (notebooks ``notebooks/p2/*.md``):

- Tab. 1 (nonrobust features): a fresh model trained on D_det / D_rand -- training images pushed by targeted
  L2 PGD towards a new label ``t`` and relabelled ``t`` -- classifies the ORIGINAL clean test set above chance.
  D_NR / D_R (representation inversion through a standard / robust model) where the profile allows.
- Tab. 2 (trade-off): L2 PGD adversarial training lowers clean accuracy and raises PGD accuracy.
- Tab. 3 (shift): adversarially trained models lose less under MedMNIST-C corruptions.
- Fig. 1 (saliency): input-gradient saliency of a robust model changes less between a clean CT image and its
  adversarial version than that of a standard model (Spearman rank correlation between the two maps).

Protocol (one place, used by every notebook and by ``python -m domaingap.p2``):

- Tasks (:data:`TASKS`): every medical dataset of the mirror at its MedMNIST resolution (28 px; MedNIST is
  restricted to its three CT classes, the closest analogue of P2's organ-CT tasks, and resized to 28 px) plus
  a natural control: Fashion-MNIST (28 x 28 x 1 like the medical tasks; CPU profiles) and CIFAR-10 at its
  native 32 x 32 x 3 (Ilyas et al.'s dataset; ``paper``). Pixels in [0, 1], native channels. Training sets are a fixed seeded subset of the official training split (``n_train``), test sets a
  fixed seeded subset of the official test split (``n_test``); seeds vary only the training run.
- L2 budgets are Ilyas et al.'s CIFAR values scaled with the square root of the input dimension,
  ``eps = eps_ref * sqrt(C*H*W / 3072)`` (:func:`scaled_eps`): 0.5 on CIFAR-10 -> 0.253 at 28 x 28 x 1 and
  0.438 at 28 x 28 x 3, so that the per-pixel RMS perturbation is the same. The targeted attacks that build
  D_rand / D_det try multiples of that budget and keep the smallest that reaches its targets
  (:func:`dataset_run`).
- Every training, dataset-construction and evaluation run is a JSON-able spec computed through
  :func:`domaingap.artefacts.cached` / :func:`~domaingap.artefacts.sweep`; the device (CUDA when available)
  is never part of a spec. Trained weights are ``model.pt`` in the run's artefact folder.

Array conventions: model inputs are float32 ``(N, C, H, W)`` tensors in [0, 1]; labels int64 ``(N,)``;
MedMNIST-C works on uint8 ``(N, C, H, W)`` NumPy arrays.
"""

from __future__ import annotations

import argparse
import inspect
import math
import sys
import time
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from . import artefacts, data, profiles
from .claims import verdict  # noqa: F401  (re-exported for the notebooks)
from .kernels.corruptions import corrupt, corruption_names, to_uint8
from .kernels.corruptions import corruption_category, medmnistc_registry  # noqa: F401  (re-exported for the notebooks)
from .kernels.saliency import input_saliency, rank_correlation

PAPER = "P2"
# lib modules each kind of run depends on: a change in any of them invalidates the cached runs
# (the key hashes each named file, not what it imports: a kernel's private modules are listed too)
TRAIN_DEPENDS = ("p2", "data", "models", "training", "kernels.attacks", "kernels._attack_checks",
                 "kernels._inversion", "kernels.saliency", "kernels.corruptions")
MMC_DEPENDS = ("p2", "data", "kernels.corruptions")
REF_DIM = 3 * 32 * 32  # input dimension of Ilyas et al.'s CIFAR-10, where their L2 budgets were set

# Ilyas et al. (2019), CIFAR-10 (ResNet-50), accuracy on the clean test set of models trained on each dataset.
ILYAS_CIFAR = {"D_R": 0.8486, "D_NR": 0.8779, "D_rand": 0.6327, "D_det": 0.4381}


# ----------------------------------------------------------------------------------------------- tasks

@dataclass(frozen=True)
class Task:
    """One classification task of the chapter.

    ``dataset``/``classes``/``size``/``channels`` are passed to :func:`domaingap.data.load` (``classes=None``:
    all classes of the dataset). ``medmnistc``: the MedMNIST-C registry entry whose corruptions and severity
    parameters apply to this task (None: no MedMNIST-C evaluation).
    """

    name: str
    dataset: str
    classes: tuple[int, ...] | None
    size: int
    channels: int
    medmnistc: str | None
    title: str
    note: str = ""

    @property
    def domain(self) -> str:
        return data.info(self.dataset).domain

    @property
    def class_names(self) -> tuple[str, ...]:
        names = data.info(self.dataset).classes
        return names if self.classes is None else tuple(names[c] for c in self.classes)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        return (self.channels, self.size, self.size)


TASKS: dict[str, Task] = {
    "breastmnist": Task("breastmnist", "breastmnist", None, 28, 1, "breastmnist", "BreastMNIST",
                        "breast ultrasound, malignant vs normal/benign"),
    "pneumoniamnist": Task("pneumoniamnist", "pneumoniamnist", None, 28, 1, "pneumoniamnist", "PneumoniaMNIST",
                           "paediatric chest X-ray, normal vs pneumonia"),
    "retinamnist": Task("retinamnist", "retinamnist", None, 28, 3, "retinamnist", "RetinaMNIST",
                        "fundus photographs, 5 diabetic-retinopathy grades (RGB)"),
    "mednist_ct": Task("mednist_ct", "mednist", (0, 3, 5), 28, 1, "organamnist", "MedNIST-CT",
                       "MedNIST's CT classes AbdomenCT / ChestCT / HeadCT at 28 px; MedMNIST-C has no MedNIST "
                       "entry: the axial-CT OrganAMNIST entry is used"),
    "cifar10": Task("cifar10", "cifar10", None, 32, 3, None, "CIFAR-10",
                    "natural control at its native 32 x 32 x 3 (the offline copy is JPEG-recompressed)"),
    "fashionmnist": Task("fashionmnist", "fashionmnist", None, 28, 1, None, "Fashion-MNIST",
                         "natural control at the medical tasks' 28 x 28 x 1"),
}


def get_task(name: str) -> Task:
    """The :class:`Task` called ``name``; unknown names raise a ``ValueError`` listing the known ones."""
    if name not in TASKS:
        raise ValueError(f"unknown P2 task {name!r}; known tasks: {', '.join(TASKS)}")
    return TASKS[name]


def load_task(task: str | Task, split: str, *, n: int | None = None, seed: int = 0):
    """Images of ``task`` from the official ``split``: an :class:`domaingap.data.ImageSet` with ``x`` float32
    ``(N, C, S, S)`` in [0, 1] and ``y`` int64 ``(N,)``; ``n`` caps N with a seeded random subset (None, or
    ``n`` >= the split size, keeps all).

    Memoised (a sweep asks for the same sets many times): treat the returned tensors as read-only.
    """
    t = task if isinstance(task, Task) else get_task(task)
    if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
        raise ValueError(f"n must be a positive int or None, got {n!r}")
    return _load_task(t.name, split, n, int(seed))


@lru_cache(maxsize=8)
def _load_task(name: str, split: str, n: int | None, seed: int):
    t = get_task(name)
    _, labels = data.load_arrays(t.dataset, split)
    total = len(labels) if t.classes is None else int(np.isin(labels, t.classes).sum())
    # only the requested subset is converted to float and resized (MedNIST and CIFAR-10 have ~50k images)
    return data.load(t.dataset, split, classes=t.classes, size=t.size, channels=t.channels,
                     n=None if n is None or n >= total else n, seed=seed)


def scaled_eps(eps_ref: float, input_shape: Sequence[int], ref_dim: int = REF_DIM) -> float:
    """L2 budget for inputs of ``input_shape`` equivalent to ``eps_ref`` at ``ref_dim`` dimensions.

    ``eps = eps_ref * sqrt(prod(input_shape) / ref_dim)`` keeps the per-pixel RMS perturbation of Ilyas et
    al.'s CIFAR-10 budget (``ref_dim = 3*32*32``); e.g. 0.5 -> 0.2526 for a 28 x 28 x 1 image. Rounded to 6
    decimals so that specs stay readable.
    """
    if not (isinstance(eps_ref, (int, float)) and math.isfinite(eps_ref) and eps_ref >= 0):
        raise ValueError(f"eps_ref must be a finite number >= 0, got {eps_ref!r}")
    dims = [int(d) for d in input_shape]
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"input_shape must be positive dimensions such as (C, H, W), got {tuple(input_shape)}")
    if ref_dim < 1:
        raise ValueError(f"ref_dim must be >= 1, got {ref_dim}")
    return round(float(eps_ref) * math.sqrt(math.prod(dims) / ref_dim), 6)


@contextmanager
def _quiet_metrics():
    """Silence scikit-learn's warning that a small test subset lacks a predicted class (balanced accuracy is
    still the mean recall over the classes present, as documented)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="y_pred contains classes not in y_true")
        yield


def default_device():
    """CUDA when available, else CPU (never stored in a spec)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _attack_batch(device) -> int:
    # Attack batches do not change results (per-example attacks), only memory use and speed.
    return 2048 if getattr(device, "type", str(device)) == "cuda" else 256


# ----------------------------------------------------------------------------------------------- specs

def model_spec(task: str, mcfg: dict, seed: int, *, robust: bool = False, train_on: Any = "clean") -> dict:
    """Training spec of one model of the chapter.

    Args:
        task: a :data:`TASKS` name.
        mcfg: the ``p2_models`` profile section (training settings shared by every notebook, so that a model
            trained by one notebook is found in the artefacts by the others).
        seed: seeds the initial weights, batch order and attack starts (the data subsets are fixed).
        robust: L2 PGD adversarial training (Madry et al. 2018) with ``eps = scaled_eps(adv_eps_ref)``,
            ``adv_steps`` steps of ``2.5 * eps / adv_steps`` (the ``robustness`` library rule).
        train_on: ``"clean"`` (the task's training subset) or a dataset spec from :func:`dataset_spec`
            (D_rand, D_det, D_NR, D_R): a fresh model trained on a constructed dataset.
    """
    t = get_task(task)
    spec = {
        "task": t.name, "n_train": mcfg["n_train"], "data_seed": int(mcfg["data_seed"]), "n_test": mcfg["n_test"],
        "model": mcfg["arch"], "arch": dict(mcfg.get("arch_options") or {}),
        "epochs": int(mcfg["epochs"]), "batch_size": int(mcfg["batch_size"]), "lr": float(mcfg["lr"]),
        "optimizer": mcfg["optimizer"], "schedule": mcfg["schedule"], "weight_decay": float(mcfg["weight_decay"]),
        "class_weights": mcfg["class_weights"], "seed": int(seed), "adversarial": None, "train_on": train_on,
    }
    if robust:
        eps = scaled_eps(mcfg["adv_eps_ref"], t.input_shape)
        steps = int(mcfg["adv_steps"])
        spec["adversarial"] = {"eps": eps, "steps": steps, "step_size": round(2.5 * eps / steps, 6), "norm": "l2"}
    return spec


def dataset_spec(variant: str, source: dict, cfg: dict) -> dict:
    """Spec of a constructed training set (Ilyas et al. 2019, Sec. 3).

    Args:
        variant: ``"rand"`` (targeted L2 PGD towards a uniformly random label ``t``, relabelled ``t``),
            ``"det"`` (the same with ``t = (y + 1) mod K``), ``"nr"`` / ``"r"`` (representation inversion
            through the penultimate layer of a standard / adversarially trained ``source``; label kept).
        source: the model spec (:func:`model_spec`) of the source model: standard for rand, det and nr,
            robust for r.
        cfg: the ``p2_tab1`` profile section. rand/det: ``pgd_eps_ref`` (Ilyas et al.'s CIFAR budget, scaled by
            :func:`scaled_eps`), ``pgd_eps_multipliers`` (the budgets tried, as multiples of it),
            ``pgd_target_success`` and ``pgd_calibration_n`` (see :func:`dataset_run`), ``pgd_steps``,
            ``pgd_step_ratio`` (step = ratio * eps). nr/r: ``inversion_steps``, ``inversion_step_ref``,
            ``inversion_n``.
    """
    if variant not in ("rand", "det", "nr", "r"):
        raise ValueError(f"variant must be 'rand', 'det', 'nr' or 'r', got {variant!r}")
    if (variant == "r") != (source.get("adversarial") is not None):
        raise ValueError(f"D_{variant} needs a {'robust' if variant == 'r' else 'standard'} source model, got "
                         f"adversarial={source.get('adversarial')}")
    if source.get("train_on") != "clean":
        raise ValueError("the source model must be trained on the clean training set")
    t = get_task(source["task"])
    spec = {"variant": variant, "source": source}
    if variant in ("rand", "det"):
        base = scaled_eps(cfg["pgd_eps_ref"], t.input_shape)
        mults = sorted(float(m) for m in cfg["pgd_eps_multipliers"])
        if not mults or mults[0] <= 0:
            raise ValueError(f"pgd_eps_multipliers must be positive numbers, got {cfg['pgd_eps_multipliers']!r}")
        spec.update(eps_grid=[round(base * m, 6) for m in mults], target_success=float(cfg["pgd_target_success"]),
                    calibration_n=int(cfg["pgd_calibration_n"]), steps=int(cfg["pgd_steps"]),
                    step_ratio=float(cfg["pgd_step_ratio"]))
    else:
        spec.update(steps=int(cfg["inversion_steps"]),
                    step_size=scaled_eps(cfg["inversion_step_ref"], t.input_shape), n=cfg["inversion_n"])
    return spec


# ----------------------------------------------------------------------------------------------- training

def build(spec: dict):
    """Untrained model of a model spec (``model`` name plus ``arch`` options such as ``width``/``stem``)."""
    from . import models

    t = get_task(spec["task"])
    arch = dict(spec.get("arch") or {})
    accepted = inspect.signature(models.build_model).parameters
    unknown = [k for k in arch if k not in accepted]
    if unknown:
        raise ValueError(f"models.build_model does not accept {unknown} (spec arch {arch}); it takes {list(accepted)}")
    return models.build_model(spec["model"], in_channels=t.channels, num_classes=t.num_classes,
                              image_size=t.size, **arch)


def balanced_class_weights(y, num_classes: int) -> list[float]:
    """Cross-entropy class weights ``N / (K * n_c)`` (scikit-learn's "balanced"); a class absent from ``y`` gets
    weight 1 (it contributes no loss terms anyway). ``y``: int labels ``(N,)``."""
    counts = np.bincount(np.asarray(y).reshape(-1), minlength=num_classes).astype(np.float64)
    if len(counts) > num_classes:
        raise ValueError(f"labels reach {len(counts) - 1}, but num_classes is {num_classes}")
    n = counts.sum()
    return [float(n / (num_classes * c)) if c > 0 else 1.0 for c in counts]


def train_data(spec: dict):
    """Training tensors of a model spec: ``x (N, C, S, S)`` float32 in [0, 1], ``y (N,)`` int64 (CPU)."""
    import torch

    if spec["train_on"] == "clean":
        s = load_task(spec["task"], "train", n=spec["n_train"], seed=spec["data_seed"])
        return s.x, s.y
    ds = artefacts.cached("p2_dataset", spec["train_on"], dataset_run, depends=TRAIN_DEPENDS)
    folder = Path(ds["_dir"])
    return (torch.load(folder / "x.pt", map_location="cpu", weights_only=True),
            torch.load(folder / "y.pt", map_location="cpu", weights_only=True))


def test_data(spec: dict):
    """The task's fixed test subset of a model spec: ``x (N, C, S, S)``, ``y (N,)`` (CPU)."""
    s = load_task(spec["task"], "test", n=spec["n_test"], seed=0)
    return s.x, s.y


def train_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p2_model``: train one model (standard or L2-PGD adversarial) and evaluate it
    on the ORIGINAL clean test subset.

    Writes ``model.pt`` (CPU state dict) into ``work``; returns the test metrics of
    :func:`domaingap.training.evaluate`, the test labels and predictions (for exact tests against chance), the
    per-epoch training loss and timings.
    """
    import torch

    from . import training

    device = default_device()
    t = get_task(spec["task"])
    x, y = train_data(spec)
    x_te, y_te = test_data(spec)
    weights = balanced_class_weights(y, t.num_classes) if spec["class_weights"] == "balanced" else None
    torch.manual_seed(spec["seed"])  # the initial weights
    model = build(spec)
    adversarial = None
    if spec["adversarial"] is not None:
        adversarial = {k: v for k, v in spec["adversarial"].items() if k in ("eps", "steps", "step_size", "norm")}
    start = time.perf_counter()
    hist = training.fit(model, x.to(device), y.to(device), epochs=spec["epochs"], batch_size=spec["batch_size"],
                        lr=spec["lr"], weight_decay=spec["weight_decay"], optimizer=spec["optimizer"],
                        schedule=spec["schedule"], seed=spec["seed"], adversarial=adversarial,
                        class_weights=weights, progress=False, device=device)
    seconds = time.perf_counter() - start
    prob = training.predict_proba(model, x_te.to(device)).cpu()
    with _quiet_metrics():
        test = training.evaluate(model, x_te.to(device), y_te.to(device))
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, work / "model.pt")
    return {"test": test, "test_pred": prob.argmax(1).tolist(), "test_y": y_te.tolist(),
            "n_train": int(len(y)), "train_label_counts": np.bincount(y.numpy(), minlength=t.num_classes).tolist(),
            "history_train_loss": hist["train_loss"], "seconds": seconds,
            "n_params": int(sum(p.numel() for p in model.parameters())), "device": str(device)}


def train_sweep(specs: Sequence[dict], progress: bool = True, desc: str = "P2 models") -> list[dict]:
    """Train (or load from the artefacts) every model spec; results in order, each with ``_dir``."""
    return artefacts.sweep("p2_model", specs, train_run, depends=TRAIN_DEPENDS, progress=progress, desc=desc)


def trained(spec: dict, device=None):
    """The trained model of a model spec (trained now if it is not in the artefacts), in eval mode on
    ``device`` (default :func:`default_device`), and its result dict."""
    import torch

    result = artefacts.cached("p2_model", spec, train_run, depends=TRAIN_DEPENDS)
    model = build(spec)
    model.load_state_dict(torch.load(Path(result["_dir"]) / "model.pt", map_location="cpu", weights_only=True))
    return model.to(device or default_device()).eval(), result


# ----------------------------------------------------------------------------------------------- datasets

def _derangement(n: int, rng: np.random.Generator) -> np.ndarray:
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


def dataset_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p2_dataset``: build D_rand, D_det, D_NR or D_R from the source model.

    rand/det: targeted L2 PGD (``steps`` steps of ``step_ratio * eps``, no random start, lowest-loss iterate
    kept, as Ilyas et al.). The budget is the smallest of ``eps_grid`` at which the attack moves at least
    ``target_success`` of ``calibration_n`` random training images to their target (the largest if none does): Ilyas
    et al.'s attacks on a CIFAR-10 ResNet-50 succeed almost always at eps 0.5, but a small model trained on a
    few hundred images has larger margins, and an image the attack fails to move keeps its original features
    under a wrong label. nr/r: representation inversion from another random training image.

    Writes ``x.pt`` (float32 ``(N, C, S, S)`` in [0, 1]) and ``y.pt`` (int64 ``(N,)``) into ``work``; returns
    diagnostics: for rand/det the calibration, the budget used, the fraction of images the source model
    classifies as their new label (attack success), the fraction of labels unchanged, and the L2 size of the
    perturbations; for nr/r the relative distance ``||g(x') - g(x)|| / ||g(x)||`` reached and the source
    model's accuracy on the new images.
    """
    import torch

    from . import models
    from .kernels import attacks

    device = default_device()
    src = spec["source"]
    t = get_task(src["task"])
    model, _ = trained(src, device)
    x, y = train_data(src)
    seed = int(src["seed"])
    bs = _attack_batch(device)
    out = []
    if spec["variant"] in ("rand", "det"):
        new_y = torch.from_numpy(targets(y.numpy(), t.num_classes, spec["variant"], seed))

        def attack(xs, ts, eps):
            adv = torch.cat([attacks.pgd(model, xb.to(device), tb.to(device), eps, steps=spec["steps"],
                                         step_size=spec["step_ratio"] * eps, norm="l2", targeted=True,
                                         random_start=False, keep_best=True).cpu()
                             for xb, tb in zip(xs.split(bs), ts.split(bs))])
            with torch.no_grad():
                pred = torch.cat([model(xb.to(device)).argmax(1).cpu() for xb in adv.split(bs)])
            return adv, pred

        # the smallest budget of the grid at which the targeted attack reaches its target on most images,
        # judged on a random subset (training subsets are sorted by position, which can mean by class)
        cal = torch.from_numpy(np.random.default_rng(seed).permutation(len(y))[: spec["calibration_n"]])
        calibration = []
        eps = spec["eps_grid"][-1]
        for e in spec["eps_grid"]:
            _, pred = attack(x[cal], new_y[cal], e)
            calibration.append({"eps": e, "success": float((pred == new_y[cal]).float().mean())})
            if calibration[-1]["success"] >= spec["target_success"]:
                eps = e
                break
        x_new, pred = attack(x, new_y, eps)
        norms = (x_new - x).flatten(1).norm(dim=1)
        info = {"attack_success": float((pred == new_y).float().mean()),
                "label_kept": float((new_y == y).float().mean()),
                "l2_mean": float(norms.mean()), "l2_max": float(norms.max()), "eps": eps,
                "calibration": calibration}
    else:
        rng = np.random.default_rng(seed)
        n = spec["n"]
        keep = np.arange(len(y)) if n is None or n >= len(y) else np.sort(rng.permutation(len(y))[:n])
        x, y = x[keep], y[keep]
        if len(y) < 2:
            raise ValueError(f"representation inversion needs >= 2 images, got {len(y)}")
        starts = torch.from_numpy(_derangement(len(y), rng))

        def g(z):
            return models.penultimate(model, z)

        for xb, sb in zip(x.split(bs), starts.split(bs)):
            out.append(attacks.invert_representation(g, xb.to(device), x[sb].to(device), steps=spec["steps"],
                                                     step_size=spec["step_size"], keep_best=True).cpu())
        x_new, new_y = torch.cat(out), y.clone()
        with torch.no_grad():
            rel, pred = [], []
            for xb, nb in zip(x.split(bs), x_new.split(bs)):
                ga, gb = g(xb.to(device)), g(nb.to(device))
                rel.append(((gb - ga).norm(dim=1) / ga.norm(dim=1).clamp_min(1e-12)).cpu())
                pred.append(model(nb.to(device)).argmax(1).cpu())
        rel, pred = torch.cat(rel), torch.cat(pred)
        info = {"rel_repr_distance": float(rel.median()), "source_accuracy": float((pred == y).float().mean()),
                "l2_from_start_mean": float((x_new - x[starts]).flatten(1).norm(dim=1).mean())}
    torch.save(x_new.contiguous(), work / "x.pt")
    torch.save(new_y.contiguous(), work / "y.pt")
    info.update(n=int(len(new_y)), label_counts=np.bincount(new_y.numpy(), minlength=t.num_classes).tolist(),
                device=str(device))
    return info


def robust_view(dspec: dict, robust: dict) -> dict:
    """How an adversarially trained model sees a D_rand / D_det set: the fraction of its relabelled images it
    assigns to the original label ``y`` and to the new label ``t``, the fraction of their clean originals it
    already assigned to ``t``, the difference (``robust_target_shift``, what the perturbation did), and its
    accuracy on the clean originals.

    If the targeted perturbations had painted *robust* features of ``t`` into the images (a risk when the budget
    grows), the robust model would follow them to ``t``; if they are nonrobust, it keeps seeing ``y``.
    ``robust``: a robust model spec of the same task; both models are trained now if missing.
    """
    import torch

    if dspec["variant"] not in ("rand", "det"):
        raise ValueError(f"robust_view needs a D_rand or D_det spec, got variant {dspec['variant']!r}")
    if robust.get("adversarial") is None or robust["task"] != dspec["source"]["task"]:
        raise ValueError("robust_view needs a robust model spec of the dataset's task")
    device = default_device()
    x_new, t_new = train_data({"train_on": dspec})
    x, y = train_data(dspec["source"])
    model, _ = trained(robust, device)
    bs = _attack_batch(device) * 4
    with torch.no_grad():
        pred_new = torch.cat([model(b.to(device)).argmax(1).cpu() for b in x_new.split(bs)])
        pred_clean = torch.cat([model(b.to(device)).argmax(1).cpu() for b in x.split(bs)])
    changed = t_new != y  # D_rand keeps some labels: only the changed ones tell y from t
    says_target = float((pred_new[changed] == t_new[changed]).float().mean())
    # a weak robust model already calls some clean originals t: the perturbation's effect is the increase
    target_on_clean = float((pred_clean[changed] == t_new[changed]).float().mean())
    return {"robust_says_original": float((pred_new[changed] == y[changed]).float().mean()),
            "robust_says_target": says_target, "robust_target_on_clean": target_on_clean,
            "robust_target_shift": says_target - target_on_clean,
            "robust_clean_accuracy": float((pred_clean == y).float().mean()), "n_changed": int(changed.sum())}


# ----------------------------------------------------------------------------------------------- robustness

def robust_eval_spec(model: dict, cfg: dict, *, apgd: bool = False, sweep: bool = False) -> dict:
    """Spec of a robustness evaluation of ``model`` on its fixed test subset (``p2_tab2`` section keys:
    ``eps_ref``, ``n_attack``, ``pgd_steps``, ``pgd_restarts``; with ``apgd``: ``apgd_n``, ``apgd_steps``,
    ``apgd_restarts``; with ``sweep``: ``sweep_multipliers``, ``sweep_steps``, ``sweep_n``)."""
    t = get_task(model["task"])
    spec = {"model": model, "eps": scaled_eps(cfg["eps_ref"], t.input_shape), "n_attack": cfg["n_attack"],
            "pgd_steps": int(cfg["pgd_steps"]), "pgd_restarts": int(cfg["pgd_restarts"]), "apgd": None,
            "sweep": None}
    if apgd:
        spec["apgd"] = {"n": cfg["apgd_n"], "steps": int(cfg["apgd_steps"]), "restarts": int(cfg["apgd_restarts"])}
    if sweep:
        spec["sweep"] = {"multipliers": [float(m) for m in cfg["sweep_multipliers"]], "steps": int(cfg["sweep_steps"]),
                         "n": cfg["sweep_n"]}
    return spec


def _head(x, y, n, seed: int = 0):
    """The first ``n`` images of a seeded random order of ``(x, y)`` (all of them, reordered, when ``n`` is None
    or too large). Test subsets are sorted by position, which for MedNIST means by class: a plain ``x[:n]``
    would attack one class only. The same seed gives nested subsets, so a smaller ``n`` is a prefix."""
    import torch

    order = torch.from_numpy(np.random.default_rng(seed).permutation(len(y)))
    if n is not None:
        order = order[:n]
    return x[order], y[order]


def robust_eval_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p2_robust_eval``: clean and adversarial accuracy of a trained model.

    - ``pgd``: untargeted L2 PGD (:func:`domaingap.kernels.attacks.pgd`) at ``eps`` with ``pgd_steps`` steps of
      ``2.5 * eps / steps`` from ``pgd_restarts`` random starts, on ``n_attack`` test images (a seeded random
      subset, :func:`_head`);
    - ``apgd`` (optional): an independent, step-size-free attack, APGD-CE of Croce & Hein (2020) as
      implemented by ``torchattacks``, with more steps and restarts on the first ``apgd[n]`` of those images;
      if it finds many more adversarial examples than PGD, the PGD number reflects gradient masking;
    - ``sweep`` (optional): PGD accuracy at ``eps * m`` for each multiplier ``m``: it must fall to ~0 for a
      large enough budget, another check against masked gradients (Carlini et al. 2019).
    """
    import torch
    from sklearn import metrics

    from .kernels import attacks

    device = default_device()
    model, _ = trained(spec["model"], device)
    x, y = test_data(spec["model"])
    eps = spec["eps"]
    bs = _attack_batch(device)
    gen = torch.Generator(device=device).manual_seed(int(spec["model"]["seed"]) + 12345)

    def predict(xs):
        with torch.no_grad():
            return torch.cat([model(b.to(device)).argmax(1).cpu() for b in xs.split(bs)])

    def pgd(xs, ys, e, steps, restarts):
        if e == 0:
            return xs
        return torch.cat([attacks.pgd(model, xb.to(device), yb.to(device), e, steps=steps, step_size=2.5 * e / steps,
                                      norm="l2", random_start=True, restarts=restarts, generator=gen).cpu()
                          for xb, yb in zip(xs.split(bs), ys.split(bs))])

    def scores(ys, pred):
        yn, pn = ys.numpy(), pred.numpy()
        with _quiet_metrics():
            return float(metrics.accuracy_score(yn, pn)), float(metrics.balanced_accuracy_score(yn, pn))

    xa, ya = _head(x, y, spec["n_attack"])
    clean_pred = predict(xa)
    adv_pred = predict(pgd(xa, ya, eps, spec["pgd_steps"], spec["pgd_restarts"]))
    out = {"eps": eps, "n_attack": int(len(ya))}
    out["clean_accuracy"], out["clean_balanced_accuracy"] = scores(ya, clean_pred)
    out["pgd_accuracy"], out["pgd_balanced_accuracy"] = scores(ya, adv_pred)
    out["pgd_correct"] = (adv_pred == ya).tolist()
    if spec["apgd"] is not None:
        import torchattacks

        cfg = spec["apgd"]
        xs, ys = _head(x, y, cfg["n"])
        atk = torchattacks.APGD(model, norm="L2", eps=eps, steps=cfg["steps"], n_restarts=cfg["restarts"],
                                seed=int(spec["model"]["seed"]), loss="ce")
        x_apgd = torch.cat([atk(xb.to(device), yb.to(device)).detach().cpu()
                            for xb, yb in zip(xs.split(bs), ys.split(bs))])
        apgd_ok = predict(x_apgd) == ys
        pgd_ok = adv_pred[: len(ys)] == ys
        # the strongest of the two per image: what an evaluator should report
        out["apgd"] = {"n": int(len(ys)), "apgd_accuracy": float(apgd_ok.float().mean()),
                       "pgd_accuracy_same_images": float(pgd_ok.float().mean()),
                       "worst_case_accuracy": float((apgd_ok & pgd_ok).float().mean())}
    if spec["sweep"] is not None:
        cfg = spec["sweep"]
        xs, ys = _head(x, y, cfg["n"])
        out["sweep"] = {"multipliers": cfg["multipliers"], "eps": [eps * m for m in cfg["multipliers"]],
                        "accuracy": [scores(ys, predict(pgd(xs, ys, eps * m, cfg["steps"], 1)))[0]
                                     for m in cfg["multipliers"]]}
    return out


def robust_eval_sweep(specs: Sequence[dict], progress: bool = True, desc: str = "P2 robustness") -> list[dict]:
    return artefacts.sweep("p2_robust_eval", specs, robust_eval_run, depends=TRAIN_DEPENDS, progress=progress,
                           desc=desc)


# ----------------------------------------------------------------------------------------------- MedMNIST-C

def mmc_data_spec(task: str, corruption: str, cfg: dict) -> dict:
    """Spec of one task's test subset corrupted by one corruption at every severity (``p2_tab3`` keys:
    ``n_test``, ``corruption_seed``, ``work_size``)."""
    t = get_task(task)
    if t.medmnistc is None:
        raise ValueError(f"task {task!r} has no MedMNIST-C registry entry")
    spec = {"task": t.name, "registry": t.medmnistc, "corruption": corruption, "n_test": cfg["n_test"],
            "seed": int(cfg["corruption_seed"]), "work_size": int(cfg["work_size"]),
            "resample": "PIL bicubic up, corrupt, PIL box (area) down"}
    # paper: corrupt MedMNIST+'s own work_size px test images, as MedMNIST-C is built, instead of up-sampled ones
    if cfg.get("source_release") and int(cfg["work_size"]) in data.releases(t.dataset):
        spec["source_release"] = int(cfg["work_size"])
        spec["resample"] = f"the {spec['source_release']} px release, corrupt, PIL box (area) down"
    return spec


def mmc_data_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p2_mmc_data``: writes ``x.npy``, uint8 ``(5, N, C, H, W)`` (one stack per
    severity; ``(1, N, ...)`` for ``"none"``), and returns per severity the RMS pixel change (0..1 scale) from
    the clean round trip at the model's resolution (``rms_change``) and at ``work_size`` (``rms_change_work``),
    and from the original images (``rms_vs_original``; for ``"none"``: the round trip's own error)."""
    s = load_task(spec["task"], "test", n=spec["n_test"], seed=0)
    imgs = to_uint8(s.x)
    size = imgs.shape[-1]
    src = imgs
    if spec.get("source_release"):  # the same test images, from the larger release (names a missing file)
        big, _ = data.load_arrays(get_task(spec["task"]).dataset, "test", release=spec["source_release"])
        src = big[s.indices]
    sevs = [0] if spec["corruption"] == "none" else [0, 1, 2, 3, 4]
    # one seed per (corruption, severity) so that every stack is reproducible on its own
    base = int(spec["seed"]) * 1_000_003 + zlib.crc32(f"{spec['task']}/{spec['corruption']}".encode())
    ref = corrupt(src, spec["registry"], "none", 0, work_size=spec["work_size"], out_size=size).astype(np.float64)
    def rms(a, b):  # mean over images of the per-image RMS difference, 0..1 scale
        return float(np.sqrt(((a.astype(np.float64) - b) ** 2).mean(axis=(1, 2, 3))).mean() / 255.0)

    stacks, rms_small, rms_orig, rms_work = [], [], [], []
    for sev in sevs:
        out, rms_w = corrupt(src, spec["registry"], spec["corruption"], sev, seed=(base + sev) % 2**32,
                             work_size=spec["work_size"], out_size=size, return_rms_work=True)
        stacks.append(out)
        rms_small.append(rms(out, ref))
        rms_orig.append(rms(out, imgs.astype(np.float64)))
        rms_work.append(float(rms_w.mean()))
    np.save(work / "x.npy", np.stack(stacks))
    return {"n": int(len(imgs)), "severities": sevs, "rms_change": rms_small, "rms_vs_original": rms_orig,
            "rms_change_work": rms_work}


def mmc_data(spec: dict) -> np.ndarray:
    """The corrupted stacks of a ``p2_mmc_data`` spec (computed now if missing): uint8 ``(S, N, C, H, W)``."""
    res = artefacts.cached("p2_mmc_data", spec, mmc_data_run, depends=MMC_DEPENDS)
    return np.load(Path(res["_dir"]) / "x.npy")


def mmc_eval_spec(model: dict, cfg: dict) -> dict:
    """Spec of a MedMNIST-C evaluation of ``model``: every corruption of its task's registry entry."""
    t = get_task(model["task"])
    return {"model": model, "data": [mmc_data_spec(t.name, c, cfg) for c in ["none"] + corruption_names(t.medmnistc)]}


def mmc_eval_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p2_mmc_eval``: accuracy and balanced accuracy of the model on every
    corruption x severity of its task (and on the clean round trip, ``corruption = "none"``)."""
    import torch
    from sklearn import metrics

    device = default_device()
    model, _ = trained(spec["model"], device)
    y = load_task(spec["model"]["task"], "test", n=spec["data"][0]["n_test"], seed=0).y.numpy()
    bs = _attack_batch(device) * 4
    rows = []
    for dspec in spec["data"]:
        stacks = mmc_data(dspec)
        for sev, imgs in enumerate(stacks):
            x = torch.from_numpy(imgs).float().div_(255.0)
            with torch.no_grad():
                pred = torch.cat([model(b.to(device)).argmax(1).cpu() for b in x.split(bs)]).numpy()
            with _quiet_metrics():
                bacc = float(metrics.balanced_accuracy_score(y, pred))
            rows.append({"corruption": dspec["corruption"], "severity": sev + 1 if dspec["corruption"] != "none" else 0,
                         "accuracy": float(metrics.accuracy_score(y, pred)), "balanced_accuracy": bacc})
    return {"rows": rows, "n": int(len(y))}


# ----------------------------------------------------------------------------------------------- saliency

def saliency_spec(std: dict, rob: dict, cfg: dict) -> dict:
    """Spec of the Fig. 1 analogue: a standard and a robust model of the same task (``p2_fig1`` keys:
    ``n_images``, ``eps_ref``, ``pgd_steps``)."""
    if std["task"] != rob["task"] or std["adversarial"] is not None or rob["adversarial"] is None:
        raise ValueError("saliency_spec needs a standard and a robust model spec of the same task")
    t = get_task(std["task"])
    return {"standard": std, "robust": rob, "n_images": cfg["n_images"],
            "eps": scaled_eps(cfg["eps_ref"], t.input_shape), "pgd_steps": int(cfg["pgd_steps"])}


def saliency_run(spec: dict, work: Path) -> dict:
    """Compute function of kind ``p2_saliency``: for each model, attack ``n_images`` test images (seeded random subset)
    (untargeted L2 PGD against that model), take input-gradient saliency of the true class on the clean and the
    adversarial image, and their Spearman correlation per image. Writes ``maps.npz`` (images, adversarial
    images, maps, predictions) for the figure."""
    import torch

    from .kernels import attacks

    device = default_device()
    x, y = test_data(spec["standard"])
    x, y = _head(x, y, spec["n_images"])
    eps, steps = spec["eps"], spec["pgd_steps"]
    arrays, out = {"x": x.numpy(), "y": y.numpy()}, {"eps": eps, "n": int(len(y))}
    for name in ("standard", "robust"):
        model, _ = trained(spec[name], device)
        gen = torch.Generator(device=device).manual_seed(2024)
        xd, yd = x.to(device), y.to(device)
        xa = attacks.pgd(model, xd, yd, eps, steps=steps, step_size=2.5 * eps / steps, norm="l2", generator=gen)
        s_clean, s_adv = input_saliency(model, xd, yd), input_saliency(model, xa, yd)
        with torch.no_grad():
            p_clean, p_adv = model(xd).argmax(1).cpu(), model(xa).argmax(1).cpu()
        rho = rank_correlation(s_clean, s_adv)
        arrays.update({f"{name}_x_adv": xa.cpu().numpy(), f"{name}_sal_clean": s_clean.cpu().numpy(),
                       f"{name}_sal_adv": s_adv.cpu().numpy(), f"{name}_pred_clean": p_clean.numpy(),
                       f"{name}_pred_adv": p_adv.numpy()})
        out[name] = {"rho": [None if not np.isfinite(r) else float(r) for r in rho],
                     "clean_accuracy": float((p_clean == y).float().mean()),
                     "adv_accuracy": float((p_adv == y).float().mean())}
    np.savez_compressed(work / "maps.npz", **arrays)
    return out


# ----------------------------------------------------------------------------------------------- statistics

def majority_rate(y) -> float:
    """Accuracy of always predicting the most frequent class of ``y`` (int labels ``(N,)``)."""
    y = np.asarray(y).reshape(-1)
    if y.size == 0:
        raise ValueError("y is empty")
    return float(np.bincount(y).max() / y.size)


def _balanced_accuracy_vec(y_true: np.ndarray, y_pred: np.ndarray, classes: np.ndarray) -> np.ndarray:
    # y_pred (..., N): mean per-class recall over the classes present in y_true, vectorised over leading axes
    recalls = [np.mean(y_pred[..., y_true == c] == c, axis=-1) for c in classes]
    return np.mean(recalls, axis=0)


def chance_tests(y_true, y_pred, *, n_resamples: int = 9999, seed: int = 0) -> dict:
    """Is a classifier better than chance on a fixed test set?

    - accuracy vs the majority rate ``p0`` (the best accuracy without looking at the image): exact one-sided
      binomial test ``binomtest(correct, n, p0, alternative="greater")``;
    - balanced accuracy vs ``1 / K`` (its value for any prediction independent of the image): one-sided
      permutation test of the pairing between labels and predictions (``scipy.stats.permutation_test``,
      ``permutation_type="pairings"``), whose null distribution is exact up to Monte Carlo error.

    Args: ``y_true``, ``y_pred``: int labels ``(N,)``. Returns a dict of the statistics and p-values.
    """
    from scipy import stats

    y_true = np.asarray(y_true).reshape(-1)
    y_pred = np.asarray(y_pred).reshape(-1)
    if y_true.shape != y_pred.shape or y_true.size == 0:
        raise ValueError(f"y_true and y_pred must be non-empty and of equal length, got {y_true.shape} and {y_pred.shape}")
    classes = np.unique(y_true)
    n = int(y_true.size)
    correct = int((y_true == y_pred).sum())
    p0 = majority_rate(y_true)
    binom = stats.binomtest(correct, n, p0, alternative="greater")
    bacc = float(_balanced_accuracy_vec(y_true, y_pred, classes))
    if len(classes) < 2:
        p_perm = math.nan
    else:
        perm = stats.permutation_test((y_pred,), lambda p, axis=-1: _balanced_accuracy_vec(y_true, p, classes),
                                      permutation_type="pairings", n_resamples=n_resamples, vectorized=True,
                                      alternative="greater", rng=np.random.default_rng(seed))
        p_perm = float(perm.pvalue)
    return {"n": n, "correct": correct, "accuracy": correct / n, "majority_rate": p0, "p_accuracy": float(binom.pvalue),
            "balanced_accuracy": bacc, "chance_balanced": 1.0 / len(classes), "p_balanced": p_perm}


def t_interval(values, confidence: float = 0.95) -> tuple[float, float, float]:
    """Mean and two-sided t-based confidence interval of ``values`` (1-D); NaN bounds for fewer than 2 values."""
    from scipy import stats

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    m = float(v.mean())
    if v.size < 2:
        return m, math.nan, math.nan
    half = float(stats.t.ppf(0.5 + confidence / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return m, m - half, m + half




def paired_test(diff) -> dict:
    """One-sample summary of paired differences ``diff`` (1-D): mean, median, t-interval, the two-sided
    Wilcoxon signed-rank p-value (``scipy.stats.wilcoxon``; NaN when all differences are 0 or n < 2) and the
    number of positive / negative differences."""
    from scipy import stats

    d = np.asarray(diff, dtype=np.float64).reshape(-1)
    d = d[np.isfinite(d)]
    mean, lo, hi = t_interval(d)
    p = math.nan
    if d.size >= 2 and np.any(d != 0):
        p = float(stats.wilcoxon(d, alternative="two-sided").pvalue)
    return {"n": int(d.size), "mean": mean, "ci_low": lo, "ci_high": hi,
            "median": float(np.median(d)) if d.size else math.nan, "wilcoxon_p": p,
            "n_pos": int((d > 0).sum()), "n_neg": int((d < 0).sum())}


# ----------------------------------------------------------------------------------------------- chapter runs

def configs(profile: str) -> dict[str, dict]:
    """The chapter's profile sections at ``profile``: models, tab1, tab2, tab3, fig1."""
    return {name: profiles.get(f"p2_{name}", profile) for name in ("models", "tab1", "tab2", "tab3", "fig1")}


def tradeoff_specs(mcfg: dict, tasks: Sequence[str] | None = None, seeds: Sequence[int] | None = None) -> list[dict]:
    """Standard and robust model specs of every task x seed (the models of Tab. 2, Tab. 3 and Fig. 1)."""
    return [model_spec(t, mcfg, s, robust=r) for t in (tasks or mcfg["tasks"]) for s in (seeds or mcfg["seeds"])
            for r in (False, True)]


def run_tab1(profile: str, progress: bool = True) -> list[dict]:
    """Every run of Tab. 1 at ``profile``: source models, constructed datasets and the fresh models trained on
    them (each with its own robustness evaluation for D_NR / D_R). Returns one row per fresh model."""
    cfg = configs(profile)
    mcfg, tcfg = cfg["models"], cfg["tab1"]
    rows = []
    plan = []
    for task in mcfg["tasks"]:
        for seed in tcfg["seeds"]:
            std = model_spec(task, mcfg, seed)
            for variant in tcfg["variants"]:
                plan.append((task, seed, variant, std))
            if task in (tcfg["inversion_tasks"] or []) and seed in tcfg["inversion_seeds"]:
                plan.append((task, seed, "nr", std))
                plan.append((task, seed, "r", model_spec(task, mcfg, seed, robust=True)))
    # the robust models of the same seeds check the constructed sets (robust_view) and are the D_R sources
    robust_specs = [model_spec(task, mcfg, seed, robust=True) for task in mcfg["tasks"] for seed in tcfg["seeds"]]
    src_specs = list({artefacts.key(s): s for s in [p[3] for p in plan] + robust_specs}.values())
    src_res = {artefacts.key(s): r for s, r in zip(src_specs, train_sweep(src_specs, progress, "P2 source models"))}
    fresh = [model_spec(task, mcfg, seed, train_on=dataset_spec(v, src, tcfg)) for task, seed, v, src in plan]
    datasets = artefacts.sweep("p2_dataset", [f["train_on"] for f in fresh], dataset_run, depends=TRAIN_DEPENDS,
                               progress=progress, desc="P2 constructed datasets")
    results = train_sweep(fresh, progress, "P2 fresh models")
    # D_NR / D_R models are also attacked (Ilyas et al.: D_R gives robustness, D_NR none), with Tab. 2's settings
    inv_specs = [robust_eval_spec(f, cfg["tab2"]) for f, p in zip(fresh, plan) if p[2] in ("nr", "r")]
    rob = {artefacts.key(s["model"]): r
           for s, r in zip(inv_specs, robust_eval_sweep(inv_specs, progress, "P2 D_NR/D_R robustness"))}
    for (task, seed, variant, src), spec, ds, res in zip(plan, fresh, datasets, results):
        row = {"task": task, "seed": seed, "variant": variant, "dataset": {k: v for k, v in ds.items() if k != "_dir"},
               "test": res["test"], "test_pred": res["test_pred"], "test_y": res["test_y"],
               "source_test": src_res[artefacts.key(src)]["test"], "eps": ds.get("eps"), "n_train": res["n_train"]}
        if variant in ("rand", "det"):
            row["robust_view"] = robust_view(spec["train_on"], model_spec(task, mcfg, seed, robust=True))
        if artefacts.key(spec) in rob:
            r = rob[artefacts.key(spec)]
            row["pgd_accuracy"], row["pgd_clean_accuracy"] = r["pgd_accuracy"], r["clean_accuracy"]
            row["pgd_correct"] = r["pgd_correct"]
        rows.append(row)
    return rows


def run_tab2(profile: str, progress: bool = True) -> list[dict]:
    """Every run of Tab. 2: standard and robust models of every task x seed and their robustness evaluation
    (with the APGD and eps-sweep checks on ``check_seeds``). One row per model."""
    cfg = configs(profile)
    mcfg, tcfg = cfg["models"], cfg["tab2"]
    specs = tradeoff_specs(mcfg)
    results = train_sweep(specs, progress, "P2 standard/robust models")
    evals = [robust_eval_spec(s, tcfg, apgd=s["seed"] in tcfg["check_seeds"], sweep=s["seed"] in tcfg["check_seeds"])
             for s in specs]
    ev = robust_eval_sweep(evals, progress)
    return [{"task": s["task"], "seed": s["seed"], "model": "robust" if s["adversarial"] else "standard",
             "eps_train": (s["adversarial"] or {}).get("eps"), "test": r["test"],
             "eval": {k: v for k, v in e.items() if k != "_dir"}, "train_seconds": r["seconds"]}
            for s, r, e in zip(specs, results, ev)]


def run_tab3(profile: str, progress: bool = True) -> dict:
    """Every run of Tab. 3: MedMNIST-C corrupted test sets of every task with a registry entry and the
    evaluation of its standard and robust models. Returns ``{"rows": one per model x corruption x severity,
    "strength": RMS pixel change per task x corruption x severity, "data_specs": the corrupted-set specs}``."""
    cfg = configs(profile)
    mcfg, tcfg = cfg["models"], cfg["tab3"]
    tasks = [t for t in mcfg["tasks"] if get_task(t).medmnistc is not None]
    specs = tradeoff_specs(mcfg, tasks)
    train_sweep(specs, progress, "P2 standard/robust models")
    data_specs = list({artefacts.key(d): d for s in specs for d in mmc_eval_spec(s, tcfg)["data"]}.values())
    made = artefacts.sweep("p2_mmc_data", data_specs, mmc_data_run, depends=MMC_DEPENDS, progress=progress,
                           desc="MedMNIST-C corrupted test sets")
    strength = [{"task": d["task"], "registry": d["registry"], "corruption": d["corruption"],
                 "severity": sev + 1 if d["corruption"] != "none" else 0, "rms_change": r["rms_change"][i],
                 "rms_vs_original": r["rms_vs_original"][i], "rms_change_work": r["rms_change_work"][i]}
                for d, r in zip(data_specs, made) for i, sev in enumerate(r["severities"])]
    ev = artefacts.sweep("p2_mmc_eval", [mmc_eval_spec(s, tcfg) for s in specs], mmc_eval_run,
                         depends=TRAIN_DEPENDS, progress=progress, desc="MedMNIST-C evaluations")
    rows = []
    for s, e in zip(specs, ev):
        for r in e["rows"]:
            rows.append({"task": s["task"], "seed": s["seed"], "model": "robust" if s["adversarial"] else "standard",
                         "n": e["n"], **r})
    return {"rows": rows, "strength": strength, "data_specs": data_specs}


def run_fig1(profile: str, progress: bool = True) -> dict:
    """The Fig. 1 analogue: saliency of the standard and robust model (seed ``fig1.seed``) of ``fig1.task``."""
    cfg = configs(profile)
    mcfg, fcfg = cfg["models"], cfg["fig1"]
    std = model_spec(fcfg["task"], mcfg, fcfg["seed"])
    rob = model_spec(fcfg["task"], mcfg, fcfg["seed"], robust=True)
    train_sweep([std, rob], progress, "P2 standard/robust models")
    return artefacts.sweep("p2_saliency", [saliency_spec(std, rob, fcfg)], saliency_run, depends=TRAIN_DEPENDS,
                           progress=progress, desc="P2 saliency")[0]


SWEEPS = {"tab2": run_tab2, "tab3": run_tab3, "fig1": run_fig1, "tab1": run_tab1}


def run_all(profile: str, only: Sequence[str] = tuple(SWEEPS), progress: bool = True) -> dict:
    """Every sweep of the chapter at ``profile`` (what the notebooks compute), without the notebooks; the
    standard/robust models (Tab. 2) first, since Tab. 1, Tab. 3 and Fig. 1 reuse them."""
    done = {}
    for name in SWEEPS:
        if name in only:
            start = time.perf_counter()
            out = SWEEPS[name](profile, progress)
            done[name] = {"runs": len(out) if isinstance(out, list) else len(out.get("rows", [out])),
                          "seconds": round(time.perf_counter() - start, 1)}
    return done


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m domaingap.p2",
                                     description="Run every P2 sweep (models, nonrobust datasets, robustness, "
                                                 "MedMNIST-C, saliency) at a profile; results go to the artefacts "
                                                 "folder, where the notebooks find them. CUDA is used when available.")
    parser.add_argument("--profile", default="default", choices=profiles.PROFILES)
    parser.add_argument("--only", default=",".join(SWEEPS), help=f"comma-separated subset of {','.join(SWEEPS)}")
    args = parser.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SWEEPS]
    if bad:
        parser.error(f"unknown sweep(s) {bad}; choose from {', '.join(SWEEPS)}")
    print(run_all(args.profile, only))
    return 0


if __name__ == "__main__":
    sys.exit(main())
