"""Model zoo: torchvision ResNets/VGGs adapted to small images, a CPU-sized CNN, penultimate
representations and tolerant loading of pretrained weights.

Architectures follow the papers this book reproduces:

- P1 (Konz & Mazurowski, ICLR 2024) trains torchvision ``resnet18/34/50`` and ``vgg13/16/19``
  from scratch (first conv adapted to 1 channel) and measures the intrinsic dimension of the
  penultimate representation: the ResNet ``layer4`` output flattened *before* the average pool,
  and the VGG second classifier ``Linear`` *before* its ReLU.
- P2 (Mouton et al. 2026, after Ilyas et al. 2019) needs the penultimate representation
  ``g(x)`` for the D_R / D_NR constructions (:func:`domaingap.kernels.attacks.invert_representation`).
- P3 (Juodelyte et al., TMLR 2023) fine-tunes an ImageNet- or RadImageNet-initialised ResNet50;
  :func:`load_pretrained` accepts torchvision's ImageNet weights and converted state-dict files.

Images are ``(N, C, H, W)`` float tensors; every model maps them to ``(N, num_classes)`` logits. The weight
loading (:func:`load_pretrained`, :class:`LoadReport`) lives in :mod:`domaingap._pretrained` and is imported here.
"""

from __future__ import annotations

from typing import Literal

from .devices import eval_mode
import torch
import torchvision
from torch import nn

from ._pretrained import LoadReport, load_pretrained

__all__ = [
    "MODEL_NAMES",
    "SmallCNN",
    "build_model",
    "channels_last",
    "penultimate",
    "load_pretrained",
    "LoadReport",
]

MODEL_NAMES: tuple[str, ...] = (
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg13",
    "vgg16",
    "vgg19",
    "small_cnn",
)

# Inputs up to this size get the CIFAR-style adaptations (3x3 stride-1 ResNet stem, no
# maxpool; VGG pools with ceil_mode and a 1x1 average pool). Above it the torchvision
# ImageNet definitions are kept unchanged, so ImageNet weights load without surgery.
SMALL_INPUT_MAX: int = 64


