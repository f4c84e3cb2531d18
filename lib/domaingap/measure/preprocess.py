"""The book's P1 image format, applied to any images: what makes a user's numbers comparable with the book's.

P1 (Konz & Mazurowski, ICLR 2024) scales every image by ``255 / img.max()``, truncates to uint8 and resizes
(bilinear) before measuring raw-pixel distances; the book's P1 chapter does exactly that in its ``preprocess``
(:func:`domaingap.chapters.p1.pools.preprocess`), after converting RGB datasets to ITU-R 601 luma as
:func:`domaingap.data.load` does (``channels=1``). This module finds that function where the chapter keeps it
and applies it to images of any size and channel count:

- :func:`to_p1_format`: float ``(N, C, H, W)`` -> uint8 ``(N, C', S, S)``; ``C' = 1`` (luma) or 3 (RGB);
- :data:`preprocess`: the chapter's own function (one grey channel), used as is for ``C' = 1``;
- for ``C' = 3`` the same operations over all three channels at once (one peak per image, each channel
  resized); :func:`to_p1_format` checks on every call that a grey image repeated three times gives the chapter's
  result repeated three times, so the two paths cannot drift apart silently.
"""

from __future__ import annotations

import importlib
import logging
from typing import Callable

log = logging.getLogger(__name__)

# ITU-R BT.601 luma weights, as domaingap.data.load(channels=1) and PIL's "L" conversion use
LUMA = (0.299, 0.587, 0.114)

# where the P1 chapter's preprocess has lived; the first importable one is used
_PREPROCESS_HOMES = ("domaingap.chapters.p1.pools", "domaingap.chapters.p1", "domaingap.p1")

__all__ = ["LUMA", "PREPROCESS_VERSION", "preprocess", "to_p1_format", "describe"]


def _find_preprocess() -> tuple[Callable, str, str]:
    errors = []
    for home in _PREPROCESS_HOMES:
        try:
            module = importlib.import_module(home)
        except ImportError as err:
            errors.append(f"{home}: {err}")
            continue
        fn = getattr(module, "preprocess", None)
        if callable(fn):
            return fn, getattr(module, "PREPROCESS_VERSION", "unversioned"), f"{fn.__module__}.{fn.__qualname__}"
        errors.append(f"{home}: has no preprocess()")
    raise ImportError("the P1 chapter's preprocess() was not found; looked in " + "; ".join(errors))


preprocess, PREPROCESS_VERSION, PREPROCESS_SOURCE = _find_preprocess()


def _luma(x):
    import torch

    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def _p1_rgb(x, size: int):
    """P1's scaling and resize of ``(N, 3, H, W)`` float images: ONE peak per image over all channels (P1 scales
    RGB images by their overall maximum), truncation to uint8, bilinear antialiased resize, rounding."""
    import torch
    import torch.nn.functional as F

    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    scaled = torch.where(peak > 0, x * (255.0 / peak.clamp_min(1e-12)), torch.zeros_like(x))
    scaled = scaled.clamp_(0, 255).floor_()
    if scaled.shape[-1] != size or scaled.shape[-2] != size:
        scaled = F.interpolate(scaled, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return scaled.round_().clamp_(0, 255).to(torch.uint8)


def _check_rgb_matches_chapter() -> None:
    import torch

    g = torch.arange(7 * 9 * 9, dtype=torch.float32).remainder_(97).view(7, 1, 9, 9) * 1.7
    ours = _p1_rgb(g.repeat(1, 3, 1, 1), 5)
    theirs = preprocess(g, 5).repeat(1, 3, 1, 1)
    if not torch.equal(ours, theirs):
        raise RuntimeError(f"the RGB form of P1's preprocessing no longer matches {PREPROCESS_SOURCE}; update "
                           "domaingap.measure.preprocess._p1_rgb")


def to_p1_format(x, size: int, channels: int):
    """Images in the book's P1 format.

    Args:
        x: float tensor ``(N, C, H, W)``, C in {1, 3}, non-negative (any scale: the per-image scaling removes it).
        size: output side S in pixels.
        channels: 1 (ITU-R 601 luma of RGB images, then the chapter's :data:`preprocess`) or 3 (grey images
            repeated to RGB, then the same scaling with one peak per image).

    Returns:
        uint8 tensor ``(N, channels, S, S)`` on the device of ``x``.
    """
    import torch

    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] not in (1, 3) or not x.is_floating_point():
        raise ValueError(f"x must be a float (N, 1|3, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey, luma) or 3 (RGB), got {channels!r}")
    if x.shape[0] == 0:
        return torch.zeros((0, channels, size, size), dtype=torch.uint8, device=x.device)
    if channels == 1:
        return preprocess(_luma(x) if x.shape[1] == 3 else x, int(size))
    _check_rgb_matches_chapter()
    return _p1_rgb(x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x, int(size))


def describe(size: int, channels: int) -> str:
    """One sentence saying what :func:`to_p1_format` does at ``size`` and ``channels`` (for reports)."""
    colour = ("1 grey channel (RGB images converted to ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, as the book's "
              "P1 chapter)" if channels == 1 else "3 channels (RGB; grey images repeated; one peak per image)")
    return (f"P1's preprocessing ({PREPROCESS_SOURCE}, {PREPROCESS_VERSION}): {colour}; each image scaled by "
            f"255 / its maximum and truncated to uint8, then resized to {size} x {size} px (bilinear, antialiased) "
            f"and rounded to uint8; distances are Euclidean on the [0, 255] pixels.")
