"""Small shared input checks for the geometry kernels.

Every public kernel accepts a torch tensor or a NumPy array (anything ``np.asarray``
understands) and raises :class:`ValueError` with the offending value or shape and what
was expected. The helpers here keep those messages uniform.

Torch is imported lazily inside the functions that need it, so importing this module
stays cheap.
"""

from __future__ import annotations

import numbers
from typing import Any

__all__ = [
    "DuplicatePointsWarning",
    "as_points",
    "as_labels",
    "check_int",
    "check_level",
    "is_numpy_input",
]


class DuplicatePointsWarning(UserWarning):
    """Zero distances (exact duplicate points) were skipped by an estimator."""


def is_numpy_input(x: Any) -> bool:
    """True when ``x`` is not a torch tensor (results are then returned as NumPy)."""
    import torch

    return not isinstance(x, torch.Tensor)


def _to_tensor(x: Any, name: str):
    import numpy as np
    import torch

    if isinstance(x, torch.Tensor):
        return x.detach()
    arr = np.asarray(x)
    if arr.dtype == object:
        raise ValueError(f"{name} must be a numeric array, got an object array of shape {arr.shape}")
    if not arr.flags.writeable:
        # torch.from_numpy warns on read-only buffers (e.g. np.load(mmap_mode="r")).
        arr = arr.copy()
    return torch.from_numpy(np.ascontiguousarray(arr))


def as_points(x: Any, name: str = "x", *, min_points: int = 1):
    """Return ``x`` as a 2-D torch tensor of shape (N, D) on its own device.

    Accepts (N, D), (N, H, W) or (N, C, H, W) arrays or tensors; trailing dimensions are
    flattened (images become pixel vectors). Integer dtypes (e.g. uint8 images) are kept
    as they are, so that callers can form exact float64 differences later; half types are
    widened to float32. Raises ValueError for a wrong number of dimensions, an empty
    feature axis, complex or boolean data, NaN/Inf values, or fewer than ``min_points`` rows.
    """
    import torch

    t = _to_tensor(x, name)
    if t.ndim < 2:
        raise ValueError(
            f"{name} must have shape (N, D) or (N, C, H, W); got ndim={t.ndim} with shape {tuple(t.shape)}"
        )
    if t.is_complex() or t.dtype == torch.bool:
        raise ValueError(f"{name} must be real-valued numeric data, got dtype {t.dtype}")
    n = t.shape[0]
    t = t.reshape(n, -1)
    if t.shape[1] == 0:
        raise ValueError(f"{name} has no features: shape {tuple(t.shape)} after flattening")
    if t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    if n < min_points:
        raise ValueError(f"{name} needs at least {min_points} points (rows); got N={n}")
    if t.is_floating_point():
        # Row blocks keep the boolean mask small for wide images (224 x 224 x 3 pixels).
        step = max(1, (64 * 2**20) // t.shape[1])
        for i in range(0, n, step):
            finite = torch.isfinite(t[i : i + step])
            if not bool(finite.all()):
                bad = (~finite).nonzero()[0].tolist()
                raise ValueError(
                    f"{name} contains NaN or Inf (first at row {i + bad[0]}, column {bad[1]})"
                )
    return t


def as_labels(y: Any, n: int, device, name: str = "y"):
    """Return class labels as a 1-D int64 tensor of length ``n`` on ``device``.

    Accepts shape (N,) or (N, 1) (MedMNIST stores labels as (N, 1)). Labels are compared
    for equality only, so any integer coding works; float labels must be whole numbers.
    """
    import torch

    t = _to_tensor(y, name)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ValueError(f"{name} must have shape (N,) or (N, 1); got shape {tuple(t.shape)}")
    if t.shape[0] != n:
        raise ValueError(f"{name} has {t.shape[0]} labels but x has {n} points; they must match")
    if t.is_floating_point():
        if not bool(torch.isfinite(t).all()) or not bool((t == t.round()).all()):
            raise ValueError(f"{name} must hold class labels (whole numbers); got non-integer values")
    elif t.is_complex():
        raise ValueError(f"{name} must hold class labels, got dtype {t.dtype}")
    return t.to(device=device, dtype=torch.int64)


def check_int(name: str, value: Any, *, low: int | None = None, high: int | None = None, hint: str = "") -> int:
    """Validate an integer parameter in [low, high] (inclusive bounds, None = open)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    value = int(value)
    if (low is not None and value < low) or (high is not None and value > high):
        lo = "-inf" if low is None else str(low)
        hi = "inf" if high is None else str(high)
        raise ValueError(f"{name}={value} is out of range; expected {lo} <= {name} <= {hi}{hint}")
    return value


def check_level(ci: Any) -> float | None:
    """Validate a confidence level: None (no interval) or a float strictly in (0, 1)."""
    if ci is None:
        return None
    if isinstance(ci, bool) or not isinstance(ci, numbers.Real) or not 0.0 < float(ci) < 1.0:
        raise ValueError(f"ci must be None or a confidence level in (0, 1), e.g. 0.95; got {ci!r}")
    return float(ci)
