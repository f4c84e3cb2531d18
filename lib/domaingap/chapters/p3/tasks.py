"""P3's tasks: the chapter's settings (profile section ``p3``), its pretraining sources, targets and initialisations.

The tasks are listed in YAML, in the profile section ``p3`` of ``lib/domaingap/profiles.d/p3.yaml``: ``sources``
(name -> ``{dataset: ...}`` pretrained here, or ``{weights: imagenet | file}``, a user's ImageNet / RadImageNet
ResNet weights) and ``targets`` (registry names of the medical fine-tuning targets). Every target is fine-tuned
from each source, each source with P3's frozen-backbone warm-up (``-Fr``) and from random init (Juodelyte et al.,
TMLR 2023: the columns IN, IN-Fr, RIN, RIN-Fr and random init of its AUC table).

Nothing here trains or loads images: it names runs and checks settings.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from ... import data, profiles

PAPER = "P3"
SECTION = "p3"  # the profile section holding every size of the chapter

# P3's layers (Keras ResNet50 names) and ours (torchvision ResNet module names).
LAYERS: tuple[str, ...] = ("relu", "layer1", "layer2", "layer3", "layer4")
LAYER_LABELS: dict[str, str] = {"relu": "conv1", "layer1": "block1", "layer2": "block2", "layer3": "block3",
                                "layer4": "block4"}
MEASURES: tuple[str, ...] = ("mean_cca", "svcca", "pwcca", "cka", "matched_cca")
# matched_cca: P3's mean CCA on the SAME number of channels and rows at every layer (see runs.matched_rows)

RANDOM = "random"  # name of the random initialisation
FR = "-Fr"  # suffix of the frozen-backbone warm-up variant (P3's notation)

__all__ = ["FR", "LAYERS", "LAYER_LABELS", "MEASURES", "ORIGINS", "PAPER", "RANDOM", "SECTION", "check_config",
           "config", "init_label", "init_source", "inits", "origin_overlap", "pair_label", "pretrain_seed",
           "random_seed"]

# Where each dataset's images come from (the original collections), to check that no target appears in the
# pretraining set of a source it is fine-tuned from. MedNIST (MONAI) was gathered from TCIA CT / MRI collections
# (AbdomenCT, BreastMRI, ChestCT, HeadCT), the RSNA Bone Age challenge (Hand) and NIH ChestX-ray14 (CXR): it has
# no brain MRI (HeadCT is head CT), no knee, breast ultrasound, pediatric chest X-ray, fundus or blood-cell images.
ORIGINS: dict[str, frozenset[str]] = {
    "mednist": frozenset({"TCIA (CT, breast MRI)", "RSNA Bone Age", "NIH ChestX-ray14"}),
    "imagenette": frozenset({"ImageNet ILSVRC-2012"}),
    "cifar10": frozenset({"80 Million Tiny Images"}),
    "breastmnist": frozenset({"BUSI (Baheya hospital)"}),
    "pneumoniamnist": frozenset({"Kermany 2018 pediatric chest X-ray (Guangzhou)"}),
    "retinamnist": frozenset({"DeepDRiD"}),
    "kneeoa": frozenset({"Osteoarthritis Initiative"}),
    "braintumor": frozenset({"figshare Cheng 2017", "SARTAJ", "Br35H"}),
    "pbc": frozenset({"PBC Hospital Clinic Barcelona"}),
}


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
    for t in cfg["targets"]:
        for name, src in cfg["sources"].items():
            if "dataset" in src and data.info(src["dataset"]).name != data.info(t).name:
                shared = origin_overlap(src["dataset"], t)
                if shared:
                    raise ValueError(f"target {t!r} shares images with source {name!r} ({src['dataset']}): "
                                     f"{sorted(shared)}; pick another target or source")
    ft = cfg["finetune"]
    for key in ("max_epochs", "patience", "val_fraction"):
        if key not in ft:
            raise ValueError(f"finetune settings need {key!r} (early stopping on a validation split), got {ft}")
    if not 0 < ft["val_fraction"] < 1:
        raise ValueError(f"finetune.val_fraction must be in (0, 1), got {ft['val_fraction']!r}")


def origin_overlap(source: str, target: str) -> frozenset[str]:
    """Original image collections that dataset ``source`` and dataset ``target`` share (:data:`ORIGINS`); a
    dataset is always its own origin, so a source is never fine-tuned on itself unknowingly. Unlisted datasets
    count as their own single origin."""
    a, b = data.info(source).name, data.info(target).name
    oa = ORIGINS.get(a, frozenset({a})) | {a}
    ob = ORIGINS.get(b, frozenset({b})) | {b}
    return frozenset(oa & ob)


def pretrain_seed(cfg: dict, fold: int, replica: int = 0) -> int:
    """The pretraining seed whose networks fold ``fold`` of every target starts from; ``replica=1``: the next
    seed, whose fine-tuned networks on the same fold give the seed-to-seed baseline of prediction agreement."""
    seeds = cfg["pretrain_seeds"]
    return int(seeds[(fold + replica) % len(seeds)])


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


def init_source(init_name: str) -> str:
    """The source (or ``random``) an initialisation name starts from: ``"natural-Fr"`` -> ``"natural"``."""
    return init_name[: -len(FR)] if init_name.endswith(FR) else init_name


def init_label(init_name: str, cfg: dict) -> str:
    """Column label of an initialisation, with its source, e.g. ``"natural (cifar10)"``."""
    base = init_source(init_name)
    if base == RANDOM:
        return "random init"
    src = cfg["sources"][base]
    what = src.get("dataset") or Path(str(src["weights"])).name
    return f"{init_name} ({what})"


def pair_label(pair: Sequence[str]) -> str:
    """``("natural-FT", "natural")`` -> ``"natural-FT vs natural"`` (the ``pair`` column of similarity rows)."""
    return f"{pair[0]} vs {pair[1]}"
