"""Representation inversion (Ilyas et al. 2019, D_R / D_NR).

Public as :func:`domaingap.kernels.attacks.invert_representation`; import it from there.
Conventions (input ranges, eval mode, exact checks of the inputs) are those of :mod:`domaingap.kernels.attacks`.
"""

from __future__ import annotations

from typing import Callable

import torch

from ._attack_checks import _check_batch, _check_int, _check_number, _check_range, _eval_mode, _ValueCheck, _view

__all__ = ["invert_representation"]


def invert_representation(
    feature_fn: Callable[[torch.Tensor], torch.Tensor],
    x_target: torch.Tensor,
    x_start: torch.Tensor,
    *,
    steps: int = 1000,
    step_size: float = 0.1,
    input_range: tuple[float, float] = (0, 1),
    keep_best: bool = True,
) -> torch.Tensor:
    """Find ``x'`` near ``x_start`` in pixels whose representation matches ``x_target``'s.

    Ilyas et al. (2019), D_R / D_NR: minimise ``||g(x') - g(x_target)||_2`` from ``x_start``
    (another, random training image) with normalised L2 gradient steps
    ``x' -= step_size * grad / ||grad||_2`` clamped to ``input_range``, no eps-ball (their
    eps = 1000 never binds in [0, 1]^D). With ``g`` the penultimate layer of an
    L2-adversarially-trained model the result keeps only robust features (D_R); with a
    standard model, only what that model uses (D_NR). The new image keeps ``x_target``'s label.

    Args:
        feature_fn: maps ``(N, ...)`` images to ``(N, F)`` representations, differentiably
            (e.g. ``lambda z: models.penultimate(model, z)``, which handles eval mode; an
            ``nn.Module`` passed directly is put in eval mode for the call).
        x_target: ``(N, ...)`` images whose representations are matched.
        x_start: ``(N, ...)`` starting images, same shape.
        steps: number of gradient steps (Ilyas et al.: 1000).
        step_size: L2 step length in the input's units (Ilyas et al.: 0.1 on [0, 1]).
        input_range: ``(lo, hi)`` of valid inputs.
        keep_best: return each example's lowest-distance iterate (as the ``robustness``
            library does by default) rather than the last.

    Returns:
        ``(N, ...)`` images, same dtype and device as ``x_start``.
    """
    lo, hi = _check_range(input_range)
    steps = _check_int("steps", steps, 0)
    step_size = _check_number("step_size", step_size, positive=True)
    x_target = _check_batch(x_target, "x_target")
    x_start = _check_batch(x_start, "x_start")
    if x_target.shape != x_start.shape:
        raise ValueError(f"x_target {tuple(x_target.shape)} and x_start {tuple(x_start.shape)} must have the same shape")
    if x_target.device != x_start.device:
        raise ValueError(f"x_target is on {x_target.device} but x_start is on {x_start.device}")
    _ValueCheck(lo, hi, {"x_target": x_target, "x_start": x_start}).finish()

    with _eval_mode(feature_fn):
        with torch.no_grad():
            target = feature_fn(x_target)
        if target.dim() < 2 or target.shape[0] != x_target.shape[0]:
            raise ValueError(f"feature_fn must return (N, F) representations, got {tuple(target.shape)}")
        target = target.flatten(1)

        def distance(z: torch.Tensor) -> torch.Tensor:
            return (feature_fn(z).flatten(1) - target).norm(dim=1)

        x = x_start.clone()
        best_x, best_d = x.clone(), None
        tiny = torch.finfo(x.dtype).tiny
        with torch.enable_grad():
            for _ in range(steps):
                xr = x.requires_grad_(True)
                d = distance(xr)
                (grad,) = torch.autograd.grad(d.sum(), xr)
                x = xr.detach()
                d = d.detach()
                if keep_best:
                    if best_d is None:
                        best_x, best_d = x.clone(), d.clone()
                    else:
                        b = d < best_d
                        best_x = torch.where(_view(b, x), x, best_x)
                        best_d = torch.where(b, d, best_d)
                g_norm = _view(grad.flatten(1).norm(dim=1).clamp_min(tiny), grad)
                x = (x - step_size * (grad / g_norm)).clamp(lo, hi)
        if not keep_best or best_d is None:
            return x
        with torch.no_grad():
            d = distance(x)
        b = d < best_d
        return torch.where(_view(b, x), x, best_x)
