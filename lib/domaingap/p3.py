"""Chapter P3: transfer from natural vs medical pretraining and layer-wise representation similarity.

Reproduces, with an offline substitute, Juodelyte, Jiménez-Sánchez & Cheplygina, "Revisiting Hidden
Representations in Transfer Learning for Medical Imaging", TMLR 2023 (arXiv 2302.08272;
github.com/DovileDo/revisiting-transfer). P3 fine-tunes an ImageNet- (IN) and a RadImageNet- (RIN) initialised
ResNet50 on seven medical targets and compares the networks layer by layer with mean CCA.

No pretrained ImageNet or RadImageNet weights can be obtained here, so the chapter pretrains *the same* ResNet
itself on a natural source (e.g. CIFAR-10 in luma) and on a medical source (MedNIST), and fine-tunes those two
initialisations and a random one on the medical targets that remain (BreastMNIST, PneumoniaMNIST, RetinaMNIST).
Real weights still load: a source given as ``{weights: imagenet}`` or ``{weights: /path/file.pt}`` in the
profile replaces the pretraining run (see :func:`init_model`).

Protocol (one place, used by every notebook and by ``python -m domaingap.p3``):

- ONE image format for every dataset: ``image_size`` px (28: the MedMNIST targets' native size; MedNIST and
  CIFAR-10 are resized, bilinear and antialiased), 1 channel (ITU-R 601 luma for RGB sets), pixels in [0, 1].
  One channel because every target but RetinaMNIST and the medical source are grey; an RGB ImageNet first conv
  is summed over its input channels when loaded (:func:`domaingap.models.load_pretrained`), which gives the same
  response to a grey image as the RGB filter on the grey image repeated three times.
- Pretraining: a seeded subset of the source's official training split, Adam with a cosine schedule; the
  source's test accuracy is recorded. ``pretrain_seeds`` gives independent pretraining runs; fold ``k`` of every
  target uses seed ``pretrain_seeds[k % len(pretrain_seeds)]``.
- Fine-tuning: the target's official train and val splits are pooled (optionally capped at ``max_pool`` images
  by a seeded stratified subsample) and split into ``n_folds`` stratified folds
  (``sklearn.model_selection.StratifiedKFold``, shuffled with ``fold_seed``); each run trains on the other folds
  and is evaluated on its held-out fold (as P3's 5-fold cross-validation). The same folds serve every
  initialisation, so comparisons between initialisations are paired by fold. AUC: binary ROC AUC, or macro
  one-vs-rest over RetinaMNIST's 5 grades (:func:`domaingap.training.evaluate`).
- Initialisations per target: every source without warm-up, every source with P3's frozen-backbone warm-up
  ("-Fr": the classifier head is first trained on the frozen backbone's features, then the whole network), and
  random init. A source is skipped for a target that is its own dataset (MedNIST as target with a MedNIST
  source).
- Layer-wise similarity: activations of the stem (``relu``: conv1 -> bn1 -> ReLU, before any pooling, P3's
  ``conv1_relu``) and of ``layer1``..``layer4`` (P3's block1..block4 outputs) on ``probe_n`` images drawn from
  the whole target dataset (all official splits; the same images for every model of a target), compared with
  P3's mean CCA (:func:`domaingap.kernels.similarity.mean_cca_conv`: 64 random channels, the same in both
  networks, reshaped to ``(N*h*w, 64)``, averaged over 5 draws) and with SVCCA, PWCCA and linear CKA on the same
  draws.

Every training and similarity run is a JSON-able spec computed through :func:`domaingap.artefacts.sweep`, so runs
are cached atomically and resumable; the device (CUDA when available) is never part of a spec.

Tensor conventions: images float32 ``(N, 1, S, S)`` in [0, 1]; labels int64 ``(N,)``; conv activations
``(N, C, h, w)``.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from pathlib import Path
from typing import Sequence

import numpy as np

from . import artefacts, data, profiles

PAPER = "P3"
SECTION = "p3"  # the profile section holding every size of the chapter
# lib modules each kind of run depends on: a change in any of them invalidates the cached runs
# (the key hashes each named file, not what it imports: a kernel's private modules are listed too)
TRAIN_DEPENDS = ("p3", "data", "models", "_pretrained", "training")
SIM_DEPENDS = TRAIN_DEPENDS + ("kernels.similarity", "kernels._cca", "kernels._cka", "kernels._layers",
                               "kernels._sim_inputs")

# P3's layers (Keras ResNet50 names) and ours (torchvision ResNet module names).
LAYERS: tuple[str, ...] = ("relu", "layer1", "layer2", "layer3", "layer4")
LAYER_LABELS: dict[str, str] = {"relu": "conv1", "layer1": "block1", "layer2": "block2", "layer3": "block3",
                                "layer4": "block4"}
MEASURES: tuple[str, ...] = ("mean_cca", "svcca", "pwcca", "cka")

RANDOM = "random"  # name of the random initialisation
FR = "-Fr"  # suffix of the frozen-backbone warm-up variant (P3's notation)

# ------------------------------------------------------------------------------------------ paper numbers
# P3's result files (github.com/DovileDo/revisiting-transfer): AUC in %, mean and sd over 5 folds.
PAPER_AUC: dict[str, dict[str, tuple[float, float]]] = {
    "Thyroid (DDTI)": {"IN": (52.3, 8.9), "IN-Fr": (58.5, 5.1), "RIN": (50.2, 4.1), "RIN-Fr": (49.4, 5.9),
                       "random": (52.9, 5.1)},
    "Breast (BUSI)": {"IN": (90.5, 3.8), "IN-Fr": (89.8, 3.0), "RIN": (88.2, 4.2), "RIN-Fr": (72.4, 22.1),
                      "random": (51.2, 10.0)},
    "Chest (pneumonia)": {"IN": (98.7, 0.4), "IN-Fr": (98.6, 0.6), "RIN": (98.8, 0.2), "RIN-Fr": (98.7, 0.3),
                          "random": (82.5, 1.0)},
    "Mammograms (CBIS-DDSM)": {"IN": (63.4, 4.3), "IN-Fr": (68.8, 2.0), "RIN": (62.0, 12.2),
                               "RIN-Fr": (66.2, 6.3), "random": (49.6, 3.7)},
    "Knee (MRNet)": {"IN": (91.5, 1.1), "IN-Fr": (89.0, 3.1), "RIN": (89.3, 6.3), "RIN-Fr": (63.8, 5.7),
                     "random": (68.3, 11.0)},
    "ISIC 2018": {"IN": (94.2, 1.3), "IN-Fr": (93.1, 2.3), "RIN": (90.8, 0.8), "RIN-Fr": (90.6, 0.7),
                  "random": (84.0, 2.3)},
    "PCam-small": {"IN": (93.8, 1.1), "IN-Fr": (93.2, 2.5), "RIN": (87.1, 2.3), "RIN-Fr": (86.0, 1.9),
                   "random": (73.4, 8.2)},
}
# Our targets that are smaller versions of P3's: BreastMNIST is BUSI (Al-Dhabyani et al. 2020) and
# PneumoniaMNIST the pediatric chest X-rays of Kermany et al. (2018), both at 28 px.
PAPER_TARGET: dict[str, str] = {"breastmnist": "Breast (BUSI)", "pneumoniamnist": "Chest (pneumonia)"}
# IN-FT vs RIN-FT: fraction of test samples both get right or both wrong, observed / P3's baseline acc^2+(1-acc)^2.
PAPER_PRED_SIM: dict[str, tuple[float, float]] = {
    "Thyroid (DDTI)": (0.63, 0.53), "Breast (BUSI)": (0.82, 0.74), "Chest (pneumonia)": (0.95, 0.92),
    "Mammograms (CBIS-DDSM)": (0.63, 0.53), "Knee (MRNet)": (0.91, 0.80), "ISIC 2018": (0.84, 0.66),
    "PCam-small": (0.83, 0.69),
}
# Layer-wise mean CCA on the chest target (P3's figure), layers conv1, block1..block4.
PAPER_CCA_CHEST: dict[str, tuple[float, ...]] = {
    "IN-FT vs IN": (0.92, 0.87, 0.72, 0.44, 0.23),
    "RIN-FT vs RIN": (0.85, 0.42, 0.33, 0.34, 0.34),
    "IN-FT vs RIN-FT": (0.55, 0.38, 0.31, 0.23, 0.16),
    "IN vs RIN": (0.53, 0.35, 0.32, 0.32, 0.28),
    "random vs random": (0.58, 0.43, 0.41, 0.42, 0.42),
}


# ------------------------------------------------------------------------------------------ config

def config(profile: str) -> dict:
    """The chapter's settings at ``profile`` (profile section ``p3``), validated."""
    cfg = profiles.get(SECTION, profile)
    check_config(cfg)
    return cfg


