"""The book's P1 image format, applied to any images: what makes a user's numbers comparable with the book's.

P1 (Konz & Mazurowski, ICLR 2024) scales every image by ``255 / img.max()``, truncates to uint8 and resizes
(bilinear) before measuring raw-pixel distances. The book's P1 chapter does exactly that with
:func:`domaingap.data.formats.p1_format`, after converting RGB datasets to ITU-R 601 luma as
:func:`domaingap.data.load` does (``channels=1``); this module applies the same two functions to images of any
size and channel count (:func:`to_p1_format`), so a user's numbers and the book's cannot drift apart.
"""

from __future__ import annotations

from ..data.formats import LUMA, P1_FORMAT_VERSION, p1_format, to_luma

PREPROCESS_VERSION = P1_FORMAT_VERSION
PREPROCESS_SOURCE = f"{p1_format.__module__}.{p1_format.__qualname__}"

__all__ = ["LUMA", "PREPROCESS_VERSION", "describe", "to_p1_format"]


def to_p1_format(x, size: int, channels: int):
    """Images in the book's P1 format.

    Args:
        x: float tensor ``(N, C, H, W)``, C in {1, 3}, non-negative (any scale: the per-image scaling removes it).
        size: output side S in pixels.
        channels: 1 (ITU-R 601 luma of RGB images) or 3 (grey images repeated to RGB; one peak per image).

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
        return p1_format(to_luma(x) if x.shape[1] == 3 else x, int(size))
    return p1_format(x.repeat(1, 3, 1, 1) if x.shape[1] == 1 else x, int(size))


def describe(size: int, channels: int) -> str:
    """One sentence saying what :func:`to_p1_format` does at ``size`` and ``channels`` (for reports)."""
    colour = ("1 grey channel (RGB images converted to ITU-R 601 luma 0.299 R + 0.587 G + 0.114 B, as the book's "
              "P1 chapter)" if channels == 1 else "3 channels (RGB; grey images repeated; one peak per image)")
    return (f"P1's preprocessing ({PREPROCESS_SOURCE}, {PREPROCESS_VERSION}): {colour}; each image scaled by "
            f"255 / its maximum and truncated to uint8, then resized to {size} x {size} px (bilinear, antialiased) "
            f"and rounded to uint8; distances are Euclidean on the [0, 255] pixels.")
