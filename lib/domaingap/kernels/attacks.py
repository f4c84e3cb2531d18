"""Adversarial attacks, representation inversion and PGD adversarial training.

- :func:`fgsm`: the fast gradient sign method (Goodfellow et al. 2015). P1 (Konz & Mazurowski,
  ICLR 2024) measures robustness as the test-loss increase under untargeted L-inf FGSM with
  eps = 2/255 on the [0, 255] scale its models are trained on.
- :func:`pgd`: projected gradient descent (Madry et al. 2018) in L-inf or L2 with random
  starts, restarts and best-iterate tracking. P2 (Mouton et al. 2026) follows Ilyas et al.
  (2019): D_rand / D_det are built with *targeted* L2 PGD on a standard model (CIFAR: eps 0.5,
  step 0.1, 100 steps, lowest-loss iterate kept); the L2 step is ``g / ||g|| * step``, projected
  onto the eps-ball and clamped to the valid range (the ``robustness`` library recipe).
- :func:`invert_representation`: Ilyas et al.'s D_R / D_NR construction, minimising
  ``||g(x') - g(x_target)||_2`` over the penultimate representation ``g`` from another image.
- :func:`adversarial_training_step`: one Madry PGD adversarial-training update.

Conventions: ``x`` is an ``(N, ...)`` float batch (images ``(N, C, H, W)``) whose values lie in
``input_range``; ``eps`` and ``step_size`` are in the input's units (P1: [0, 255]; P2: [0, 1]);
``y`` are int64 labels ``(N,)`` (the *target* labels when ``targeted=True``). The model returns
``(N, K)`` logits. Outputs have the shape, dtype and device of ``x``; computations follow the
device of ``x`` (the model must already live there). During an attack the model is in eval
mode (BatchNorm running statistics, no dropout) and every submodule's mode is restored
afterwards; gradients are taken with ``torch.autograd.grad`` with respect to the input only, so
the parameters' ``.grad`` are never touched.

Returned perturbations satisfy the constraints exactly, not up to rounding:
``|x_adv - x| <= eps`` (L-inf) or ``||x_adv - x||_2 <= eps`` (L2), evaluated in float64, and
``lo <= x_adv <= hi``.
"""

from __future__ import annotations

import math
from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import nn

from ._attack_checks import (
    _ce,
    _check_batch,
    _check_generator,
    _check_int,
    _check_labels,
    _check_number,
    _check_range,
    _eval_mode,
    _ValueCheck,
    _view,
)
from ._inversion import invert_representation

