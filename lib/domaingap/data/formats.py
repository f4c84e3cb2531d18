"""Image formats shared by the chapters and :mod:`domaingap.measure`: ONE definition of each conversion.

- :data:`LUMA`, :func:`to_luma`: ITU-R BT.601 luma, as PIL's ``"L"`` conversion (``data.load(channels=1)``).
- :func:`p1_format`: Konz & Mazurowski's (ICLR 2024) per-image scaling ``img * 255 / img.max()`` truncated to
  uint8 (their ``MedicalDataset.normalize``, used for natural datasets too), then a bilinear antialiased resize
  rounded back to uint8. Any channel count: one peak per image over all its channels (P1 scales RGB images by
  their overall maximum), so a grey image repeated three times gives the grey result repeated three times.
"""

from __future__ import annotations

LUMA = (0.299, 0.587, 0.114)  # ITU-R BT.601 weights of R, G, B
P1_FORMAT_VERSION = "p1-maxscale-uint8-v1"  # bump when p1_format() changes its output

__all__ = ["LUMA", "P1_FORMAT_VERSION", "p1_format", "to_luma"]


def to_luma(x):
    """ITU-R 601 luma ``(N, 1, H, W)`` of float RGB images ``(N, 3, H, W)`` (same dtype and device)."""
    import torch

    if not isinstance(x, torch.Tensor) or x.dim() != 4 or x.shape[1] != 3 or not x.is_floating_point():
        raise ValueError(f"x must be a float (N, 3, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    w = torch.tensor(LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x * w).sum(1, keepdim=True)


def p1_format(x, size: int):
    """P1's image normalisation at ``size`` px.

    Args:
        x: float tensor ``(N, C, H, W)`` of non-negative values (grey levels in [0, 255], or any scale: the
            per-image scaling removes it).
        size: output side S in pixels.

    Returns:
        uint8 tensor ``(N, C, S, S)`` on the device of ``x``. Each image is scaled by ``255 / img.max()`` and
        truncated to uint8 (numpy's ``astype(uint8)``, as P1); all-black images stay black. Then it is resized
        to S (bilinear, antialiased; P1 resizes after normalising too) and rounded back to uint8, so every image
        is stored like an 8-bit file and distances between images are exact integers.
    """
    import torch
    import torch.nn.functional as F

    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float (N, C, H, W) tensor, got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if not isinstance(size, int) or isinstance(size, bool) or size < 2:
        raise ValueError(f"size must be an int >= 2, got {size!r}")
    peak = x.amax(dim=(1, 2, 3), keepdim=True)
    scaled = torch.where(peak > 0, x * (255.0 / peak.clamp_min(1e-12)), torch.zeros_like(x))
    scaled = scaled.clamp_(0, 255).floor_()  # numpy astype(uint8) truncates
    if scaled.shape[-1] != size or scaled.shape[-2] != size:
        scaled = F.interpolate(scaled, size=(size, size), mode="bilinear", antialias=True, align_corners=False)
    return scaled.round_().clamp_(0, 255).to(torch.uint8)