def check_config(cfg: dict) -> None:
    """Raise ``ValueError`` naming the offending key when the ``p3`` settings cannot work."""
    need = ("model", "sources", "targets", "n_folds", "fold_seed", "pretrain", "pretrain_seeds", "finetune",
            "warmup", "similarity")
    missing = [k for k in need if k not in cfg]
    if missing:
        raise ValueError(f"p3 settings lack {missing}; expected keys {list(need)}")
    model = cfg["model"]
    for key in ("arch", "image_size", "channels"):
        if key not in model:
            raise ValueError(f"p3 model settings need {key!r}, got {model}")
    if not str(model["arch"]).startswith("resnet"):
        raise ValueError(f"P3's layers are ResNet stages: model.arch must be a resnet, got {model['arch']!r}")
    if model["channels"] not in (1, 3):
        raise ValueError(f"model.channels must be 1 or 3, got {model['channels']!r}")
    if not isinstance(cfg["sources"], dict) or not cfg["sources"]:
        raise ValueError(f"sources must map a name to {{dataset: ...}} or {{weights: ...}}, got {cfg['sources']!r}")
    for name, src in cfg["sources"].items():
        if name == RANDOM or FR in name:
            raise ValueError(f"source name {name!r} is reserved; pick another name")
        if not isinstance(src, dict) or len({"dataset", "weights"} & set(src)) != 1:
            raise ValueError(f"source {name!r} must give exactly one of 'dataset' or 'weights', got {src!r}")
        if "dataset" in src:
            data.info(src["dataset"])  # KeyError naming the known datasets
    for t in cfg["targets"]:
        data.info(t)
    if not (isinstance(cfg["n_folds"], int) and cfg["n_folds"] >= 2):
        raise ValueError(f"n_folds must be an int >= 2, got {cfg['n_folds']!r}")
    if not cfg["pretrain_seeds"]:
        raise ValueError("pretrain_seeds must list at least one seed")


