"""Point sets of the exact kNN kernels (internals of :mod:`domaingap.kernels.distances`).

:class:`_Points` holds the original rows plus lazily built working copies (a float32 copy centred on a float64
mean, or, for integer data with a range of at most 255 values, an int8 copy shifted to [-128, 127]); with it the
shared constants and the block-size defaults. See :mod:`~domaingap.kernels._knn_core` for the other pieces.
"""

from __future__ import annotations

from typing import Any

import torch

from ._validation import check_int

_INF = float("inf")
_U32 = 2.0**-24  # float32 unit roundoff
_U64 = 2.0**-53  # float64 unit roundoff
_I32_MAX = 2**31 - 1
_I64_MAX = 2**63 - 1


# --------------------------------------------------------------------------------------
# data preparation


def _column_mean(orig: torch.Tensor) -> torch.Tensor:
    """Float64 mean of the rows of ``orig`` (N, D), accumulated in row chunks."""
    n, d = orig.shape
    step = max(1, (32 * 2**20) // (8 * d))
    acc = torch.zeros(d, dtype=torch.float64, device=orig.device)
    for i in range(0, n, step):
        acc += orig[i : i + step].to(torch.float64).sum(0)
    return acc / n


def _row_steps(n: int, d: int, itemsize: int = 8, budget: int = 32 * 2**20):
    step = max(1, budget // (itemsize * d))
    return range(0, n, step), step


class _Points:
    """A point set: the original rows plus lazily built working copies.

    ``float32``: rows centred on ``mean`` (float64) and rounded to float32, with the squared
    norms of the rounded rows. ``int8(offset)``: integer rows minus ``offset`` as int8 (exact
    when every value lies in [offset - 128, offset + 127]) with their exact squared norms.
    """

    def __init__(self, orig: torch.Tensor, mean: "torch.Tensor | _Points | None" = None):
        self.orig = orig
        # mean: a tensor, another _Points whose mean is shared (computed when first needed), or None
        # for this set's own mean, computed when first needed (the int8 path never needs it)
        self._mean = mean
        self.n, self.d = orig.shape
        self._c32: torch.Tensor | None = None
        self._sq32: torch.Tensor | None = None
        self._i8: tuple[float, torch.Tensor, torch.Tensor] | None = None
        self._int_bounds: tuple[float, float] | None | bool = False  # False: not computed yet

    @property
    def mean(self) -> torch.Tensor:
        if isinstance(self._mean, _Points):
            self._mean = self._mean.mean
        elif self._mean is None:
            self._mean = _column_mean(self.orig)
        return self._mean

    def _build32(self) -> None:
        c = torch.empty((self.n, self.d), dtype=torch.float32, device=self.orig.device)
        sq = torch.empty(self.n, dtype=torch.float32, device=self.orig.device)
        rows, step = _row_steps(self.n, self.d)
        for i in rows:
            blk = self.orig[i : i + step].to(torch.float64) - self.mean
            c[i : i + step] = blk
            # Norms of the float32-rounded rows, so that the Gram identity is consistent.
            sq[i : i + step] = c[i : i + step].to(torch.float64).square().sum(1)
        self._c32, self._sq32 = c, sq

    def sq_max(self) -> float:
        return float(self.sq().max())

    def sq(self) -> torch.Tensor:
        if self._sq32 is None:
            self._build32()
        return self._sq32

    def block(self, i0: int, i1: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Centred rows i0:i1 and their squared norms in ``dtype`` (float64 on the fly)."""
        if dtype == torch.float32:
            if self._c32 is None:
                self._build32()
            return self._c32[i0:i1], self._sq32[i0:i1]
        c = self.orig[i0:i1].to(torch.float64) - self.mean
        return c, c.square().sum(1)

    def subset(self, rows: torch.Tensor) -> "_Points":
        sub = _Points(self.orig[rows], self)
        sub._int_bounds = self._int_bounds  # a subset of integers is integer, within bounds
        return sub

    def int_bounds(self) -> tuple[float, float] | None:
        """(min, max) when every value is an integer (uint8 pixels, or [0, 255] floats)."""
        if self._int_bounds is False:
            o = self.orig
            if o.is_floating_point():
                rows, step = _row_steps(self.n, self.d, 4)
                ok = all(bool((o[i : i + step] == o[i : i + step].round()).all()) for i in rows)
            else:
                ok = True
            self._int_bounds = (float(o.min()), float(o.max())) if ok else None
        return self._int_bounds

    def int8(self, offset: float, pad: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows - offset as int8, padded with zero columns to ``pad``; exact squared norms int64)."""
        if self._i8 is None or self._i8[0] != offset or self._i8[1].shape[1] != pad:
            dev = self.orig.device
            o = self.orig
            x8 = torch.empty((self.n, pad), dtype=torch.int8, device=dev)
            if pad > self.d:
                x8[:, self.d :].zero_()
            nrm = torch.empty(self.n, dtype=torch.int64, device=dev)
            rows, step = _row_steps(self.n, self.d, 4, 8 * 2**20)
            for i in rows:
                blk, out = o[i : i + step], x8[i : i + step, : self.d]
                if o.dtype == torch.uint8:
                    # (x - offset) mod 256 read as int8 is x - offset, since it lies in [-128, 127]
                    torch.sub(blk, int(offset) % 256, out=out.view(torch.uint8))
                else:
                    # other integers are shifted in int64, floats (integer-valued, checked by int_bounds)
                    # in float64, where the shift is exact
                    wide = torch.float64 if o.is_floating_point() else torch.int64
                    out.copy_(blk.to(wide) - int(offset))
                # exact norms: float32 sums of <= 1024 squares <= 128^2 stay integers <= 2^24
                f = out.to(torch.float32)
                acc = torch.zeros(f.shape[0], dtype=torch.int64, device=dev)
                for c0 in range(0, self.d, 1024):
                    part = f[:, c0 : c0 + 1024]
                    acc += (part * part).sum(1).to(torch.int64)
                nrm[i : i + step] = acc
            self._i8 = (offset, x8, nrm)
        return self._i8[1], self._i8[2]


def _default_chunk(device: torch.device) -> int:
    # CPU: 2048^2 blocks (16 MiB of int32/float32): the GEMM runs at full speed, the passes
    # after it (norm add, threshold filter) are cheap, and the per-block overhead of the sparse
    # merges is amortised (measured on 2 cores: 2048 ~10-15% faster than 1024 on MNIST, equal
    # on CIFAR-10). GPU: larger blocks amortise kernel launches; 8192^2 float32 = 256 MiB.
    return 8192 if device.type == "cuda" else 2048


def _check_chunk(chunk_size: Any, device: torch.device) -> int:
    if chunk_size is None:
        return _default_chunk(device)
    return check_int("chunk_size", chunk_size, low=1)