class SmallCNN(nn.Module):
    """A few-layer CNN sized for CPU-only profiles (tens of thousands of parameters).

    Three 3x3 conv blocks (conv -> BatchNorm -> ReLU, the first two followed by 2x2 max
    pooling), a global average pool, one hidden ``Linear`` + ReLU (the penultimate
    representation, ``width * 4`` features) and a linear classifier ``fc``.

    Args:
        in_channels: C of the ``(N, C, H, W)`` input.
        num_classes: number of output logits.
        width: channels of the first block (then ``2*width``, ``4*width``).

    Works for any H, W >= 4 (global pooling removes the spatial size).
    """

    def __init__(self, in_channels: int, num_classes: int, width: int = 32) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            # bias=False: the BatchNorm shift makes a conv bias redundant
            return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]

        self.features = nn.Sequential(
            *block(in_channels, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )
        self.embed = nn.Sequential(nn.Linear(4 * w, 4 * w), nn.ReLU(inplace=True))
        self.fc = nn.Linear(4 * w, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate representation ``(N, 4*width)`` (input of ``fc``, after the ReLU)."""
        return self.embed(self.features(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


_RESNET_LAYOUTS = {
    "resnet18": (torchvision.models.resnet.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (torchvision.models.resnet.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (torchvision.models.resnet.Bottleneck, [3, 4, 6, 3]),
}
_VGG_CFGS = {"vgg13": "B", "vgg16": "D", "vgg19": "E"}


def _resnet(name: str, in_channels: int, num_classes: int, width: int, stem: str) -> torchvision.models.ResNet:
    """torchvision's ResNet with stage widths (w, 2w, 4w, 8w) (torchvision: w = 64) and a chosen stem.

    Built through torchvision's own ``_make_layer`` and blocks, so module names, state-dict keys
    and the forward pass are torchvision's; only the widths and the stem differ.
    """
    block, layers = _RESNET_LAYOUTS[name]
    m = torchvision.models.ResNet.__new__(torchvision.models.ResNet)
    nn.Module.__init__(m)
    # the attributes torchvision's ResNet.__init__ sets for _make_layer
    m._norm_layer, m.inplanes, m.dilation, m.groups, m.base_width = nn.BatchNorm2d, width, 1, 1, 64
    # children are registered in torchvision's order: checkpoints saved as
    # nn.Sequential(*list(resnet.children())[:-1]) are matched by position
    cifar = stem == "cifar"  # 3x3 stride-1 conv, no max pool: keeps resolution for 28-64 px inputs
    m.conv1 = nn.Conv2d(in_channels, width, kernel_size=3 if cifar else 7, stride=1 if cifar else 2,
                        padding=1 if cifar else 3, bias=False)
    m.bn1 = nn.BatchNorm2d(width)
    m.relu = nn.ReLU(inplace=True)
    m.maxpool = nn.Identity() if cifar else nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
    m.layer1 = m._make_layer(block, width, layers[0])
    m.layer2 = m._make_layer(block, 2 * width, layers[1], stride=2)
    m.layer3 = m._make_layer(block, 4 * width, layers[2], stride=2)
    m.layer4 = m._make_layer(block, 8 * width, layers[3], stride=2)
    m.avgpool = nn.AdaptiveAvgPool2d((1, 1))
    m.fc = nn.Linear(8 * width * block.expansion, num_classes)
    for mod in m.modules():  # torchvision's initialisation
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(mod, nn.BatchNorm2d):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    return m


def _vgg(name: str, in_channels: int, num_classes: int, width: int, small: bool) -> torchvision.models.VGG:
    """torchvision's VGG (no BatchNorm, as P1) with block widths (w, 2w, 4w, 8w, 8w) and hidden
    width 64w (torchvision: w = 64, hidden 4096); small inputs get ceil-mode pools and a 1x1
    average pool (see :func:`build_model`)."""
    cfg = [v if v == "M" else v * width // 64 for v in torchvision.models.vgg.cfgs[_VGG_CFGS[name]]]
    m = torchvision.models.VGG.__new__(torchvision.models.VGG)
    nn.Module.__init__(m)
    m.features = torchvision.models.vgg.make_layers(cfg, batch_norm=False)
    m.features[0] = nn.Conv2d(in_channels, cfg[0], kernel_size=3, padding=1)
    if small:
        for mod in m.features:
            if isinstance(mod, nn.MaxPool2d):
                mod.ceil_mode = True
    side = 1 if small else 7
    m.avgpool = nn.AdaptiveAvgPool2d((side, side))
    hidden = 64 * width
    m.classifier = nn.Sequential(
        nn.Linear(8 * width * side * side, hidden),
        nn.ReLU(True),
        nn.Dropout(p=0.5),
        nn.Linear(hidden, hidden),
        nn.ReLU(True),
        nn.Dropout(p=0.5),
        nn.Linear(hidden, num_classes),
    )
    for mod in m.modules():  # torchvision's initialisation
        if isinstance(mod, nn.Conv2d):
            nn.init.kaiming_normal_(mod.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.Linear):
            nn.init.normal_(mod.weight, 0, 0.01)
            nn.init.zeros_(mod.bias)
    return m


def build_model(
    name: str,
    *,
    in_channels: int,
    num_classes: int,
    image_size: int,
    width: int | None = None,
    stem: Literal["cifar", "imagenet"] | None = None,
) -> nn.Module:
    """Build an untrained classifier for ``(N, in_channels, image_size, image_size)`` images.

    Args:
        name: one of :data:`MODEL_NAMES` (``"resnet18"``, ``"resnet34"``, ``"resnet50"``,
            ``"vgg13"``, ``"vgg16"``, ``"vgg19"``, ``"small_cnn"``).
        in_channels: image channels (1 for grayscale as in P1's medical data, 3 for RGB).
        num_classes: number of logits.
        image_size: side length in pixels (square images).
        width: base channel width; ``None`` keeps the published one. ResNet stages get
            ``(w, 2w, 4w, 8w)`` channels (torchvision: 64); VGG blocks ``(w, 2w, 4w, 8w, 8w)``
            and hidden layers ``64 w`` (torchvision: 64, i.e. 4096); SmallCNN ``(w, 2w, 4w)``
            (default 32). Narrow widths make the CPU-sized profiles affordable.
        stem: ResNets only: ``"cifar"`` (3x3 stride-1 conv, no max pool) or ``"imagenet"``
            (7x7 stride-2 conv + max pool); ``None`` picks ``"cifar"`` for
            ``image_size <= 64`` and ``"imagenet"`` above.

    Returns:
        An ``nn.Module`` mapping ``(N, in_channels, H, W)`` to ``(N, num_classes)`` logits, with
        attribute ``arch = name`` (used by :func:`load_pretrained` to find ImageNet weights).
        ResNets and VGGs are instances of torchvision's ``ResNet`` / ``VGG`` classes with
        torchvision's module names, so torchvision checkpoints load into them.

    Adaptations of the torchvision definitions (``weights=None``):

    - the first conv takes ``in_channels`` (P1 adapts it to 1 channel the same way);
    - ResNet, ``image_size <= 64`` (default stem): the 7x7 stride-2 stem becomes a 3x3
      stride-1 conv and the max pool is dropped (the standard CIFAR adaptation): a 28 px input
      then reaches ``layer4`` at 4x4 instead of 1x1;
    - VGG, ``image_size <= 64``: pools use ``ceil_mode=True`` so five halvings of 28 px end at
      1x1 (28, 14, 7, 4, 2, 1) instead of failing at 0x0; the average pool becomes 1x1 and the
      first classifier layer takes ``8 w`` (512) features; the hidden layers and dropout are
      kept, so the P1 representation (second classifier ``Linear``) is still ``64 w``-d;
    - larger images with the default width and stem give exactly the ImageNet definitions.
    """
    if name not in MODEL_NAMES:
        raise ValueError(f"unknown model name {name!r}; expected one of {MODEL_NAMES}")
    _check_positive_int("in_channels", in_channels)
    _check_positive_int("num_classes", num_classes)
    _check_positive_int("image_size", image_size)
    if width is not None:
        _check_positive_int("width", width)
    if stem not in (None, "cifar", "imagenet"):
        raise ValueError(f"stem must be 'cifar', 'imagenet' or None, got {stem!r}")
    if stem is not None and not name.startswith("resnet"):
        raise ValueError(f"stem applies to ResNets only, got stem={stem!r} for {name!r}")
    small = image_size <= SMALL_INPUT_MAX

    if name == "small_cnn":
        if image_size < 4:
            raise ValueError(f"small_cnn needs image_size >= 4 (two 2x2 pools), got {image_size}")
        model: nn.Module = SmallCNN(in_channels, num_classes, width=width or 32)
    elif name.startswith("resnet"):
        model = _resnet(name, in_channels, num_classes, width or 64, stem or ("cifar" if small else "imagenet"))
    else:
        model = _vgg(name, in_channels, num_classes, width or 64, small)
    model.arch = name
    return model


def build_configured(name: str, options: dict | None = None, *, in_channels: int, num_classes: int,
                     image_size: int, seed: int | None = None) -> nn.Module:
    """:func:`build_model` from a profile's model entry: ``options`` holds extra :func:`build_model` keywords
    (``width``, ``stem``; None values are dropped). An option :func:`build_model` does not take is a
    ``ValueError`` naming it and the accepted ones. With ``seed``, the initial weights come from that seed and the
    global RNG is left untouched (the same call gives the same network on any machine)."""
    import inspect

    extra = {k: v for k, v in dict(options or {}).items() if v is not None}
    accepted = [p for p in inspect.signature(build_model).parameters if p not in ("name", "in_channels",
                                                                               "num_classes", "image_size")]
    unknown = [k for k in extra if k not in accepted]
    if unknown:
        raise ValueError(f"model options {unknown} (of {extra}) are not accepted by build_model; "
                         f"it takes {accepted}")
    if seed is None:
        return build_model(name, in_channels=in_channels, num_classes=num_classes, image_size=image_size, **extra)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return build_model(name, in_channels=in_channels, num_classes=num_classes, image_size=image_size, **extra)


def _head_module(model: nn.Module) -> tuple[str, nn.Linear]:
    """Name and module of the final classifier ``Linear``."""
    if isinstance(model, (torchvision.models.ResNet, SmallCNN)):
        return "fc", model.fc
    if isinstance(model, torchvision.models.VGG):
        idx = len(model.classifier) - 1
        return f"classifier.{idx}", model.classifier[idx]
    # fall back on the last Linear in registration order
    last = None
    for n, m in model.named_modules():
        if isinstance(m, nn.Linear):
            last = (n, m)
    if last is None:
        raise ValueError(f"{type(model).__name__} has no nn.Linear classifier head")
    return last


def penultimate(
    model: nn.Module,
    x: torch.Tensor,
    *,
    resnet_layer: Literal["avgpool", "layer4"] = "avgpool",
    batch_size: int | None = None,
) -> torch.Tensor:
    """Representation before the final classifier, ``(N, F)``.

    Args:
        model: a model from :func:`build_model` (torchvision ``ResNet`` / ``VGG`` or
            :class:`SmallCNN`), or any module with a ``forward_features`` method.
        x: ``(N, C, H, W)`` images on the model's device.
        resnet_layer: for ResNets, ``"avgpool"`` gives the global-average-pooled ``layer4``
            output (``F = 512`` or ``2048``; the input of ``fc``); ``"layer4"`` gives P1's
            definition, the ``layer4`` output flattened before the pool
            (``F = 512 * h * w``, e.g. 8192 for ResNet-18 at 28 px).
        batch_size: if given, run in chunks of this many images (for large N under
            ``torch.no_grad()``); gradients still flow through the concatenation.

    Returns:
        ``(N, F)`` tensor. VGG: output of the second classifier ``Linear``, before its ReLU
        (P1's definition, F = 4096). SmallCNN: input of ``fc`` (after the hidden ReLU).

    The model is put in eval mode for the call (BatchNorm running statistics, no dropout) and
    each submodule's mode is restored afterwards. Gradient mode is left to the caller, so the
    function also serves as the differentiable ``g`` of representation inversion.
    """
    if resnet_layer not in ("avgpool", "layer4"):
        raise ValueError(f"resnet_layer must be 'avgpool' or 'layer4', got {resnet_layer!r}")
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be an (N, C, H, W) tensor, got {shape}")
    if batch_size is not None:
        _check_positive_int("batch_size", batch_size)
        if x.shape[0] > batch_size:
            return torch.cat(
                [penultimate(model, xb, resnet_layer=resnet_layer) for xb in x.split(batch_size)]
            )

    if isinstance(model, torchvision.models.ResNet):

        def fn(z: torch.Tensor) -> torch.Tensor:
            # mirrors torchvision's ResNet._forward_impl up to the classifier
            z = model.maxpool(model.relu(model.bn1(model.conv1(z))))
            z = model.layer4(model.layer3(model.layer2(model.layer1(z))))
            if resnet_layer == "avgpool":
                z = model.avgpool(z)
            return torch.flatten(z, 1)

    elif isinstance(model, torchvision.models.VGG):

        def fn(z: torch.Tensor) -> torch.Tensor:
            z = torch.flatten(model.avgpool(model.features(z)), 1)
            # classifier = [Linear, ReLU, Dropout, Linear, ReLU, Dropout, Linear]:
            # stop after the second Linear, before its (in-place) ReLU
            return model.classifier[:4](z)

    elif hasattr(model, "forward_features"):
        fn = model.forward_features
    else:
        raise ValueError(
            f"penultimate() supports torchvision ResNet/VGG and modules with forward_features, "
            f"got {type(model).__name__}"
        )

    with eval_mode(model):
        return fn(x)


def channels_last(*tensors_or_models):
    """Models and ``(N, C, H, W)`` image tensors in the channels-last memory format; values are unchanged.

    The book's training runs use it: per training step on one CPU thread at 28 px it was measured 13% (P1's
    ResNet-18, width 16), 19% (P1's VGG-13, width 8) and 25-30% (P2's small CNN) faster (2026-12-06). Returns the
    one object given, or a list in the order given. Save weights with ``.contiguous()`` tensors if a reader may
    expect the default layout.
    """
    if not tensors_or_models:
        raise ValueError("channels_last needs at least one model or tensor")
    out = []
    for t in tensors_or_models:
        if isinstance(t, nn.Module):
            out.append(t.to(memory_format=torch.channels_last))
        elif isinstance(t, torch.Tensor) and t.dim() == 4:
            out.append(t.contiguous(memory_format=torch.channels_last))
        else:
            desc = f"tensor of shape {tuple(t.shape)}" if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"channels_last takes modules and (N, C, H, W) tensors, got a {desc}")
    return out[0] if len(out) == 1 else out
