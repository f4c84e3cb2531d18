"""The exact int8 path of the kNN kernels (internals of :mod:`domaingap.kernels.distances`).

For integer data with a range of at most 255 values: :class:`_IntGram`, exact squared distances from one int8 GEMM
with int32 accumulation per block (``torch._int_mm``, checked once per device type by :func:`_int_mm_available`),
and :func:`_stream_cross_min_exact`, the exact streamed minimum over cross-class blocks. No refinement or
certificate is needed; :class:`_Int8Failed` tells callers to fall back to the float32 path.
"""

from __future__ import annotations

import torch

from ._knn_points import _I32_MAX, _I64_MAX, _Points
from ._knn_select import _class_blocks


# --------------------------------------------------------------------------------------
# block engines: squared distances between rows q0:q1 of the query set and r0:r1 of the refs


_int_mm_ok: dict[str, bool] = {}  # a run-time cache: lowercase, so not hashed into run keys (runs.code)


def _int_mm_available(device: torch.device) -> bool:
    """Whether ``torch._int_mm`` (int8 x int8 -> int32) runs and is exact on this device type."""
    key = device.type
    if key not in _int_mm_ok:
        ok = False
        try:
            g = torch.Generator().manual_seed(0)
            a = torch.randint(-128, 128, (32, 64), generator=g, dtype=torch.int8)
            b = torch.randint(-128, 128, (32, 64), generator=g, dtype=torch.int8)
            got = torch._int_mm(a.to(device), b.to(device).T).cpu()
            ok = bool(torch.equal(got.to(torch.int64), a.to(torch.int64) @ b.to(torch.int64).T))
        except Exception:  # noqa: BLE001 - any failure means: use the float32 path
            ok = False
        _int_mm_ok[key] = ok
    return _int_mm_ok[key]


class _Int8Failed(RuntimeError):
    """torch._int_mm failed at run time (callers fall back to the float32 path)."""


class _IntGram:
    """Exact squared distances of integer data with range <= 255: ||a||^2 + ||b||^2 - 2 a.b, integers.

    One int8 GEMM with int32 accumulation per block (exact: |a.b| <= 128^2 D < 2^31 per piece
    of <= 131,064 columns); values are int32 when 65,536 D < 2^31 (every squared distance,
    <= 255^2 D, and every intermediate fits), otherwise int64.
    """

    exact = True

    def __init__(self, ref: _Points, query: _Points | None, offset: float):
        dev = ref.orig.device
        self.cuda = dev.type == "cuda"
        pad = ref.d + (-ref.d) % 16 if self.cuda else ref.d  # cuBLASLt int8 wants multiples of 8 (16 to be safe)
        self.r8, rn = ref.int8(offset, pad)
        if query is None:
            self.q8, qn = self.r8, rn
        else:
            self.q8, qn = query.int8(offset, pad)
        self.dtype = torch.int32 if 65536 * ref.d < 2**31 else torch.int64
        self.sentinel = _I32_MAX if self.dtype == torch.int32 else _I64_MAX
        self.rn, self.qn = rn.to(self.dtype), qn.to(self.dtype)
        self.pieces = [(s, min(s + 131064, pad)) for s in range(0, pad, 131064)]
        self._buf: torch.Tensor | None = None

    def _mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """a @ b.T exactly as int32 (int8 inputs); _Int8Failed if the device's int8 GEMM refuses."""
        try:
            return self._mm_raw(a, b)
        except RuntimeError as err:
            if isinstance(err, torch.OutOfMemoryError):
                raise
            raise _Int8Failed(str(err)) from err

    def _mm_raw(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if not self.cuda:
            return torch._int_mm(a, b.T)
        a, b = a.contiguous(), b.contiguous()
        m, n = a.shape[0], b.shape[0]
        mp, np_ = max(32, m + (-m) % 8), max(32, n + (-n) % 8)
        if mp != m:
            a = torch.cat([a, a.new_zeros((mp - m, a.shape[1]))])
        if np_ != n:
            b = torch.cat([b, b.new_zeros((np_ - n, b.shape[1]))])
        return torch._int_mm(a, b.T)[:m, :n]

    def block(self, q0: int, q1: int, r0: int, r1: int) -> torch.Tensor:
        m, w = q1 - q0, r1 - r0
        if self._buf is None or self._buf.numel() < m * w:
            self._buf = torch.empty(m * w, dtype=self.dtype, device=self.r8.device)
        out = self._buf[: m * w].view(m, w)
        torch.add(self.qn[q0:q1, None], self.rn[None, r0:r1], out=out)
        for s0, s1 in self.pieces:
            g = self._mm(self.q8[q0:q1, s0:s1], self.r8[r0:r1, s0:s1])
            out.sub_(g.to(self.dtype) if self.dtype != torch.int32 else g, alpha=2)
        return out

    def row_keys(self, q0: int, q1: int, r0: int, r1: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(||b||^2 - 2 a.b block, ||a||^2 of the rows): the squared distance minus a per-row constant."""
        m, w = q1 - q0, r1 - r0
        if self._buf is None or self._buf.numel() < m * w:
            self._buf = torch.empty(m * w, dtype=self.dtype, device=self.r8.device)
        out = self._buf[: m * w].view(m, w)
        first = True
        for s0, s1 in self.pieces:
            g = self._mm(self.q8[q0:q1, s0:s1], self.r8[r0:r1, s0:s1])
            if first:
                torch.add(self.rn[None, r0:r1], g.to(self.dtype), alpha=-2, out=out)
                first = False
            else:
                out.sub_(g.to(self.dtype), alpha=2)
        return out, self.qn[q0:q1]


# --------------------------------------------------------------------------------------
# streamed minimum over cross-class blocks


def _stream_cross_min_exact(eng: _IntGram, bounds, n: int, chunk: int, perm: torch.Tensor):
    """Exact minimum squared distance over cross-class pairs, and the pair attaining it (original
    indices i < j; among exact ties the lexicographically smallest). ``perm`` maps class-sorted
    positions to original indices."""
    best, best_pair = None, None
    with torch.no_grad():
        for q0, q1, r0, r1 in _class_blocks(bounds, n, chunk):
            keys, qn = eng.row_keys(q0, q1, r0, r1)
            rmin = keys.amin(dim=1) + qn
            bmin = int(rmin.min())
            if best is not None and bmin > best:
                continue
            rows = (rmin == bmin).nonzero()[:, 0]
            i, j = (keys[rows] + qn[rows, None] == bmin).nonzero(as_tuple=True)
            oi, oj = perm[rows[i] + q0], perm[j + r0]
            lo, hi = torch.minimum(oi, oj), torch.maximum(oi, oj)
            b = int(torch.argmin(lo * n + hi))
            pair = (int(lo[b]), int(hi[b]))
            if best is None or bmin < best or pair < best_pair:
                best, best_pair = bmin, pair
    return best, best_pair