def apply_threads(cfg: dict) -> int:
    """Set torch's intra-op threads to the profile's ``threads`` (when given); returns the number in use.

    The ``ci`` profile's tiny networks run fastest on one thread: their convolutions are too small to split,
    and on a busy machine OpenMP's thread barriers can slow them down a hundredfold.
    """
    import torch

    if cfg.get("threads"):
        torch.set_num_threads(int(cfg["threads"]))
    return torch.get_num_threads()


def device():
    """CUDA when available, else the CPU (never stored in a spec: results must not depend on it)."""
    import torch

    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


# ------------------------------------------------------------------------------------------ models

def build(model_cfg: dict, num_classes: int, seed: int):
    """Untrained ResNet of the chapter, initialised from ``seed`` (the global RNG is left untouched).

    Args:
        model_cfg: ``arch`` (resnet18/34/50), ``image_size``, ``channels`` and optional
            :func:`domaingap.models.build_model` options such as ``width`` and ``stem``.
        num_classes: logits of the classifier head.
        seed: seeds every initial weight, so the same call gives the same network on any machine.
    """
    import inspect

    import torch

    from . import models

    extra = {k: v for k, v in model_cfg.items() if k not in ("arch", "image_size", "channels") and v is not None}
    accepted = inspect.signature(models.build_model).parameters
    unknown = [k for k in extra if k not in accepted]
    if unknown:
        raise ValueError(f"model options {unknown} are not accepted by domaingap.models.build_model "
                         f"(its options: {[p for p in accepted if p != 'name']})")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return models.build_model(model_cfg["arch"], in_channels=model_cfg["channels"], num_classes=num_classes,
                                  image_size=model_cfg["image_size"], **extra)


def _head(model):
    """The classifier head of a torchvision ResNet (P3: GAP -> dense softmax)."""
    return model.fc


def weights_init(source: str | Path) -> dict:
    """Init spec for a weight file a user has, e.g. torchvision ImageNet weights or a RadImageNet ResNet50.

    ``"imagenet"`` names torchvision's ImageNet weights (downloaded by torchvision on first use: needs internet
    once); any other value must be a state-dict file saved with ``torch.save`` (bare or under ``"state_dict"`` /
    ``"model"``). The file's SHA-256 enters the spec, so a changed file is never mistaken for a cached one.
    """
    if str(source) == "imagenet":
        return {"kind": "weights", "source": "imagenet"}
    path = Path(source).expanduser().resolve()
    if not path.is_file():
        raise ValueError(f"weights file {str(path)!r} does not exist (expected 'imagenet' or a state-dict file)")
    return {"kind": "weights", "source": str(path), "sha256": data.sha256(Path(path))}


def init_model(init: dict, *, model_cfg: dict, num_classes: int, seed: int):
    """The network a fine-tuning run starts from; returns ``(model, load_summary)``.

    Args:
        init: ``{"kind": "random", "seed": s}``: every weight from seed ``s``;
            ``{"kind": "pretrained", "spec": pretrain_spec}``: our pretraining artefact (computed if missing);
            ``{"kind": "weights", "source": "imagenet" | path, "sha256": ...}``: a user's weight file
            (see :func:`weights_init`), e.g. ImageNet or RadImageNet ResNet50 weights with
            ``model_cfg = {arch: resnet50, image_size: 112, ...}``.
        model_cfg: architecture (see :func:`build`).
        num_classes: classes of the target task.
        seed: seeds the new classifier head of a pretrained init (P3: a fresh dense layer).

    The classifier head is always fresh: pretrained head weights are never carried over, even when the source
    and target happen to have the same number of classes.
    """
    import torch

    from . import models

    kind = init.get("kind")
    if kind == "random":
        return build(model_cfg, num_classes, int(init["seed"])), {"source": "random", "seed": int(init["seed"])}
    if kind not in ("pretrained", "weights"):
        raise ValueError(f"init kind must be 'random', 'pretrained' or 'weights', got {init!r}")
    model = build(model_cfg, num_classes, seed)
    fresh_head = {k: v.clone() for k, v in _head(model).state_dict().items()}
    if kind == "pretrained":
        result = artefacts.cached("p3_pretrain", init["spec"], run_pretrain, TRAIN_DEPENDS)
        source = Path(result["_dir"]) / "model.pt"
    else:
        source = init["source"]
        if source != "imagenet":
            if not Path(source).is_file():
                raise ValueError(f"weights file {source!r} of init {init} does not exist")
            if "sha256" in init and data.sha256(Path(source)) != init["sha256"]:
                raise ValueError(f"weights file {source!r} changed since its spec was made (sha256 differs)")
    report = models.load_pretrained(model, source)
    with torch.no_grad():
        _head(model).load_state_dict(fresh_head)  # P3 puts a fresh dense layer on the pretrained backbone
    summary = {"source": report.source if kind == "weights" else f"p3_pretrain:{init['spec']['dataset']}",
               "loaded": len(report.loaded), "adapted": report.adapted, "skipped_head": report.skipped_head,
               "missing": [k for k in report.missing if not k.startswith("fc.")], "unexpected": report.unexpected}
    return model, summary


