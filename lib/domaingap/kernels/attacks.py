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
from contextlib import contextmanager
from typing import Callable, Iterator, Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["fgsm", "pgd", "invert_representation", "adversarial_training_step"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------
# validation


def _check_range(input_range: tuple[float, float]) -> tuple[float, float]:
    try:
        lo, hi = (float(v) for v in input_range)
    except (TypeError, ValueError) as err:
        raise ValueError(f"input_range must be a pair (lo, hi), got {input_range!r}") from err
    if not lo < hi:  # also rejects NaN
        raise ValueError(f"input_range must satisfy lo < hi, got {input_range!r}")
    return lo, hi


def _check_number(name: str, value: float, *, positive: bool = False) -> float:
    try:
        v = float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err
    if not math.isfinite(v) or v < 0 or (positive and v == 0):
        need = "finite and > 0" if positive else "finite and >= 0"
        raise ValueError(f"{name} must be {need}, got {value!r}")
    return v


def _check_int(name: str, value: int, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def _check_batch(x: torch.Tensor, name: str = "x") -> torch.Tensor:
    """Static checks (type, dtype, shape); the values are checked by :class:`_ValueCheck`."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.dim() < 2:
        desc = f"{x.dtype} tensor of shape {tuple(x.shape)}" if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a floating-point (N, ...) batch with ndim >= 2, got {desc}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)})")
    x = x.detach()
    if x.is_inference():  # tensors made under torch.inference_mode cannot enter autograd
        x = x.clone()
    return x


def _check_labels(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"y must be a tensor of labels, got {type(y).__name__}")
    if y.shape != (x.shape[0],):
        raise ValueError(f"y must have shape ({x.shape[0]},) to match x {tuple(x.shape)}, got {tuple(y.shape)}")
    if y.device != x.device:
        raise ValueError(f"y is on {y.device} but x is on {x.device}")
    return y.detach()


class _ValueCheck:
    """Inputs inside ``[lo, hi]`` and labels inside ``[0, K)``, at the cost of ONE host sync.

    The min/max reductions are queued at construction, before the model's forward pass; on
    CUDA they are copied to pinned host memory behind an event. :meth:`finish` (called once the
    forward is queued, before the loss: a CUDA cross-entropy with an out-of-range label would
    abort the process) waits only for that event, so the GPU keeps working on the forward
    instead of idling while the host checks.
    """

    def __init__(self, lo: float, hi: float, batches: dict[str, torch.Tensor], y: torch.Tensor | None = None):
        self.lo, self.hi, self.names = lo, hi, list(batches)
        self.check_y = y is not None and not (y.dtype.is_floating_point or y.dtype == torch.bool)
        parts = [torch.stack(tuple(torch.aminmax(b))).double() for b in batches.values()]
        if self.check_y:
            parts.append(torch.stack(tuple(torch.aminmax(y))).double())
        stats = torch.cat(parts)
        self.event = None
        if stats.is_cuda:
            self.host = torch.empty(stats.shape, dtype=stats.dtype, pin_memory=True)
            self.host.copy_(stats, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record()
        else:
            self.host = stats
        self.n = y.shape[0] if y is not None else None

    def finish(self, logits: torch.Tensor | None = None) -> None:
        if logits is not None and (logits.dim() != 2 or (self.n is not None and logits.shape[0] != self.n)):
            raise ValueError(f"model must return (N, K) logits with N = {self.n}, got {tuple(logits.shape)}")
        if self.event is not None:
            self.event.synchronize()
        values = self.host.tolist()
        for i, name in enumerate(self.names):
            mn, mx = values[2 * i], values[2 * i + 1]
            if not (mn >= self.lo and mx <= self.hi):  # written so that NaN fails too
                raise ValueError(
                    f"{name} has values in [{mn:.6g}, {mx:.6g}], outside input_range ({self.lo:g}, {self.hi:g}); "
                    f"pass the range the model is fed (e.g. input_range=(0, 255) for P1's [0, 255] images)"
                )
        if self.check_y and logits is not None:
            mn, mx, k = int(values[-2]), int(values[-1]), logits.shape[1]
            if mn < 0 or mx >= k:
                raise ValueError(f"labels y must lie in [0, {k - 1}] for a {k}-class model, got values in [{mn}, {mx}]")


def _check_generator(generator: torch.Generator | None, x: torch.Tensor) -> None:
    if generator is not None and generator.device.type != x.device.type:
        raise ValueError(f"generator is on {generator.device} but x is on {x.device}; create it with device=x.device")


@contextmanager
def _eval_mode(model: object) -> Iterator[None]:
    """Eval mode for the block; every submodule's own mode is restored afterwards."""
    if not isinstance(model, nn.Module):
        yield
        return
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for m, mode in modes:
            m.training = mode


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-example values ``(N,)`` shaped to broadcast against ``(N, ...)``."""
    return v.view(-1, *([1] * (like.dim() - 1)))


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
