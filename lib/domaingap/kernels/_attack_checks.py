"""Input checks and small helpers shared by the attacks of :mod:`domaingap.kernels.attacks`.

Static checks of the arguments (ranges, budgets, step counts, batches, labels, generators), the one-sync value
check of inputs and labels (:class:`_ValueCheck`), eval mode for the duration of an attack (:func:`_eval_mode`)
and per-example helpers. Private: the public functions are in :mod:`~domaingap.kernels.attacks`.
"""

from __future__ import annotations

import math

from ..devices import eval_mode
import torch
import torch.nn.functional as F
from torch import nn


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


_eval_mode = eval_mode  # eval mode for the duration of an attack (domaingap.devices.eval_mode)


def _ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def _view(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Per-example values ``(N,)`` shaped to broadcast against ``(N, ...)``."""
    return v.view(-1, *([1] * (like.dim() - 1)))