def _save_state(model, path: Path) -> None:
    import torch

    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def _load_state(model, path: Path):
    import torch

    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


# ------------------------------------------------------------------------------------------ data

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
        x = (x * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    elif model_cfg["channels"] == 3 and x.shape[1] == 1:
        x = x.repeat(1, 3, 1, 1)
    size = model_cfg["image_size"]
    if x.shape[-1] != size:
        import torch.nn.functional as F

        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return (x.clamp_(0.0, 255.0) / 255.0).contiguous()


# ------------------------------------------------------------------------------------------ specs

def pretrain_spec(cfg: dict, source: str, seed: int) -> dict:
    """Run spec of pretraining source ``source`` (a ``dataset`` source of ``cfg['sources']``) with ``seed``."""
    src = cfg["sources"][source]
    if "dataset" not in src:
        raise ValueError(f"source {source!r} is a weights file, not pretrained here: {src}")
    p = cfg["pretrain"]
    return {"dataset": data.info(src["dataset"]).name, "seed": int(seed), "n": p["n"], "n_test": p["n_test"],
            "epochs": p["epochs"], "batch_size": p["batch_size"], "lr": p["lr"],
            "weight_decay": p["weight_decay"], "schedule": p.get("schedule", "cosine"), "model": cfg["model"]}


def pretrain_specs(cfg: dict) -> list[dict]:
    """Every pretraining run of the chapter: each dataset source x each pretraining seed."""
    return [pretrain_spec(cfg, name, seed) for name, src in cfg["sources"].items() if "dataset" in src
            for seed in cfg["pretrain_seeds"]]


def pretrain_seed(cfg: dict, fold: int) -> int:
    """The pretraining seed whose networks fold ``fold`` of every target starts from."""
    seeds = cfg["pretrain_seeds"]
    return int(seeds[fold % len(seeds)])


def source_init(cfg: dict, source: str, fold: int) -> dict:
    """Init spec of ``source`` for fold ``fold``: our pretraining artefact or the user's weight file."""
    src = cfg["sources"][source]
    if "weights" in src:
        return weights_init(src["weights"])
    return {"kind": "pretrained", "spec": pretrain_spec(cfg, source, pretrain_seed(cfg, fold))}


def random_seed(fold: int, which: int = 0) -> int:
    """Seed of the random-init network of fold ``fold`` (``which=1``: the second network of the random-random
    baseline)."""
    return 1000 * (which + 1) + int(fold)


def inits(cfg: dict, target: str) -> list[str]:
    """Initialisation names fine-tuned on ``target``: each source, each source + ``-Fr``, and ``random``.

    A source whose pretraining dataset is ``target`` itself is left out (P3: MedNIST only where it is not the
    source).
    """
    target = data.info(target).name
    names = [s for s, src in cfg["sources"].items()
             if "dataset" not in src or data.info(src["dataset"]).name != target]
    return [n for s in names for n in (s, s + FR)] + [RANDOM]


def finetune_spec(cfg: dict, target: str, init_name: str, fold: int) -> dict:
    """Run spec of fine-tuning initialisation ``init_name`` (``"natural"``, ``"natural-Fr"``, ``"random"``...)
    on fold ``fold`` of ``target``."""
    target = data.info(target).name
    source = init_name[: -len(FR)] if init_name.endswith(FR) else init_name
    if source == RANDOM:
        init = {"kind": "random", "seed": random_seed(fold)}
    elif source in cfg["sources"]:
        init = source_init(cfg, source, fold)
    else:
        raise ValueError(f"unknown initialisation {init_name!r}; expected one of {inits(cfg, target)}")
    ft = cfg["finetune"]
    return {"target": target, "fold": int(fold), "n_folds": cfg["n_folds"], "fold_seed": cfg["fold_seed"],
            "max_pool": ft.get("max_pool"), "init_name": init_name, "init": init,
            "warmup": cfg["warmup"] if init_name.endswith(FR) else None,
            "epochs": ft["epochs"], "batch_size": ft["batch_size"], "lr": ft["lr"],
            "weight_decay": ft["weight_decay"], "seed": int(fold), "model": cfg["model"]}


def finetune_specs(cfg: dict) -> list[dict]:
    """Every fine-tuning run: target x initialisation x fold."""
    return [finetune_spec(cfg, t, i, k) for t in cfg["targets"] for i in inits(cfg, t)
            for k in range(cfg["n_folds"])]


def similarity_models(cfg: dict, target: str, fold: int) -> dict[str, dict]:
    """Networks compared on fold ``fold`` of ``target``: name -> reference spec.

    ``"<init>-FT"``: fine-tuned networks; ``"<source>"``: the pretrained networks before fine-tuning;
    ``"random"``: the random init of the fold's random-init run; ``"random'"``: a second random init.
    """
    target = data.info(target).name
    out: dict[str, dict] = {}
    names = inits(cfg, target)
    for name in names:
        out[f"{name}-FT"] = {"kind": "finetuned", "spec": finetune_spec(cfg, target, name, fold)}
    for name in names:
        if name != RANDOM and not name.endswith(FR):
            out[name] = {"kind": "init", "init": source_init(cfg, name, fold)}
    out[RANDOM] = {"kind": "init", "init": {"kind": "random", "seed": random_seed(fold)}}
    out[RANDOM + "'"] = {"kind": "init", "init": {"kind": "random", "seed": random_seed(fold, 1)}}
    return out


def similarity_pairs(cfg: dict, target: str) -> list[tuple[str, str]]:
    """Pairs compared (P3's figure rows, then extras): each fine-tuned source vs its own init (with and without
    warm-up), sources' fine-tuned networks against each other, sources before fine-tuning against each other,
    random vs random, and the random-init run vs its init."""
    sources = [n for n in inits(cfg, target) if n != RANDOM and not n.endswith(FR)]
    pairs = [(f"{s}-FT", s) for s in sources]
    pairs += [(f"{a}-FT", f"{b}-FT") for a, b in itertools.combinations(sources, 2)]
    pairs += list(itertools.combinations(sources, 2))
    pairs += [(RANDOM, RANDOM + "'")]
    pairs += [(f"{s}{FR}-FT", s) for s in sources]
    pairs += [(f"{a}{FR}-FT", f"{b}{FR}-FT") for a, b in itertools.combinations(sources, 2)]
    pairs += [(f"{RANDOM}-FT", RANDOM)]
    return pairs


def pair_label(pair: Sequence[str]) -> str:
    return f"{pair[0]} vs {pair[1]}"


def similarity_spec(cfg: dict, target: str, fold: int) -> dict:
    """Run spec of every layer-wise comparison on fold ``fold`` of ``target``."""
    sim = cfg["similarity"]
    target = data.info(target).name
    num_classes = data.info(target).num_classes
    return {"target": target, "fold": int(fold), "num_classes": num_classes,
            "models": similarity_models(cfg, target, fold),
            "pairs": [list(p) for p in similarity_pairs(cfg, target)], "layers": list(LAYERS),
            "probe_n": sim["probe_n"], "probe_seed": sim.get("probe_seed", 0), "n_channels": sim["n_channels"],
            "repeats": sim["repeats"], "epsilon": sim.get("epsilon", 1e-12), "model": cfg["model"]}


def similarity_specs(cfg: dict) -> list[dict]:
    """Every similarity run: target x fold (folds limited by ``similarity.folds`` when set)."""
    n = cfg["similarity"].get("folds") or cfg["n_folds"]
    return [similarity_spec(cfg, t, k) for t in cfg["targets"] for k in range(min(n, cfg["n_folds"]))]


# ------------------------------------------------------------------------------------------ runs

def run_pretrain(spec: dict, work: Path) -> dict:
    """Pretrain the chapter's ResNet on a source dataset; saves ``model.pt`` (state dict) in ``work``.

    Result: source test metrics (:func:`domaingap.training.evaluate`), per-epoch history, sizes, seconds.
    """
    from . import training

    t0 = time.perf_counter()
    dev = device()
    x, y = load_images(spec["dataset"], "train", model_cfg=spec["model"], n=spec["n"], seed=spec["seed"])
    xt, yt = load_images(spec["dataset"], "test", model_cfg=spec["model"], n=spec["n_test"], seed=0)
    model = build(spec["model"], data.info(spec["dataset"]).num_classes, spec["seed"])
    hist = training.fit(model, x.to(dev), y.to(dev), epochs=spec["epochs"], batch_size=spec["batch_size"],
                        lr=spec["lr"], weight_decay=spec["weight_decay"], optimizer="adam",
                        schedule=spec["schedule"], seed=spec["seed"], x_val=xt.to(dev), y_val=yt.to(dev),
                        progress=False, device=dev)
    test = training.evaluate(model, xt.to(dev), yt.to(dev))
    _save_state(model, work / "model.pt")
    return {"dataset": spec["dataset"], "n_train": int(len(y)), "n_test": int(len(yt)), "test": test,
            "history": hist, "seconds": time.perf_counter() - t0, "device": str(dev)}


def warmup_head(model, x, y, *, epochs: int, lr: float, batch_size: int, seed: int) -> dict:
    """P3's frozen-backbone warm-up: train only the classifier head on the frozen backbone's features.

    The backbone runs once in eval mode (BatchNorm uses the pretrained statistics, as a frozen Keras base) to
    give the global-average-pooled features ``(N, F)``; the head (``model.fc``) is then trained on them with
    Adam, which is the same as training the head with the backbone frozen, at a fraction of the cost.

    Args:
        model: a torchvision ResNet; its head is trained in place.
        x: ``(N, C, H, W)`` training images on the model's device; y: int64 ``(N,)``.
    """
    import torch

    from . import models, training

    with torch.no_grad():
        feats = models.penultimate(model, x, batch_size=512)
    hist = training.fit(_head(model), feats, y, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0,
                        optimizer="adam", seed=seed, progress=False, device=feats.device)
    return {"epochs": epochs, "final_loss": hist["train_loss"][-1]}


def run_finetune(spec: dict, work: Path) -> dict:
    """Fine-tune one initialisation on one fold of one target; saves ``model.pt`` and ``predictions.npz``.

    ``predictions.npz``: ``index`` (positions of the held-out images in the pool), ``y`` and ``prob``
    ``(n_test, K)``. Result: held-out metrics (:func:`domaingap.training.evaluate`: ``auc``, ``accuracy``,
    ``balanced_accuracy``, ``loss``), sizes, what was loaded, per-epoch training loss, seconds.
    """
    from . import training

    t0 = time.perf_counter()
    dev = device()
    x, y = target_pool(spec["target"], model_cfg=spec["model"], max_pool=spec["max_pool"], seed=spec["fold_seed"])
    tr, te = folds(y, spec["n_folds"], spec["fold_seed"])[spec["fold"]]
    num_classes = data.info(spec["target"]).num_classes
    model, loaded = init_model(spec["init"], model_cfg=spec["model"], num_classes=num_classes, seed=spec["seed"])
    model.to(dev)
    xtr, ytr = x[tr].to(dev), y[tr].to(dev)
    xte, yte = x[te].to(dev), y[te].to(dev)
    warm = None
    if spec["warmup"]:
        w = spec["warmup"]
        warm = warmup_head(model, xtr, ytr, epochs=w["epochs"], lr=w["lr"], batch_size=w["batch_size"],
                           seed=spec["seed"])
        warm["auc_after_warmup"] = training.evaluate(model, xte, yte)["auc"]
    hist = training.fit(model, xtr, ytr, epochs=spec["epochs"], batch_size=spec["batch_size"], lr=spec["lr"],
                        weight_decay=spec["weight_decay"], optimizer="adam", seed=spec["seed"], progress=False,
                        device=dev)
    metrics = training.evaluate(model, xte, yte)
    prob = training.predict_proba(model, xte).cpu().numpy()
    _save_state(model, work / "model.pt")
    np.savez(work / "predictions.npz", index=te, y=y[te].numpy(), prob=prob.astype(np.float32))
    return {"target": spec["target"], "init_name": spec["init_name"], "fold": spec["fold"], **metrics,
            "n_train": int(len(tr)), "n_test": int(len(te)), "loaded": loaded, "warmup": warm,
            "train_loss": hist["train_loss"], "seconds": time.perf_counter() - t0, "device": str(dev)}


def materialise(ref: dict, *, model_cfg: dict, num_classes: int):
    """The network a similarity reference names (see :func:`similarity_models`), on the CPU."""
    if ref["kind"] == "finetuned":
        result = artefacts.cached("p3_finetune", ref["spec"], run_finetune, TRAIN_DEPENDS)
        model = build(model_cfg, num_classes, 0)
        return _load_state(model, Path(result["_dir"]) / "model.pt")
    if ref["kind"] == "init":
        init = ref["init"]
        if init["kind"] == "pretrained":  # the pretrained network with its own head, as saved
            result = artefacts.cached("p3_pretrain", init["spec"], run_pretrain, TRAIN_DEPENDS)
            model = build(model_cfg, data.info(init["spec"]["dataset"]).num_classes, 0)
            return _load_state(model, Path(result["_dir"]) / "model.pt")
        return init_model(init, model_cfg=model_cfg, num_classes=num_classes, seed=0)[0]
    raise ValueError(f"unknown model reference kind {ref.get('kind')!r}; expected 'finetuned' or 'init'")


def __getattr__(name: str):
    # p3.layer_similarity is now domaingap.kernels.similarity.layer_similarity; imported on first use, so that
    # importing this module stays free of torch
    if name == "layer_similarity":
        from .kernels.similarity import layer_similarity

        return layer_similarity
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_similarity(spec: dict, work: Path) -> dict:
    """Every pair of :func:`similarity_pairs` at every layer of :data:`LAYERS`, on one target's probe images.

    Result: ``rows``, a list of ``{pair, a, b, layer, mean_cca, svcca, pwcca, cka}``; ``probe`` (images, rows per
    image at each layer); seconds.
    """
    from .kernels import similarity

    t0 = time.perf_counter()
    dev = device()
    x = probe_images(spec["target"], model_cfg=spec["model"], n=spec["probe_n"], seed=spec["probe_seed"])
    needed = sorted({name for pair in spec["pairs"] for name in pair})
    acts = {}
    for name in needed:
        model = materialise(spec["models"][name], model_cfg=spec["model"], num_classes=spec["num_classes"])
        acts[name] = similarity.activations(model.to(dev), x, spec["layers"], batch_size=256)
        del model
    rows = []
    for a, b in spec["pairs"]:
        for layer in spec["layers"]:
            vals = similarity.layer_similarity(acts[a][layer], acts[b][layer], n_channels=spec["n_channels"],
                                               repeats=spec["repeats"], seed=0, epsilon=spec["epsilon"])
            rows.append({"pair": pair_label((a, b)), "a": a, "b": b, "layer": layer, **vals})
    any_acts = acts[needed[0]]
    probe = {"n": int(len(x)), "rows_per_image": {k: int(v.shape[2] * v.shape[3]) for k, v in any_acts.items()},
             "channels": {k: int(v.shape[1]) for k, v in any_acts.items()}}
    return {"target": spec["target"], "fold": spec["fold"], "rows": rows, "probe": probe,
            "seconds": time.perf_counter() - t0, "device": str(dev)}


# ------------------------------------------------------------------------------------------ sweeps

def pretrain(cfg: dict, *, progress: bool = True) -> list[dict]:
    """Run (or load) every pretraining run of ``cfg``; results in :func:`pretrain_specs` order."""
    return artefacts.sweep("p3_pretrain", pretrain_specs(cfg), run_pretrain, TRAIN_DEPENDS, progress=progress,
                           desc="P3 pretraining")


def finetune(cfg: dict, *, progress: bool = True) -> list[dict]:
    """Run (or load) every fine-tuning run of ``cfg`` (pretraining first); results in spec order."""
    pretrain(cfg, progress=progress)
    return artefacts.sweep("p3_finetune", finetune_specs(cfg), run_finetune, TRAIN_DEPENDS, progress=progress,
                           desc="P3 fine-tuning")


def similarities(cfg: dict, *, progress: bool = True) -> list[dict]:
    """Run (or load) every layer-wise similarity run (fine-tuning first); results in spec order."""
    finetune(cfg, progress=progress)
    return artefacts.sweep("p3_similarity", similarity_specs(cfg), run_similarity, SIM_DEPENDS,
                           progress=progress, desc="P3 similarity")


# ------------------------------------------------------------------------------------------ tables

def init_label(init_name: str, cfg: dict) -> str:
    """Column label of an initialisation, with its source, e.g. ``"natural (cifar10)"``."""
    base = init_name[: -len(FR)] if init_name.endswith(FR) else init_name
    if base == RANDOM:
        return "random init"
    src = cfg["sources"][base]
    what = src.get("dataset") or Path(str(src["weights"])).name
    return f"{init_name} ({what})"


def finetune_frame(results: Sequence[dict]):
    """Fine-tuning results as a DataFrame: one row per run (target, init, fold, auc, accuracy, ...)."""
    import pandas as pd

    rows = [{"target": r["target"], "init": r["init_name"], "fold": r["fold"], "auc": r["auc"],
             "accuracy": r["accuracy"], "balanced_accuracy": r["balanced_accuracy"], "loss": r["loss"],
             "n_train": r["n_train"], "n_test": r["n_test"], "seconds": r["seconds"], "_dir": r["_dir"]}
            for r in results]
    return pd.DataFrame(rows)


def auc_table(df, cfg: dict, *, percent: bool = True):
    """P3's table layout: targets x initialisations, ``"mean ± sd"`` AUC over folds (sd with ddof=1)."""
    import pandas as pd

    scale = 100.0 if percent else 1.0
    order = [i for t in cfg["targets"] for i in inits(cfg, t)]
    cols = list(dict.fromkeys(order))
    out = {}
    for target, g in df.groupby("target", sort=False):
        row = {}
        for init in cols:
            v = g.loc[g["init"] == init, "auc"].to_numpy() * scale
            row[init] = f"{v.mean():.1f} ± {v.std(ddof=1):.1f}" if len(v) > 1 else \
                (f"{v.mean():.1f}" if len(v) else "—")
        out[data.info(target).title] = row
    return pd.DataFrame.from_dict(out, orient="index")[cols]


def load_predictions(result: dict) -> dict[str, np.ndarray]:
    """``index``, ``y`` and ``prob`` ``(n_test, K)`` of a fine-tuning result."""
    with np.load(Path(result["_dir"]) / "predictions.npz") as z:
        return {k: z[k] for k in z.files}


def similarity_frame(results: Sequence[dict]):
    """Similarity results as a long DataFrame: target, fold, pair, a, b, layer, block, measure, value."""
    import pandas as pd

    rows = []
    for r in results:
        for row in r["rows"]:
            for m in MEASURES:
                rows.append({"target": r["target"], "fold": r["fold"], "pair": row["pair"], "a": row["a"],
                             "b": row["b"], "layer": row["layer"], "block": LAYER_LABELS[row["layer"]],
                             "measure": m, "value": row[m]})
    return pd.DataFrame(rows)


# ------------------------------------------------------------------------------------------ statistics

def agreement(correct_a, correct_b) -> dict[str, float]:
    """Prediction similarity of two classifiers on the same test samples (P3's section on predictions).

    Args:
        correct_a, correct_b: boolean ``(n,)``: whether model A / B classified each sample correctly.

    Returns:
        ``observed``: fraction of samples both get right or both get wrong; ``independent``: its expectation if
        the two models erred independently with their own accuracies, ``a1 a2 + (1 - a1)(1 - a2)``;
        ``paper_a`` / ``paper_b``: P3's baseline ``acc^2 + (1 - acc)^2`` with model A's / B's accuracy (equal to
        the independence baseline only when ``a1 = a2``); ``kappa``: Cohen's kappa of the correctness labels,
        ``(observed - independent) / (1 - independent)``; ``acc_a``, ``acc_b``, ``n``.
    """
    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.ndim != 1 or a.shape != b.shape or len(a) == 0:
        raise ValueError(f"correct_a and correct_b must be non-empty 1-D arrays of one length, got shapes "
                         f"{a.shape} and {b.shape}")
    a1, a2 = a.mean(), b.mean()
    observed = float(np.mean(a == b))
    independent = float(a1 * a2 + (1 - a1) * (1 - a2))
    kappa = (observed - independent) / (1 - independent) if independent < 1 else float("nan")
    return {"observed": observed, "independent": independent, "paper_a": float(a1 ** 2 + (1 - a1) ** 2),
            "paper_b": float(a2 ** 2 + (1 - a2) ** 2), "kappa": float(kappa), "acc_a": float(a1),
            "acc_b": float(a2), "n": int(len(a))}


def agreement_test(correct_a, correct_b) -> dict[str, float]:
    """One-sided Fisher exact test that correctness of A and B is positively associated (agreement above the
    independence baseline), on the 2x2 table right/wrong x right/wrong. Returns odds ratio and p-value."""
    from scipy import stats

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    table = [[int(np.sum(a & b)), int(np.sum(a & ~b))], [int(np.sum(~a & b)), int(np.sum(~a & ~b))]]
    res = stats.fisher_exact(table, alternative="greater")
    return {"odds_ratio": float(res.statistic), "p": float(res.pvalue), "table": table}


def paired_summary(diff, *, alternative: str = "two-sided", confidence: float = 0.95) -> dict[str, float]:
    """Mean of paired differences with a t-based CI and a Wilcoxon signed-rank test.

    Args:
        diff: ``(n,)`` paired differences (e.g. AUC of one init minus another, fold by fold).
        alternative: of the Wilcoxon test: ``"two-sided"``, ``"greater"`` (mean > 0) or ``"less"``.

    Returns:
        ``mean``, ``lo``, ``hi`` (t-based CI), ``sd``, ``n``, ``wilcoxon_p``, ``rank_biserial`` (matched-pairs
        rank-biserial correlation, the Wilcoxon effect size in [-1, 1]).
    """
    from scipy import stats

    d = np.asarray(diff, dtype=float)
    d = d[np.isfinite(d)]
    n = len(d)
    if n < 2:
        raise ValueError(f"need at least 2 finite paired differences, got {n}")
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1) * sd / math.sqrt(n))
    nz = d[d != 0]
    if len(nz):
        p = float(stats.wilcoxon(nz, alternative=alternative).pvalue)
        ranks = stats.rankdata(np.abs(nz))
        rbc = float((ranks[nz > 0].sum() - ranks[nz < 0].sum()) / ranks.sum())
    else:
        p, rbc = 1.0, 0.0
    return {"mean": mean, "lo": mean - half, "hi": mean + half, "sd": sd, "n": n, "wilcoxon_p": p,
            "rank_biserial": rbc}


