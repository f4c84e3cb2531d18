"""Input-gradient saliency and the rank correlation between two saliency maps (P2's Fig. 1).

- :func:`input_saliency`: ``|d logit_y / d x|`` summed over channels (Simonyan et al. 2014), ``(N, C, H, W)`` ->
  ``(N, H, W)``; the model runs in eval mode and its parameters' ``.grad`` are left alone.
- :func:`rank_correlation`: Spearman correlation between paired maps, one value per pair.
- :func:`sobel_magnitude`, :func:`edge_alignment`: the image's Sobel edge magnitude and the Spearman correlation
  of a saliency map with it (how much the map follows the image's edges rather than looking like noise).

P2 (Mouton et al. 2026) compares the saliency of a standard and of an adversarially trained model on a clean image
and on its adversarial version; torch and scipy are imported when a function is first called.
"""

from __future__ import annotations

import numpy as np

__all__ = ["edge_alignment", "input_saliency", "rank_correlation", "sobel_magnitude"]


def input_saliency(model, x, y):
    """Input-gradient saliency (Simonyan et al. 2014): ``|d logit_y / d x|`` summed over channels.

    Args:
        model: maps ``(N, C, H, W)`` to ``(N, K)`` logits; run in eval mode, parameters' ``.grad`` untouched.
        x: float ``(N, C, H, W)`` on the model's device.
        y: int64 ``(N,)`` class whose logit is explained (here the true label, for clean and adversarial maps
            alike, so that the two maps explain the same output).

    Returns:
        float ``(N, H, W)`` on ``x``'s device.
    """
    import torch

    if not isinstance(x, torch.Tensor) or x.dim() != 4 or not x.is_floating_point():
        raise ValueError(f"x must be a float (N, C, H, W) tensor, got {getattr(x, 'shape', type(x).__name__)}")
    if not isinstance(y, torch.Tensor) or y.shape != (x.shape[0],):
        raise ValueError(f"y must be a tensor of shape ({x.shape[0]},), got {getattr(y, 'shape', type(y).__name__)}")
    from ..devices import eval_mode

    with eval_mode(model), torch.enable_grad():
        xr = x.detach().clone().requires_grad_(True)
        logits = model(xr)
        (grad,) = torch.autograd.grad(logits.gather(1, y.view(-1, 1).to(logits.device)).sum(), xr)
    return grad.abs().sum(1)


def rank_correlation(a, b) -> np.ndarray:
    """Spearman rank correlation between paired maps, one value per map: ``a``, ``b`` ``(N, ...)`` -> ``(N,)``.

    Uses ``scipy.stats.spearmanr`` per pair (average ranks for ties); a constant map gives NaN.
    """
    from scipy import stats

    a = np.asarray(a.detach().cpu() if hasattr(a, "detach") else a, dtype=np.float64)
    b = np.asarray(b.detach().cpu() if hasattr(b, "detach") else b, dtype=np.float64)
    if a.shape != b.shape or a.ndim < 2:
        raise ValueError(f"a and b must be paired maps of the same shape (N, ...), got {a.shape} and {b.shape}")
    a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
    out = np.full(len(a), np.nan)
    for i in range(len(a)):
        if np.ptp(a[i]) > 0 and np.ptp(b[i]) > 0:
            out[i] = stats.spearmanr(a[i], b[i]).statistic
    return out


def sobel_magnitude(x) -> np.ndarray:
    """Sobel gradient magnitude of images, channels averaged first: ``(N, C, H, W)`` -> float64 ``(N, H, W)``.

    ``sqrt(sobel_h**2 + sobel_w**2)`` of the channel mean (``scipy.ndimage.sobel``, reflected borders).
    """
    from scipy import ndimage

    a = np.asarray(x.detach().cpu() if hasattr(x, "detach") else x, dtype=np.float64)
    if a.ndim != 4:
        raise ValueError(f"x must be (N, C, H, W) images, got shape {a.shape}")
    g = a.mean(axis=1)
    return np.hypot(ndimage.sobel(g, axis=1), ndimage.sobel(g, axis=2))


def edge_alignment(saliency, x) -> np.ndarray:
    """Edge alignment of saliency maps: per image, the Spearman correlation between ``|saliency|`` ``(N, H, W)``
    and the Sobel edge magnitude of image ``x`` ``(N, C, H, W)`` (:func:`sobel_magnitude`); NaN where either map
    is constant. Near 0: the map ignores the image's structure (noise-like); higher: it follows edges.
    """
    s = np.abs(np.asarray(saliency.detach().cpu() if hasattr(saliency, "detach") else saliency, dtype=np.float64))
    e = sobel_magnitude(x)
    if s.shape != e.shape:
        raise ValueError(f"saliency {s.shape} and images {e.shape} (after channel averaging) must match")
    return rank_correlation(s, e)
