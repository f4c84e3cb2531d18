"""P3's networks: the chapter's ResNet, its initialisations (random, our pretraining, a user's weight file), the
frozen-backbone warm-up, and the networks a similarity run compares.

P3 (Juodelyte et al., TMLR 2023) fine-tunes a ResNet50 from ImageNet or RadImageNet weights with a
fresh dense classifier on global average pooling; "-Fr" first trains that head on the frozen backbone. Here the
ResNet is a :func:`domaingap.models.build_model` ResNet at the profile's width and stem, and real ImageNet /
RadImageNet weight files still load (:func:`weights_init`, :func:`domaingap.models.load_pretrained`).

Tensors: images float32 ``(N, C, S, S)`` in [0, 1] on the model's device; labels int64 ``(N,)``.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ... import data, models, training

__all__ = ["build", "init_model", "load_state", "materialise", "reference_kind",
           "save_state", "warmup_head", "weights_init"]

# model_cfg keys that are not build_model options
_SHAPE_KEYS = ("arch", "image_size", "channels")


def build(model_cfg: dict, num_classes: int, seed: int):
    """Untrained ResNet of the chapter, initialised from ``seed`` (the global RNG is left untouched).

    Args:
        model_cfg: ``arch`` (resnet18/34/50), ``image_size``, ``channels`` and optional
            :func:`domaingap.models.build_model` options such as ``width`` and ``stem``.
        num_classes: logits of the classifier head.
        seed: seeds every initial weight, so the same call gives the same network on any machine.
    """
    options = {k: v for k, v in model_cfg.items() if k not in _SHAPE_KEYS}
    return models.build_configured(model_cfg["arch"], options, in_channels=model_cfg["channels"],
                                   num_classes=num_classes, image_size=model_cfg["image_size"], seed=seed)


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


def init_model(init: dict, *, model_cfg: dict, num_classes: int, seed: int, pretrained_file: Path | None = None):
    """The network a fine-tuning run starts from; returns ``(model, load_summary)``.

    Args:
        init: ``{"kind": "random", "seed": s}``: every weight from seed ``s``;
            ``{"kind": "pretrained", "spec": pretrain_spec}``: our pretraining run, whose ``model.pt`` is
            ``pretrained_file`` (the fine-tuning run's upstream entry: see :mod:`domaingap.chapters.p3.runs`);
            ``{"kind": "weights", "source": "imagenet" | path, "sha256": ...}``: a user's weight file
            (see :func:`weights_init`), e.g. ImageNet or RadImageNet ResNet50 weights with
            ``model_cfg = {arch: resnet50, image_size: 112, ...}``.
        model_cfg: architecture (see :func:`build`).
        num_classes: classes of the target task.
        seed: seeds the new classifier head of a pretrained init (P3: a fresh dense layer).
        pretrained_file: the pretraining run's state dict, for a ``pretrained`` init only.

    The classifier head is always fresh: pretrained head weights are never carried over, even when the source
    and target happen to have the same number of classes.
    """
    kind = init.get("kind")
    if kind == "random":
        return build(model_cfg, num_classes, int(init["seed"])), {"source": "random", "seed": int(init["seed"])}
    if kind not in ("pretrained", "weights"):
        raise ValueError(f"init kind must be 'random', 'pretrained' or 'weights', got {init!r}")
    model = build(model_cfg, num_classes, seed)
    fresh_head = {k: v.clone() for k, v in _head(model).state_dict().items()}
    if kind == "pretrained":
        if pretrained_file is None:
            raise ValueError(f"init {init['spec']['dataset']!r} is a p3_pretrain run: pass its model.pt as "
                             f"pretrained_file (the run's upstream entry), got pretrained_file=None")
        source = Path(pretrained_file)
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


def save_state(model, path: Path) -> None:
    """Save ``model``'s state dict (CPU tensors) to ``path``."""
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, path)


def load_state(model, path: Path):
    """Load a :func:`save_state` file into ``model`` (on the CPU); returns the model."""
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model


def warmup_head(model, x, y, *, epochs: int, lr: float, batch_size: int, seed: int) -> dict:
    """P3's frozen-backbone warm-up: train only the classifier head on the frozen backbone's features.

    The backbone runs once in eval mode (BatchNorm uses the pretrained statistics, as a frozen Keras base) to
    give the global-average-pooled features ``(N, F)``; the head (``model.fc``) is then trained on them with
    Adam, which is the same as training the head with the backbone frozen, at a fraction of the cost.

    Args:
        model: a torchvision ResNet; its head is trained in place.
        x: ``(N, C, H, W)`` training images on the model's device; y: int64 ``(N,)``.
    """
    with torch.no_grad():
        feats = models.penultimate(model, x, batch_size=512)
    hist = training.fit(_head(model), feats, y, epochs=epochs, batch_size=batch_size, lr=lr, weight_decay=0.0,
                        optimizer="adam", seed=seed, progress=False, device=feats.device)
    return {"epochs": epochs, "final_loss": hist["train_loss"][-1]}


def reference_kind(ref: dict) -> str | None:
    """The run kind a similarity model reference (see :func:`domaingap.chapters.p3.specs.similarity_models`)
    needs as upstream: ``"p3_finetune"``, ``"p3_pretrain"``, or None (a random init or a user's weight file)."""
    if ref["kind"] == "finetuned":
        return "p3_finetune"
    if ref["kind"] == "init":
        return "p3_pretrain" if ref["init"]["kind"] == "pretrained" else None
    raise ValueError(f"unknown model reference kind {ref.get('kind')!r}; expected 'finetuned' or 'init'")


def materialise(ref: dict, *, model_cfg: dict, num_classes: int, model_file: Path | None = None):
    """The network a similarity reference names, on the CPU.

    ``model_file``: the ``model.pt`` of the reference's upstream entry (a fine-tuning or pretraining run; see
    :func:`reference_kind`); None for a random init or a user's weight file.
    """
    needs = reference_kind(ref)
    if needs is not None and model_file is None:
        raise ValueError(f"model reference {ref['kind']!r} is a {needs} run: pass its model.pt as model_file")
    if ref["kind"] == "finetuned":
        return load_state(build(model_cfg, num_classes, 0), Path(model_file))
    init = ref["init"]
    if init["kind"] == "pretrained":  # the pretrained network with its own head, as saved
        model = build(model_cfg, data.info(init["spec"]["dataset"]).num_classes, 0)
        return load_state(model, Path(model_file))
    return init_model(init, model_cfg=model_cfg, num_classes=num_classes, seed=0)[0]