def spearman_ci(x, y, *, groups=None, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
                ) -> dict[str, float]:
    """Spearman correlation of ``x`` and ``y`` (``(n,)`` each) with a percentile bootstrap CI.

    With ``groups`` (``(n,)`` labels, e.g. the target dataset), both variables are first centred within each
    group, so the correlation is the within-group one (a dataset that is easy for every initialisation cannot
    create a spurious correlation across datasets). The p-value is scipy's (t approximation).
    """
    from scipy import stats

    x = np.array(x, dtype=float)  # copies: centring below must not touch the caller's arrays
    y = np.array(y, dtype=float)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-D arrays of one length, got shapes {x.shape} and {y.shape}")
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != x.shape:
            raise ValueError(f"groups must have shape {x.shape}, got {g.shape}")
        for v in np.unique(g):
            m = g == v
            x[m] -= x[m].mean()
            y[m] -= y[m].mean()
    n = len(x)
    if n < 4:
        raise ValueError(f"need at least 4 points for a Spearman correlation with a bootstrap CI, got {n}")
    res = stats.spearmanr(x, y)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        i = rng.integers(0, n, n)
        if np.ptp(x[i]) > 0 and np.ptp(y[i]) > 0:
            boots.append(stats.spearmanr(x[i], y[i]).statistic)
    lo, hi = np.quantile(boots, [(1 - confidence) / 2, (1 + confidence) / 2]) if boots else (np.nan, np.nan)
    return {"rho": float(res.statistic), "p": float(res.pvalue), "lo": float(lo), "hi": float(hi), "n": n}


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given)."""
    p = np.asarray(pvalues, dtype=float)
    order = np.argsort(p)
    adj = np.empty_like(p)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adj[i] = running
    return adj.tolist()


def verdict_from_test(effect_sign: float, p: float, *, expected_sign: int, alpha: float = 0.05) -> str:
    """``reproduced`` when the effect has the paper's sign and p < alpha, ``not reproduced`` when it has the
    opposite sign and p < alpha, otherwise ``inconclusive``."""
    if not math.isfinite(p):
        return "inconclusive"
    if p < alpha and np.sign(effect_sign) == expected_sign:
        return "reproduced"
    if p < alpha and np.sign(effect_sign) == -expected_sign:
        return "not reproduced"
    return "inconclusive"


# ------------------------------------------------------------------------------------------ CLI

def main(argv: list[str] | None = None) -> int:
    """``python -m domaingap.p3 --profile default``: every P3 sweep, without the notebooks."""
    parser = argparse.ArgumentParser(prog="python -m domaingap.p3", description=main.__doc__)
    parser.add_argument("--profile", default="default", choices=profiles.PROFILES)
    parser.add_argument("--stage", default="all", choices=("pretrain", "finetune", "similarity", "all"),
                        help="stop after this stage (each stage runs the ones it needs first)")
    args = parser.parse_args(argv)
    cfg = config(args.profile)
    apply_threads(cfg)
    t0 = time.perf_counter()
    if args.stage == "pretrain":
        pretrain(cfg)
    elif args.stage == "finetune":
        finetune(cfg)
    else:
        similarities(cfg)
    print(f"P3 {args.stage} at profile {args.profile!r} done in {time.perf_counter() - t0:.0f} s "
          f"(device {device()})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