__all__ = ["fgsm", "pgd", "invert_representation", "adversarial_training_step"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------
# projections


def _linf_bounds(x: torch.Tensor, eps: float, lo: float, hi: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Elementwise bounds of ``{x' : |x' - x| <= eps, lo <= x' <= hi}``.

    ``x + eps`` is formed in float64 (a float32 ``eps`` such as fl(8/255) is itself rounded up)
    and rounded to ``x``'s dtype, which can land up to half an ulp outside the ball; such
    entries are moved one ulp back towards ``x`` so that the constraint holds exactly when
    checked in float64. Clamping to these two tensors is then both the eps-ball projection
    and the range clamp.
    """
    xd = x.double()
    upper = (xd + eps).to(x.dtype)
    lower = (xd - eps).to(x.dtype)
    for _ in range(2 if x.dtype == torch.float64 else 1):  # float64 sums round once more
        upper = torch.where(upper.double() - xd > eps, torch.nextafter(upper, x), upper)
        lower = torch.where(xd - lower.double() > eps, torch.nextafter(lower, x), lower)
    return lower.clamp_(min=lo), upper.clamp_(max=hi)


def _enforce_l2(x_adv: torch.Tensor, x: torch.Tensor, eps: float, lo: float, hi: float) -> torch.Tensor:
    """Make ``||x_adv - x||_2 <= eps`` hold exactly (in float64) for every example.

    The per-step projection is exact in real arithmetic, but rounding ``x + delta`` back to
    the input dtype moves each entry by up to half an ulp, which can leave examples on the
    sphere a few ulps outside. Those (only those) are pulled in to radius ``eps - a``, where
    ``a = sqrt(D) * ulp(max |value|) / 2`` bounds the norm of any rounding error, so a single
    pass suffices and no host synchronisation is needed. (The final range clamp only moves
    entries towards ``x``.) If ``eps <= a`` (eps below the dtype's resolution) such an
    example falls back to ``x`` itself.
    """
    x64 = x.double()
    d = (x_adv.double() - x64).flatten(1)
    n = d.norm(dim=1)
    if math.isfinite(lo) and math.isfinite(hi):
        mag: float | torch.Tensor = max(abs(lo), abs(hi))  # a host number: no transfer, no sync
    else:
        mag = torch.maximum(x_adv.abs().amax(), x.abs().amax()).double()
    a = 0.5 * math.sqrt(d.shape[1]) * torch.finfo(x.dtype).eps * mag + 1e-12 * eps
    target = eps - a
    fixed = (x64.flatten(1) + d * (target / n.clamp_min(1e-300))[:, None]).view_as(x).to(x.dtype).clamp_(lo, hi)
    if isinstance(target, torch.Tensor):
        fixed = torch.where(target > 0, fixed, x)
    elif target <= 0:
        fixed = x
    return torch.where(_view(n > eps, x), fixed, x_adv)


# ---------------------------------------------------------------------------------------
# attacks


def fgsm(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    input_range: tuple[float, float] = (0, 1),
    targeted: bool = False,
) -> torch.Tensor:
    """Fast gradient sign method: ``x_adv = clamp(x ± eps * sign(grad_x CE(model(x), y)))``.

    Args:
        model: maps ``(N, ...)`` inputs to ``(N, K)`` logits.
        x: ``(N, ...)`` float batch with values in ``input_range``.
        y: ``(N,)`` int64 labels; target labels when ``targeted``.
        eps: L-inf budget in the input's units, >= 0 (P1 passes 2/255 to models fed [0, 255]
            images, so check which scale a paper's eps refers to).
        input_range: ``(lo, hi)`` of valid inputs, e.g. ``(0, 1)`` or ``(0, 255)``.
        targeted: step *down* the cross-entropy of ``y`` (towards the target) instead of up.

    Returns:
        ``(N, ...)`` adversarial batch, same dtype and device as ``x``.
    """
    lo, hi = _check_range(input_range)
    eps = _check_number("eps", eps)
    x = _check_batch(x)
    y = _check_labels(y, x)
    direction = -1.0 if targeted else 1.0
    check = _ValueCheck(lo, hi, {"x": x}, y)
    with _eval_mode(model), torch.enable_grad():
        xr = x.clone().requires_grad_(True)
        logits = model(xr)
        check.finish(logits)
        # sum, not mean: per-example gradients do not shrink with the batch size
        (grad,) = torch.autograd.grad(_ce(logits, y).sum(), xr)
    # the step in float64, then rounded to x's dtype; entries that rounding put half an ulp
    # outside the eps-box are moved one ulp back towards x (exact when checked in float64)
    xd = x.double()
    out = xd.add(grad.sign(), alpha=direction * eps).clamp_(lo, hi).to(x.dtype)
    for _ in range(2 if x.dtype == torch.float64 else 1):
        out = torch.where((out.double() - xd).abs_() > eps, torch.nextafter(out, x), out)
    return out


def _random_start(x: torch.Tensor, eps: float, norm: str, generator: torch.Generator | None) -> torch.Tensor:
    if norm == "linf":
        u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        return x + eps * (2 * u - 1)
    # uniform in the L2 ball: Gaussian direction, radius eps * U^(1/D)
    d = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    dim = x[0].numel()
    u = torch.rand(x.shape[0], generator=generator, device=x.device, dtype=torch.float64)
    radius = (eps * u ** (1.0 / dim)).to(x.dtype)
    d = d * _view(radius / d.flatten(1).norm(dim=1).clamp_min(torch.finfo(x.dtype).tiny), x)
    return x + d


def _pgd_run(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    norm: str,
    direction: float,
    random_start: bool,
    lo: float,
    hi: float,
    bounds: tuple[torch.Tensor, torch.Tensor] | None,
    loss_fn: LossFn,
    keep_best: bool,
    need_loss: bool,
    verify: Callable[[torch.Tensor], None] | None,
    generator: torch.Generator | None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One PGD run; returns the chosen iterate and (if asked) its per-example loss ``(N,)``."""
    if random_start and eps > 0:
        x_adv = _random_start(x, eps, norm, generator)
        x_adv = torch.clamp(x_adv, *bounds) if norm == "linf" else x_adv.clamp(lo, hi)
    else:
        x_adv = x.clone()
    best_x, best_loss = None, None

    # for targeted attacks lower loss is better: compare direction * loss
    def better(new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
        return direction * new > direction * old

    def track(xa: torch.Tensor, losses: torch.Tensor) -> None:
        nonlocal best_x, best_loss
        if losses.dim() != 1:
            raise ValueError(f"keep_best/restarts need loss_fn to return per-example losses (N,), got {tuple(losses.shape)}")
        if best_x is None:
            best_x, best_loss = xa.clone(), losses.clone()
        else:
            b = better(losses, best_loss)
            best_x = torch.where(_view(b, xa), xa, best_x)
            best_loss = torch.where(b, losses, best_loss)

    tiny = torch.finfo(x.dtype).tiny
    for i in range(steps):
        xr = x_adv.requires_grad_(True)
        logits = model(xr)
        if verify is not None and i == 0:
            verify(logits)
        losses = loss_fn(logits, y)
        (grad,) = torch.autograd.grad(losses.sum(), xr)
        x_adv = xr.detach()
        if keep_best:
            track(x_adv, losses.detach())
        if norm == "linf":
            x_adv = torch.clamp(x_adv.add_(grad.sign(), alpha=direction * step_size), *bounds)
        else:
            # x += ±step * g / ||g||, the per-example scale folded into one addcmul; the floor
            # sqrt(tiny) keeps step/||g|| finite, so a zero gradient gives a zero step, not NaN
            scale = (direction * step_size) / grad.flatten(1).norm(dim=1).clamp_min(tiny**0.5)
            x_adv = x_adv.addcmul_(grad, _view(scale, grad))
            # projection onto the eps-ball, then the range clamp (which can only shrink |delta|);
            # not Tensor.renorm, which divides by norm + 1e-7 and so misses the exact projection
            delta = x_adv.sub_(x)
            shrink = (eps / delta.flatten(1).norm(dim=1).clamp_min(tiny)).clamp_(max=1.0)
            x_adv = torch.addcmul(x, delta, _view(shrink, delta)).clamp_(lo, hi)

    if not (keep_best or need_loss):
        return x_adv, None
    with torch.no_grad():
        logits = model(x_adv)
        if verify is not None and steps == 0:
            verify(logits)
        final = loss_fn(logits, y)
    if keep_best:
        track(x_adv, final)
        return best_x, best_loss
    if final.dim() != 1:
        raise ValueError(f"restarts need loss_fn to return per-example losses (N,), got {tuple(final.shape)}")
    return x_adv, final


def pgd(
    model: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int,
    step_size: float,
    norm: Literal["linf", "l2"] = "linf",
    targeted: bool = False,
    random_start: bool = True,
    input_range: tuple[float, float] = (0, 1),
    restarts: int = 1,
    keep_best: bool = False,
    loss_fn: LossFn | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Projected gradient descent attack (Madry et al. 2018) in L-inf or L2.

    Each step: ``g = grad_x loss``; L-inf: ``x += ±step_size * sign(g)``; L2:
    ``x += ±step_size * g / ||g||_2`` per example (the ``robustness`` library step used by
    Ilyas et al. 2019 and P2); then project onto the eps-ball around the clean ``x`` and clamp
    to ``input_range``. ``+`` ascends the loss (untargeted), ``-`` descends it (targeted).

    Args:
        model: maps ``(N, ...)`` inputs to ``(N, K)`` logits.
        x: ``(N, ...)`` float batch with values in ``input_range``.
        y: ``(N,)`` int64 labels; target labels when ``targeted``.
        eps: budget (L-inf or L2 radius) in the input's units, >= 0.
        steps: number of gradient steps (0 returns the random start, a noise baseline).
        step_size: step length in the input's units (Madry's rule of thumb: 2.5 * eps / steps).
        norm: ``"linf"`` or ``"l2"``.
        targeted: minimise the loss of ``y`` (reach the target) instead of maximising it.
        random_start: start uniformly inside the eps-ball (L-inf box / L2 ball), clamped to range.
        input_range: ``(lo, hi)`` of valid inputs, e.g. ``(0, 1)`` or ``(0, 255)``.
        restarts: independent random starts; per example the iterate with the best final loss
            (highest untargeted, lowest targeted) is returned. Needs ``random_start``.
        keep_best: return each example's best-loss iterate over all steps (the initial and the
            final one included) instead of the last one (Ilyas et al. keep the lowest-loss
            iterate of their targeted attacks).
        loss_fn: ``(logits (N, K), y (N,)) -> (N,)`` per-example losses; default cross-entropy.
            A scalar-returning loss is accepted when neither ``keep_best`` nor ``restarts`` is
            used.
        generator: ``torch.Generator`` on ``x``'s device for the random starts (reproducible).

    Returns:
        ``(N, ...)`` adversarial batch, same dtype and device as ``x``.
    """
    lo, hi = _check_range(input_range)
    eps = _check_number("eps", eps)
    step_size = _check_number("step_size", step_size, positive=True)
    steps = _check_int("steps", steps, 0)
    restarts = _check_int("restarts", restarts, 1)
    if norm not in ("linf", "l2"):
        raise ValueError(f"norm must be 'linf' or 'l2', got {norm!r}")
    if restarts > 1 and not random_start:
        raise ValueError(f"restarts={restarts} repeats the same deterministic attack without random_start=True")
    x = _check_batch(x)
    y = _check_labels(y, x)
    _check_generator(generator, x)
    direction = -1.0 if targeted else 1.0
    loss_fn = loss_fn or _ce
    check = _ValueCheck(lo, hi, {"x": x}, y)
    bounds = _linf_bounds(x, eps, lo, hi) if norm == "linf" else None

    best_x, best_loss = None, None
    with _eval_mode(model), torch.enable_grad():
        for r in range(restarts):
            x_r, loss_r = _pgd_run(
                model, x, y, eps=eps, steps=steps, step_size=step_size, norm=norm,
                direction=direction, random_start=random_start, lo=lo, hi=hi, bounds=bounds,
                loss_fn=loss_fn, keep_best=keep_best, need_loss=restarts > 1,
                verify=check.finish if r == 0 else None,
                generator=generator,
            )
            if best_x is None:
                best_x, best_loss = x_r, loss_r
            else:
                b = direction * loss_r > direction * best_loss
                best_x = torch.where(_view(b, x_r), x_r, best_x)
                best_loss = torch.where(b, loss_r, best_loss)
    best_x = best_x.detach()
    if norm == "l2":
        best_x = _enforce_l2(best_x, x, eps, lo, hi)
    return best_x


# ---------------------------------------------------------------------------------------
# adversarial training


def adversarial_training_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    steps: int,
    step_size: float,
    norm: Literal["linf", "l2"] = "l2",
    input_range: tuple[float, float] = (0, 1),
    random_start: bool = True,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One step of PGD adversarial training (Madry et al. 2018): ``min_θ E max_δ L(x + δ, y)``.

    The inner maximisation is :func:`pgd` (untargeted, cross-entropy, model in eval mode while
    attacking); the update then runs in the model's current mode (call ``model.train()``
    first, as :func:`domaingap.training.fit` does) on the adversarial batch only.

    Args:
        model, optimizer: the classifier and its optimizer.
        x: ``(N, ...)`` float batch in ``input_range``; y: ``(N,)`` int64 labels.
        eps, steps, step_size, norm, input_range, random_start, generator: as in :func:`pgd`
            (``robustness`` defaults for CIFAR: 7 steps, step 2.5 * eps / steps).
        loss_fn: training objective ``(logits, y) -> scalar``; default mean cross-entropy
            (pass a class-weighted one for imbalanced data).

    Returns:
        The training loss on the adversarial batch, a detached 0-d tensor (``.item()`` for a
        float; kept as a tensor so that CUDA training does not synchronise every step).
    """
    x_adv = pgd(
        model, x, y, eps, steps=steps, step_size=step_size, norm=norm,
        random_start=random_start, input_range=input_range, generator=generator,
    )
    optimizer.zero_grad(set_to_none=True)
    logits = model(x_adv)
    loss = loss_fn(logits, y) if loss_fn is not None else F.cross_entropy(logits, y)
    loss.backward()
    optimizer.step()
    return loss.detach()
