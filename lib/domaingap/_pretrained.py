"""Tolerant loading of pretrained weights into the models of :mod:`domaingap.models`.

:func:`load_pretrained` accepts torchvision's ImageNet weights and converted state-dict files (P3, Juodelyte et al.,
TMLR 2023: ImageNet- and RadImageNet-initialised ResNet50s), and reports key by key what it did
(:class:`LoadReport`). Both are public as ``domaingap.models.load_pretrained`` / ``domaingap.models.LoadReport``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch
import torchvision
from torch import nn

__all__ = ["LoadReport", "load_pretrained"]


_PREFIXES: tuple[str, ...] = ("module.", "backbone.", "model.", "encoder.", "net.")
_WRAPPER_KEYS: tuple[str, ...] = ("state_dict", "model_state_dict", "model", "net", "network")


@dataclass
class LoadReport:
    """What :func:`load_pretrained` did, key by key (keys are the model's own names).

    Attributes:
        loaded: keys copied from the checkpoint.
        adapted: keys loaded after adapting the first conv's input channels (summed over the
            checkpoint's input channels, e.g. ImageNet RGB -> grayscale).
        skipped_head: classifier-head keys whose shape differs (e.g. 1000 ImageNet classes ->
            2 classes); they keep their fresh initialisation.
        missing: model keys the checkpoint does not provide (including the skipped head;
            BatchNorm ``num_batches_tracked`` counters are not listed: they do not change the
            forward pass).
        unexpected: checkpoint keys (after prefix remapping) the model does not have.
        source: what was loaded.
    """

    loaded: list[str] = field(default_factory=list)
    adapted: list[str] = field(default_factory=list)
    skipped_head: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    source: str = ""

    def __str__(self) -> str:
        return (
            f"LoadReport({self.source}: loaded {len(self.loaded)}, adapted {self.adapted}, "
            f"skipped head {self.skipped_head}, missing {self.missing}, unexpected {self.unexpected})"
        )


def _download_imagenet_state_dict(arch: str) -> dict[str, torch.Tensor]:
    """ImageNet weights through torchvision's own weights enum and download cache."""
    try:
        weights = torchvision.models.get_model_weights(arch).DEFAULT
    except (ValueError, KeyError) as err:
        raise ValueError(f"torchvision has no ImageNet weights for {arch!r}") from err
    try:
        return weights.get_state_dict(progress=True, check_hash=True)
    except OSError as err:  # URLError, socket errors and missing files are all OSErrors
        cache = os.path.join(torch.hub.get_dir(), "checkpoints")
        raise RuntimeError(
            f"could not download ImageNet weights for {arch} from {weights.url} ({err}). "
            f"Without internet, copy the file into {cache} (torchvision's cache) or pass a "
            f"path to a state-dict file instead of 'imagenet'."
        ) from err


def _unwrap_checkpoint(obj: object, path: str) -> dict[str, torch.Tensor]:
    # training scripts often save {"state_dict": ..., "epoch": ...} or {"model": ...}
    while isinstance(obj, dict) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            break
        obj = inner
    if not isinstance(obj, dict) or not any(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(
            f"{path} does not hold a state dict (a dict of tensors, possibly under one of the "
            f"keys {_WRAPPER_KEYS}); got {type(obj).__name__}"
        )
    return {k: v for k, v in obj.items() if isinstance(v, torch.Tensor)}


def _remap_key(key: str, target: dict[str, torch.Tensor], child_names: list[str]) -> str:
    """Map a checkpoint key onto the model's names.

    Strips wrapper prefixes (``module.`` from DataParallel, ``backbone.``, ``model.``...)
    until the key matches, and resolves ``nn.Sequential(*list(model.children())[:-1])``
    indices (``"4.0.conv1.weight"`` -> ``"layer1.0.conv1.weight"``), the layout of the
    converted RadImageNet PyTorch ResNet50 checkpoints.
    """
    k = key
    while k not in target:
        for p in _PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
                break
        else:
            break
    if k in target:
        return k
    head, _, rest = k.partition(".")
    if head.isdigit() and rest and int(head) < len(child_names):
        candidate = f"{child_names[int(head)]}.{rest}"
        if candidate in target:
            return candidate
    return k


def _first_conv_name(model: nn.Module) -> str | None:
    for n, m in model.named_modules():
        if isinstance(m, nn.Conv2d):
            return f"{n}.weight"
    return None


def load_pretrained(model: nn.Module, source: str | os.PathLike) -> LoadReport:
    """Load pretrained weights into ``model`` in place, tolerating the usual mismatches.

    Args:
        model: a model from :func:`build_model` (for ``"imagenet"`` it needs the ``arch``
            attribute that :func:`build_model` sets).
        source: ``"imagenet"`` (torchvision's ``DEFAULT`` ImageNet weights for ``model.arch``,
            downloaded and cached by torchvision; needs internet the first time) or a path to
            a file saved with ``torch.save`` holding a state dict (bare, under a
            ``"state_dict"``/``"model"`` key), e.g. a converted RadImageNet
            ResNet50 checkpoint or our own pretraining artefact.

    Returns:
        A :class:`LoadReport`.

    Handling: common key prefixes are stripped (``module.``, ``backbone.``, ``model.``...)
    and ``Sequential`` child indices resolved; a first conv with a different number of input
    channels is adapted to a 1-channel model by summing over the checkpoint's input channels
    (a grayscale image replicated to RGB gives the same activations); classifier-head tensors
    of a different shape are skipped. Any other shape mismatch is an architecture mismatch and
    raises ``ValueError``, as does a checkpoint of which no key matches.
    """
    from .models import SMALL_INPUT_MAX, _head_module  # here: models imports this module

    if isinstance(source, str) and source == "imagenet":
        arch = getattr(model, "arch", None)
        if arch is None or arch == "small_cnn":
            raise ValueError(
                "load_pretrained(model, 'imagenet') needs a torchvision architecture built by "
                f"build_model (model.arch), got arch={arch!r}"
            )
        state = _download_imagenet_state_dict(arch)
        label = f"imagenet:{arch}"
    else:
        path = os.fspath(source)
        if not os.path.isfile(path):
            raise ValueError(f"source must be 'imagenet' or an existing state-dict file, got {path!r}")
        # weights_only=True: never unpickle arbitrary objects from downloaded files
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise ValueError(
                f"could not read {path!r} as a tensors-only checkpoint ({err}); save "
                f"model.state_dict() rather than the pickled module"
            ) from err
        state = _unwrap_checkpoint(obj, path)
        label = path

    target = model.state_dict()
    child_names = [n for n, _ in model.named_children()]
    head_name, _ = _head_module(model)
    first_conv = _first_conv_name(model)
    report = LoadReport(source=label)
    new_state: dict[str, torch.Tensor] = {}
    mismatched: list[str] = []

    for key, value in state.items():
        k = _remap_key(key, target, child_names)
        if k not in target:
            report.unexpected.append(k)
            continue
        want = target[k].shape
        if value.shape == want:
            new_state[k] = value
            report.loaded.append(k)
        elif (
            k == first_conv
            and value.dim() == 4
            and len(want) == 4
            and want[1] == 1
            and value.shape[0] == want[0]
            and value.shape[2:] == want[2:]
        ):
            # a 1-channel image x fed to the summed kernel gives the same response as the RGB
            # kernel on (x, x, x): the natural 3 -> 1 channel transfer
            new_state[k] = value.sum(dim=1, keepdim=True)
            report.adapted.append(k)
        elif k.startswith(head_name + "."):
            report.skipped_head.append(k)
        else:
            mismatched.append(f"{k}: checkpoint {tuple(value.shape)} vs model {tuple(want)}")

    if mismatched:
        hint = ""
        if first_conv and any(m.startswith(first_conv) for m in mismatched):
            hint = (
                " (a 7x7 ImageNet stem does not fit the 3x3 small-input stem: build the model "
                f"with stem='imagenet' or image_size > {SMALL_INPUT_MAX} to keep the ImageNet definition)"
            )
        raise ValueError(f"architecture mismatch loading {label}: {mismatched}{hint}")
    if not new_state:
        raise ValueError(
            f"no key of {label} matches the model (first checkpoint keys: {list(state)[:5]}, "
            f"first model keys: {list(target)[:5]})"
        )

    result = model.load_state_dict(new_state, strict=False)
    report.missing = [k for k in result.missing_keys if not k.endswith("num_batches_tracked")]
    return report
