"""Input handling shared by the similarity measures of :mod:`domaingap.kernels.similarity`.

Activations as float64 tensors on one device, with the checks and messages every measure shares (private;
the conventions are in :mod:`~domaingap.kernels.similarity`).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import Tensor

ArrayLike = Any  # torch.Tensor | numpy.ndarray | nested sequences of numbers

_F64 = torch.float64
_EPS64 = float(torch.finfo(_F64).eps)


# --------------------------------------------------------------------------- #
# Input handling
# --------------------------------------------------------------------------- #
def _as_tensor(x: ArrayLike, name: str) -> Tensor:
    """Tensor view of ``x`` (no copy for tensors; numpy goes to the CPU)."""
    if isinstance(x, Tensor):
        t = x.detach()  # measures, not losses: no autograd graph through them
    else:
        arr = np.asarray(x)
        if arr.dtype == object or not (
            np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_
        ):
            raise TypeError(
                f"{name} must be a torch.Tensor or a numeric numpy array; "
                f"got {type(x).__name__} with dtype {arr.dtype}"
            )
        if not arr.flags.writeable:  # e.g. np.load(mmap_mode="r"); torch would warn
            arr = arr.copy()
        t = torch.from_numpy(np.ascontiguousarray(arr))
    if t.is_complex():
        raise TypeError(f"{name} must be real-valued; got dtype {t.dtype}")
    return t


def _pair(
    a: ArrayLike, b: ArrayLike, *, ndim: int, what: str, cast: bool = True
) -> tuple[Tensor, Tensor]:
    """Validate two activation arrays and return them as float64 on one device.

    ``ndim`` is the required number of dimensions and ``what`` names the layout in
    error messages, e.g. ``"(n_samples, n_features)"``. With ``cast=False`` only
    shapes and devices are checked and dtypes are kept (values are checked later,
    on the part that is used).
    """
    ta, tb = _as_tensor(a, "a"), _as_tensor(b, "b")
    # Device follows the input tensor(s); a numpy side joins the tensor's device.
    a_is_t, b_is_t = isinstance(a, Tensor), isinstance(b, Tensor)
    if a_is_t and b_is_t and ta.device != tb.device:
        raise ValueError(
            f"a and b are on different devices ({ta.device} and {tb.device}); "
            "move them to the same device"
        )
    device = ta.device if a_is_t else tb.device
    for name, t in (("a", ta), ("b", tb)):
        if t.ndim != ndim:
            hint = " (use x[:, None] for a single feature)" if ndim == 2 and t.ndim == 1 else ""
            raise ValueError(
                f"{name} must be {ndim}-D {what}; got shape {tuple(t.shape)}{hint}"
            )
    if ta.shape[0] != tb.shape[0]:
        raise ValueError(
            f"a and b must have the same number of samples (rows, one per input); "
            f"got a.shape={tuple(ta.shape)} and b.shape={tuple(tb.shape)}"
        )
    if not cast:
        return ta.to(device), tb.to(device)
    ta = ta.to(device=device, dtype=_F64)
    tb = tb.to(device=device, dtype=_F64)
    for name, t in (("a", ta), ("b", tb)):
        if t.numel() == 0:
            raise ValueError(f"{name} is empty: shape {tuple(t.shape)}")
        # One reduction pass: NaN/inf propagate into the sum. Only when it is not
        # finite (or overflows) is the elementwise check, ~3x the cost, needed.
        if not bool(torch.isfinite(t.sum())) and not bool(torch.isfinite(t).all()):
            n_bad = int((~torch.isfinite(t)).sum())
            raise ValueError(
                f"{name} has {n_bad} non-finite value(s) (NaN or inf) out of {t.numel()}; "
                "similarity measures need finite activations"
            )
    return ta, tb


def _pair2d(a: ArrayLike, b: ArrayLike, *, min_samples: int = 2) -> tuple[Tensor, Tensor]:
    ta, tb = _pair(a, b, ndim=2, what="(n_samples, n_features)")
    if ta.shape[0] < min_samples:
        raise ValueError(f"need at least {min_samples} samples (rows); got {ta.shape[0]}")
    return ta, tb


def _check_epsilon(epsilon: float) -> float:
    epsilon = float(epsilon)
    if not (math.isfinite(epsilon) and 0.0 <= epsilon < 1.0):
        raise ValueError(f"epsilon must be a finite number in [0, 1); got {epsilon}")
    return epsilon


def _center(x: Tensor) -> Tensor:
    return x - x.mean(dim=0, keepdim=True)
